//! Packing: units into cases, cases into pallets (EPCIS AggregationEvent).
//! A child has at most one parent; shipping a parent ships its children.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, events};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::epcis;
use crate::model::{
    Code, CodeState, Link, any_link_in, batch_by_id, find_link, now, range_link_key, require_code,
    rfc3339, single_link_key,
};

/// Most child codes (listed one by one) and ranges per call.
const MAX_CHILDREN: usize = 10_000;
const MAX_RANGES: usize = 1_000;

#[derive(Deserialize)]
pub(crate) struct RangeIn {
    pub batch: String,
    pub from: i64,
    pub to: i64,
}

#[derive(Deserialize)]
pub(crate) struct AggregateInput {
    parent: String,
    children: Option<Vec<String>>,
    ranges: Option<Vec<RangeIn>>,
}

/// GraphQL `PackingResult`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PackingResult {
    parent: String,
    children: u64,
    event_id: String,
}

fn usable_parent(text: &str) -> Result<Code> {
    let parent = require_code("parent", text)?;
    if parent.state() == CodeState::Voided {
        return Err(Error::refused(
            "CODE_VOIDED",
            format!("the parent {} is voided", parent.id()),
        ));
    }
    Ok(parent)
}

pub(crate) fn aggregate(_ctx: &Context, input: AggregateInput) -> Result<PackingResult> {
    // "Not packed yet" is checked by reading: one packing at a time.
    crate::model::one_at_a_time("packing")?;
    let parent = usable_parent(&input.parent)?;
    let children = input.children.unwrap_or_default();
    let ranges = input.ranges.unwrap_or_default();
    if children.is_empty() && ranges.is_empty() {
        return Err(Error::invalid(
            "children or ranges: name at least one child",
        ));
    }
    if children.len() > MAX_CHILDREN || ranges.len() > MAX_RANGES {
        return Err(Error::invalid(format!(
            "at most {MAX_CHILDREN} children and {MAX_RANGES} ranges per call"
        )));
    }
    let check_child = |c: &Code| -> Result<()> {
        if c.batch.level >= parent.batch.level {
            return Err(Error::invalid(format!(
                "{} is a {:?} code and cannot go into {}, a {:?} code",
                c.id(),
                c.batch.level,
                parent.id(),
                parent.batch.level
            )));
        }
        if c.state() == CodeState::Voided {
            return Err(Error::refused(
                "CODE_VOIDED",
                format!("the child {} is voided", c.id()),
            ));
        }
        Ok(())
    };
    let at = now();
    let link = |batch: u32, from: u32, to: u32| Link {
        parent: Some(parent.key()),
        shipment: None,
        batch,
        from,
        to,
        at: rfc3339(at),
    };
    let mut count = 0u64;
    let mut epcs = Vec::new();
    for (i, text) in children.iter().enumerate() {
        let c = require_code(&format!("children[{i}]"), text)?;
        check_child(&c)?;
        if let Some(l) = find_link("links", c.batch.no, c.serial)? {
            return Err(already(&c.id(), &l.data));
        }
        let key = single_link_key(c.batch.no, c.serial);
        if let Err(Error::Conflict(_)) = records::put(
            "links",
            &key,
            &link(c.batch.no, c.serial, c.serial),
            Expect::Absent,
        ) {
            return Err(Error::invalid(format!(
                "children[{i}]: {} is listed twice",
                c.id()
            )));
        }
        epcs.push(epcis::epc(&c));
        count += 1;
    }
    let mut spans = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        let b = batch_by_id(&r.batch)?.data;
        let (from, to) = b.check_range(r.from, r.to)?;
        let sample = Code {
            batch: b.clone(),
            serial: from,
        };
        check_child(&sample)?;
        if let Some(v) = b.voided.iter().find(|v| v.overlaps(from, to)) {
            return Err(Error::refused(
                "CODE_VOIDED",
                format!(
                    "ranges[{i}]: serials {}..{} of {} are voided",
                    v.from.max(from),
                    v.to.min(to),
                    r.batch
                ),
            ));
        }
        if let Some(l) = any_link_in("links", b.no, from, to)? {
            return Err(Error::refused(
                "ALREADY_AGGREGATED",
                format!(
                    "ranges[{i}]: serials {}..{} of {} already have a parent; nothing was packed",
                    l.data.from.max(from),
                    l.data.to.min(to),
                    r.batch
                ),
            ));
        }
        records::put(
            "links",
            &range_link_key(b.no, to),
            &link(b.no, from, to),
            Expect::Absent,
        )?;
        spans.push(json!({"batch": b.id(), "from": from, "to": to}));
        count += (to - from) as u64 + 1;
    }
    let event = json!({
        "type": "AggregationEvent", "action": "ADD", "bizStep": "packing",
        "disposition": "in_progress", "parentID": epcis::epc(&parent),
        "childEPCs": epcs, "keel:childRanges": spans,
    });
    let event_id = epcis::record(&parent.batch.lot_key, at, event.clone())?;
    events::emit("codes.aggregated", None, &event, None)?;
    Ok(PackingResult {
        parent: parent.id(),
        children: count,
        event_id,
    })
}

fn already(child: &str, link: &Link) -> Error {
    let parent = link
        .parent
        .as_deref()
        .and_then(crate::model::parse_unit_key)
        .map(|(b, s)| format!("B{b}/{s}"))
        .unwrap_or_default();
    Error::refused(
        "ALREADY_AGGREGATED",
        format!("{child} is already packed in {parent}; nothing was packed"),
    )
}

#[derive(Deserialize)]
pub(crate) struct DisaggregateInput {
    parent: String,
    children: Option<Vec<String>>,
}

/// Unpacks the named children, or every child of the parent.
pub(crate) fn disaggregate(_ctx: &Context, input: DisaggregateInput) -> Result<PackingResult> {
    crate::model::one_at_a_time("packing")?;
    let parent = require_code("parent", &input.parent)?;
    let at = now();
    let mut count = 0u64;
    let mut epcs = Vec::new();
    let mut spans = Vec::new();
    match input.children {
        Some(children) => {
            for (i, text) in children.iter().enumerate() {
                let c = require_code(&format!("children[{i}]"), text)?;
                let key = single_link_key(c.batch.no, c.serial);
                match records::get::<Link>("links", &key)? {
                    Some(l) if l.data.parent.as_deref() == Some(&parent.key()) => {
                        records::delete("links", &key, Some(l.version))?;
                        epcs.push(epcis::epc(&c));
                        count += 1;
                    }
                    _ => {
                        return Err(Error::refused(
                            "NOT_AGGREGATED",
                            format!(
                                "{} is not packed (one by one) in {}; nothing was unpacked",
                                c.id(),
                                parent.id()
                            ),
                        ));
                    }
                }
            }
        }
        None => loop {
            let page = records::query::<Link>("links", "parent", &json!(parent.key()), None, 1000)?;
            for l in &page.records {
                records::delete("links", &l.key, Some(l.version))?;
                count += l.data.to as u64 - l.data.from as u64 + 1;
                if l.key.starts_with("u:") {
                    epcs.push(format!("urn:keel:code:B{}:{}", l.data.batch, l.data.from));
                } else {
                    spans.push(json!({"batch": format!("B{}", l.data.batch), "from": l.data.from, "to": l.data.to}));
                }
            }
            if page.next.is_none() {
                break;
            }
        },
    }
    if count == 0 {
        return Err(Error::refused(
            "NOT_AGGREGATED",
            format!("{} holds nothing", parent.id()),
        ));
    }
    let event = json!({
        "type": "AggregationEvent", "action": "DELETE", "bizStep": "unpacking",
        "parentID": epcis::epc(&parent), "childEPCs": epcs, "keel:childRanges": spans,
    });
    let event_id = epcis::record(&parent.batch.lot_key, at, event.clone())?;
    events::emit("codes.disaggregated", None, &event, None)?;
    Ok(PackingResult {
        parent: parent.id(),
        children: count,
        event_id,
    })
}
