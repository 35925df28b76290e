//! Counters with limits: the primitive behind budgets, prize stock and
//! per-person limits.
//!
//! [`add`] adds `delta` only if the result stays within `[min, max]`, as one
//! conditional `UPDATE … WHERE value + delta BETWEEN min AND max` (a missing
//! counter is created at `delta` when that is within the limits). On
//! PostgreSQL the row lock makes concurrent adds queue and re-check the
//! condition against the committed value; on SQLite writers are serialised.
//! Either way no interleaving can cross a limit, across any number of
//! kernel processes sharing the database.

use sqlx::Row as _;

use crate::db::Conn;
use crate::{Db, Error, Result, TenantId, now};

/// The result of an [`add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Added; the counter's new value.
    Applied(i64),
    /// Not added because the result would leave `[min, max]`; the value,
    /// unchanged.
    LimitReached(i64),
}

/// An addition to make.
#[derive(Debug, Clone)]
pub struct Add<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    pub delta: i64,
    pub min: i64,
    pub max: i64,
    /// A retry with the same key returns the first outcome, not a second add.
    pub idempotency_key: Option<&'a str>,
}

/// The widest range a counter may be limited to: values stay far from
/// `i64` overflow on both backends.
pub const BOUND: i64 = 1 << 62;
/// The largest step of one addition, up or down.
pub const MAX_DELTA: i64 = 1_000_000_000_000_000;

fn validate(add: &Add<'_>) -> Result<()> {
    if add.delta.unsigned_abs() > MAX_DELTA as u64 {
        return Err(Error::bad_input(
            "delta",
            format!("must be within ±{MAX_DELTA}"),
        ));
    }
    if add.min < -BOUND || add.max > BOUND {
        return Err(Error::bad_input(
            "min",
            format!("min and max must be within ±{BOUND}"),
        ));
    }
    if add.key.is_empty() || add.key.len() > 200 {
        return Err(Error::bad_input("key", "must be 1-200 characters"));
    }
    if add.min > add.max {
        return Err(Error::bad_input("min", "must not be greater than max"));
    }
    if let Some(k) = add.idempotency_key
        && (k.is_empty() || k.len() > 200)
    {
        return Err(Error::bad_input(
            "idempotencyKey",
            "must be 1-200 characters",
        ));
    }
    Ok(())
}

/// Adds `delta` to a counter (created at 0) if the result stays within
/// `[min, max]`, in `conn`'s transaction.
pub async fn add(conn: &mut Conn, tenant: &TenantId, add: Add<'_>) -> Result<Outcome> {
    validate(&add)?;
    let t = now().0;
    if let Some(k) = add.idempotency_key {
        // Claim the key first: a concurrent call with the same key waits on
        // the unique index and then finds the outcome of the first.
        let claimed = sqlx::query(
            "INSERT INTO counter_ops (tenant_id, namespace, idempotency_key, key, delta, outcome, applied, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, -1, $6) ON CONFLICT DO NOTHING RETURNING applied",
        )
        .bind(tenant.as_str())
        .bind(add.namespace)
        .bind(k)
        .bind(add.key)
        .bind(add.delta)
        .bind(t)
        .fetch_optional(&mut *conn)
        .await?;
        if claimed.is_none() {
            return prior_outcome(conn, tenant, &add, k).await;
        }
    }
    let updated = match bump(conn, tenant, &add, t).await? {
        Some(v) => Some(v),
        // No counter yet (or at its limit): create it at `delta` if that is
        // within the limits. A concurrent creator makes this a conflict,
        // after which the conditional update decides.
        None if add.delta >= add.min && add.delta <= add.max => {
            let created: Option<i64> = sqlx::query_scalar(
                "INSERT INTO counters (tenant_id, namespace, key, value, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, namespace, key) DO NOTHING \
                 RETURNING value",
            )
            .bind(tenant.as_str())
            .bind(add.namespace)
            .bind(add.key)
            .bind(add.delta)
            .bind(t)
            .fetch_optional(&mut *conn)
            .await?;
            match created {
                Some(v) => Some(v),
                None => bump(conn, tenant, &add, t).await?,
            }
        }
        None => None,
    };
    let outcome = match updated {
        Some(v) => Outcome::Applied(v),
        None => Outcome::LimitReached(current(conn, tenant, add.namespace, add.key).await?),
    };
    if let Some(k) = add.idempotency_key {
        let (v, applied) = match outcome {
            Outcome::Applied(v) => (v, 1i64),
            Outcome::LimitReached(v) => (v, 0),
        };
        sqlx::query(
            "UPDATE counter_ops SET outcome = $1, applied = $2 \
             WHERE tenant_id = $3 AND namespace = $4 AND idempotency_key = $5",
        )
        .bind(v)
        .bind(applied)
        .bind(tenant.as_str())
        .bind(add.namespace)
        .bind(k)
        .execute(&mut *conn)
        .await?;
    }
    Ok(outcome)
}

/// The conditional update: the new value, or `None` when the counter is
/// missing or the result would leave the limits. The common case of
/// [`add`] is this one statement; a refusal takes no row lock.
async fn bump(conn: &mut Conn, tenant: &TenantId, add: &Add<'_>, t: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE counters SET value = value + $1, updated_at = $2 \
         WHERE tenant_id = $3 AND namespace = $4 AND key = $5 \
         AND value + $1 >= $6 AND value + $1 <= $7 RETURNING value",
    )
    .bind(add.delta)
    .bind(t)
    .bind(tenant.as_str())
    .bind(add.namespace)
    .bind(add.key)
    .bind(add.min)
    .bind(add.max)
    .fetch_optional(&mut *conn)
    .await?)
}

async fn prior_outcome(
    conn: &mut Conn,
    tenant: &TenantId,
    add: &Add<'_>,
    k: &str,
) -> Result<Outcome> {
    let r = sqlx::query(
        "SELECT key, delta, outcome, applied FROM counter_ops \
         WHERE tenant_id = $1 AND namespace = $2 AND idempotency_key = $3",
    )
    .bind(tenant.as_str())
    .bind(add.namespace)
    .bind(k)
    .fetch_one(&mut *conn)
    .await?;
    let (key, delta): (String, i64) = (r.try_get("key")?, r.try_get("delta")?);
    if key != add.key || delta != add.delta {
        return Err(Error::Conflict(format!(
            "idempotency key {k:?} was used for a different addition"
        )));
    }
    let v: i64 = r.try_get("outcome")?;
    match r.try_get::<i64, _>("applied")? {
        1 => Ok(Outcome::Applied(v)),
        0 => Ok(Outcome::LimitReached(v)),
        _ => Err(Error::Conflict(format!(
            "a call with idempotency key {k:?} is still in progress; retry"
        ))),
    }
}

/// A counter's value (0 if it was never added to) as `conn` sees it:
/// inside a transaction, its own uncommitted additions included.
pub async fn current(
    conn: &mut Conn,
    tenant: &TenantId,
    namespace: &str,
    key: &str,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT value FROM counters WHERE tenant_id = $1 AND namespace = $2 AND key = $3",
    )
    .bind(tenant.as_str())
    .bind(namespace)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => r.try_get("value")?,
        None => 0,
    })
}

/// A counter's value (0 if it was never added to).
pub async fn get(db: &Db, tenant: &TenantId, namespace: &str, key: &str) -> Result<i64> {
    let mut conn = db.reader().acquire().await?;
    current(&mut conn, tenant, namespace, key).await
}

/// Adds in a transaction of its own, for callers outside a larger one.
pub async fn add_now(db: &Db, tenant: &TenantId, a: Add<'_>) -> Result<Outcome> {
    let mut tx = db.begin().await?;
    let out = add(&mut tx, tenant, a).await?;
    tx.commit().await?;
    Ok(out)
}
