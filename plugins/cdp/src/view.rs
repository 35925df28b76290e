//! The profile a marketer opens: the kernel's identifiers and attributes,
//! the traits as of today, tags, the tier and its history, consent and its
//! log, and the timeline, newest first, paged
//! across the person and everyone merged into it.

use keel_sdk::records;
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::definitions;
use crate::model::{load, rfc3339, today};
use crate::track::Entry;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileInput {
    person_id: String,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct TraitValue {
    name: String,
    value: Value,
}

#[derive(Serialize)]
pub(crate) struct Identifier {
    kind: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TimelineEvent {
    #[serde(rename = "type")]
    event_type: String,
    source: String,
    message_id: String,
    occurred_at: String,
    properties: Value,
}

#[derive(Serialize)]
pub(crate) struct Timeline {
    events: Vec<TimelineEvent>,
    next: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileOut {
    person_id: String,
    segments: Vec<String>,
    merged_from: Vec<String>,
    identifiers: Vec<Identifier>,
    attributes: Value,
    traits: Vec<TraitValue>,
    tags: Vec<String>,
    events: u64,
    last_seen: Option<String>,
    tier: Option<crate::tiers::TierNow>,
    tier_history: Vec<crate::tiers::History>,
    consent: Vec<crate::consent::ConsentOut>,
    consent_log: Vec<crate::consent::Logged>,
    /// Why the person is blocked, if they are.
    blocked: Option<String>,
    timeline: Timeline,
}

/// `cdpProfile`: `None` for an unknown person.
pub(crate) fn profile(_ctx: &Context, i: ProfileInput) -> Result<Option<ProfileOut>> {
    let limit = keel_sdk::paging::limit(i.limit, 50, 200)?;
    if let Some(a) = &i.after
        && (a.is_empty() || a.len() > 256)
    {
        return Err(Error::invalid("after: the previous page's next"));
    }
    let Some(person) = crate::model::person(&i.person_id)? else {
        return Ok(None);
    };
    let (_, found) = load(&person.id)?;
    let profile = found.map(|r| r.data).unwrap_or_default();
    let today = today();
    let defs = definitions::load()?;
    let traits = defs
        .traits
        .iter()
        .map(|d| TraitValue {
            name: d.def.name.clone(),
            value: profile
                .traits
                .get(&d.state_key())
                .cloned()
                .unwrap_or_default()
                .value(&d.def, today),
        })
        .collect();
    // Every id the person's entries may be under, merged from the pages of
    // each (keys sort newest first).
    let mut ids = vec![person.id.clone()];
    ids.extend(profile.merged_from.iter().cloned());
    let mut page: Vec<(String, Entry)> = Vec::new();
    for id in &ids {
        let p =
            records::query::<Entry>("timeline", "person", &json!(id), i.after.as_deref(), limit)?;
        page.extend(p.records.into_iter().map(|r| (r.key, r.data)));
    }
    page.sort_by(|a, b| a.0.cmp(&b.0));
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next = if more || page.len() == limit as usize {
        page.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    // Manual tags, and the rule-based tags of its segments.
    let ruled = crate::segments::rule_tags()?;
    let mut tags = profile.tags.clone();
    tags.extend(
        profile
            .segments
            .iter()
            .filter_map(|s| ruled.get(s).cloned()),
    );
    Ok(Some(ProfileOut {
        tier: crate::tiers::now_of(&profile, defs.ladder.as_ref(), today),
        tier_history: crate::tiers::history(&person.id, 20)?,
        consent: crate::consent::out(&profile.consent),
        consent_log: crate::consent::log(&person.id, 20)?,
        blocked: crate::blocklist::why(&person.id, profile.blocked_by.as_deref())?,
        person_id: person.id,
        segments: profile.segments.into_iter().collect(),
        merged_from: profile.merged_from,
        identifiers: person
            .identifiers
            .into_iter()
            .map(|(kind, value)| Identifier { kind, value })
            .collect(),
        attributes: Value::Object(person.attributes),
        traits,
        tags: tags.into_iter().collect(),
        events: profile.events,
        last_seen: profile
            .last_seen
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(rfc3339),
        timeline: Timeline {
            events: page
                .into_iter()
                .map(|(_, e)| TimelineEvent {
                    event_type: e.event_type,
                    source: e.source,
                    message_id: e.message_id,
                    occurred_at: e.occurred_at,
                    properties: e.properties,
                })
                .collect(),
            next,
        },
    }))
}
