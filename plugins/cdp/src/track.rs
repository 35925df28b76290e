//! Taking events in: exactly once per `{source}:{messageId}`, into the
//! person's timeline and computed traits, in the caller's transaction.
//!
//! Shared by the GraphQL batches (`ingest`) and the subscribers
//! (`sources`). Every aggregate is order-independent (keel-cdp-core), so a
//! late or out-of-order event lands where a recompute would put it.

use std::collections::BTreeMap;

use keel_cdp_core::traits::{Observed, day_of};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definitions::Declared;
use crate::model::{Profile, rfc3339};
use crate::segments::{Rules, change};

/// One event to take in, checked.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub source: String,
    pub message_id: String,
    pub event_type: String,
    pub at_micros: i64,
    pub properties: Value,
}

impl Incoming {
    /// Its dedupe key, unique per event in the tenant.
    pub(crate) fn key(&self) -> String {
        format!("{}:{}", self.source, self.message_id)
    }

    /// Its timeline key: newest first in key order, then by dedupe key.
    fn timeline_key(&self) -> String {
        format!("{:016x}:{}", i64::MAX - self.at_micros, self.key())
    }
}

/// A timeline entry (`timeline/{key}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    /// Indexed: the person at intake (a merged person's entries stay under
    /// its id; the survivor's profile lists it in `merged_from`).
    pub person: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub message_id: String,
    pub occurred_at: String,
    pub properties: Value,
}

#[derive(Serialize, Deserialize)]
struct Applied {
    person: String,
}

/// Marks `key` (an event, a merge) as taken in for `person`: true the
/// first time, false when it was already (a duplicate, a redelivery).
pub(crate) fn mark(key: &str, person: &str) -> Result<bool> {
    let marker = Applied {
        person: person.to_owned(),
    };
    match records::put("applied", key, &marker, Expect::Absent) {
        Ok(_) => Ok(true),
        Err(Error::Conflict(_)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// [`mark`] for many keys at once, in one batch write when none of them is
/// taken yet (the common case), key by key otherwise: `true` for each key
/// marked now, `false` for one already marked (earlier in the list too).
fn mark_all(marks: &[(String, &str)]) -> Result<Vec<bool>> {
    let mut first = std::collections::HashSet::with_capacity(marks.len());
    let unique: Vec<bool> = marks
        .iter()
        .map(|(k, _)| first.insert(k.as_str()))
        .collect();
    let batch: Vec<(String, Applied)> = marks
        .iter()
        .zip(&unique)
        .filter(|(_, u)| **u)
        .map(|((k, p), _)| {
            let marker = Applied {
                person: (*p).to_owned(),
            };
            (k.clone(), marker)
        })
        .collect();
    // A batch that meets a marked key writes nothing.
    match records::insert_batch("applied", &batch) {
        Ok(_) => Ok(unique),
        Err(Error::Conflict(_)) => marks
            .iter()
            .zip(unique)
            .map(|((k, p), u)| if u { mark(k, p) } else { Ok(false) })
            .collect(),
        Err(err) => Err(err),
    }
}

/// Takes in each `(person, event)`: `true` where it was new, `false` for a
/// duplicate (already taken in, now or in an earlier call).
pub(crate) fn take_in(items: &[(String, Incoming)]) -> Result<Vec<bool>> {
    // Markers are written in key order, profiles in person order and the
    // counters last in key order: concurrent batches on PostgreSQL take
    // their row locks in one order and cannot deadlock on them.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|i| items[*i].1.key());
    let marks: Vec<(String, &str)> = order
        .iter()
        .map(|i| (items[*i].1.key(), items[*i].0.as_str()))
        .collect();
    let marked = mark_all(&marks)?;
    let mut fresh = vec![false; items.len()];
    let mut timeline = Vec::new();
    let mut by_person: BTreeMap<&str, Vec<&Incoming>> = BTreeMap::new();
    for (i, new) in order.into_iter().zip(marked) {
        let (person, e) = &items[i];
        fresh[i] = new;
        if !new {
            continue;
        }
        let at = chrono::DateTime::from_timestamp_micros(e.at_micros)
            .ok_or_else(|| Error::invalid("occurredAt: out of range"))?;
        timeline.push((
            e.timeline_key(),
            Entry {
                person: person.clone(),
                event_type: e.event_type.clone(),
                source: e.source.clone(),
                message_id: e.message_id.clone(),
                occurred_at: rfc3339(at),
                properties: e.properties.clone(),
            },
        ));
        by_person.entry(person).or_default().push(e);
    }
    if !timeline.is_empty() {
        records::insert_batch("timeline", &timeline)?;
    }
    let rules = Rules::load()?;
    for (person, events) in by_person {
        change(&rules, person, "event", |p| fold(p, &rules, &events))?;
    }
    rules.flush()?;
    Ok(fresh)
}

/// Folds events into a profile: every trait, and the tier ladder's basis,
/// that takes them.
pub(crate) fn fold(p: &mut Profile, rules: &Rules, events: &[&Incoming]) {
    let defs: &[Declared] = &rules.defs;
    for e in events {
        let key = e.key();
        let seen = Observed {
            event_type: &e.event_type,
            id: &key,
            at_micros: e.at_micros,
            properties: &e.properties,
        };
        for d in defs {
            if let Some(part) = d.def.observe(&seen) {
                p.traits
                    .entry(d.state_key())
                    .or_default()
                    .add(&d.def, day_of(e.at_micros), part);
            }
        }
        if let Some(ladder) = &rules.ladder {
            crate::tiers::observe(p, ladder, &seen);
        }
        p.events += 1;
        p.last_seen = p.last_seen.max(Some(e.at_micros));
    }
}

/// Drops what no definition reads any more, and the days no window
/// reaches. A state is dropped only when this call knows a later revision
/// of its trait, or the trait's retirement at or after it: a call that
/// loaded the definitions before a change never drops the state the
/// change started.
pub(crate) fn tidy(p: &mut Profile, rules: &crate::segments::Rules, today: i32) {
    let kept = |k: &str| {
        let Some((name, rev)) = k.rsplit_once('@') else {
            return false;
        };
        let rev: u32 = rev.parse().unwrap_or(0);
        let current = rules.defs.iter().find(|d| d.def.name == name);
        match (current, rules.retired.get(name)) {
            (Some(d), _) => rev >= d.revision,
            (None, Some(last)) => rev > *last,
            (None, None) => true,
        }
    };
    p.traits.retain(|k, _| kept(k));
    p.filled.retain(|k| kept(k));
    for d in &rules.defs {
        if let Some(s) = p.traits.get_mut(&d.state_key()) {
            s.prune(&d.def, today);
        }
    }
}
