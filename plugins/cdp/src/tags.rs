//! Manual tags: batch tag and untag, and the tenant's tags with their
//! sizes (counters `tag:{tag}`, exact under concurrency and merges).
//! Rule-based tags are segments' (`Segment::tag`): their members hold
//! them, and they are listed here with the segment's size.

use keel_sdk::counters;
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{MAX_PERSONS, check_tag, now, rfc3339};
use crate::segments::{Rules, change};

/// The most tags one person holds.
pub(crate) const MAX_TAGS_PER_PERSON: usize = 200;

fn size_key(tag: &str) -> String {
    format!("tag:{tag}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagRecord {
    tag: String,
    created_at: String,
}

/// Tags `person` (a survivor's id); true when newly tagged.
pub(crate) fn add(rules: &Rules, tag: &str, person: &str) -> Result<bool> {
    let mut added = false;
    let mut full = false;
    change(rules, person, "tag", |p| {
        full = !p.tags.contains(tag) && p.tags.len() >= MAX_TAGS_PER_PERSON;
        added = !full && p.tags.insert(tag.to_owned());
    })?;
    if full {
        return Err(Error::refused(
            "TOO_MANY_TAGS",
            format!("person {person} already holds {MAX_TAGS_PER_PERSON} tags"),
        ));
    }
    if added {
        resize(rules, tag, 1);
    }
    Ok(added)
}

/// Records that the tag is in use, before any profile is written: calls
/// tagging with a new tag then meet on this record first, not across
/// profiles (on PostgreSQL, in opposite orders, a deadlock).
pub(crate) fn register(tag: &str) -> Result<()> {
    let record = TagRecord {
        tag: tag.to_owned(),
        created_at: rfc3339(now()),
    };
    match records::put("tags", tag, &record, Expect::Absent) {
        Ok(_) | Err(Error::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Changes a tag's size by `delta` when the call ends.
pub(crate) fn resize(rules: &Rules, tag: &str, delta: i64) {
    rules.count(size_key(tag), delta);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TagInput {
    tag: String,
    person_ids: Vec<String>,
}

/// The persons named, each by its survivor's id, in id order (profiles
/// are locked in one order) and once each; refused whole when one is
/// unknown.
pub(crate) fn persons_of(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() || ids.len() > MAX_PERSONS {
        return Err(Error::invalid(format!(
            "personIds: 1-{MAX_PERSONS} persons"
        )));
    }
    let mut out = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            Ok(crate::model::person(id)?
                .ok_or_else(|| Error::NotFound(format!("personIds[{i}]: no person {id}")))?
                .id)
        })
        .collect::<Result<Vec<String>>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// `tagPersons`: the number newly tagged.
pub(crate) fn tag(_ctx: &Context, i: TagInput) -> Result<u32> {
    check_tag(&i.tag)?;
    crate::segments::check_manual(&i.tag)?;
    let persons = persons_of(&i.person_ids)?;
    register(&i.tag)?;
    let rules = Rules::load()?;
    let mut n = 0;
    for p in persons {
        n += u32::from(add(&rules, &i.tag, &p)?);
    }
    rules.flush()?;
    Ok(n)
}

/// `untagPersons`: the number untagged.
pub(crate) fn untag(_ctx: &Context, i: TagInput) -> Result<u32> {
    check_tag(&i.tag)?;
    crate::segments::check_manual(&i.tag)?;
    let rules = Rules::load()?;
    let mut n = 0;
    for p in persons_of(&i.person_ids)? {
        let mut removed = false;
        change(&rules, &p, "tag", |profile| {
            removed = profile.tags.remove(&i.tag)
        })?;
        if removed {
            resize(&rules, &i.tag, -1);
            n += 1;
        }
    }
    rules.flush()?;
    Ok(n)
}

/// GraphQL `CdpTag`.
#[derive(Serialize)]
pub(crate) struct TagOut {
    tag: String,
    persons: i64,
    /// The segment whose members hold a rule-based tag.
    segment: Option<String>,
}

/// `cdpTags`: every tag in use, with how many persons hold it: the manual
/// ones, then the rule-based ones.
pub(crate) fn list(_ctx: &Context, _i: Value) -> Result<Vec<TagOut>> {
    let ruled = crate::segments::rule_tags()?;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = records::scan::<TagRecord>("tags", after.as_deref(), 1000)?;
        for r in page.records {
            if ruled.values().any(|t| *t == r.data.tag) {
                continue;
            }
            out.push(TagOut {
                persons: counters::get(&size_key(&r.data.tag))?,
                tag: r.data.tag,
                segment: None,
            });
        }
        match page.next {
            Some(n) if out.len() < 10_000 => after = Some(n),
            _ => break,
        }
    }
    for (segment, tag) in ruled {
        out.push(TagOut {
            persons: counters::get(&format!("segment:{segment}"))?,
            tag,
            segment: Some(segment),
        });
    }
    Ok(out)
}
