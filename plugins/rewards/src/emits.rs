//! Events a claim emits, and its writes to rows every claim of a campaign
//! touches, held until its other writes are made.
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
//!
//! The same holds, one step earlier, for the campaign-wide rows a claim
//! only adds to (report figures, win counts) through [`late`]: on
//! PostgreSQL a claim holds such a row from its update to its commit, so
//! they are updated after the claim's own records, in the order of the
//! keys they are queued under (every claim takes them in that one order,
//! so two claims never wait on each other the other way round), just
//! before the events.

use std::cell::RefCell;

use keel_sdk::events::{self, NewEvent};
use keel_sdk::{Error, Result};
use serde::Serialize;

/// A held write: its row's key (the order writes are made in) and the write.
type Late = (String, Box<dyn FnOnce() -> Result<()>>);

thread_local! {
    /// `Some` while a claim holds its events. A plugin instance serves one
    /// call, single-threaded.
    static HELD: RefCell<Option<Vec<NewEvent>>> = const { RefCell::new(None) };
    /// `Some` while a claim holds its campaign-wide writes.
    static LATE: RefCell<Option<Vec<Late>>> = const { RefCell::new(None) };
}

/// Runs `f`, holding the events it emits through [`emit`] until it has
/// returned `Ok`, then emits them in one batch.
pub(crate) fn held<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
    LATE.with(|l| *l.borrow_mut() = Some(Vec::new()));
    let out = f();
    let queued = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
    let mut late = LATE.with(|l| l.borrow_mut().take()).unwrap_or_default();
    let out = out?;
    late.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, write) in late {
        write()?;
    }
    if !queued.is_empty() {
        events::emit_batch(&queued)?;
    }
    Ok(out)
}

/// Makes `write` (to the row `key`) now, or, inside [`held`], after the
/// rest of the claim's writes, in key order.
pub(crate) fn late(key: String, write: impl FnOnce() -> Result<()> + 'static) -> Result<()> {
    let write: Box<dyn FnOnce() -> Result<()>> = Box::new(write);
    let now = LATE.with(|l| match l.borrow_mut().as_mut() {
        Some(q) => {
            q.push((key, write));
            None
        }
        None => Some(write),
    });
    match now {
        Some(write) => write(),
        None => Ok(()),
    }
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
