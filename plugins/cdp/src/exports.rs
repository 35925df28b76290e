//! Files through the kernel's download route (`GET /files/cdp/{name}`),
//! streamed a chunk at a time:
//!
//! - `audience` — a segment's members as CSV with their contact
//!   identifiers and tier. A segment with a consent purpose holds only
//!   persons who granted it, so the export honours opt-outs.
//! - `person` — everything the CDP holds about one person, as JSON lines
//!   (personal-information rights: access and portability): the profile,
//!   then every timeline event, consent statement and tier change, across
//!   the persons merged into them. The kernel's part (identifiers,
//!   attributes, events, merges) is its `person` query.

use keel_sdk::records;
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::load;

/// Members (or records) per chunk.
const PAGE: u32 = 500;
/// Bytes of `data` after which a chunk ends (the host caps a call's
/// output at 1 MiB, and `data` is escaped inside JSON).
const BUDGET: usize = 384 * 1024;

/// One piece of a file (the kernel's download protocol).
#[derive(Serialize)]
pub(crate) struct FileChunk {
    data: String,
    next: Option<String>,
    total: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct AudienceInput {
    segment: String,
    after: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    person: String,
}

/// The identifier kinds the audience file has a column for.
const KINDS: [&str; 4] = ["phone", "email", "wechat_openid", "member_no"];

/// `audience`: a segment's members, `person_id,phone,email,wechat_openid,member_no,tier`.
pub(crate) fn audience_chunk(_ctx: &Context, i: AudienceInput) -> Result<FileChunk> {
    let segment = records::get::<crate::segments::Segment>("segments", &i.segment)?
        .ok_or_else(|| Error::NotFound(format!("segment: no segment {}", i.segment)))?
        .data;
    let page = records::query::<Member>(
        "members",
        "segment",
        &json!(i.segment),
        i.after.as_deref(),
        PAGE,
    )?;
    let mut data = String::new();
    let mut total = None;
    if i.after.is_none() {
        data.push_str("person_id,phone,email,wechat_openid,member_no,tier\n");
        total = Some(keel_sdk::counters::get(&format!("segment:{}", i.segment))?);
    }
    for m in page.records {
        let Some(person) = crate::model::person(&m.data.person)? else {
            continue;
        };
        let (_, profile) = load(&person.id)?;
        let Some(profile) = profile.map(|p| p.data) else {
            continue;
        };
        // Membership records can trail a rule just saved (the recompute
        // has not passed yet): the profile and its consent have the last
        // word, so nobody who withdrew is ever exported.
        let consented = segment
            .purpose
            .as_ref()
            .is_none_or(|p| profile.consent.get(p).is_some_and(|c| c.granted));
        if !profile.segments.contains(&segment.id) || !consented {
            continue;
        }
        let mut row = vec![cell(&person.id)];
        for kind in KINDS {
            let v = person
                .identifiers
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            row.push(cell(v));
        }
        let tier = profile.tier.map(|t| t.id).unwrap_or_default();
        row.push(cell(&tier));
        data.push_str(&row.join(","));
        data.push('\n');
    }
    Ok(FileChunk {
        data,
        next: page.next,
        total,
    })
}

/// A CSV cell: quoted when it must be, and never read as a formula by a
/// spreadsheet (a leading `=`, `@`, or `+`/`-` not starting a number gets
/// a `'`).
fn cell(v: &str) -> String {
    let formula = match v.chars().next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => !v[1..].chars().all(|c| c.is_ascii_digit() || c == ' '),
        _ => false,
    };
    let v = if formula {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PersonInput {
    person_id: String,
    after: Option<String>,
}

/// What the person file lists after the profile, in order.
const SECTIONS: [(&str, &str); 3] = [
    ("timeline", "event"),
    ("consent_log", "consent"),
    ("tier_history", "tier_change"),
];

/// `person`: the profile line, then each section's records, a page a
/// chunk. The cursor is `{section}:{id index}:{last key}`.
pub(crate) fn person_chunk(ctx: &Context, i: PersonInput) -> Result<FileChunk> {
    let person = crate::model::person(&i.person_id)?
        .ok_or_else(|| Error::NotFound(format!("personId: no person {}", i.person_id)))?;
    let (_, found) = load(&person.id)?;
    let mut ids = vec![person.id.clone()];
    ids.extend(found.map(|r| r.data.merged_from).unwrap_or_default());
    let mut data = String::new();
    let (mut section, mut index, mut after) = (0usize, 0usize, None::<String>);
    match i.after.as_deref() {
        None => {
            let input = json!({"personId": person.id, "limit": 1});
            let profile = crate::view::profile(ctx, serde_json::from_value(input)?)?;
            let mut line = serde_json::to_value(profile)?;
            if let Some(o) = line.as_object_mut() {
                o.remove("timeline");
                o.insert("kind".into(), json!("profile"));
            }
            data.push_str(&line.to_string());
            data.push('\n');
        }
        Some(cursor) => {
            let bad = || Error::invalid(format!("after: {cursor:?} is not a cursor of this file"));
            let mut parts = cursor.splitn(3, ':');
            section = parts
                .next()
                .and_then(|s| s.parse().ok())
                .filter(|s| *s < SECTIONS.len())
                .ok_or_else(bad)?;
            index = parts
                .next()
                .and_then(|s| s.parse().ok())
                .filter(|s| *s < ids.len())
                .ok_or_else(bad)?;
            after = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        }
    }
    let (collection, kind) = SECTIONS[section];
    let page = records::query::<Value>(
        collection,
        "person",
        &json!(ids[index]),
        after.as_deref(),
        PAGE,
    )?;
    let mut cut = None;
    for r in page.records {
        let mut line = r.data;
        if let Some(o) = line.as_object_mut() {
            o.insert("kind".into(), json!(kind));
        }
        data.push_str(&line.to_string());
        data.push('\n');
        if data.len() > BUDGET {
            cut = Some(r.key);
            break;
        }
    }
    let next = match cut.or(page.next) {
        Some(k) => Some(format!("{section}:{index}:{k}")),
        None if index + 1 < ids.len() => Some(format!("{section}:{}:", index + 1)),
        None if section + 1 < SECTIONS.len() => Some(format!("{}:0:", section + 1)),
        None => None,
    };
    Ok(FileChunk {
        data,
        next,
        total: None,
    })
}
