//! Red packets: each cash award becomes a payout, sent to the payment
//! provider with the award id as idempotency key, retried with a growing
//! wait until it succeeds or runs out of attempts and is marked failed.
//!
//! A payout is requested by an event the plugin delivers to itself through
//! the kernel's outbox (`rewards.payout_requested`, async). A failed
//! attempt is recorded and requested again with a `notBefore` time; a
//! delivery before that time returns an error, so the outbox's own backoff
//! waits for it.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Event, Result, events, http};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::claim::Award;
use crate::model::{config, now, page_limit, rfc3339};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payout {
    award_id: String,
    person_id: String,
    amount_cents: i64,
    /// PENDING, RETRYING, PAID or FAILED (indexed).
    status: String,
    attempts: i64,
    last_error: Option<String>,
    provider_ref: Option<String>,
    updated_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    award_id: String,
    person_id: String,
    amount_cents: i64,
    attempt: i64,
    /// Microseconds since 1970; earlier deliveries wait.
    not_before: i64,
}

fn emit(r: &Request) -> Result<()> {
    events::emit(
        "rewards.payout_requested",
        Some(&r.person_id),
        r,
        Some(&format!("payout:{}:{}", r.award_id, r.attempt)),
    )?;
    Ok(())
}

/// Records a payout for a cash award and asks for it to be sent.
pub(crate) fn request(award: &Award, amount: i64) -> Result<()> {
    let person = award.person_id.clone().unwrap_or_default();
    let p = Payout {
        award_id: award.id.clone(),
        person_id: person.clone(),
        amount_cents: amount,
        status: "PENDING".into(),
        attempts: 0,
        last_error: None,
        provider_ref: None,
        updated_at: rfc3339(now()),
    };
    records::put("payouts", &award.id, &p, Expect::Absent)?;
    emit(&Request {
        award_id: award.id.clone(),
        person_id: person,
        amount_cents: amount,
        attempt: 1,
        not_before: 0,
    })
}

/// The outbox delivers a request: send it to the provider (before touching
/// the database, so SQLite's writer is not held during the call), then
/// record what happened.
pub(crate) fn on_requested(e: Event) -> Result<()> {
    let r: Request = serde_json::from_value(e.payload)
        .map_err(|err| Error::invalid(format!("payout request: {err}")))?;
    let t = now();
    if t.timestamp_micros() < r.not_before {
        return Err(Error::refused(
            "NOT_DUE",
            "this payout's next attempt is not due yet",
        ));
    }
    let cfg = config()?;
    let sent = match &cfg.payout_url {
        None => Err("no payout_url is configured".to_owned()),
        Some(url) => {
            let body = json!({"idempotencyKey": r.award_id, "personId": r.person_id,
                              "amountCents": r.amount_cents, "currency": "CNY"});
            match http::post_json(url, &body, &[("idempotency-key", &r.award_id)]) {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    let reference = serde_json::from_slice::<serde_json::Value>(&resp.body)
                        .ok()
                        .and_then(|v| {
                            v.get("reference")
                                .and_then(|x| x.as_str())
                                .map(str::to_owned)
                        });
                    Ok(reference)
                }
                Ok(resp) => Err(format!("the provider answered {}", resp.status)),
                Err(err) => Err(err.to_string()),
            }
        }
    };
    let Some(mut p) = records::get::<Payout>("payouts", &r.award_id)? else {
        return Err(Error::NotFound(format!(
            "no payout for award {}",
            r.award_id
        )));
    };
    if matches!(p.data.status.as_str(), "PAID" | "FAILED") {
        return Ok(());
    }
    p.data.attempts += 1;
    p.data.updated_at = rfc3339(t);
    let max = cfg.payout_max_attempts.unwrap_or(6);
    match sent {
        Ok(reference) => {
            p.data.status = "PAID".into();
            p.data.provider_ref = reference;
            p.data.last_error = None;
        }
        Err(why) => {
            p.data.last_error = Some(why.chars().take(300).collect());
            if p.data.attempts >= max {
                p.data.status = "FAILED".into();
            } else {
                p.data.status = "RETRYING".into();
                let base = cfg.payout_retry_seconds.unwrap_or(5);
                let wait = (base << (p.data.attempts - 1).min(10)).min(120);
                emit(&Request {
                    attempt: r.attempt + 1,
                    not_before: t.timestamp_micros() + wait * 1_000_000,
                    ..r
                })?;
            }
        }
    }
    records::put("payouts", &p.key, &p.data, Expect::Version(p.version))?;
    if matches!(p.data.status.as_str(), "PAID" | "FAILED") {
        events::emit(
            "rewards.payout_settled",
            Some(&p.data.person_id),
            &json!({"award": p.data.award_id, "status": p.data.status, "attempts": p.data.attempts}),
            Some(&format!("payout-settled:{}", p.data.award_id)),
        )?;
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    status: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn list(_ctx: &Context, i: ListInput) -> Result<Vec<Payout>> {
    let limit = page_limit(i.limit, 100, 1000)?;
    let page = match &i.status {
        Some(s) => {
            records::query::<Payout>("payouts", "status", &json!(s), i.after.as_deref(), limit)?
        }
        None => records::scan::<Payout>("payouts", i.after.as_deref(), limit)?,
    };
    Ok(page.records.into_iter().map(|r| r.data).collect())
}
