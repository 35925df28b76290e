//! Events a claim emits, held until its last write.
//!
//! Every event of a tenant takes the tenant's one event head (the row that
//! numbers its events) until the transaction ends. Emitting each award's
//! event as it is made would take that row before the next campaign's
//! stock or budget row, while a claim that wins only the next campaign
//! takes them the other way round: on PostgreSQL two such claims can
//! deadlock, and every claim holds the head longer than it needs. Inside
//! [`held`], [`emit`] queues; the queue is emitted in one batch, in order,
//! after the claim's last write, or dropped with the call when it fails
//! (the transaction rolls back anyway).

use std::cell::RefCell;

use keel_sdk::events::{self, NewEvent};
use keel_sdk::{Error, Result};
use serde::Serialize;

thread_local! {
    /// `Some` while a claim holds its events. A plugin instance serves one
    /// call, single-threaded.
    static HELD: RefCell<Option<Vec<NewEvent>>> = const { RefCell::new(None) };
}

/// Runs `f`, holding the events it emits through [`emit`] until it has
/// returned `Ok`, then emits them in one batch.
pub(crate) fn held<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
    let out = f();
    let queued = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
    let out = out?;
    if !queued.is_empty() {
        events::emit_batch(&queued)?;
    }
    Ok(out)
}

/// Emits an event now, or at the end of [`held`] when inside it.
pub(crate) fn emit<T: Serialize>(
    event_type: &str,
    person_id: Option<&str>,
    payload: &T,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let queued = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let Some(q) = h.as_mut() else {
            return Ok(false);
        };
        let payload = serde_json::to_value(payload)
            .map_err(|e| Error::Internal(format!("an event payload: {e}")))?;
        q.push(NewEvent {
            event_type: event_type.to_owned(),
            person_id: person_id.map(str::to_owned),
            payload,
            idempotency_key: idempotency_key.map(str::to_owned),
        });
        Ok::<_, Error>(true)
    })?;
    if !queued {
        events::emit(event_type, person_id, payload, idempotency_key)?;
    }
    Ok(())
}
