//! The transactional outbox: async subscribers get each event at least once.
//!
//! An event's outbox rows — one per async subscriber among the tenant's
//! enabled plugins — are written in the transaction that appends the event,
//! so they exist exactly when the event does. The dispatcher claims due
//! rows (a lease, so that several kernel processes share the work without
//! delivering the same row at once), calls the subscriber's `handle-event`
//! in a transaction of its own, and marks the row delivered, or schedules a
//! retry with exponential backoff, or after the last attempt moves it to
//! the dead letters, which an admin can list and replay.

use std::sync::Arc;
use std::time::Duration;

use keel_core::events::Event;
use keel_core::{Conn, Db, Error, TenantId, Timestamp, now};
use sqlx::Row as _;

use crate::manifest::DeliveryMode;
use crate::{Registry, Result, TenantPlugins};

/// Writes the outbox rows of `event` for the async subscribers in `plugins`.
pub async fn enqueue(
    conn: &mut Conn,
    tenant: &TenantId,
    plugins: &TenantPlugins,
    event: &Event,
) -> keel_core::Result<usize> {
    let mut n = 0;
    let t = now().0;
    for act in &plugins.plugins {
        let subscribed = act
            .manifest
            .events
            .subscribes
            .iter()
            .any(|s| s.event_type == event.event_type && s.mode == DeliveryMode::Async);
        if !subscribed {
            continue;
        }
        sqlx::query(
            "INSERT INTO outbox (id, tenant_id, event_id, subscriber, attempts, next_attempt_at, locked_until, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5, 0, $5) ON CONFLICT (event_id, subscriber) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.as_str())
        .bind(&event.id)
        .bind(&act.manifest.name)
        .bind(t)
        .execute(&mut *conn)
        .await?;
        n += 1;
    }
    Ok(n)
}

/// How the dispatcher paces itself.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Pause between polls when nothing is due.
    pub poll: Duration,
    /// The first retry waits this long; each next one twice as long.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// Attempts before a row becomes a dead letter.
    pub max_attempts: i64,
    /// How long a claimed row stays leased to one process.
    pub lease: Duration,
    /// Rows claimed per poll.
    pub batch: i64,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            poll: Duration::from_millis(250),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 8,
            lease: Duration::from_secs(60),
            batch: 32,
        }
    }
}

/// An outbox row that ran out of attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub subscriber: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub dead_at: Timestamp,
}

/// Delivers outbox rows.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    db: Db,
    registry: Registry,
    config: DispatcherConfig,
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

impl Dispatcher {
    pub fn new(db: Db, registry: Registry, config: DispatcherConfig) -> Dispatcher {
        Dispatcher {
            db,
            registry,
            config,
        }
    }

    /// Delivers until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let delivered = match self.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "outbox dispatch failed");
                    0
                }
            };
            if delivered == 0 {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(self.config.poll) => {}
                }
            }
        }
    }

    /// One pass: claims the due rows and delivers them. Returns how many
    /// were handled (delivered, retried or dead).
    pub async fn deliver_due(&self) -> Result<usize> {
        let t = now().0;
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(
            "UPDATE outbox SET locked_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL \
                          AND next_attempt_at <= $2 AND locked_until <= $2 ORDER BY next_attempt_at LIMIT $3) \
             AND delivered_at IS NULL AND dead_at IS NULL AND locked_until <= $2 \
             RETURNING id, tenant_id, event_id, subscriber, attempts",
        )
        .bind(t + micros(self.config.lease))
        .bind(t)
        .bind(self.config.batch)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        let mut handled = 0;
        for row in rows {
            let id: String = row.try_get("id").map_err(Error::from)?;
            let tenant = tenant_id(row.try_get("tenant_id").map_err(Error::from)?)?;
            let event_id: String = row.try_get("event_id").map_err(Error::from)?;
            let subscriber: String = row.try_get("subscriber").map_err(Error::from)?;
            let attempts: i64 = row.try_get("attempts").map_err(Error::from)?;
            let outcome = self.deliver_one(&tenant, &event_id, &subscriber, &id).await;
            self.settle(&id, attempts, outcome).await?;
            handled += 1;
        }
        Ok(handled)
    }

    async fn deliver_one(
        &self,
        tenant: &TenantId,
        event_id: &str,
        subscriber: &str,
        row: &str,
    ) -> std::result::Result<(), String> {
        let event = keel_core::events::get(&self.db, tenant, event_id)
            .await
            .map_err(|e| e.to_string())?;
        let plugins: Arc<TenantPlugins> = self
            .registry
            .enabled(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let Some(act) = plugins.get(subscriber).cloned() else {
            return Err(format!("{subscriber} is not enabled"));
        };
        self.registry
            .host()
            .handle_event(
                &act,
                &event,
                &format!("outbox:{row}"),
                Some(plugins.clone()),
            )
            .await
            .map_err(|e| match e {
                crate::PluginError::Returned { code, message } => format!("{code}: {message}"),
                other => other.to_string(),
            })
    }

    async fn settle(
        &self,
        id: &str,
        attempts: i64,
        outcome: std::result::Result<(), String>,
    ) -> Result<()> {
        let t = now().0;
        let mut tx = self.db.begin().await?;
        match outcome {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET delivered_at = $1, last_error = NULL WHERE id = $2")
                    .bind(t)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::from)?;
            }
            Err(e) if attempts >= self.config.max_attempts => {
                tracing::warn!(outbox = id, error = %e, "event delivery gave up; dead letter");
                sqlx::query("UPDATE outbox SET dead_at = $1, last_error = $2, locked_until = 0 WHERE id = $3")
                    .bind(t)
                    .bind(&e)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::from)?;
            }
            Err(e) => {
                let factor = 1u32 << (attempts - 1).clamp(0, 20);
                let wait = self
                    .config
                    .backoff
                    .saturating_mul(factor)
                    .min(self.config.max_backoff);
                sqlx::query("UPDATE outbox SET next_attempt_at = $1, last_error = $2, locked_until = 0 WHERE id = $3")
                    .bind(t + micros(wait))
                    .bind(&e)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::from)?;
            }
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }
}

fn tenant_id(id: String) -> keel_core::Result<TenantId> {
    keel_core::tenants::TenantId::parse_stored(id)
}

/// The tenant's dead letters, newest first.
pub async fn dead_letters(db: &Db, tenant: &TenantId) -> Result<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT o.id, o.event_id, e.type, o.subscriber, o.attempts, o.last_error, o.dead_at \
         FROM outbox o JOIN events e ON e.id = o.event_id \
         WHERE o.tenant_id = $1 AND o.dead_at IS NOT NULL ORDER BY o.dead_at DESC LIMIT 500",
    )
    .bind(tenant.as_str())
    .fetch_all(db.reader())
    .await
    .map_err(Error::from)?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get("id").map_err(Error::from)?,
                event_id: r.try_get("event_id").map_err(Error::from)?,
                event_type: r.try_get("type").map_err(Error::from)?,
                subscriber: r.try_get("subscriber").map_err(Error::from)?,
                attempts: r.try_get("attempts").map_err(Error::from)?,
                last_error: r.try_get("last_error").map_err(Error::from)?,
                dead_at: Timestamp(r.try_get("dead_at").map_err(Error::from)?),
            })
        })
        .collect()
}

/// Puts a dead letter of `tenant` back in line, with fresh attempts.
pub async fn replay(db: &Db, tenant: &TenantId, id: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    let n = sqlx::query(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, locked_until = 0 \
         WHERE tenant_id = $2 AND id = $3 AND dead_at IS NOT NULL",
    )
    .bind(now().0)
    .bind(tenant.as_str())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(Error::from)?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("dead letter {id:?} not found")).into());
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(())
}
