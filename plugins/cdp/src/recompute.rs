//! The full recompute of segment membership: every profile re-evaluated
//! (and its windowed traits' old days dropped, and traits to backfill
//! rebuilt from its timeline: `history`), a page at a time.
//!
//! A job is a record (`jobs/{id}`) with its cursor; each step is one
//! delivery of the plugin's own `cdp.recompute_step`, which handles one page
//! in its own transaction and emits the next step. A step trusts only the
//! job record — the event names the job, nothing else — so a replayed or
//! duplicated step finds the cursor already moved and does the next page,
//! or nothing once the job is done. It starts after each saved segment,
//! nightly (the `nightly-segments` schedule) and on `recomputeSegments`.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Event, Result, events, log};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{Profile, now, rfc3339};
use crate::segments::{Rules, change, change_from};

/// Profiles per step.
const PAGE: u32 = 200;
/// Timeline entries a step reads to rebuild traits before it ends, at the
/// profile it reached.
const MAX_READ: u64 = 20_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Job {
    id: String,
    reason: String,
    /// RUNNING or DONE.
    status: String,
    after: Option<String>,
    scanned: u64,
    started_at: String,
    finished_at: Option<String>,
}

/// Starts a recompute; its job.
pub(crate) fn start(_ctx: &Context, reason: &str) -> Result<Job> {
    let at = now();
    let id = keel_sdk::time::time_key(at)?;
    let job = Job {
        id: id.clone(),
        reason: reason.to_owned(),
        status: "RUNNING".into(),
        after: None,
        scanned: 0,
        started_at: rfc3339(at),
        finished_at: None,
    };
    records::put("jobs", &id, &job, Expect::Absent)?;
    step(&id, None)?;
    Ok(job)
}

fn step(job: &str, after: Option<&str>) -> Result<()> {
    events::emit(
        "cdp.recompute_step",
        None,
        &json!({"job": job}),
        Some(&format!("{job}:{}", after.unwrap_or("start"))),
    )?;
    Ok(())
}

/// `recomputeSegments`, and the nightly schedule.
pub(crate) fn recompute(ctx: &Context, _i: Value) -> Result<Job> {
    let reason = if ctx.schedule().is_some() {
        "nightly"
    } else {
        "requested"
    };
    start(ctx, reason)
}

#[derive(Deserialize)]
pub(crate) struct JobInput {
    id: String,
}

/// `cdpRecomputeJob`.
pub(crate) fn get(_ctx: &Context, i: JobInput) -> Result<Option<Job>> {
    if !keel_sdk::time::is_time_key(&i.id) {
        return Ok(None);
    }
    Ok(records::get::<Job>("jobs", &i.id)?.map(|r| r.data))
}

#[derive(Deserialize)]
struct Payload {
    job: String,
}

pub(crate) fn on_step(e: Event) -> Result<()> {
    if e.producer != "cdp" {
        log::warn(&format!(
            "cdp.recompute_step {} from {} ignored",
            e.id, e.producer
        ));
        return Ok(());
    }
    let p: Payload = serde_json::from_value(e.payload)
        .map_err(|err| Error::invalid(format!("cdp.recompute_step payload: {err}")))?;
    let Some(found) = records::get::<Job>("jobs", &p.job)? else {
        return Ok(());
    };
    let mut job = found.data;
    if job.status == "DONE" {
        return Ok(());
    }
    let rules = Rules::load()?;
    let page = records::scan::<Profile>("profiles", job.after.as_deref(), PAGE)?;
    let total = page.records.len();
    let (mut read, mut handled, mut last) = (0, 0, None);
    for r in page.records {
        handled += 1;
        last = Some(r.key.clone());
        if r.data.merged_into.is_none() {
            let key = r.key.clone();
            let due = rules
                .defs
                .iter()
                .any(|d| d.backfill && !r.data.filled.contains(&d.state_key()));
            // A profile evaluated unchanged is not written. The page's copy
            // is evaluated (not read again): a write by a call holding
            // rules older than this step's, committed since the page was
            // read, stands until the next recompute (README, Known limits).
            if due {
                read += crate::history::rebuild(&rules, &key)?.unwrap_or(0);
                change(&rules, &key, "recompute", |_| {})?;
            } else {
                change_from(&rules, &key, Some(r), "recompute", |_| {})?;
            }
            job.scanned += 1;
        }
        // Profiles with long timelines to rebuild end a step early.
        if read >= MAX_READ {
            break;
        }
    }
    rules.flush()?;
    job.after = if handled < total {
        last
    } else {
        page.next.clone()
    };
    if job.after.is_none() {
        job.status = "DONE".into();
        job.finished_at = Some(rfc3339(now()));
    }
    records::put("jobs", &job.id, &job, Expect::Version(found.version))?;
    if let Some(after) = &job.after {
        step(&job.id, Some(after))?;
    }
    Ok(())
}
