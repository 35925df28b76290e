//! The batch imports of contract 0.2: `persons.resolve-batch` and
//! `events.emit-batch`.
//!
//! Each item goes through the single-item import (`resolve`, `emit`), so a
//! batch makes exactly the checks a loop of single calls would, in order;
//! `resolve-batch` first finds the persons already known, holding every
//! identifier of their item, in a few statements, and resolves only the
//! others one by one.
//! A batch is all or nothing: it runs behind a savepoint, and the first
//! failing item rolls the batch back (and drops the events it emitted from
//! the call's list) and fails it with that item's error, its message
//! prefixed by the item's index (`events[3]: …`). The call itself goes on:
//! the plugin decides what to do with the error.

use std::collections::HashMap;

use keel_core::persons;

use super::persons::to_wit as person_to_wit;
use super::wit;
use crate::bindings::keel::plugin::events::{Host as _, NewEvent};
use crate::bindings::keel::plugin::persons::{Host as _, Identifier, Person};
use crate::bindings::{Refusal, WitError};
use crate::manifest::Capability;
use crate::state::State;

/// The most items one batch call takes.
pub(crate) const MAX_BATCH: usize = 1000;

/// `err`, its message naming the item `what[index]`.
fn at(what: &str, index: usize, err: WitError) -> WitError {
    let name = |m: String| format!("{what}[{index}]: {m}");
    match err {
        WitError::NotFound(m) => WitError::NotFound(name(m)),
        WitError::Conflict(m) => WitError::Conflict(name(m)),
        WitError::InvalidInput(m) => WitError::InvalidInput(name(m)),
        WitError::Denied(m) => WitError::Denied(name(m)),
        WitError::Refused(r) => WitError::Refused(Refusal {
            code: r.code,
            message: name(r.message),
        }),
        WitError::Internal(m) => WitError::Internal(name(m)),
    }
}

fn too_many(what: &str, n: usize) -> WitError {
    WitError::InvalidInput(format!(
        "{what}: at most {MAX_BATCH} items per batch, got {n}"
    ))
}

impl State {
    /// Opens the savepoint a batch runs behind. Named by depth: a sync
    /// subscriber's batch nests inside its emitter's.
    pub(crate) async fn begin_batch(&mut self) -> wasmtime::Result<String> {
        let name = format!("keel_batch_{}", self.depth);
        sqlx::query(&format!("SAVEPOINT {name}"))
            .execute(self.conn().await?)
            .await?;
        Ok(name)
    }

    /// Keeps (`commit`) or undoes the batch's writes.
    pub(crate) async fn end_batch(&mut self, name: &str, commit: bool) -> wasmtime::Result<()> {
        if !commit {
            sqlx::query(&format!("ROLLBACK TO SAVEPOINT {name}"))
                .execute(self.conn().await?)
                .await?;
        }
        sqlx::query(&format!("RELEASE SAVEPOINT {name}"))
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }

    /// Delivers the events a kernel write appended behind `savepoint`, then
    /// keeps the write, or undoes it with its events when a delivery fails:
    /// the rows and their delivery stand or fall together.
    pub(crate) async fn deliver_and_end(
        &mut self,
        savepoint: &str,
        events: &[keel_core::events::Event],
    ) -> wasmtime::Result<Result<(), WitError>> {
        for event in events {
            if let Err(e) = self.fan_out(event).await? {
                self.end_batch(savepoint, false).await?;
                return Ok(Err(e));
            }
        }
        self.end_batch(savepoint, true).await?;
        Ok(Ok(()))
    }

    /// `persons.resolve-batch`: one person per list of identifiers, in order.
    pub(crate) async fn batch_resolve(
        &mut self,
        batch: Vec<Vec<Identifier>>,
    ) -> wasmtime::Result<Result<Vec<Person>, WitError>> {
        if let Err(e) = self.require(Capability::PersonsRead) {
            return Ok(Err(e));
        }
        if batch.len() > MAX_BATCH {
            return Ok(Err(too_many("batch", batch.len())));
        }
        if batch.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        // Known persons in a few statements, then the wholly new ones
        // created in a few more; the rest item by item, in order. Resolving
        // an item only creates persons and attaches free identifiers, and
        // the new items share no identifier with any other: the answers are
        // those of resolving every item in order.
        let tenant = self.tenant().clone();
        let sets: Vec<Vec<(String, String)>> = batch
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|i| (i.kind.clone(), i.value.clone()))
                    .collect()
            })
            .collect();
        let found = persons::lookup_batch(&mut *self.read().await?, &tenant, &sets).await;
        let persons::Lookup { mut known, mut new } = match wit(found)? {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        if known.iter().all(Option::is_some) {
            return Ok(Ok(known.into_iter().flatten().map(person_to_wit).collect()));
        }
        // Some to write. A known person merged away or erased since the read
        // (before the call's transaction) is resolved again like the rest.
        let mut savepoint = self.begin_batch().await?;
        let ids: Vec<&str> = known.iter().flatten().map(|p| p.id.as_str()).collect();
        let live = match wit(persons::still_live(self.conn().await?, &tenant, &ids).await)? {
            Ok(l) => l,
            Err(e) => {
                self.end_batch(&savepoint, false).await?;
                return Ok(Err(e));
            }
        };
        if known.iter().flatten().any(|p| !live.contains(&p.id)) {
            for k in &mut known {
                if k.as_ref().is_some_and(|p| !live.contains(&p.id)) {
                    *k = None;
                }
            }
            // Its identifiers may now be anyone's: nothing is created in one go.
            new.iter_mut().for_each(|n| *n = false);
        }
        let fresh: Vec<Vec<(String, String)>> = sets
            .into_iter()
            .zip(&new)
            .filter(|(_, n)| **n)
            .map(|(s, _)| s)
            .collect();
        if !fresh.is_empty() {
            let created = persons::create_batch(self.conn().await?, &tenant, &fresh).await;
            match created {
                Ok(created) => {
                    let slots = known.iter_mut().zip(&new).filter(|(_, n)| **n);
                    for ((slot, _), p) in slots.zip(created) {
                        *slot = Some(p);
                    }
                }
                Err(keel_core::Error::Internal(e)) => {
                    self.end_batch(&savepoint, false).await?;
                    return wit(Err(keel_core::Error::Internal(e)));
                }
                // An identifier taken meanwhile by another call: these
                // items too go one by one (which names an item's error).
                Err(_) => {
                    self.end_batch(&savepoint, false).await?;
                    savepoint = self.begin_batch().await?;
                }
            }
        }
        // A known person an earlier item changed (an identifier attached)
        // is answered as that item left it.
        let mut latest: HashMap<String, Person> = HashMap::new();
        let mut persons = Vec::with_capacity(batch.len());
        for (i, (identifiers, known)) in batch.into_iter().zip(known).enumerate() {
            if let Some(p) = known {
                persons.push(match latest.get(&p.id) {
                    Some(changed) => changed.clone(),
                    None => person_to_wit(p),
                });
                continue;
            }
            match self.resolve(identifiers).await? {
                Ok(p) => {
                    latest.insert(p.id.clone(), p.clone());
                    persons.push(p);
                }
                Err(e) => {
                    self.end_batch(&savepoint, false).await?;
                    return Ok(Err(at("batch", i, e)));
                }
            }
        }
        self.end_batch(&savepoint, true).await?;
        Ok(Ok(persons))
    }

    /// `events.emit-batch`: the events' ids, in order.
    pub(crate) async fn batch_emit(
        &mut self,
        events: Vec<NewEvent>,
    ) -> wasmtime::Result<Result<Vec<String>, WitError>> {
        if let Err(e) = self.require(Capability::Events) {
            return Ok(Err(e));
        }
        if events.len() > MAX_BATCH {
            return Ok(Err(too_many("events", events.len())));
        }
        if events.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let savepoint = self.begin_batch().await?;
        let emitted_before = self.emitted.len();
        let mut ids = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            let r = self
                .emit(e.event_type, e.person_id, e.payload, e.idempotency_key)
                .await?;
            match r {
                Ok(id) => ids.push(id),
                Err(err) => {
                    self.end_batch(&savepoint, false).await?;
                    // Rolled back: neither committed nor delivered.
                    self.emitted.truncate(emitted_before);
                    return Ok(Err(at("events", i, err)));
                }
            }
        }
        self.end_batch(&savepoint, true).await?;
        Ok(Ok(ids))
    }
}
