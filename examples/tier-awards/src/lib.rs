//! Awards by member tier: a subscriber to the rewards plugin's
//! `rewards.awarded`, with a GraphQL query over what it counted.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Event, Result, config, counters, http, persons, plugin, time};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Default)]
struct Config {
    crm_url: Option<String>,
    gold_bonus_points: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TierAward {
    award: String,
    tier: String,
    seen_at: String,
}

/// The member's tier as their profile says, `none` without one.
fn tier_of(person: &str) -> Result<String> {
    let profile = persons::get(person)?.ok_or_else(|| Error::NotFound("no such person".into()))?;
    Ok(profile
        .attributes
        .get("tier")
        .and_then(|t| t.as_str())
        .unwrap_or("none")
        .to_owned())
}

fn on_awarded(event: Event) -> Result<()> {
    // Only the rewards plugin emits `rewards.*` (the kernel enforces it);
    // what is read from the event is its ids, never an amount.
    if event.producer != "rewards" {
        return Ok(());
    }
    let Some(person) = event.person_id.as_deref() else {
        return Ok(());
    };
    let award = event.payload["award"]
        .as_str()
        .ok_or_else(|| Error::invalid("payload.award is missing"))?
        .to_owned();
    let tier = tier_of(person)?;
    // Once per award, however often the event is delivered.
    counters::add(&format!("tier:{tier}"), 1, 0, i64::MAX, Some(&award))?;
    let seen = TierAward {
        award: award.clone(),
        tier: tier.clone(),
        seen_at: time::rfc3339(time::now()),
    };
    records::put("last_award", person, &seen, Expect::Any)?;
    let cfg: Config = config::get()?;
    if let (Some(points), "gold") = (cfg.gold_bonus_points, tier.as_str()) {
        // In this delivery's transaction: a refusal undoes the count too,
        // and the retry (same idempotency key) credits once.
        let _wallet: keel_sdk::Value = keel_sdk::plugins::call(
            "rewards",
            "creditPoints",
            &keel_sdk::json!({
                "personId": person, "points": points, "reason": "gold bonus",
                "idempotencyKey": format!("gold-bonus:{award}"),
            }),
        )?;
    }
    if let Some(url) = cfg.crm_url {
        let body = keel_sdk::json!({"person": person, "tier": tier, "award": award});
        let res = http::post_json(
            &format!("{url}/awards"),
            &body,
            &[("idempotency-key", &award)],
        )?;
        if !(200..300).contains(&res.status) {
            // A failed delivery is retried by the kernel (and, in the end,
            // kept as a dead letter to replay).
            return Err(Error::refused(
                "CRM_FAILED",
                format!("the CRM answered {}", res.status),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct TierInput {
    tier: String,
}

fn awards_by_tier(_ctx: &Context, input: TierInput) -> Result<i64> {
    if input.tier.is_empty() || input.tier.len() > 64 {
        return Err(Error::invalid("tier: 1 to 64 characters"));
    }
    counters::get(&format!("tier:{}", input.tier))
}

#[derive(Deserialize)]
struct PersonInput {
    person: String,
}

fn last_award(_ctx: &Context, input: PersonInput) -> Result<Option<TierAward>> {
    Ok(records::get("last_award", &input.person)?.map(|r| r.data))
}

plugin! {
    operations: { "awardsByTier" => awards_by_tier, "lastAward" => last_award },
    events: { "rewards.awarded" => on_awarded },
}
