//! Traceability of one code: product, lot, batch, state, packing,
//! shipment and scans.

use keel_sdk::records::{self};
use keel_sdk::{Context, Result, counters};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::batches::{BatchOut, out};
use crate::model::{Level, Link, parents, require_code};
use crate::reports::{ScanOut, scan_out};
use crate::scan::{FirstScan, Stored};
use crate::shipments::{self, ShipmentOut, ShipmentRange};

#[derive(Deserialize)]
pub(crate) struct TraceInput {
    code: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ParentOut {
    code_id: String,
    level: Level,
}

/// GraphQL `CodeTrace`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Trace {
    code_id: String,
    batch: BatchOut,
    serial: u32,
    level: Level,
    state: &'static str,
    parents: Vec<ParentOut>,
    children: Vec<String>,
    child_ranges: Vec<ShipmentRange>,
    shipment: Option<ShipmentOut>,
    shipped_via: Option<String>,
    scan_count: i64,
    first_scan: Option<FirstScan>,
    scans: Vec<ScanOut>,
}

/// Scans shown in a trace, oldest first.
const TRACE_SCANS: u32 = 100;

pub(crate) fn trace(_ctx: &Context, input: TraceInput) -> Result<Trace> {
    let code = require_code("code", &input.code)?;
    let parents = parents(&code)?;
    let links = records::query::<Link>("links", "parent", &json!(code.key()), None, 1000)?;
    let (mut children, mut child_ranges) = (Vec::new(), Vec::new());
    for l in links.records {
        if l.key.starts_with("u:") {
            children.push(format!("B{}/{}", l.data.batch, l.data.from));
        } else {
            child_ranges.push(ShipmentRange {
                batch: format!("B{}", l.data.batch),
                from: l.data.from,
                to: l.data.to,
            });
        }
    }
    let shipped = shipments::of_code(&code)?;
    let scans = records::query::<Stored>("scans", "code", &json!(code.key()), None, TRACE_SCANS)?;
    Ok(Trace {
        code_id: code.id(),
        batch: out(&code.batch)?,
        serial: code.serial,
        level: code.batch.level,
        state: code.state().as_str(),
        parents: parents
            .iter()
            .map(|p| ParentOut {
                code_id: p.id(),
                level: p.batch.level,
            })
            .collect(),
        children,
        child_ranges,
        shipped_via: shipped.as_ref().map(|(_, via)| via.clone()),
        shipment: shipped.map(|(s, _)| s.into()),
        scan_count: counters::get(&format!("scans:{}", code.key()))?,
        first_scan: records::get::<FirstScan>("scanned", &code.key())?.map(|r| r.data),
        scans: scans
            .records
            .into_iter()
            .map(|r| scan_out(r.data))
            .collect(),
    })
}
