//! `memberFacts`: what other plugins of the tenant ask of a member — the
//! tier and its points multiplier, segment membership, consent, whether
//! they are blocked — in one
//! call (contract 0.2's `[[calls]]`, granted by the tenant). Offered only
//! to plugins: it is not in the SDL.
//!
//! The tier is settled as of today (a downgrade a period's end made
//! counts at once). Membership is as of the profile's last write: a
//! windowed trait's days passing changes it at the nightly recompute.

use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};

use crate::model::{load, today};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FactsInput {
    person_id: String,
    /// Only these segments' membership (all the person's when left out).
    segments: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Facts {
    /// The survivor's id when the person was merged.
    person_id: String,
    /// Whether the CDP holds a profile of the person.
    known: bool,
    tier: Option<String>,
    tier_name: Option<String>,
    /// Points multiplier in hundredths (`150` for ×1.5; `100` without a
    /// tier).
    multiplier_hundredths: u32,
    segments: Vec<String>,
    /// The purposes the person granted.
    consent: Vec<String>,
    /// On the blocklist, by hand or by a blocking segment.
    blocked: bool,
    blocked_reason: Option<String>,
}

/// The most segments one call asks about.
const MAX_ASKED: usize = 100;

pub(crate) fn member_facts(ctx: &Context, i: FactsInput) -> Result<Facts> {
    if ctx.calling_plugin().is_none() {
        return Err(Error::Denied(
            "memberFacts is offered to plugins only".into(),
        ));
    }
    if i.segments.as_ref().is_some_and(|s| s.len() > MAX_ASKED) {
        return Err(Error::invalid(format!("segments: at most {MAX_ASKED}")));
    }
    let person = crate::model::person(&i.person_id)?
        .ok_or_else(|| Error::NotFound(format!("personId: no person {}", i.person_id)))?;
    let (id, found) = load(&person.id)?;
    let profile = found.map(|r| r.data);
    let ladder = crate::definitions::load()?.ladder;
    let tier = profile
        .as_ref()
        .and_then(|p| crate::tiers::now_of(p, ladder.as_ref(), today()));
    let (segments, consent) = match &profile {
        Some(p) => (
            p.segments
                .iter()
                .filter(|s| i.segments.as_ref().is_none_or(|asked| asked.contains(s)))
                .cloned()
                .collect(),
            p.granted().into_iter().collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let blocked_reason =
        crate::blocklist::why(&id, profile.as_ref().and_then(|p| p.blocked_by.as_deref()))?;
    Ok(Facts {
        blocked: blocked_reason.is_some(),
        blocked_reason,
        person_id: id,
        known: profile.is_some(),
        multiplier_hundredths: tier
            .as_ref()
            .map_or(100, |t| (t.multiplier * 100.0).round() as u32),
        tier_name: tier.as_ref().map(|t| t.name.clone()),
        tier: tier.map(|t| t.id),
        segments,
        consent,
    })
}
