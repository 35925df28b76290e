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
//!
//! Here is the policy — who subscribes, when to retry, when to give up;
//! the rows' SQL is `keel_core::outbox`.

use std::sync::Arc;
use std::time::Duration;

use keel_core::events::Event;
use keel_core::outbox::{self as store, Delivery, Settlement};
use keel_core::{Conn, Db, TenantId, Timestamp, now};

use crate::manifest::DeliveryMode;
use crate::{Registry, Result, TenantPlugins};

pub use keel_core::outbox::DeadLetter;

/// Writes the outbox rows of `event` for the async subscribers in `plugins`.
pub async fn enqueue(
    conn: &mut Conn,
    tenant: &TenantId,
    plugins: &TenantPlugins,
    event: &Event,
) -> keel_core::Result<usize> {
    let mut n = 0;
    let t = now();
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
        store::enqueue(conn, tenant, &event.id, &act.manifest.name, t).await?;
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
        let leased =
            store::lease_due(&self.db, now(), self.config.lease, self.config.batch).await?;
        let mut handled = 0;
        for d in leased {
            let Delivery {
                id,
                tenant,
                event_id,
                subscriber,
                attempts,
            } = d;
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
                crate::PluginError::Returned { code, message, .. } => format!("{code}: {message}"),
                other => other.to_string(),
            })
    }

    /// Records an attempt's outcome: delivered; or, after the last
    /// attempt, a dead letter; or a retry after exponential backoff.
    async fn settle(
        &self,
        id: &str,
        attempts: i64,
        outcome: std::result::Result<(), String>,
    ) -> Result<()> {
        let t = now();
        let settlement = match outcome {
            Ok(()) => Settlement::Delivered,
            Err(error) if attempts >= self.config.max_attempts => {
                tracing::warn!(outbox = id, error = %error, "event delivery gave up; dead letter");
                Settlement::Dead { error }
            }
            Err(error) => {
                let factor = 1u32 << (attempts - 1).clamp(0, 20);
                let wait = self
                    .config
                    .backoff
                    .saturating_mul(factor)
                    .min(self.config.max_backoff);
                Settlement::Retry {
                    error,
                    retry_at: Timestamp(t.0 + micros(wait)),
                }
            }
        };
        store::settle(&self.db, id, t, &settlement).await?;
        Ok(())
    }
}

/// The tenant's dead letters, newest first.
pub async fn dead_letters(db: &Db, tenant: &TenantId) -> Result<Vec<DeadLetter>> {
    Ok(store::dead_letters(db, tenant).await?)
}

/// Puts a dead letter of `tenant` back in line, with fresh attempts.
pub async fn replay(db: &Db, tenant: &TenantId, id: &str) -> Result<()> {
    Ok(store::replay(db, tenant, id, now()).await?)
}
