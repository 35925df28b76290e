//! Server-side ingest: `cdpTrack` (events) and `cdpIdentify` (persons with
//! attributes and tags), batches of at most 1,000 items, each in one
//! transaction.
//!
//! Each item is checked, its person resolved through One ID (created when
//! new), and a bad item is reported by index (`BEST_EFFORT`) or refuses
//! the batch (`ALL_OR_NOTHING`). The report is kept under the batch id: a
//! retry of the same batch gets it back and writes nothing; the same id
//! with other items is a conflict.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, persons};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Identifier, check_batch, check_tag, instant, is_token, now};
use crate::track::{Incoming, take_in};

/// The largest `properties` of one event, in bytes of JSON.
pub(crate) const MAX_PROPERTIES: usize = 4096;
/// The largest attribute patch of one row, in bytes of JSON.
pub(crate) const MAX_ATTRIBUTES: usize = 16 * 1024;
/// The most identifiers of one item (the kernel's limit per call).
const MAX_IDENTIFIERS: usize = 20;
/// The most tags one row sets.
const MAX_ROW_TAGS: usize = 20;

/// Event types the CDP takes from their producers itself (`sources`), or
/// that only the kernel emits: a batch cannot forge them.
pub(crate) fn reserved(event_type: &str) -> bool {
    matches!(event_type, "code.scanned" | "rewards.awarded")
        || ["person.", "tenant.", "keel.", "kernel.", "cdp."]
            .iter()
            .any(|p| event_type.starts_with(p))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Mode {
    #[default]
    BestEffort,
    AllOrNothing,
}

/// GraphQL `CdpRejected`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Rejected {
    pub index: usize,
    pub message: String,
}

/// GraphQL `CdpBatchReport`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    batch_id: String,
    accepted: usize,
    duplicates: usize,
    rejected: Vec<Rejected>,
    person_ids: Vec<Option<String>>,
}

/// A batch as kept (`batches/{kind}:{batchId}`).
#[derive(Serialize, Deserialize)]
struct Kept {
    digest: String,
    report: Report,
}

/// The batch's fingerprint: SHA-256 of its items' JSON (keys sorted).
fn digest(items: &Value) -> String {
    use sha2::Digest;
    keel_sdk::random::hex(&sha2::Sha256::digest(items.to_string().as_bytes()))
}

/// The report of a batch already taken in under this id, if any.
fn replay(kind: &str, batch_id: &str, digest: &str) -> Result<Option<Report>> {
    match records::get::<Kept>("batches", &format!("{kind}:{batch_id}"))? {
        None => Ok(None),
        Some(k) if k.data.digest == digest => Ok(Some(k.data.report)),
        Some(_) => Err(Error::Conflict(format!(
            "batchId: {batch_id} was used for another batch"
        ))),
    }
}

fn keep(kind: &str, digest: String, report: &Report) -> Result<()> {
    let kept = Kept {
        digest,
        report: report.clone(),
    };
    records::put(
        "batches",
        &format!("{kind}:{}", report.batch_id),
        &kept,
        Expect::Absent,
    )?;
    Ok(())
}

/// Refuses the batch when `mode` asks for all or nothing and any item was
/// rejected.
fn all_or_nothing(mode: Mode, what: &str, rejected: &[Rejected]) -> Result<()> {
    if mode == Mode::AllOrNothing && !rejected.is_empty() {
        let list: Vec<String> = rejected
            .iter()
            .take(20)
            .map(|r| format!("{what}[{}]: {}", r.index, r.message))
            .collect();
        return Err(Error::invalid(format!(
            "{} of the batch's items are bad, so none was taken in: {}{}",
            rejected.len(),
            list.join("; "),
            if rejected.len() > 20 { "; …" } else { "" }
        )));
    }
    Ok(())
}

/// Who an item is about.
enum Who {
    Id(String),
    Ids(Vec<(String, String)>),
}

fn check_identifiers(ids: &[Identifier]) -> std::result::Result<Vec<(String, String)>, String> {
    if ids.is_empty() || ids.len() > MAX_IDENTIFIERS {
        return Err(format!("identifiers: 1-{MAX_IDENTIFIERS} identifiers"));
    }
    let mut out: Vec<(String, String)> = ids
        .iter()
        .map(|i| (i.kind.clone(), i.value.clone()))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// One person per item (its id, or why it could not be resolved): persons
/// by id are looked up (a merged id gives its survivor); identifier sets
/// are resolved together, and an item One ID refuses is dropped and
/// reported while the others go on.
fn resolve(who: &[Option<Who>]) -> Result<Vec<std::result::Result<String, String>>> {
    let mut out: Vec<std::result::Result<String, String>> = vec![Err(String::new()); who.len()];
    let mut sets: Vec<Vec<(String, String)>> = Vec::new();
    let mut set_of: Vec<Option<usize>> = vec![None; who.len()];
    for (i, w) in who.iter().enumerate() {
        match w {
            None => {}
            Some(Who::Id(id)) => {
                out[i] = match crate::model::person(id)? {
                    Some(p) => Ok(p.id),
                    None => Err(format!("personId: no person {id}")),
                };
            }
            Some(Who::Ids(ids)) => {
                let n = match sets.iter().position(|s| s == ids) {
                    Some(n) => n,
                    None => {
                        sets.push(ids.clone());
                        sets.len() - 1
                    }
                };
                set_of[i] = Some(n);
            }
        }
    }
    // Resolved in identifier order: concurrent batches creating the same
    // persons on PostgreSQL take their locks in one order.
    let mut by_ids: Vec<usize> = (0..sets.len()).collect();
    by_ids.sort_by(|a, b| sets[*a].cmp(&sets[*b]));
    let mut renumber = vec![0; sets.len()];
    for (new, old) in by_ids.iter().enumerate() {
        renumber[*old] = new;
    }
    let sets: Vec<Vec<(String, String)>> = by_ids.iter().map(|n| sets[*n].clone()).collect();
    for n in set_of.iter_mut().flatten() {
        *n = renumber[*n];
    }
    // An item One ID refuses fails its whole batch call (behind a
    // savepoint): it is reported, the items before it are resolved again,
    // and the rest go on. Each item is resolved at most twice.
    let mut resolved: Vec<Option<std::result::Result<String, String>>> = vec![None; sets.len()];
    let mut start = 0;
    while start < sets.len() {
        match persons::resolve_batch(&as_refs(&sets[start..])) {
            Ok(people) => {
                for (n, p) in people.into_iter().enumerate() {
                    resolved[start + n] = Some(Ok(p.id));
                }
                break;
            }
            Err(e) => {
                let (at, message) = item_error(&e).ok_or(e)?;
                if start + at >= sets.len() {
                    return Err(Error::Internal(format!("resolve-batch named item {at}")));
                }
                resolved[start + at] = Some(Err(message));
                if at > 0 {
                    let people = persons::resolve_batch(&as_refs(&sets[start..start + at]))?;
                    for (n, p) in people.into_iter().enumerate() {
                        resolved[start + n] = Some(Ok(p.id));
                    }
                }
                start += at + 1;
            }
        }
    }
    for (i, n) in set_of.iter().enumerate() {
        if let Some(n) = n {
            out[i] = resolved[*n]
                .clone()
                .unwrap_or_else(|| Err("unresolved".into()));
        }
    }
    Ok(out)
}

fn as_refs(from: &[Vec<(String, String)>]) -> Vec<Vec<(&str, &str)>> {
    from.iter()
        .map(|s| s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .collect()
}

/// The item a batch error names (`batch[3]: …`) and its message; `None`
/// for an error that is not an item's (denied, internal).
fn item_error(e: &Error) -> Option<(usize, String)> {
    let m = match e {
        Error::InvalidInput(m) | Error::Conflict(m) | Error::NotFound(m) => m,
        Error::Refused { message, .. } => message,
        Error::Denied(_) | Error::Internal(_) => return None,
    };
    let rest = m.strip_prefix("batch[")?;
    let (n, msg) = rest.split_once("]: ")?;
    Some((n.parse().ok()?, msg.to_owned()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventIn {
    message_id: String,
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    person_id: Option<String>,
    identifiers: Option<Vec<Identifier>>,
    occurred_at: String,
    properties: Option<Value>,
}

fn who(
    person_id: Option<String>,
    ids: Option<Vec<Identifier>>,
) -> std::result::Result<Who, String> {
    match (person_id, ids) {
        (Some(id), None) if is_token(&id, 100) => Ok(Who::Id(id)),
        (Some(_), None) => Err("personId: not a person id".into()),
        (None, Some(ids)) => check_identifiers(&ids).map(Who::Ids),
        _ => Err("give the person's personId or identifiers, not both".into()),
    }
}

/// An optional JSON object of an item (`{}` when left out or null), at
/// most `max` bytes of JSON; the error names `field` and says what it
/// must be.
pub(crate) fn object(
    field: &str,
    v: Option<Value>,
    max: usize,
    shape: &str,
) -> std::result::Result<Value, String> {
    let v = match v {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(o @ Value::Object(_)) => o,
        Some(_) => return Err(format!("{field}: {shape}")),
    };
    if v.to_string().len() > max {
        return Err(format!("{field}: at most {max} bytes of JSON"));
    }
    Ok(v)
}

/// Checks one event of a batch.
fn check_event(v: &Value, now_micros: i64) -> std::result::Result<(Who, Incoming), String> {
    let e: EventIn = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if !is_token(&e.message_id, 100) {
        return Err("messageId: 1-100 letters, digits and . _ : -".into());
    }
    let source = e.source.unwrap_or_else(|| "api".into());
    if source.is_empty()
        || source.len() > 40
        || !source
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
    {
        return Err("source: 1-40 lowercase letters, digits, _ and -".into());
    }
    if source == "keel" || source == "merge" {
        return Err(format!(
            "source: {source} is the CDP's own (events from Keel's plugins, merges)"
        ));
    }
    if !keel_cdp_core::traits::is_event_type(&e.event_type) {
        return Err(format!(
            "type: {:?} is not an event type such as order.paid",
            e.event_type
        ));
    }
    if reserved(&e.event_type) {
        return Err(format!(
            "type: {} is taken from its producer, not from a batch",
            e.event_type
        ));
    }
    let at = instant("occurredAt", &e.occurred_at, now_micros)?;
    let properties = object("properties", e.properties, MAX_PROPERTIES, "a JSON object")?;
    let w = who(e.person_id, e.identifiers)?;
    Ok((
        w,
        Incoming {
            source,
            message_id: e.message_id,
            event_type: e.event_type,
            at_micros: at,
            properties,
        },
    ))
}

/// A batch opened: its items checked one by one and their persons
/// resolved, or the report of the same batch taken in before.
enum Opened<T> {
    Replayed(Report),
    Fresh(Batch<T>),
}

/// The items of a batch: each good one with its person, each bad one in
/// `rejected` (with `None` in its place).
struct Batch<T> {
    digest: String,
    items: Vec<Option<(String, T)>>,
    rejected: Vec<Rejected>,
}

/// Checks a batch's id and size, returns its report if it was taken in
/// before, else checks each item with `check` and resolves the persons of
/// the good ones. With `ALL_OR_NOTHING`, one bad item refuses the batch.
fn open<T>(
    kind: &str,
    what: &str,
    batch_id: &str,
    list: &Value,
    mode: Mode,
    check: impl Fn(&Value) -> std::result::Result<(Who, T), String>,
) -> Result<Opened<T>> {
    let items = list
        .as_array()
        .ok_or_else(|| Error::invalid(format!("{what}: a list")))?;
    check_batch(batch_id, items.len())?;
    let digest = digest(list);
    if let Some(report) = replay(kind, batch_id, &digest)? {
        return Ok(Opened::Replayed(report));
    }
    let mut rejected = Vec::new();
    let mut who = Vec::with_capacity(items.len());
    let mut checked = Vec::with_capacity(items.len());
    for (index, v) in items.iter().enumerate() {
        match check(v) {
            Ok((w, item)) => {
                who.push(Some(w));
                checked.push(Some(item));
            }
            Err(message) => {
                rejected.push(Rejected { index, message });
                who.push(None);
                checked.push(None);
            }
        }
    }
    all_or_nothing(mode, what, &rejected)?;
    let mut out = Vec::with_capacity(items.len());
    for (index, (p, item)) in resolve(&who)?.into_iter().zip(checked).enumerate() {
        out.push(match (p, item) {
            (Ok(p), Some(item)) => Some((p, item)),
            (Err(message), Some(_)) => {
                rejected.push(Rejected { index, message });
                None
            }
            (_, None) => None,
        });
    }
    rejected.sort_by_key(|r| r.index);
    all_or_nothing(mode, what, &rejected)?;
    Ok(Opened::Fresh(Batch {
        digest,
        items: out,
        rejected,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrackInput {
    batch_id: String,
    events: Value,
    mode: Option<Mode>,
}

/// `cdpTrack`.
pub(crate) fn track(_ctx: &Context, i: TrackInput) -> Result<Report> {
    let now_micros = now().timestamp_micros();
    let mode = i.mode.unwrap_or_default();
    let b = match open("track", "events", &i.batch_id, &i.events, mode, |v| {
        check_event(v, now_micros)
    })? {
        Opened::Replayed(report) => return Ok(report),
        Opened::Fresh(b) => b,
    };
    let person_ids: Vec<Option<String>> = b
        .items
        .iter()
        .map(|i| i.as_ref().map(|(p, _)| p.clone()))
        .collect();
    let taken: Vec<(String, Incoming)> = b.items.into_iter().flatten().collect();
    let fresh = take_in(&taken)?;
    let accepted = fresh.iter().filter(|f| **f).count();
    let report = Report {
        batch_id: i.batch_id,
        accepted,
        duplicates: fresh.len() - accepted,
        rejected: b.rejected,
        person_ids,
    };
    keep("track", b.digest, &report)?;
    Ok(report)
}

#[derive(Deserialize)]
struct RowIn {
    identifiers: Vec<Identifier>,
    attributes: Option<Value>,
    tags: Option<Vec<String>>,
}

/// A checked row: its attribute patch and tags.
type Row = (Value, Vec<String>);

/// Checks one row of `cdpIdentify`: its identifiers, patch and tags.
fn check_row(v: &Value) -> std::result::Result<(Who, Row), String> {
    let r: RowIn = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let ids = check_identifiers(&r.identifiers)?;
    let patch = object(
        "attributes",
        r.attributes,
        MAX_ATTRIBUTES,
        "a JSON object (a merge patch)",
    )?;
    let tags = r.tags.unwrap_or_default();
    if tags.len() > MAX_ROW_TAGS {
        return Err(format!("tags: at most {MAX_ROW_TAGS}"));
    }
    for t in &tags {
        check_tag(t).map_err(|e| e.to_string())?;
    }
    Ok((Who::Ids(ids), (patch, tags)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentifyInput {
    batch_id: String,
    rows: Value,
    mode: Option<Mode>,
}

/// `cdpIdentify`.
pub(crate) fn identify(_ctx: &Context, i: IdentifyInput) -> Result<Report> {
    let mode = i.mode.unwrap_or_default();
    let b = match open("identify", "rows", &i.batch_id, &i.rows, mode, check_row)? {
        Opened::Replayed(report) => return Ok(report),
        Opened::Fresh(b) => b,
    };
    let (digest, mut rejected) = (b.digest, b.rejected);
    let rules = crate::segments::Rules::load()?;
    let mut person_ids = vec![None; b.items.len()];
    let mut accepted = 0;
    // Rows in person order: concurrent batches on PostgreSQL lock persons
    // and profiles in one order.
    let mut rows: Vec<(usize, (String, Row))> = b
        .items
        .into_iter()
        .enumerate()
        .filter_map(|(index, r)| r.map(|r| (index, r)))
        .collect();
    rows.sort_by(|a, b| a.1.0.cmp(&b.1.0));
    let tags: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|(_, (_, (_, t)))| t).collect();
    for t in tags {
        crate::tags::register(t)?;
    }
    for (index, (person, (patch, tags))) in rows {
        if patch.as_object().is_some_and(|m| !m.is_empty()) {
            match persons::set_attributes(&person, &patch) {
                Ok(_) => {}
                Err(Error::InvalidInput(message)) => {
                    rejected.push(Rejected { index, message });
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        for t in &tags {
            crate::tags::add(&rules, t, &person)?;
        }
        if tags.is_empty() {
            // The person has a profile from now on (segments that match
            // an empty profile include them), and segments that read
            // attributes see the patch.
            crate::segments::change(&rules, &person, "identify", |_| {})?;
        }
        person_ids[index] = Some(person);
        accepted += 1;
    }
    rules.flush()?;
    rejected.sort_by_key(|r| r.index);
    all_or_nothing(mode, "rows", &rejected)?;
    let report = Report {
        batch_id: i.batch_id,
        accepted,
        duplicates: 0,
        rejected,
        person_ids,
    };
    keep("identify", digest, &report)?;
    Ok(report)
}
