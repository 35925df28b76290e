//! The points wallet: a balance per person (a counter: exact, never
//! negative) and its history.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, events, persons};
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

/// Adds an award's points, in the claim's transaction. A claim runs once
/// per scan and its award is new, so the addition needs no idempotency
/// key of its own.
pub(crate) fn credit_award(person: &str, points: i64, reason: &str) -> Result<()> {
    counters::add(&balance_key(person), points, 0, i64::MAX, None)?;
    record(person, points, reason)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WalletInput {
    person_id: String,
}

/// The balance and the latest 100 movements, newest last. Tenant-wide: not
/// for a caller limited to an org node.
pub(crate) fn wallet(ctx: &Context, i: WalletInput) -> Result<Wallet> {
    crate::scope::require_tenant_wide(ctx, "points wallets")?;
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

/// The checked reason of a movement of `points` with `key`.
fn check_movement<'a>(points: i64, reason: &'a str, key: &str) -> Result<&'a str> {
    if !(1..=MAX_POINTS).contains(&points) {
        return Err(Error::invalid(format!("points: 1..={MAX_POINTS}")));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(Error::invalid("reason: 1-200 characters"));
    }
    if key.is_empty() || key.len() > 100 {
        return Err(Error::invalid("idempotencyKey: 1-100 characters"));
    }
    Ok(reason)
}

/// The most points one movement moves.
const MAX_POINTS: i64 = 1_000_000_000;

/// An idempotency key in its caller's own space: a plugin's keys (through
/// `plugins.call`) never meet another plugin's or an operator's.
pub(crate) fn scoped_key(ctx: &Context, kind: &str, key: &str) -> String {
    match ctx.calling_plugin() {
        Some(plugin) => format!("{kind}:{plugin}:{key}"),
        None => format!("{kind}:{key}"),
    }
}

/// A keyed movement, kept so that a retry finds it (`wallet_ops`).
#[derive(Serialize, Deserialize)]
struct Op {
    person: String,
    points: i64,
    balance: i64,
}

/// True when `key` already moved `points` for `person` (a retry); a
/// conflict when it moved something else.
fn replayed(key: &str, person: &str, points: i64) -> Result<bool> {
    match records::get::<Op>("wallet_ops", key)? {
        None => Ok(false),
        Some(op) if op.data.person == person && op.data.points == points => Ok(true),
        Some(_) => Err(Error::Conflict(format!(
            "idempotencyKey: {key} was used for another movement"
        ))),
    }
}

/// Moves `points` (negative to spend) with `key`, once: the balance after
/// a fresh move, `None` for a retry (which changes nothing). Refused with
/// `INSUFFICIENT_POINTS` when the wallet holds too few points.
fn move_once(person: &str, points: i64, reason: &str, key: &str) -> Result<Option<i64>> {
    if replayed(key, person, points)? {
        return Ok(None);
    }
    // Adding nothing takes the balance for this call (the row lock on
    // PostgreSQL, the writer on SQLite), so no other movement commits
    // between `before` and the move.
    let before = match counters::add(&balance_key(person), 0, i64::MIN, i64::MAX, None)? {
        Outcome::Applied(v) | Outcome::LimitReached(v) => v,
    };
    match counters::add(&balance_key(person), points, 0, i64::MAX, Some(key))? {
        Outcome::Applied(after) if after == before + points => {
            record(person, points, reason)?;
            let op = Op {
                person: person.to_owned(),
                points,
                balance: after,
            };
            records::put("wallet_ops", key, &op, Expect::Absent)?;
            Ok(Some(after))
        }
        // The key moved points before this plugin kept its movements.
        Outcome::Applied(_) => Ok(None),
        Outcome::LimitReached(have) => Err(Error::refused(
            "INSUFFICIENT_POINTS",
            format!("the wallet holds {have} points, fewer than {}", -points),
        )),
    }
}

/// Spends points; refused with `INSUFFICIENT_POINTS` (changing nothing)
/// beyond the balance. A retry with the same key spends once. Offered to
/// other plugins too (a checkout spends inside its order's transaction);
/// their keys are their own. Tenant-wide: not for a caller limited to an
/// org node, unless through a plugin that answers for it.
pub(crate) fn spend(ctx: &Context, i: SpendInput) -> Result<Wallet> {
    crate::scope::require_tenant_wide(ctx, "points wallets")?;
    let reason = check_movement(i.points, &i.reason, &i.idempotency_key)?;
    let key = scoped_key(ctx, "spend", &i.idempotency_key);
    if let Some(after) = move_once(&i.person_id, -i.points, reason, &key)? {
        events::emit(
            "rewards.points_spent",
            Some(&i.person_id),
            &json!({"points": i.points, "reason": reason, "balance": after}),
            Some(&key),
        )?;
    }
    wallet(
        ctx,
        WalletInput {
            person_id: i.person_id,
        },
    )
}

/// Credits points to an existing person's wallet (the person they were
/// merged into, if so), once per idempotency key. Offered to other plugins
/// only (a store crediting a purchase): not on GraphQL.
pub(crate) fn credit_points(ctx: &Context, i: SpendInput) -> Result<Wallet> {
    crate::redeem::offered_only(ctx, "creditPoints")?;
    let reason = check_movement(i.points, &i.reason, &i.idempotency_key)?;
    let person = persons::get(&i.person_id)?
        .ok_or_else(|| Error::NotFound(format!("personId: no person {}", i.person_id)))?
        .id;
    let key = scoped_key(ctx, "credit", &i.idempotency_key);
    move_once(&person, i.points, reason, &key)?;
    wallet(ctx, WalletInput { person_id: person })
}
