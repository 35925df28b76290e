//! The profile record, input checks shared by the operations, and time.

use std::collections::{BTreeMap, BTreeSet};

use keel_cdp_core::aggregate::TraitState;
use keel_cdp_core::tiers::TierState;
use keel_sdk::records::{self, Expect, Record};
use keel_sdk::{Error, Result};
use serde::{Deserialize, Serialize};

pub(crate) use keel_sdk::time::{now, parse_rfc3339, rfc3339};

/// What the CDP keeps about one person (`profiles/{personId}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Profile {
    /// Each trait's state, by `{name}@{revision}`: a changed definition
    /// starts a new state, and old ones are dropped on the next write.
    #[serde(default)]
    pub traits: BTreeMap<String, TraitState>,
    /// The trait states (`{name}@{revision}`) rebuilt from the timeline
    /// ([`crate::history`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub filled: BTreeSet<String>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Persons merged into this one (their timelines are this one's).
    #[serde(default)]
    pub merged_from: Vec<String>,
    /// Set when this person was merged into another: a tombstone.
    #[serde(default)]
    pub merged_into: Option<String>,
    /// Events taken in.
    #[serde(default)]
    pub events: u64,
    /// Microseconds since 1970 of the latest event.
    #[serde(default)]
    pub last_seen: Option<i64>,
    /// The segments the person is in, as of this write.
    #[serde(default)]
    pub segments: BTreeSet<String>,
    /// The tier ladder's basis per period, for the ladder revision it
    /// counts for.
    #[serde(default, skip_serializing_if = "TierBasis::is_empty")]
    pub tier_basis: TierBasis,
    /// The tier held, as of this write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Held>,
    /// Consent by purpose: the latest statement of each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consent: BTreeMap<String, Consent>,
    /// The first segment with `blocks` the person is in, as of this write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// Tier changes recorded: numbers `tier_history` keys.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tier_changes: u32,
    /// Consent statements logged: numbers `consent_log` keys.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub statements: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A history key of `person`: its `n`th entry, newest first in key order.
pub(crate) fn history_key(person: &str, n: u32) -> String {
    format!("{person}|{:08x}", u32::MAX - n)
}

/// The ladder's basis as a profile keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TierBasis {
    pub revision: u32,
    pub state: TierState,
}

impl TierBasis {
    fn is_empty(&self) -> bool {
        self.revision == 0 && self.state.periods.is_empty()
    }
}

/// A tier held since a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Held {
    pub id: String,
    /// RFC 3339.
    pub since: String,
}

/// One purpose's consent: the person's latest statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Consent {
    pub granted: bool,
    /// Where it was given or withdrawn (`h5`, `crm`, `store`, …).
    pub source: String,
    /// Microseconds since 1970 of the statement.
    pub at: i64,
}

impl Consent {
    /// When it was stated, RFC 3339.
    pub(crate) fn stated_at(&self) -> String {
        chrono::DateTime::from_timestamp_micros(self.at)
            .map(rfc3339)
            .unwrap_or_default()
    }

    /// True when `self` replaces `other`: the later statement wins, and a
    /// withdrawal wins a tie.
    pub(crate) fn replaces(&self, other: &Consent) -> bool {
        (self.at, !self.granted) > (other.at, !other.granted)
    }
}

impl Profile {
    /// The purposes granted now.
    pub(crate) fn granted(&self) -> BTreeSet<String> {
        self.consent
            .iter()
            .filter(|(_, c)| c.granted)
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// The profile of `person`, following merges to the survivor: its id and
/// record (none yet for a person the CDP has not seen).
pub(crate) fn load(person: &str) -> Result<(String, Option<Record<Profile>>)> {
    let mut id = person.to_owned();
    // A chain of merges is short; a cycle would be a kernel bug.
    for _ in 0..16 {
        match records::get::<Profile>("profiles", &id)? {
            Some(r) => match r.data.merged_into.clone() {
                Some(next) => id = next,
                None => return Ok((id, Some(r))),
            },
            None => return Ok((id, None)),
        }
    }
    Err(Error::Internal(format!(
        "profile {person}: merge chain too long"
    )))
}

/// Applies `change` to the profile of `person` (or its survivor; told
/// whether the profile is new) with a versioned write, retried when another
/// call wrote it first; `first`, the live profile's record if the caller
/// has just read it, saves the first read. The id of
/// the profile, and whether it was created. A change that leaves an
/// existing profile as it was writes nothing (the nightly recompute of a
/// profile nothing happened to only reads it).
pub(crate) fn update(
    person: &str,
    mut first: Option<Record<Profile>>,
    mut change: impl FnMut(&mut Profile, bool),
) -> Result<(String, bool)> {
    for _ in 0..8 {
        // The record the caller just read (a live profile), then fresh reads.
        let (id, found) = match first.take() {
            Some(r) => (person.to_owned(), Some(r)),
            None => load(person)?,
        };
        let (mut profile, expect) = match found {
            Some(r) => (r.data, Expect::Version(r.version)),
            None => (Profile::default(), Expect::Absent),
        };
        let before = (expect != Expect::Absent)
            .then(|| serde_json::to_vec(&profile).ok())
            .flatten();
        change(&mut profile, expect == Expect::Absent);
        if before.is_some() && before == serde_json::to_vec(&profile).ok() {
            return Ok((id, false));
        }
        match records::put("profiles", &id, &profile, expect) {
            Ok(_) => return Ok((id, expect == Expect::Absent)),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(format!(
        "profile {person}: written by other calls meanwhile; retry"
    )))
}

/// The person `id` names (its survivor's id if merged), or `None` when
/// there is none — an id of another shape included.
pub(crate) fn person(id: &str) -> Result<Option<keel_sdk::persons::Person>> {
    if !is_token(id, 100) {
        return Ok(None);
    }
    match keel_sdk::persons::get(id) {
        Ok(p) => Ok(p),
        Err(Error::NotFound(_) | Error::InvalidInput(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A person's identifiers as the GraphQL input gives them.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Identifier {
    pub kind: String,
    pub value: String,
}

/// The most items of one ingest batch.
pub(crate) const MAX_BATCH: usize = 1000;

/// Checks a batch's id and size.
pub(crate) fn check_batch(batch_id: &str, items: usize) -> Result<()> {
    if !is_token(batch_id, 100) {
        return Err(Error::invalid(
            "batchId: 1-100 letters, digits and . _ : - (e.g. crm-2026-12-01-0001)",
        ));
    }
    if items == 0 || items > MAX_BATCH {
        return Err(Error::invalid(format!(
            "at most {MAX_BATCH} items per batch, got {items}"
        )));
    }
    Ok(())
}

/// 1..=`max` ASCII letters, digits and `. _ : -`.
pub(crate) fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A tag: 1-40 characters, letters (any script), digits, `_` and `-`.
pub(crate) fn check_tag(tag: &str) -> Result<()> {
    let n = tag.chars().count();
    if n == 0
        || n > 40
        || !tag
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(Error::invalid(format!(
            "tag {tag:?}: 1-40 letters, digits, _ and -"
        )));
    }
    Ok(())
}

/// The most persons one tag call names.
pub(crate) const MAX_PERSONS: usize = 1000;

/// Days since 1970 of now (UTC).
pub(crate) fn today() -> i32 {
    keel_cdp_core::traits::day_of(now().timestamp_micros())
}

/// How far in the future an event or a statement may claim to be.
const MAX_SKEW_MICROS: i64 = 24 * 3600 * 1_000_000;
/// 2000-01-01: older times are refused.
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// An RFC 3339 time given as `field`, in microseconds: after 2000 and at
/// most 24 hours ahead of `now_micros`.
pub(crate) fn instant(field: &str, s: &str, now_micros: i64) -> std::result::Result<i64, String> {
    let at = parse_rfc3339(field, s)
        .map_err(|e| e.to_string())?
        .timestamp_micros();
    if at < EPOCH_MICROS || at > now_micros + MAX_SKEW_MICROS {
        return Err(format!(
            "{field}: after 2000-01-01 and at most 24 hours ahead of now"
        ));
    }
    Ok(at)
}
