//! What the brand (and its ERP) reads: scans per day, suspected
//! diversions, and figures per day, batch and region.
//!
//! Figures are counters (exact under any concurrency); a `groups` record
//! names each (day, batch, region) that has any, written once by the scan
//! that created it.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{Batch, page_limit, parse_day};
use crate::regions::WithinCache;
use crate::scan::{Diversion, Stored, Verdict};

#[derive(Serialize, Deserialize)]
struct Group {
    day: String,
    batch: String,
    sku: String,
    lot: String,
    region: String,
}

/// Region name in report keys for scans without a known region.
const NO_REGION: &str = "-";

/// Counts one scan in its (day, batch, region) group.
pub(crate) fn count(
    day: &str,
    b: &Batch,
    region: Option<&str>,
    first: bool,
    diverted: bool,
) -> Result<()> {
    let region = region.unwrap_or(NO_REGION);
    let key = format!("{day}|{:07}|{region}", b.no);
    let add = |what: &str| -> Result<i64> {
        match counters::add(&format!("g:{key}:{what}"), 1, 0, i64::MAX, None)? {
            Outcome::Applied(n) | Outcome::LimitReached(n) => Ok(n),
        }
    };
    if add("scans")? == 1 {
        let g = Group {
            day: day.to_owned(),
            batch: b.id(),
            sku: b.product.clone(),
            lot: b.lot.clone(),
            region: region.to_owned(),
        };
        records::put("groups", &key, &g, Expect::Absent)?;
    }
    if first {
        add("first")?;
    }
    if diverted {
        add("div")?;
    }
    Ok(())
}

/// GraphQL `ScanRecord`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScanOut {
    id: String,
    code_id: String,
    at: String,
    verdict: Verdict,
    sku: String,
    lot: String,
    batch: String,
    serial: u32,
    region: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    person_id: Option<String>,
    scan_count: Option<i64>,
    diversion: Option<Diversion>,
}

pub(crate) fn scan_out(s: Stored) -> ScanOut {
    ScanOut {
        id: s.id,
        code_id: s.code_id,
        at: s.at,
        verdict: s.verdict,
        sku: s.sku,
        lot: s.lot,
        batch: s.batch,
        serial: s.serial,
        region: s.region,
        lat: s.lat,
        lon: s.lon,
        person_id: s.person_id,
        scan_count: s.scan_count,
        diversion: s.diversion,
    }
}

/// GraphQL `ScanPage`.
#[derive(Serialize)]
pub(crate) struct ScanPage {
    scans: Vec<ScanOut>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct DayInput {
    day: String,
    after: Option<String>,
    limit: Option<i64>,
}

fn by_day(field: &str, input: DayInput) -> Result<ScanPage> {
    parse_day("day", &input.day)?;
    let limit = page_limit(input.limit, 100, 1000)?;
    let page = records::query::<Stored>(
        "scans",
        field,
        &json!(input.day),
        input.after.as_deref(),
        limit,
    )?;
    Ok(ScanPage {
        scans: page.records.into_iter().map(|r| scan_out(r.data)).collect(),
        next: page.next,
    })
}

pub(crate) fn scans(_ctx: &Context, input: DayInput) -> Result<ScanPage> {
    by_day("day", input)
}

pub(crate) fn diversions(_ctx: &Context, input: DayInput) -> Result<ScanPage> {
    by_day("diversion_day", input)
}

#[derive(Deserialize)]
pub(crate) struct ReportInput {
    from: String,
    to: String,
    sku: Option<String>,
    lot: Option<String>,
    region: Option<String>,
}

/// GraphQL `ScanReportRow`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Row {
    day: String,
    batch: String,
    sku: String,
    lot: String,
    region: String,
    scans: i64,
    first_scans: i64,
    diversions: i64,
}

const MAX_ROWS: usize = 5_000;

pub(crate) fn report(_ctx: &Context, input: ReportInput) -> Result<Vec<Row>> {
    let (from, to) = (parse_day("from", &input.from)?, parse_day("to", &input.to)?);
    if to < from || (to - from).num_days() > 91 {
        return Err(Error::invalid("from..to: at most 92 days, from first"));
    }
    // Groups name regions by code; "within" is the org tree's.
    let mut region = input.region.as_deref().map(WithinCache::new).transpose()?;
    let mut rows = Vec::new();
    let mut after = Some(input.from.clone());
    while let Some(a) = after.take() {
        let page = records::scan::<Group>("groups", Some(&a), 500)?;
        for g in page.records {
            if g.data.day > input.to {
                return Ok(rows);
            }
            let keep = input.sku.as_ref().is_none_or(|s| *s == g.data.sku)
                && input.lot.as_ref().is_none_or(|l| *l == g.data.lot)
                && match &mut region {
                    None => true,
                    Some(r) => r.contains(&g.data.region)?,
                };
            if keep {
                let n = |what: &str| counters::get(&format!("g:{}:{what}", g.key));
                rows.push(Row {
                    scans: n("scans")?,
                    first_scans: n("first")?,
                    diversions: n("div")?,
                    day: g.data.day,
                    batch: g.data.batch,
                    sku: g.data.sku,
                    lot: g.data.lot,
                    region: g.data.region,
                });
                if rows.len() >= MAX_ROWS {
                    return Err(Error::invalid(format!(
                        "the report has more than {MAX_ROWS} rows: narrow it by days, sku, lot or region"
                    )));
                }
            }
        }
        after = page.next;
    }
    Ok(rows)
}
