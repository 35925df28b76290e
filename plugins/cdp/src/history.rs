//! Traits rebuilt from the timeline: segments' `event` leaves as hidden
//! count traits, and a brand's trait that is new or changed, both counted
//! over every event the person's timeline holds — not only those taken in
//! after the definition.
//!
//! An `event` leaf (`{"event": {"type", "where", "withinDays", "atLeast",
//! "atMost"}}`) is compiled by keel-cdp-core into a count trait with a
//! hidden name (`_e…`, a digest of what it counts). [`sync`] keeps the
//! tenant's hidden traits (`Definitions::history`) equal to what the saved
//! segments' rules read, in the transaction that saves or deletes the
//! segment. A trait to backfill (hidden, or a brand's new or changed one)
//! carries `backfill`: from its declaration ingest keeps it up to date,
//! and the recompute that follows ([`crate::recompute`]) rebuilds each
//! profile's state of it from the timeline once ([`rebuild`]), noting the
//! state in `Profile::filled`.
//!
//! Exactness: the rebuild reads the profile (its version), then the
//! timelines, then writes the profile at that version. Ingest writes
//! timeline rows and the profile in one transaction, so an event committed
//! meanwhile makes the write conflict and the rebuild read again. A call
//! that loaded the definitions before a trait was declared, and writes a
//! profile already rebuilt for it, would leave its event out: it fails
//! instead, with a conflict to retry ([`crate::segments::change`]).

use std::collections::BTreeMap;

use keel_cdp_core::aggregate::TraitState;
use keel_cdp_core::segments::Rule;
use keel_cdp_core::traits::{MAX_WINDOW_BUDGET, Observed, TraitDef, check_budget, day_of};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Error, Result};
use serde_json::json;

use crate::definitions::{self, Declared, Definitions};
use crate::model::{Profile, now, parse_rfc3339, rfc3339};
use crate::segments::Rules;
use crate::track::Entry;

/// The most hidden traits of a tenant: distinct counts over all segments.
pub(crate) const MAX_HISTORY: usize = 50;

/// Timeline entries read per page.
const PAGE: u32 = 1000;

/// Brings the hidden traits in line with `rules` (every saved segment's
/// parsed rule): a count no rule reads any more is retired, a new one is
/// declared to backfill. Refused when there would be more than
/// [`MAX_HISTORY`], or when with the brand's traits their windows keep
/// more than the budget of day buckets. True when a count was added.
pub(crate) fn sync<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Result<bool> {
    let mut wanted: Vec<TraitDef> = Vec::new();
    for r in rules {
        r.history(&mut wanted);
    }
    if wanted.len() > MAX_HISTORY {
        return Err(Error::invalid(format!(
            "rule: the tenant's segments would count {} kinds of event (event leaves differing in type, where or withinDays); at most {MAX_HISTORY}",
            wanted.len()
        )));
    }
    let found = records::get::<Definitions>("definitions", definitions::KEY)?;
    let (old, expect) = match found {
        Some(r) => (r.data, Expect::Version(r.version)),
        None => (Definitions::default(), Expect::Absent),
    };
    check_budget(
        old.traits.iter().map(|d| &d.def).chain(&wanted),
        "rule.event.withinDays",
    )
    .map_err(|e| {
        Error::invalid(format!(
            "{e} (over the brand's traits and every segment's event leaves; {MAX_WINDOW_BUDGET} in all)"
        ))
    })?;
    let same = old.history.len() == wanted.len()
        && wanted
            .iter()
            .all(|w| old.history.iter().any(|h| h.def.name == w.name));
    if same {
        return Ok(false);
    }
    let mut new = old.clone();
    let at = rfc3339(now());
    let mut added = false;
    for h in &old.history {
        if !wanted.iter().any(|w| w.name == h.def.name) {
            new.retired.insert(h.def.name.clone(), h.revision);
        }
    }
    new.history = wanted
        .into_iter()
        .map(
            |def| match old.history.iter().find(|h| h.def.name == def.name) {
                Some(h) => h.clone(),
                None => {
                    added = true;
                    Declared {
                        revision: new.retired.remove(&def.name).unwrap_or(0) + 1,
                        def,
                        since: at.clone(),
                        backfill: true,
                    }
                }
            },
        )
        .collect();
    records::put("definitions", definitions::KEY, &new, expect)?;
    Ok(added)
}

/// Rebuilds, from the timeline, the states of `person`'s profile that a
/// trait to backfill has not had rebuilt yet. The timeline entries read,
/// or `None` when there was nothing to rebuild (or no live profile).
pub(crate) fn rebuild(rules: &Rules, person: &str) -> Result<Option<u64>> {
    let mut read = 0;
    for _ in 0..8 {
        let Some(found) = records::get::<Profile>("profiles", person)? else {
            return Ok(None);
        };
        if found.data.merged_into.is_some() {
            return Ok(None);
        }
        let due: Vec<&Declared> = rules
            .defs
            .iter()
            .filter(|d| d.backfill && !found.data.filled.contains(&d.state_key()))
            .collect();
        if due.is_empty() {
            return Ok((read > 0).then_some(read));
        }
        let mut p = found.data;
        let defs: Vec<&TraitDef> = due.iter().map(|d| &d.def).collect();
        let (mut states, n) = states(person, &p, &defs)?;
        read += n;
        for d in due {
            let state = states.remove(&d.def.name).unwrap_or_default();
            if state.is_empty() {
                p.traits.remove(&d.state_key());
            } else {
                p.traits.insert(d.state_key(), state);
            }
            p.filled.insert(d.state_key());
        }
        match records::put("profiles", person, &p, Expect::Version(found.version)) {
            Ok(_) => return Ok(Some(read)),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(format!(
        "profile {person}: written by other calls during its rebuild; the next recompute retries"
    )))
}

/// The states of `defs` (by trait name) over every event in the timelines
/// of `person` and the persons merged into it, and the entries read.
pub(crate) fn states(
    person: &str,
    profile: &Profile,
    defs: &[&TraitDef],
) -> Result<(BTreeMap<String, TraitState>, u64)> {
    let mut out: BTreeMap<String, TraitState> = BTreeMap::new();
    let mut read = 0;
    for id in std::iter::once(person).chain(profile.merged_from.iter().map(String::as_str)) {
        let mut after: Option<String> = None;
        loop {
            let page =
                records::query::<Entry>("timeline", "person", &json!(id), after.as_deref(), PAGE)?;
            for r in &page.records {
                read += 1;
                let e = &r.data;
                let Ok(at) = parse_rfc3339("occurredAt", &e.occurred_at) else {
                    continue;
                };
                let key = format!("{}:{}", e.source, e.message_id);
                let seen = Observed {
                    event_type: &e.event_type,
                    id: &key,
                    at_micros: at.timestamp_micros(),
                    properties: &e.properties,
                };
                for d in defs {
                    if let Some(part) = d.observe(&seen) {
                        out.entry(d.name.clone())
                            .or_default()
                            .add(d, day_of(seen.at_micros), part);
                    }
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    Ok((out, read))
}
