//! The blocklist of prize farmers (羊毛党): persons the rewards plugin
//! refuses (outcome `BLOCKED`, when the tenant's rewards config honours
//! the blocklist).
//!
//! A person is blocked by hand (`blockPersons`, or `blockIdentifiers` for
//! people known only by a phone number or an openid, perhaps not yet to
//! Keel; with a reason, kept in `blocklist/{person}` with who blocked them
//! and when) or by rule: a
//! segment saved with `blocks: true` blocks its members — e.g. persons
//! whose `scans_1d` trait passes 50 — for as long as they match. A merge
//! moves a manual block over to the survivor.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};

use crate::model::{now, rfc3339};
use crate::tags::persons_of;

/// A manual block (`blocklist/{person}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blocked {
    pub person_id: String,
    pub reason: String,
    pub by: String,
    pub at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlockInput {
    person_ids: Vec<String>,
    reason: String,
}

fn check_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(Error::invalid(
            "reason: 1-200 characters, no control characters",
        ));
    }
    Ok(reason)
}

/// Blocks each of `persons` (survivors' ids); the number newly blocked.
fn block_all(ctx: &Context, persons: &[String], reason: &str) -> Result<u32> {
    let by = ctx.caller.clone().unwrap_or_else(|| "plugin".into());
    let mut n = 0;
    for person in persons {
        let b = Blocked {
            person_id: person.clone(),
            reason: reason.to_owned(),
            by: by.clone(),
            at: rfc3339(now()),
        };
        match records::put("blocklist", person, &b, Expect::Absent) {
            Ok(_) => n += 1,
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `blockPersons`: blocks at most 1,000 persons (all or nothing); the
/// number newly blocked.
pub(crate) fn block(ctx: &Context, i: BlockInput) -> Result<u32> {
    let reason = check_reason(&i.reason)?;
    block_all(ctx, &persons_of(&i.person_ids)?, reason)
}

#[derive(Deserialize)]
pub(crate) struct BlockIdentifiersInput {
    identifiers: Vec<crate::model::Identifier>,
    reason: String,
}

/// `blockIdentifiers`: blocks the person behind each of at most 1,000
/// identifiers (all or nothing), One ID creating one for an identifier
/// nobody holds yet — a farmer's phone number from a shared list is
/// refused from its first scan, and the block follows a merge. The
/// persons' ids, in order.
pub(crate) fn block_identifiers(ctx: &Context, i: BlockIdentifiersInput) -> Result<Vec<String>> {
    let reason = check_reason(&i.reason)?;
    if i.identifiers.is_empty() || i.identifiers.len() > crate::model::MAX_BATCH {
        return Err(Error::invalid(format!(
            "identifiers: 1-{} identifiers",
            crate::model::MAX_BATCH
        )));
    }
    let sets: Vec<Vec<(&str, &str)>> = i
        .identifiers
        .iter()
        .map(|x| vec![(x.kind.as_str(), x.value.as_str())])
        .collect();
    // One ID names a refused item `batch[i]`: here, `identifiers[i]`.
    let renamed = |m: String| {
        m.replacen("batch[", "identifiers[", 1)
            .replacen("]: identifiers[0].", "].", 1)
    };
    let persons: Vec<String> = match keel_sdk::persons::resolve_batch(&sets) {
        Ok(p) => p.into_iter().map(|p| p.id).collect(),
        Err(Error::InvalidInput(m)) => return Err(Error::InvalidInput(renamed(m))),
        Err(Error::Conflict(m)) => return Err(Error::Conflict(renamed(m))),
        Err(e) => return Err(e),
    };
    let mut distinct = persons.clone();
    distinct.sort();
    distinct.dedup();
    block_all(ctx, &distinct, reason)?;
    Ok(persons)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnblockInput {
    person_ids: Vec<String>,
}

/// `unblockPersons`: lifts manual blocks; the number lifted. A block by
/// rule lasts as long as the person matches the segment.
pub(crate) fn unblock(_ctx: &Context, i: UnblockInput) -> Result<u32> {
    let mut n = 0;
    for person in persons_of(&i.person_ids)? {
        if records::get::<Blocked>("blocklist", &person)?.is_some() {
            records::delete("blocklist", &person, None)?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct Page {
    entries: Vec<Blocked>,
    next: Option<String>,
}

/// `cdpBlocklist`: the manual blocks, by person id, in pages.
pub(crate) fn list(_ctx: &Context, i: ListInput) -> Result<Page> {
    let limit = keel_sdk::paging::limit(i.limit, 100, 1000)?;
    let page = records::scan::<Blocked>("blocklist", i.after.as_deref(), limit)?;
    Ok(Page {
        entries: page.records.into_iter().map(|r| r.data).collect(),
        next: page.next,
    })
}

/// Why `person` (a survivor's id) is blocked, if they are: the manual
/// block's reason, or the blocking segment they are in.
pub(crate) fn why(person: &str, blocking_segment: Option<&str>) -> Result<Option<String>> {
    if let Some(b) = records::get::<Blocked>("blocklist", person)? {
        return Ok(Some(b.data.reason));
    }
    Ok(blocking_segment.map(|s| format!("segment {s}")))
}

/// Carries a manual block of `merged` over to `survivor` (a merge).
pub(crate) fn carry(merged: &str, survivor: &str) -> Result<()> {
    let Some(b) = records::get::<Blocked>("blocklist", merged)? else {
        return Ok(());
    };
    let moved = Blocked {
        person_id: survivor.to_owned(),
        reason: format!("{} (merged from {merged})", b.data.reason),
        ..b.data
    };
    match records::put("blocklist", survivor, &moved, Expect::Absent) {
        Ok(_) | Err(Error::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    // The merged id resolves to the survivor: its own entry could never
    // be lifted.
    records::delete("blocklist", merged, None)?;
    Ok(())
}
