//! Red packets: each cash award becomes a payout, sent to the payment
//! provider with the award id as idempotency key, retried with a growing
//! wait until it succeeds or runs out of attempts and is marked failed.
//!
//! A payout is requested by an event the plugin delivers to itself through
//! the kernel's outbox (`rewards.payout_requested`, async). A failed
//! attempt is recorded and requested again; the time it is due is kept in
//! the payout record, and a delivery before that time returns an error, so
//! the outbox's own backoff waits for it.
//!
//! The event only says *which* payout to attempt: what is paid (amount,
//! person, award) is read from the `payouts` record, never from the event.
//! An event without a record, for a settled payout, or for an attempt other
//! than the record's next one (a replay, a stale duplicate) does nothing.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Event, Result, events, http, log};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::claim::Award;
use crate::model::{config, now, page_limit, rfc3339};

/// The only producer of `rewards.payout_requested`: this plugin.
const PRODUCER: &str = "rewards";

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
    /// Microseconds since 1970 before which the next attempt is not made
    /// (0 for the first).
    #[serde(default)]
    not_before: i64,
}

/// The event's payload. Only `award_id` and `attempt` are acted on; the
/// rest is there for readers of the event log.
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
    crate::emits::emit(
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
        not_before: 0,
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

/// What a delivered request amounts to, judged on the stored payout alone.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// Send it: the record's next attempt, and its time has come.
    Send,
    /// Its time has not come yet: ask the outbox to deliver it again later.
    NotYet,
    /// Nothing to do: why (for the log).
    Ignore(&'static str),
}

fn due(stored: Option<&Payout>, attempt: i64, now_micros: i64) -> Due {
    let Some(s) = stored else {
        return Due::Ignore("there is no payout for this award");
    };
    if matches!(s.status.as_str(), "PAID" | "FAILED") {
        return Due::Ignore("the payout is already settled");
    }
    if attempt != s.attempts + 1 {
        return Due::Ignore(
            "the request is not the payout's next attempt (a replay or a duplicate)",
        );
    }
    if now_micros < s.not_before {
        return Due::NotYet;
    }
    Due::Send
}

/// The outbox delivers a request: check it against the payout record,
/// send the record's payout to the provider, then record what happened.
///
/// The record is read before the call's first write, so no write
/// transaction is open while the provider answers (on SQLite the one
/// writer stays free). Two deliveries of one request at once (a lease that
/// ran out, a replay) may both send: the provider's idempotency key (the
/// award) pays once, and the outcome is written against the version read.
pub(crate) fn on_requested(e: Event) -> Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Which {
        award_id: String,
        attempt: i64,
    }
    let ignore = |why: &str| {
        log::warn(&format!(
            "payout request {} from {} ignored: {why}",
            e.id, e.producer
        ));
        Ok(())
    };
    if e.producer != PRODUCER {
        return ignore("only the rewards plugin requests payouts");
    }
    let r: Which = match serde_json::from_value(e.payload.clone()) {
        Ok(r) => r,
        Err(err) => return ignore(&format!("not a payout request: {err}")),
    };
    if r.award_id.is_empty() || r.award_id.len() > 100 {
        return ignore("not an award id");
    }
    let t = now();
    let stored = records::get::<Payout>("payouts", &r.award_id)?;
    let (version, mut p) = match (
        due(
            stored.as_ref().map(|s| &s.data),
            r.attempt,
            t.timestamp_micros(),
        ),
        stored,
    ) {
        (Due::Send, Some(s)) => (s.version, s.data),
        (Due::NotYet, _) => {
            return Err(Error::refused(
                "NOT_DUE",
                "this payout's next attempt is not due yet",
            ));
        }
        (Due::Ignore(why), _) => {
            return ignore(&format!(
                "award {:?}, attempt {}: {why}",
                r.award_id, r.attempt
            ));
        }
        (Due::Send, None) => unreachable!("due() sends only a stored payout"),
    };
    let cfg = config()?;
    let sent = match &cfg.payout_url {
        None => Err("no payout_url is configured".to_owned()),
        Some(url) => {
            let body = json!({"idempotencyKey": p.award_id, "personId": p.person_id,
                              "amountCents": p.amount_cents, "currency": "CNY"});
            match http::post_json(url, &body, &[("idempotency-key", &p.award_id)]) {
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
    p.attempts += 1;
    p.updated_at = rfc3339(t);
    let max = cfg.payout_max_attempts.unwrap_or(6);
    match sent {
        Ok(reference) => {
            p.status = "PAID".into();
            p.provider_ref = reference;
            p.last_error = None;
        }
        Err(why) => {
            p.last_error = Some(why.chars().take(300).collect());
            if p.attempts >= max {
                p.status = "FAILED".into();
            } else {
                p.status = "RETRYING".into();
                let base = cfg.payout_retry_seconds.unwrap_or(5);
                let wait = (base << (p.attempts - 1).min(10)).min(120);
                p.not_before = t.timestamp_micros() + wait * 1_000_000;
                emit(&Request {
                    award_id: p.award_id.clone(),
                    person_id: p.person_id.clone(),
                    amount_cents: p.amount_cents,
                    attempt: p.attempts + 1,
                    not_before: p.not_before,
                })?;
            }
        }
    }
    records::put("payouts", &r.award_id, &p, Expect::Version(version))?;
    if matches!(p.status.as_str(), "PAID" | "FAILED") {
        events::emit(
            "rewards.payout_settled",
            Some(&p.person_id),
            &json!({"award": p.award_id, "status": p.status, "attempts": p.attempts}),
            Some(&format!("payout-settled:{}", p.award_id)),
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

/// Payouts, by award. Tenant-wide: not for a caller limited to an org node.
pub(crate) fn list(ctx: &Context, i: ListInput) -> Result<Vec<Payout>> {
    crate::scope::require_tenant_wide(ctx, "payouts")?;
    let limit = page_limit(i.limit, 100, 1000)?;
    let page = match &i.status {
        Some(s) => {
            records::query::<Payout>("payouts", "status", &json!(s), i.after.as_deref(), limit)?
        }
        None => records::scan::<Payout>("payouts", i.after.as_deref(), limit)?,
    };
    Ok(page.records.into_iter().map(|r| r.data).collect())
}
