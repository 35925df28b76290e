//! `keel:plugin/events`: emit the event types the manifest declares.

use keel_core::events::{self, NewEvent};

use super::{json_arg, wit};
use crate::bindings::WitError;
use crate::bindings::keel::plugin::events::Host;
use crate::manifest::Capability;
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
        let stored = wit(events::append(self.conn().await?, &tenant, new, &producer).await)?;
        Ok(stored.map(|e| {
            let id = e.id.clone();
            if !self.emitted.iter().any(|x| x.id == e.id) {
                self.emitted.push(e);
            }
            id
        }))
    }
}
