//! The transactional outbox's rows: enqueueing, leases, settlements, dead
//! letters and replay (the SQL; `keel-host` decides who subscribes, calls
//! the subscriber and chooses between retry and dead letter).
//!
//! One row per (event, subscriber), written in the transaction that
//! appends the event, so it exists exactly when the event does. A process
//! leases due rows before delivering them, so that several kernel
//! processes share the work without delivering one row at once; a row
//! whose lease ran out (its process died) is due again.

use std::time::Duration;

use sqlx::Row as _;

use crate::db::Conn;
use crate::time::micros;
use crate::{Db, Error, Result, TenantId, Timestamp};

/// Writes the outbox row that delivers event `event_id` of `tenant` to the
/// plugin `subscriber`, due at `now`, inside `conn`'s transaction (the one
/// appending the event). A row that already exists is left as it is.
pub async fn enqueue(
    conn: &mut Conn,
    tenant: &TenantId,
    event_id: &str,
    subscriber: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, event_id, subscriber, attempts, next_attempt_at, locked_until, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5, 0, $5) ON CONFLICT (event_id, subscriber) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.as_str())
    .bind(event_id)
    .bind(subscriber)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A leased outbox row: one event to deliver to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub tenant: TenantId,
    pub event_id: String,
    /// The subscribing plugin.
    pub subscriber: String,
    /// Attempts started so far, this one included.
    pub attempts: i64,
}

/// Leases up to `limit` rows due at `now` — neither delivered nor dead,
/// their next attempt due and no lease held — each to the caller until
/// `now + lease`, counting the attempt. Earliest due first.
pub async fn lease_due(
    db: &Db,
    now: Timestamp,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "UPDATE outbox SET locked_until = $1, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL \
                      AND next_attempt_at <= $2 AND locked_until <= $2 ORDER BY next_attempt_at LIMIT $3) \
         AND delivered_at IS NULL AND dead_at IS NULL AND locked_until <= $2 \
         RETURNING id, tenant_id, event_id, subscriber, attempts",
    )
    .bind(now.0.saturating_add(micros(lease)))
    .bind(now.0)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                tenant: TenantId::from_db(r.try_get("tenant_id")?),
                event_id: r.try_get("event_id")?,
                subscriber: r.try_get("subscriber")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

/// How a delivery attempt ended, as the dispatcher decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The subscriber handled the event.
    Delivered,
    /// It failed; try again at `retry_at`.
    Retry { error: String, retry_at: Timestamp },
    /// It failed for the last time: the row becomes a dead letter.
    Dead { error: String },
}

/// Records how the attempt on row `id` ended, at `now`, and releases its
/// lease.
pub async fn settle(db: &Db, id: &str, now: Timestamp, settlement: &Settlement) -> Result<()> {
    let q = match settlement {
        Settlement::Delivered => {
            sqlx::query("UPDATE outbox SET delivered_at = $1, last_error = NULL WHERE id = $2")
                .bind(now.0)
                .bind(id)
        }
        Settlement::Retry { error, retry_at } => sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, last_error = $2, locked_until = 0 WHERE id = $3",
        )
        .bind(retry_at.0)
        .bind(error.as_str())
        .bind(id),
        Settlement::Dead { error } => sqlx::query(
            "UPDATE outbox SET dead_at = $1, last_error = $2, locked_until = 0 WHERE id = $3",
        )
        .bind(now.0)
        .bind(error.as_str())
        .bind(id),
    };
    let mut tx = db.begin().await?;
    q.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// An outbox row that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub subscriber: String,
    pub attempts: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    pub dead_at: Timestamp,
}

/// The most dead letters [`dead_letters`] returns.
pub const MAX_DEAD_LETTERS: i64 = 500;

/// The tenant's dead letters, newest first, at most [`MAX_DEAD_LETTERS`].
pub async fn dead_letters(db: &Db, tenant: &TenantId) -> Result<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT o.id, o.event_id, e.type, o.subscriber, o.attempts, o.last_error, o.dead_at \
         FROM outbox o JOIN events e ON e.id = o.event_id \
         WHERE o.tenant_id = $1 AND o.dead_at IS NOT NULL ORDER BY o.dead_at DESC LIMIT $2",
    )
    .bind(tenant.as_str())
    .bind(MAX_DEAD_LETTERS)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("type")?,
                subscriber: r.try_get("subscriber")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                dead_at: Timestamp(r.try_get("dead_at")?),
            })
        })
        .collect()
}

/// Puts the tenant's dead letter `id` back in line with fresh attempts,
/// due at `now`. Another tenant's row, or one that is not dead, is not
/// found.
pub async fn replay(db: &Db, tenant: &TenantId, id: &str, now: Timestamp) -> Result<()> {
    let mut tx = db.begin().await?;
    let n = sqlx::query(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, locked_until = 0 \
         WHERE tenant_id = $2 AND id = $3 AND dead_at IS NOT NULL",
    )
    .bind(now.0)
    .bind(tenant.as_str())
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("dead letter {id:?} not found")));
    }
    tx.commit().await?;
    Ok(())
}
