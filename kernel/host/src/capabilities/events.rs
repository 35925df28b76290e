//! `keel:plugin/events`: emit the event types the manifest declares.

use keel_core::events::{self, NewEvent};

use super::{json_arg, wit};
use crate::bindings::keel::plugin::events::{Host, NewEvent as NewEventWit};
use crate::bindings::{Refusal, WitError};
use crate::invocation::CallEnv;
use crate::manifest::Capability;
use crate::manifest::DeliveryMode;
use crate::state::State;

impl Host for State {
    async fn emit(
        &mut self,
        event_type: String,
        person_id: Option<String>,
        payload: String,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        if let Err(e) = self.require(Capability::Events) {
            return Ok(Err(e));
        }
        if !self.activation.manifest.events.emits.contains(&event_type) {
            return Ok(Err(WitError::Denied(format!(
                "the plugin {} does not declare that it emits {event_type:?}",
                self.namespace()
            ))));
        }
        let payload = match json_arg("payload", &payload) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        // The type's schema in the manifest, before anything is written.
        if let Err(e) =
            crate::event_schemas::check_payload(&self.activation.manifest, &event_type, &payload)
        {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        let producer = self.namespace().to_owned();
        // Keys are the plugin's own: two plugins cannot collide on one.
        let idempotency_key = idempotency_key.map(|k| format!("{producer}:{k}"));
        let new = NewEvent {
            event_type,
            person_id,
            payload,
            idempotency_key,
            occurred_at: None,
        };
        let event = match wit(events::append(self.conn().await?, &tenant, new, &producer).await)? {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        if self.emitted.iter().any(|x| x.id == event.id) {
            // A repeated idempotency key within the call: delivered already.
            return Ok(Ok(event.id));
        }
        self.emitted.push(event.clone());
        if let Err(e) = self.fan_out(&event).await? {
            return Ok(Err(e));
        }
        Ok(Ok(event.id))
    }

    async fn emit_batch(
        &mut self,
        events: Vec<NewEventWit>,
    ) -> wasmtime::Result<Result<Vec<String>, WitError>> {
        // Each event through `emit`, all or nothing (see `batch.rs`).
        self.batch_emit(events).await
    }
}

/// How deep sync deliveries may nest (an event whose sync subscriber emits
/// an event whose sync subscriber emits…), plugin calls counting alike.
const MAX_SYNC_DEPTH: u8 = crate::calls::MAX_DEPTH;

impl State {
    /// Delivers a just-appended event: outbox rows for async subscribers,
    /// and each sync subscriber run here, inside this transaction, behind a
    /// savepoint so that a failing subscriber leaves no partial writes (and
    /// fails the emit).
    pub(crate) async fn fan_out(
        &mut self,
        event: &keel_core::events::Event,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let Some(plugins) = self.plugins.clone() else {
            return Ok(Ok(()));
        };
        let tenant = self.tenant().clone();
        if let Err(e) =
            wit(crate::outbox::enqueue(self.conn().await?, &tenant, &plugins, event).await)?
        {
            return Ok(Err(e));
        }
        let sync: Vec<_> = plugins
            .plugins
            .iter()
            .filter(|a| {
                a.manifest
                    .events
                    .subscribes
                    .iter()
                    .any(|s| s.event_type == event.event_type && s.mode == DeliveryMode::Sync)
            })
            .cloned()
            .collect();
        for (n, sub) in sync.into_iter().enumerate() {
            if self.depth >= MAX_SYNC_DEPTH {
                return Ok(Err(WitError::Refused(Refusal {
                    code: "EVENT_LOOP".into(),
                    message: format!("sync deliveries nest deeper than {MAX_SYNC_DEPTH}"),
                })));
            }
            let savepoint = format!("keel_sync_{}_{n}", self.depth);
            sqlx::query(&format!("SAVEPOINT {savepoint}"))
                .execute(self.conn().await?)
                .await?;
            let host = self
                .host
                .clone()
                .ok_or_else(|| wasmtime::Error::msg("no host for sync delivery"))?;
            let env = CallEnv {
                tx: self.tx.take(),
                commit: false,
                plugins: Some(plugins.clone()),
                depth: self.depth + 1,
                chain: self.chain.below(self.namespace()),
            };
            let (result, tx) = Box::pin(host.deliver(&sub, event, &self.request_id, env)).await;
            self.tx = tx;
            match result {
                Ok(()) => {
                    sqlx::query(&format!("RELEASE SAVEPOINT {savepoint}"))
                        .execute(self.conn().await?)
                        .await?;
                }
                Err(e) => {
                    sqlx::query(&format!("ROLLBACK TO SAVEPOINT {savepoint}"))
                        .execute(self.conn().await?)
                        .await?;
                    sqlx::query(&format!("RELEASE SAVEPOINT {savepoint}"))
                        .execute(self.conn().await?)
                        .await?;
                    return Ok(Err(WitError::Refused(Refusal {
                        code: "SUBSCRIBER_FAILED".into(),
                        message: format!(
                            "{} failed on {}: {}: {e}",
                            sub.manifest.name,
                            event.event_type,
                            e.code()
                        ),
                    })));
                }
            }
        }
        Ok(Ok(()))
    }
}
