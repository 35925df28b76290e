//! `person.erased`: the kernel erased a person (personal-information
//! rights), so the CDP erases what it holds of them and of everyone merged
//! into them: profiles (traits, tags, tier, consent), segment memberships
//! (sizes kept exact, no `segment.left`), the blocklist entry, and — in steps, 500 records a
//! step, through the self-subscribed `cdp.erase_step` — their timeline,
//! consent log and tier history. A step trusts only the erasure's record
//! (`erasures/{eventId}`), never its event's payload.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Error, Event, Result, events, log};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::Profile;
use crate::segments::{Rules, drop_member};

/// Collections indexed on `person` that an erasure empties, in order.
const BY_PERSON: [&str; 3] = ["timeline", "consent_log", "tier_history"];
/// Records deleted per step.
const STEP: u32 = 500;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    erased_ids: Vec<String>,
}

/// An erasure in progress (`erasures/{eventId}`).
#[derive(Serialize, Deserialize)]
struct Erasure {
    ids: Vec<String>,
    /// Steps emitted: keys each step's event, so a redelivered step does
    /// not start a second chain.
    #[serde(default)]
    steps: u32,
}

pub(crate) fn on_erased(e: Event) -> Result<()> {
    if e.producer != "kernel" {
        log::warn(&format!(
            "person.erased {} from {} ignored",
            e.id, e.producer
        ));
        return Ok(());
    }
    let p: Payload = serde_json::from_value(e.payload)
        .map_err(|err| Error::invalid(format!("person.erased payload: {err}")))?;
    if p.erased_ids.is_empty() || p.erased_ids.len() > 1000 {
        return Err(Error::invalid("person.erased: 1-1000 erased ids"));
    }
    let job = Erasure {
        ids: p.erased_ids,
        steps: 0,
    };
    match records::put("erasures", &e.id, &job, Expect::Absent) {
        Ok(_) => {}
        // A redelivery: the first delivery did this part and started the steps.
        Err(Error::Conflict(_)) => return Ok(()),
        Err(err) => return Err(err),
    }
    let rules = Rules::load()?;
    for id in &job.ids {
        let Some(found) = records::get::<Profile>("profiles", id)? else {
            continue;
        };
        let profile = found.data;
        for s in &profile.segments {
            drop_member(&rules, s, id)?;
        }
        for t in &profile.tags {
            crate::tags::resize(&rules, t, -1);
        }
        if profile.merged_into.is_none() {
            rules.count("profiles".into(), -1);
        }
        records::delete("profiles", id, Some(found.version))?;
        if records::get::<serde_json::Value>("blocklist", id)?.is_some() {
            records::delete("blocklist", id, None)?;
        }
    }
    rules.flush()?;
    step(&e.id)
}

pub(crate) fn on_step(e: Event) -> Result<()> {
    if e.producer != "cdp" {
        log::warn(&format!(
            "cdp.erase_step {} from {} ignored",
            e.id, e.producer
        ));
        return Ok(());
    }
    let erasure = e
        .payload
        .get("erasure")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::invalid("cdp.erase_step: no erasure"))?
        .to_owned();
    step(&erasure)
}

/// Deletes up to [`STEP`] records of the erasure `id`; emits the next
/// step while some remain, and drops the erasure's record when done.
fn step(id: &str) -> Result<()> {
    let Some(job) = records::get::<Erasure>("erasures", id)? else {
        return Ok(());
    };
    let mut budget = STEP;
    for collection in BY_PERSON {
        for person in &job.data.ids {
            while budget > 0 {
                let page = records::query::<serde_json::Value>(
                    collection,
                    "person",
                    &json!(person),
                    None,
                    budget,
                )?;
                if page.records.is_empty() {
                    break;
                }
                for r in page.records {
                    records::delete(collection, &r.key, None)?;
                    budget -= 1;
                }
            }
            if budget == 0 {
                let n = job.data.steps + 1;
                let next = Erasure {
                    ids: job.data.ids.clone(),
                    steps: n,
                };
                records::put("erasures", id, &next, Expect::Version(job.version))?;
                events::emit(
                    "cdp.erase_step",
                    None,
                    &json!({"erasure": id}),
                    Some(&format!("{id}:{n}")),
                )?;
                return Ok(());
            }
        }
    }
    records::delete("erasures", id, None)?;
    Ok(())
}
