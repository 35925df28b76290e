//! `person.merged`: the kernel folded one person into another, so the CDP
//! folds their profiles — trait states and the tier basis combined (exact:
//! every aggregate combines in any order), tags united, consent by the
//! later statement (a withdrawal wins a tie), the merged one's timeline listed
//! under the survivor — and leaves a tombstone that sends later writes for
//! the merged id to the survivor.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Error, Event, Result, log};
use serde::Deserialize;

use crate::model::Profile;
use crate::segments::{Rules, change, drop_member};
use crate::track::mark;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    survivor_id: String,
    merged_id: String,
}

pub(crate) fn on_merged(e: Event) -> Result<()> {
    if e.producer != "kernel" {
        log::warn(&format!(
            "person.merged {} from {} ignored",
            e.id, e.producer
        ));
        return Ok(());
    }
    let p: Payload = serde_json::from_value(e.payload)
        .map_err(|err| Error::invalid(format!("person.merged payload: {err}")))?;
    if !mark(&format!("merge:{}", e.id), &p.survivor_id)? {
        return Ok(());
    }
    // The merged person's profile as it stands, tombstoned in the same
    // write: a concurrent intake either wrote before (and is folded here)
    // or retries and follows the tombstone. When the CDP has no profile of
    // the merged person, the tombstone is created: an intake which
    // resolved them before the merge and commits after it follows it; if
    // such an intake committed a profile first, the write conflicts, the
    // delivery fails and is retried, and the retry folds that profile.
    let found = records::get::<Profile>("profiles", &p.merged_id)?;
    if found.as_ref().is_some_and(|f| f.data.merged_into.is_some()) {
        return Ok(());
    }
    let (merged, expect) = match found {
        Some(f) => (Some(f.data), Expect::Version(f.version)),
        None => (None, Expect::Absent),
    };
    let tombstone = Profile {
        merged_into: Some(p.survivor_id.clone()),
        ..Profile::default()
    };
    records::put("profiles", &p.merged_id, &tombstone, expect)?;
    let rules = Rules::load()?;
    if merged.is_some() {
        rules.count("profiles".into(), -1);
    }
    let existed = merged.is_some();
    let merged = merged.unwrap_or_default();
    // The merged person's memberships go without `segment.left`: the
    // kernel attributes an event for a merged person to the survivor, who
    // would seem to leave. The survivor is evaluated below, with events of
    // their own for what changes for them.
    for s in &merged.segments {
        drop_member(&rules, s, &p.merged_id)?;
    }
    let mut shared_tags = Vec::new();
    change(&rules, &p.survivor_id, "merge", |s| {
        for d in &rules.defs {
            if let Some(theirs) = merged.traits.get(&d.state_key()) {
                s.traits
                    .entry(d.state_key())
                    .or_default()
                    .merge(&d.def, theirs);
            }
        }
        if let Some(l) = &rules.ladder {
            if s.tier_basis.revision < l.revision {
                s.tier_basis = crate::model::TierBasis {
                    revision: l.revision,
                    ..Default::default()
                };
            }
            if merged.tier_basis.revision == s.tier_basis.revision {
                s.tier_basis.state.merge(&merged.tier_basis.state);
            }
        }
        for (purpose, theirs) in &merged.consent {
            if s.consent
                .get(purpose)
                .is_none_or(|ours| theirs.replaces(ours))
            {
                s.consent.insert(purpose.clone(), theirs.clone());
            }
        }
        // A state rebuilt from the survivor's timelines alone misses the
        // merged person's events unless theirs was rebuilt too: it is
        // rebuilt again below, over both.
        if existed {
            s.filled.retain(|k| merged.filled.contains(k));
        }
        shared_tags = merged.tags.intersection(&s.tags).cloned().collect();
        s.tags.extend(merged.tags.iter().cloned());
        s.events += merged.events;
        s.last_seen = s.last_seen.max(merged.last_seen);
        for id in std::iter::once(&p.merged_id).chain(&merged.merged_from) {
            if !s.merged_from.contains(id) {
                s.merged_from.push(id.clone());
            }
        }
    })?;
    if crate::history::rebuild(&rules, &p.survivor_id)?.is_some() {
        change(&rules, &p.survivor_id, "merge", |_| {})?;
    }
    crate::blocklist::carry(&p.merged_id, &p.survivor_id)?;
    // A tag both held now counts one person.
    for t in shared_tags {
        crate::tags::resize(&rules, &t, -1);
    }
    rules.flush()
}
