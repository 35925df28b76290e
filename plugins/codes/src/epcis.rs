//! Traceability events shaped after EPCIS 2.0, kept per lot, and the
//! lot's EPCIS 2.0 JSON-LD document.
//!
//! Codes appear by their public id (`urn:keel:code:B12:1000`), never by the
//! secret printed code, so a document can be shared with partners.

use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::batches::FileChunk;
use crate::model::{Batch, Code, now, rfc3339, time_key};

/// A stored event of a lot.
#[derive(Serialize, Deserialize)]
struct Stored {
    lot_key: String,
    event: Value,
}

/// The public URI of a code.
pub(crate) fn epc(code: &Code) -> String {
    format!("urn:keel:code:B{}:{}", code.batch.no, code.serial)
}

fn class(batch: &Batch) -> String {
    format!(
        "urn:keel:class:{}:{}",
        batch.product,
        keel_codes_core::percent_encode(&batch.lot)
    )
}

/// Keeps `event` (with its time and id added) in the history of `lot_key`.
pub(crate) fn record(
    lot_key: &str,
    at: chrono::DateTime<chrono::Utc>,
    mut event: Value,
) -> Result<String> {
    let key = time_key(at)?;
    if let Value::Object(m) = &mut event {
        m.insert("eventID".into(), json!(format!("urn:keel:event:{key}")));
        m.insert("eventTime".into(), json!(rfc3339(at)));
        m.insert("eventTimeZoneOffset".into(), json!("+00:00"));
    }
    let stored = Stored {
        lot_key: lot_key.to_owned(),
        event,
    };
    records::put("history", &key, &stored, Expect::Absent)?;
    Ok(format!("urn:keel:event:{key}"))
}

/// Commissioning or decommissioning of a serial range.
#[allow(clippy::too_many_arguments, reason = "one EPCIS ObjectEvent's fields")]
pub(crate) fn record_range(
    batch: &Batch,
    at: chrono::DateTime<chrono::Utc>,
    action: &str,
    biz_step: &str,
    disposition: &str,
    from: u32,
    to: u32,
    reason: Option<&str>,
) -> Result<String> {
    let mut e = json!({
        "type": "ObjectEvent",
        "action": action,
        "bizStep": biz_step,
        "disposition": disposition,
        "epcList": [],
        "quantityList": [{"epcClass": class(batch), "quantity": (to - from) as u64 + 1}],
        "keel:serialRange": {"batch": batch.id(), "from": from, "to": to},
    });
    if let Some(r) = reason {
        e["keel:reason"] = json!(r);
    }
    record(&batch.lot_key, at, e)
}

#[derive(Deserialize)]
pub(crate) struct ChunkInput {
    sku: String,
    lot: String,
    after: Option<String>,
}

const PAGE: u32 = 500;

/// The lot's EPCIS document, oldest event first, in chunks.
pub(crate) fn chunk(_ctx: &Context, input: ChunkInput) -> Result<FileChunk> {
    let lot_key = format!("{}|{}", input.sku, input.lot);
    let mut data = String::new();
    let (after, mut first) = match input.after.as_deref() {
        None => {
            let exists = records::query::<Value>("batches", "lot_key", &json!(lot_key), None, 1)?;
            if exists.records.is_empty() {
                return Err(Error::NotFound(format!(
                    "no batch of lot {:?} of product {:?}",
                    input.lot, input.sku
                )));
            }
            data.push_str(&format!(
                "{{\"@context\":[\"https://ref.gs1.org/standards/epcis/epcis-context.jsonld\",{{\"keel\":\"urn:keel:epcis:\"}}],\
                 \"type\":\"EPCISDocument\",\"schemaVersion\":\"2.0\",\"creationDate\":{},\
                 \"epcisBody\":{{\"eventList\":[",
                json!(rfc3339(now()))
            ));
            (None, true)
        }
        Some(a) => match a.strip_prefix("k:") {
            Some(k) => (Some(k.to_owned()), false),
            None => {
                return Err(Error::invalid(format!(
                    "after: {a:?} is not a cursor of this file"
                )));
            }
        },
    };
    let page = records::query::<Stored>(
        "history",
        "lot_key",
        &json!(lot_key),
        after.as_deref(),
        PAGE,
    )?;
    let last = page.records.last().map(|r| r.key.clone());
    for r in &page.records {
        if !first {
            data.push(',');
        }
        first = false;
        data.push_str(&r.data.event.to_string());
    }
    let next = match (page.next, last) {
        (Some(_), Some(k)) => Some(format!("k:{k}")),
        _ => {
            data.push_str("]}}");
            None
        }
    };
    FileChunk::text(&data, next, None)
}
