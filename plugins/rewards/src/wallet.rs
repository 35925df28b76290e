//! The points wallet: a balance per person (a counter: exact, never
//! negative) and its history.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, events};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{now, rfc3339, time_key};

/// A movement, stored and returned (GraphQL `PointsMovement`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Movement {
    id: String,
    person_id: String,
    /// Indexed.
    person: String,
    points: i64,
    reason: String,
    at: String,
}

/// GraphQL `PointsWallet`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Wallet {
    person_id: String,
    balance: i64,
    history: Vec<Movement>,
}

fn balance_key(person: &str) -> String {
    format!("wallet:{person}")
}

fn record(person: &str, points: i64, reason: &str) -> Result<()> {
    let at = now();
    let id = time_key(at)?;
    let m = Movement {
        id: id.clone(),
        person_id: person.to_owned(),
        person: person.to_owned(),
        points,
        reason: reason.to_owned(),
        at: rfc3339(at),
    };
    records::put("points", &id, &m, Expect::Absent)?;
    Ok(())
}

/// Adds points (idempotent by `key`).
pub(crate) fn credit(person: &str, points: i64, reason: &str, key: &str) -> Result<()> {
    counters::add(&balance_key(person), points, 0, i64::MAX, Some(key))?;
    record(person, points, reason)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WalletInput {
    person_id: String,
}

/// The balance and the latest 100 movements, newest last.
pub(crate) fn wallet(_ctx: &Context, i: WalletInput) -> Result<Wallet> {
    let history = records::query::<Movement>("points", "person", &json!(i.person_id), None, 100)?;
    Ok(Wallet {
        balance: counters::get(&balance_key(&i.person_id))?,
        history: history.records.into_iter().map(|r| r.data).collect(),
        person_id: i.person_id,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SpendInput {
    person_id: String,
    points: i64,
    reason: String,
    idempotency_key: String,
}

/// Spends points; refused (changing nothing) beyond the balance. A retry
/// with the same key spends once.
pub(crate) fn spend(ctx: &Context, i: SpendInput) -> Result<Wallet> {
    if i.points < 1 {
        return Err(Error::invalid("points: at least 1"));
    }
    let reason = i.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(Error::invalid("reason: 1-200 characters"));
    }
    if i.idempotency_key.is_empty() || i.idempotency_key.len() > 100 {
        return Err(Error::invalid("idempotencyKey: 1-100 characters"));
    }
    let key = format!("spend:{}", i.idempotency_key);
    let before = counters::get(&balance_key(&i.person_id))?;
    match counters::add(
        &balance_key(&i.person_id),
        -i.points,
        0,
        i64::MAX,
        Some(&key),
    )? {
        Outcome::Applied(after) if after == before - i.points => {
            record(&i.person_id, -i.points, reason)?;
            events::emit(
                "rewards.points_spent",
                Some(&i.person_id),
                &json!({"points": i.points, "reason": reason, "balance": after}),
                Some(&key),
            )?;
        }
        // The key was used before: the first spend stands.
        Outcome::Applied(_) => {}
        Outcome::LimitReached(have) => {
            return Err(Error::refused(
                "INSUFFICIENT_POINTS",
                format!("the wallet holds {have} points, fewer than {}", i.points),
            ));
        }
    }
    wallet(
        ctx,
        WalletInput {
            person_id: i.person_id,
        },
    )
}
