//! The browser tracker: the script (`GET /t/{slug}/p/cdp/tracker.js`, from
//! the plugin's pages) and `cdpCollect`, the public mutation it posts its
//! batches to.
//!
//! What a browser may say is narrow, because anybody can say it: at most 20
//! events a call, of the types the brand allows (`tracker_events`; never a
//! type the CDP takes from its producer, nor a server-side one not listed),
//! properties of at most 4 KiB without identifiers (at any depth), times
//! from a week before now to a day after. The person is never named by the
//! browser: it is the signed-in consumer (Keel's own pages, with the
//! session cookie), or else the person holding the browser's random
//! anonymous id (One ID kind `anonymous_id`) and nothing else — an id that
//! a known person holds is refused without the session, so that whoever
//! learns it cannot post as them; a signed-in consumer's browser id is not
//! linked to them for the same reason. Each event counts once per
//! anonymous id and `messageId`. Calls are limited by the kernel's per-address public
//! limit; the events refused are counted (`cdpTracker`).

use keel_sdk::{Context, Error, Result, counters, persons};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ingest::{MAX_PROPERTIES, Rejected, object, reserved};
use crate::model::{instant, now};
use crate::track::{Incoming, take_in};

/// The script, served as it is.
const SCRIPT: &str = include_str!("tracker.js");
/// The counter of events refused (only those: counting every accepted one
/// would make one hot row of all browsers' calls).
const REJECTED: &str = "tracker:rejected";
/// How old an event may be.
const MAX_AGE_MICROS: i64 = 7 * 86_400 * 1_000_000;
/// The most events of one call.
const MAX_EVENTS: usize = 20;
/// The identifier kind of a browser's anonymous id.
pub(crate) const ANONYMOUS: &str = "anonymous_id";
/// Property names the tracker refuses: identifiers come from One ID, never
/// from a browser.
const IDENTIFYING: [&str; 7] = [
    "phone",
    "mobile",
    "email",
    "openid",
    "unionid",
    "wechat_openid",
    "id_card",
];

const NOT_FOUND: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title></head><body><p>Not found · 未找到</p></body></html>\n";

#[derive(Deserialize)]
pub(crate) struct PageInput {
    path: String,
}

/// A page answer: HTML or a script.
#[derive(Serialize)]
pub(crate) struct Page {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<String>,
}

/// The plugin's pages: only `tracker.js`.
pub(crate) fn page(_ctx: &Context, i: PageInput) -> Result<Page> {
    Ok(match i.path.as_str() {
        "tracker.js" => Page {
            status: 200,
            html: None,
            script: Some(SCRIPT.to_owned()),
        },
        _ => Page {
            status: 404,
            html: Some(NOT_FOUND.to_owned()),
            script: None,
        },
    })
}

#[derive(Deserialize, Default)]
struct Config {
    tracker_events: Option<Vec<String>>,
}

/// The event types a browser may send.
fn allowed() -> Vec<String> {
    let c: Config = keel_sdk::config::get().unwrap_or_default();
    c.tracker_events.unwrap_or_else(|| {
        [
            "page.viewed",
            "product.viewed",
            "content.shared",
            "coupon.viewed",
        ]
        .map(String::from)
        .to_vec()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CollectInput {
    anonymous_id: String,
    events: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventIn {
    message_id: String,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: String,
    properties: Option<Value>,
}

/// GraphQL `CdpCollectReport`.
#[derive(Serialize)]
pub(crate) struct CollectReport {
    accepted: usize,
    duplicates: usize,
    rejected: Vec<Rejected>,
}

/// 16-40 letters, digits, `_` and `-` (the tracker's are 22).
fn is_browser_id(s: &str, min: usize) -> bool {
    (min..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Checks one event of a call.
fn check(
    v: &Value,
    anonymous: &str,
    allowed: &[String],
    now_micros: i64,
) -> std::result::Result<Incoming, String> {
    let e: EventIn = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if !is_browser_id(&e.message_id, 8) {
        return Err("messageId: 8-40 letters, digits, _ and -".into());
    }
    if reserved(&e.event_type) || !allowed.contains(&e.event_type) {
        return Err(format!(
            "type: {:?} is not one this brand takes from browsers ({})",
            e.event_type,
            allowed.join(", ")
        ));
    }
    let at = instant("occurredAt", &e.occurred_at, now_micros)?;
    if at < now_micros - MAX_AGE_MICROS {
        return Err("occurredAt: at most a week ago (a tracker sends within seconds)".into());
    }
    let properties = object("properties", e.properties, MAX_PROPERTIES, "a JSON object")?;
    if let Some(path) = identifying(&properties, "properties") {
        return Err(format!("{path}: identifiers are not taken from a browser"));
    }
    Ok(Incoming {
        source: "web".into(),
        // Unique per browser: another browser cannot spend this one's ids.
        message_id: format!("{anonymous}.{}", e.message_id),
        event_type: e.event_type,
        at_micros: at,
        properties,
    })
}

/// The first property name, at any depth, that names an identifier.
fn identifying(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::Object(o) => o.iter().find_map(|(k, v)| {
            let here = format!("{at}.{k}");
            if IDENTIFYING.contains(&k.to_lowercase().as_str()) {
                Some(here)
            } else {
                identifying(v, &here)
            }
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| identifying(v, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// The person a call's events are for: the signed-in consumer, or the
/// anonymous person holding only the browser's id.
fn person(ctx: &Context, anonymous: &str) -> Result<String> {
    if ctx.consumer().is_some() {
        return persons::acting_for(ctx, &[])?
            .map(|p| p.id)
            .ok_or_else(|| Error::Denied("sign in first".into()));
    }
    let p = persons::resolve(&[(ANONYMOUS, anonymous)])?;
    if p.identifiers.iter().any(|(kind, _)| kind != ANONYMOUS) {
        return Err(Error::Denied(
            "anonymousId: this browser's id belongs to a known person; their events are taken when they are signed in".into(),
        ));
    }
    Ok(p.id)
}

/// `cdpCollect` (public): a batch from the tracker. Bad events are
/// reported by index and counted; the good ones are taken in.
pub(crate) fn collect(ctx: &Context, i: CollectInput) -> Result<CollectReport> {
    if !is_browser_id(&i.anonymous_id, 16) {
        return Err(Error::invalid(
            "anonymousId: 16-40 letters, digits, _ and -",
        ));
    }
    if i.events.is_empty() || i.events.len() > MAX_EVENTS {
        return Err(Error::invalid(format!(
            "events: 1 to {MAX_EVENTS} a call, got {}",
            i.events.len()
        )));
    }
    let allowed = allowed();
    let now_micros = now().timestamp_micros();
    let mut rejected = Vec::new();
    let mut good = Vec::new();
    for (index, v) in i.events.iter().enumerate() {
        match check(v, &i.anonymous_id, &allowed, now_micros) {
            Ok(e) => good.push(e),
            Err(message) => rejected.push(Rejected { index, message }),
        }
    }
    let mut accepted = 0;
    let tried = good.len();
    if !good.is_empty() {
        let who = person(ctx, &i.anonymous_id)?;
        let items: Vec<(String, Incoming)> = good.into_iter().map(|e| (who.clone(), e)).collect();
        accepted = take_in(&items)?.iter().filter(|f| **f).count();
    }
    if !rejected.is_empty() {
        counters::add(REJECTED, rejected.len() as i64, 0, i64::MAX, None)?;
    }
    Ok(CollectReport {
        accepted,
        duplicates: tried - accepted,
        rejected,
    })
}

/// GraphQL `CdpTracker`.
#[derive(Serialize)]
pub(crate) struct Stats {
    rejected: i64,
    events: Vec<String>,
}

/// `cdpTracker`: the events browsers sent that were refused, all time, and
/// the types they may send.
pub(crate) fn stats(_ctx: &Context, _i: Value) -> Result<Stats> {
    Ok(Stats {
        rejected: counters::get(REJECTED)?,
        events: allowed(),
    })
}
