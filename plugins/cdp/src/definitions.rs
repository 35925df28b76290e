//! The tenant's computed traits (`definitions/traits`), replaced as a
//! whole and checked on save.
//!
//! Each trait keeps a revision: a definition that changes gets a new one,
//! and a new state. Ingest keeps it from the change (`since`); the
//! recompute that the change starts rebuilds every profile's state from the
//! timeline, so events taken in before the change count too
//! ([`crate::history`]).

use std::collections::BTreeMap;

use keel_cdp_core::tiers::Ladder;
use keel_cdp_core::traits::{TraitDef, check_budget, parse_all, window_budget};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{now, rfc3339};

pub(crate) const KEY: &str = "traits";

/// A trait as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Declared {
    pub def: TraitDef,
    pub revision: u32,
    pub since: String,
    /// Each profile's state is rebuilt once from the timeline (a hidden
    /// trait, or a brand's trait new or changed since rebuilding began).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfill: bool,
}

impl Declared {
    /// Its state's key in a profile.
    pub(crate) fn state_key(&self) -> String {
        format!("{}@{}", self.def.name, self.revision)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Definitions {
    pub traits: Vec<Declared>,
    /// Hidden count traits: what the segments' `event` leaves count
    /// ([`crate::history::sync`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Declared>,
    /// The last revision of each trait dropped: one declared again under
    /// the same name starts after it, never on a stale state.
    #[serde(default)]
    pub retired: BTreeMap<String, u32>,
    /// The member-tier ladder (`tiers`), if the tenant declared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<DeclaredLadder>,
    /// The last ladder revision used: a ladder declared again starts
    /// after it.
    #[serde(default)]
    pub ladder_revision: u32,
}

/// The ladder as stored. Its revision changes when what it counts (basis
/// or period) changes; levels alone change without one, and profiles keep
/// their totals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeclaredLadder {
    pub ladder: Ladder,
    pub revision: u32,
    pub since: String,
}

/// The tenant's traits (none until the brand declares some).
pub(crate) fn load() -> Result<Definitions> {
    Ok(records::get::<Definitions>("definitions", KEY)?
        .map(|r| r.data)
        .unwrap_or_default())
}

/// GraphQL `CdpTrait`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TraitOut {
    name: String,
    definition: TraitDef,
    since: String,
    revision: u32,
}

fn out(d: Definitions) -> Vec<TraitOut> {
    d.traits
        .into_iter()
        .map(|t| TraitOut {
            name: t.def.name.clone(),
            definition: t.def,
            since: t.since,
            revision: t.revision,
        })
        .collect()
}

pub(crate) fn list(_ctx: &Context, _i: Value) -> Result<Vec<TraitOut>> {
    Ok(out(load()?))
}

#[derive(Deserialize)]
pub(crate) struct SetInput {
    traits: Value,
}

/// Replaces the definitions: unchanged traits keep their revision and
/// state; changed and new ones get the next revision, and a recompute
/// rebuilds them from the timeline.
pub(crate) fn set(ctx: &Context, i: SetInput) -> Result<Vec<TraitOut>> {
    let defs = parse_all(&i.traits).map_err(|e| Error::invalid(e.to_string()))?;
    let found = records::get::<Definitions>("definitions", KEY)?;
    if let Some(f) = &found {
        for o in &f.data.traits {
            if !defs.iter().any(|d| d.name == o.def.name)
                && let Some(segment) = crate::segments::uses_trait(&o.def.name)?
            {
                return Err(Error::invalid(format!(
                    "traits: {} is read by segment {segment}; change the segment first",
                    o.def.name
                )));
            }
        }
    }
    let (old, expect) = match found {
        Some(r) => (r.data, Expect::Version(r.version)),
        None => (Definitions::default(), Expect::Absent),
    };
    check_budget(
        defs.iter().chain(old.history.iter().map(|h| &h.def)),
        "traits",
    )
    .map_err(|e| {
        Error::invalid(format!(
            "{e} (with the segments' event leaves, which count {} days)",
            window_budget(old.history.iter().map(|h| &h.def))
        ))
    })?;
    let at = rfc3339(now());
    let mut changed = false;
    let mut retired = old.retired.clone();
    for o in &old.traits {
        if !defs.iter().any(|d| d.name == o.def.name) {
            retired.insert(o.def.name.clone(), o.revision);
        }
    }
    let traits = defs
        .into_iter()
        .map(
            |def| match old.traits.iter().find(|o| o.def.name == def.name) {
                Some(o) if o.def == def => o.clone(),
                Some(o) => {
                    changed = true;
                    Declared {
                        def,
                        revision: o.revision + 1,
                        since: at.clone(),
                        backfill: true,
                    }
                }
                None => {
                    changed = true;
                    Declared {
                        revision: retired.remove(&def.name).unwrap_or(0) + 1,
                        def,
                        since: at.clone(),
                        backfill: true,
                    }
                }
            },
        )
        .collect();
    let new = Definitions {
        traits,
        retired,
        ..old
    };
    records::put("definitions", KEY, &new, expect)?;
    if changed {
        crate::recompute::start(ctx, "traits")?;
    }
    Ok(out(new))
}
