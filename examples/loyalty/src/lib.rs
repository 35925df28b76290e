//! Stamp cards: a Keel plugin written only against `keel-sdk`.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, config, events, json, plugin};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Config {
    stamps_per_reward: u32,
    #[serde(default = "default_daily_limit")]
    daily_limit: u32,
}

fn default_daily_limit() -> u32 {
    3
}

/// A member's card, as stored and as returned (GraphQL `StampCard`).
#[derive(Serialize, Deserialize, Clone)]
struct Card {
    member: String,
    stamps: u32,
    rewards: u32,
    #[serde(rename = "lastStore", alias = "last_store")]
    last_store: Option<String>,
}

#[derive(Deserialize)]
struct StampInput {
    member: String,
    store: String,
    /// The business day, e.g. 2026-11-24 (the daily limit counts per day).
    day: String,
}

fn stamp(_ctx: &Context, input: StampInput) -> Result<Card> {
    if input.member.trim().is_empty() || input.store.trim().is_empty() {
        return Err(Error::invalid("member and store must not be empty"));
    }
    let cfg: Config = config::get()?;
    let day_key = format!("daily:{}:{}", input.member, input.day);
    if let Outcome::LimitReached(_) =
        counters::add(&day_key, 1, 0, i64::from(cfg.daily_limit), None)?
    {
        return Err(Error::refused(
            "DAILY_LIMIT",
            format!(
                "{} already has {} stamps today",
                input.member, cfg.daily_limit
            ),
        ));
    }
    let stored = records::get::<Card>("cards", &input.member)?;
    let (mut card, expect) = match stored {
        Some(r) => (r.data, Expect::Version(r.version)),
        None => (
            Card {
                member: input.member.clone(),
                stamps: 0,
                rewards: 0,
                last_store: None,
            },
            Expect::Absent,
        ),
    };
    card.stamps += 1;
    card.last_store = Some(input.store.clone());
    events::emit(
        "loyalty.stamped",
        None,
        &json!({"member": card.member, "store": input.store}),
        None,
    )?;
    if card.stamps >= cfg.stamps_per_reward {
        card.stamps -= cfg.stamps_per_reward;
        card.rewards += 1;
        events::emit(
            "loyalty.rewarded",
            None,
            &json!({"member": card.member, "rewards": card.rewards}),
            None,
        )?;
    }
    // Stored with snake_case keys so that `last_store` is indexed.
    let stored = json!({"member": card.member, "stamps": card.stamps, "rewards": card.rewards, "last_store": card.last_store});
    records::put("cards", &input.member, &stored, expect)?;
    Ok(card)
}

#[derive(Deserialize)]
struct CardInput {
    member: String,
}

fn card(_ctx: &Context, input: CardInput) -> Result<Option<Card>> {
    Ok(records::get::<Card>("cards", &input.member)?.map(|r| r.data))
}

fn check_config(cfg: Config) -> Result<()> {
    if cfg.daily_limit > 100 {
        return Err(Error::refused(
            "LIMIT_TOO_HIGH",
            "a daily limit over 100 stamps is not a loyalty program",
        ));
    }
    Ok(())
}

plugin! {
    operations: { "stamp" => stamp, "card" => card },
    on_enable: check_config,
}
