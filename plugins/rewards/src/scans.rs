//! Scans as the codes plugin reports them: each `code.scanned` event is
//! kept (by scan id) for the claim that may follow.
//!
//! Only the `codes` plugin's own events count, and the first copy of a
//! scan stands: another event naming the same scan id cannot rewrite the
//! facts a claim is (or was) judged on.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Error, Event, Result, log};
use serde::{Deserialize, Serialize};

/// The facts of one scan a claim is judged on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Scan {
    pub scan_id: String,
    pub code_id: String,
    pub batch: String,
    pub serial: u32,
    pub sku: String,
    pub lot: String,
    pub verdict: String,
    pub first_scan: bool,
    pub region: Option<String>,
    pub location: Option<(f64, f64)>,
    pub person: Option<String>,
    /// The person's scans so far, this one included.
    pub person_scan_n: Option<u64>,
    pub at: String,
    pub at_micros: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    scan_id: String,
    code_id: String,
    batch: String,
    serial: u32,
    sku: String,
    lot: String,
    verdict: String,
    first_scan: bool,
    region: Option<String>,
    location: Option<Location>,
    at: String,
}

#[derive(Deserialize)]
struct Location {
    lat: f64,
    lon: f64,
}

/// The person's running scan count (idempotent by scan, so a redelivered
/// event counts once).
pub(crate) fn count_person_scan(person: &str, scan_id: &str) -> Result<u64> {
    match counters::add(
        &format!("pscans:{person}"),
        1,
        0,
        i64::MAX,
        Some(&format!("scan:{scan_id}")),
    )? {
        Outcome::Applied(n) | Outcome::LimitReached(n) => Ok(n.max(1) as u64),
    }
}

/// The plugin whose `code.scanned` events are scans.
const PRODUCER: &str = "codes";

pub(crate) fn on_scanned(e: Event) -> Result<()> {
    if e.producer != PRODUCER {
        log::warn(&format!(
            "code.scanned {} from {} ignored: only the codes plugin reports scans",
            e.id, e.producer
        ));
        return Ok(());
    }
    let p: Payload = serde_json::from_value(e.payload)
        .map_err(|err| Error::invalid(format!("code.scanned payload: {err}")))?;
    let at_micros = chrono::DateTime::parse_from_rfc3339(&p.at)
        .map(|t| t.timestamp_micros())
        .unwrap_or_default();
    let person_scan_n = match &e.person_id {
        Some(person) => Some(count_person_scan(person, &p.scan_id)?),
        None => None,
    };
    let scan = Scan {
        scan_id: p.scan_id.clone(),
        code_id: p.code_id,
        batch: p.batch,
        serial: p.serial,
        sku: p.sku,
        lot: p.lot,
        verdict: p.verdict,
        first_scan: p.first_scan,
        region: p.region,
        location: p.location.map(|l| (l.lat, l.lon)),
        person: e.person_id,
        person_scan_n,
        at: p.at,
        at_micros,
    };
    match records::put("scans", &p.scan_id, &scan, Expect::Absent) {
        Ok(_) => Ok(()),
        Err(Error::Conflict(_)) => {
            log::warn(&format!(
                "code.scanned {}: scan {} is already recorded; the first copy stands",
                e.id, p.scan_id
            ));
            Ok(())
        }
        Err(err) => Err(err),
    }
}
