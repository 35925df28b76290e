//! Member tiers (会员等级): the tenant's ladder (keel-cdp-core's `tiers`),
//! each profile's standing on it, and the history of changes.
//!
//! A profile's tier is settled in every profile write ([`settle`], called
//! by `segments::change`): upgrades happen with the event that earns them;
//! a downgrade when a period has ended, at the first write after it — the
//! nightly recompute writes every profile, so within a day. Each change is
//! a `tier_history` record (indexed on `person`) and a `tier.changed`
//! event, in the write's transaction.

use std::collections::BTreeSet;

use keel_cdp_core::segments::Rule;
use keel_cdp_core::tiers::Ladder;
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, events};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::definitions::{self, DeclaredLadder, Definitions};
use crate::model::{Held, Profile, now, rfc3339};

/// GraphQL `CdpTiers`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TiersOut {
    definition: Ladder,
    revision: u32,
    since: String,
}

fn out(d: Option<DeclaredLadder>) -> Option<TiersOut> {
    d.map(|d| TiersOut {
        definition: d.ladder,
        revision: d.revision,
        since: d.since,
    })
}

pub(crate) fn get(_ctx: &Context, _i: Value) -> Result<Option<TiersOut>> {
    Ok(out(definitions::load()?.ladder))
}

#[derive(Deserialize)]
pub(crate) struct SetInput {
    tiers: Option<Value>,
}

/// `setCdpTiers`: declares, replaces or (with null) removes the ladder,
/// then starts a recompute that settles every profile on it. A level a
/// segment reads cannot be dropped.
pub(crate) fn set(ctx: &Context, i: SetInput) -> Result<Option<TiersOut>> {
    let ladder = match i.tiers.filter(|t| !t.is_null()) {
        Some(t) => Some(Ladder::parse(&t).map_err(|e| Error::invalid(e.to_string()))?),
        None => None,
    };
    let found = records::get::<Definitions>("definitions", definitions::KEY)?;
    let (mut defs, expect) = match found {
        Some(r) => (r.data, Expect::Version(r.version)),
        None => (Definitions::default(), Expect::Absent),
    };
    let kept: BTreeSet<&str> = ladder
        .iter()
        .flat_map(|l| l.levels.iter().map(|l| l.id.as_str()))
        .collect();
    for (segment, read) in crate::segments::tiers_read()? {
        if let Some(level) = read.iter().find(|l| !kept.contains(l.as_str())) {
            return Err(Error::invalid(format!(
                "tiers: level {level} is read by segment {segment}; change the segment first"
            )));
        }
    }
    defs.ladder = match ladder {
        None => None,
        Some(ladder) => Some(match defs.ladder.take() {
            Some(old) if old.ladder.basis == ladder.basis && old.ladder.period == ladder.period => {
                DeclaredLadder { ladder, ..old }
            }
            _ => {
                defs.ladder_revision += 1;
                DeclaredLadder {
                    ladder,
                    revision: defs.ladder_revision,
                    since: rfc3339(now()),
                }
            }
        }),
    };
    records::put("definitions", definitions::KEY, &defs, expect)?;
    crate::recompute::start(ctx, "tiers")?;
    Ok(out(defs.ladder))
}

/// A tier change a profile write made, recorded once the write is in.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub from: Option<String>,
    pub to: Option<String>,
    up: bool,
    /// The profile's count of tier changes, this one included.
    n: u32,
}

/// Settles `p` on the ladder as of `today`, after its other changes: the
/// basis restarts when the ladder's revision moved past it, old periods
/// are dropped, and the tier held follows the standing. The change, if
/// any.
pub(crate) fn settle(
    p: &mut Profile,
    ladder: Option<&DeclaredLadder>,
    today: i32,
) -> Option<Change> {
    let level = ladder.and_then(|d| {
        if p.tier_basis.revision < d.revision {
            p.tier_basis = crate::model::TierBasis {
                revision: d.revision,
                ..Default::default()
            };
        }
        p.tier_basis.state.prune(&d.ladder, today);
        let rank = p.tier_basis.state.standing(&d.ladder, today).rank?;
        Some((rank, &d.ladder))
    });
    let to = level.map(|(rank, l)| l.levels[rank].id.clone());
    let from = p.tier.as_ref().map(|h| h.id.clone());
    if to == from {
        return None;
    }
    let old_rank = level.and_then(|(_, l)| from.as_deref().and_then(|f| l.rank(f)));
    let up = match (level, old_rank) {
        (Some((new, _)), Some(old)) => new > old,
        (Some(_), None) => true,
        (None, _) => false,
    };
    p.tier = to.clone().map(|id| Held {
        id,
        since: rfc3339(now()),
    });
    p.tier_changes += 1;
    Some(Change {
        from,
        to,
        up,
        n: p.tier_changes,
    })
}

/// Adds an event's part to the basis, if the ladder takes the event and
/// the profile counts for its revision.
pub(crate) fn observe(
    p: &mut Profile,
    ladder: &DeclaredLadder,
    seen: &keel_cdp_core::traits::Observed<'_>,
) {
    if p.tier_basis.revision > ladder.revision {
        // Written under a newer ladder than this call loaded.
        return;
    }
    if p.tier_basis.revision < ladder.revision {
        p.tier_basis = crate::model::TierBasis {
            revision: ladder.revision,
            ..Default::default()
        };
    }
    if let Some(part) = ladder.ladder.observe(seen) {
        p.tier_basis.state.add(&ladder.ladder, seen.day(), &part);
    }
}

/// A `tier_history` record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct History {
    /// Indexed.
    pub person: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: String,
    pub reason: String,
    pub at: String,
}

/// Records `change` of `person`'s tier: the history and `tier.changed`.
pub(crate) fn record(person: &str, change: &Change, reason: &str) -> Result<()> {
    let at = now();
    let direction = if change.up { "up" } else { "down" };
    let h = History {
        person: person.to_owned(),
        from: change.from.clone(),
        to: change.to.clone(),
        direction: direction.into(),
        reason: reason.to_owned(),
        at: rfc3339(at),
    };
    let key = crate::model::history_key(person, change.n);
    records::put("tier_history", &key, &h, Expect::Absent)?;
    events::emit(
        "tier.changed",
        Some(person),
        &json!({"from": h.from, "to": h.to, "direction": direction, "reason": reason}),
        None,
    )?;
    Ok(())
}

/// The last `limit` changes of `person`'s tier, newest first.
pub(crate) fn history(person: &str, limit: u32) -> Result<Vec<History>> {
    let page = records::query::<History>("tier_history", "person", &json!(person), None, limit)?;
    Ok(page.records.into_iter().map(|r| r.data).collect())
}

/// The level ids a rule names.
pub(crate) fn named(rule: &Rule) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    rule.tiers(&mut out);
    out
}

/// GraphQL `CdpTier`: where a person stands now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TierNow {
    pub id: String,
    pub name: String,
    pub multiplier: f64,
    /// When the person reached it (RFC 3339).
    pub since: Option<String>,
    /// The basis so far this period.
    pub this_period: Value,
    /// The first day of the next period (`YYYY-MM-DD`, UTC): a level not
    /// reached again this period may be lost then.
    pub period_ends: String,
    /// The next level up and its `min`, if any.
    pub next: Option<Value>,
}

/// Where `p` stands on the ladder as of `today`, settled (a downgrade the
/// period's end made counts before the profile's next write). Read-only:
/// what [`settle`] would write, without copying the profile.
pub(crate) fn now_of(p: &Profile, ladder: Option<&DeclaredLadder>, today: i32) -> Option<TierNow> {
    let d = ladder?;
    // Totals of an older revision are what `settle` would restart from
    // nothing; pruning never changes a standing (it reads two periods).
    let empty = keel_cdp_core::tiers::TierState::default();
    let state = if p.tier_basis.revision < d.revision {
        &empty
    } else {
        &p.tier_basis.state
    };
    let standing = state.standing(&d.ladder, today);
    let rank = standing.rank?;
    let level = &d.ladder.levels[rank];
    // Held since its write; a level `settle` has yet to write, since now.
    let since = match &p.tier {
        Some(h) if h.id == level.id => h.since.clone(),
        _ => rfc3339(now()),
    };
    let (y, m, day) = keel_cdp_core::tiers::civil(standing.period_ends);
    Some(TierNow {
        id: level.id.clone(),
        name: level.name.clone(),
        multiplier: f64::from(level.multiplier_hundredths()) / 100.0,
        since: Some(since),
        this_period: standing.this_period,
        period_ends: format!("{y:04}-{m:02}-{day:02}"),
        next: d
            .ladder
            .levels
            .get(rank + 1)
            .map(|n| json!({"id": n.id, "name": n.name, "min": n.min})),
    })
}
