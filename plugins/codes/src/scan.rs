//! The public scan: is this code genuine, has it been scanned before, and
//! was it sold where it was shipped to?

use keel_sdk::counters::{self, Outcome};
use keel_sdk::org::Node;
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, events, persons};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{Code, CodeState, Invalid, config, now, resolve, rfc3339, time_key};
use crate::regions;
use crate::shipments;

#[derive(Deserialize)]
pub(crate) struct Location {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
pub(crate) struct Identifier {
    kind: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScanInput {
    code: String,
    location: Option<Location>,
    region: Option<String>,
    identifiers: Option<Vec<Identifier>>,
    idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Verdict {
    Genuine,
    GenuineScannedBefore,
    NotActivated,
    Voided,
    NotACode,
    Mistyped,
    Malformed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FirstScan {
    pub at: String,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ScanProduct {
    sku: String,
    name: String,
    gtin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Diversion {
    scan_region: String,
    allowed_region: String,
    shipment: String,
    reference: String,
    distributor: String,
    distributor_name: Option<String>,
}

/// GraphQL `ScanResult`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScanResult {
    verdict: Verdict,
    message: String,
    scan_id: Option<String>,
    scan_count: Option<i64>,
    first_scan: Option<FirstScan>,
    product: Option<ScanProduct>,
    lot: Option<String>,
    production_date: Option<String>,
    expiry_date: Option<String>,
    region: Option<String>,
    diversion: Option<Diversion>,
    code_id: Option<String>,
}

/// A recorded scan (collection `scans`; GraphQL `ScanRecord`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub id: String,
    /// The code key (indexed).
    pub code: String,
    pub code_id: String,
    pub at: String,
    pub day: String,
    pub verdict: Verdict,
    pub sku: String,
    pub lot: String,
    pub batch: String,
    pub serial: u32,
    pub region: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub person_id: Option<String>,
    pub scan_count: Option<i64>,
    pub diversion: Option<Diversion>,
    /// Set to `day` when the scan is a suspected diversion (indexed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversion_day: Option<String>,
    /// The client's idempotency key (indexed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idem: Option<String>,
    /// What the scanner was told, returned again on a retry.
    pub result: ScanResult,
}

fn invalid(why: Invalid) -> ScanResult {
    let (verdict, message) = match why {
        Invalid::Malformed => (
            Verdict::Malformed,
            "This is not a code we print. Check that you scanned the code on the pack.",
        ),
        Invalid::Mistyped => (
            Verdict::Mistyped,
            "One of the characters seems mistyped. Please check the code and try again.",
        ),
        Invalid::NotACode => (
            Verdict::NotACode,
            "This is not a code of this brand. The product may not be genuine.",
        ),
    };
    ScanResult {
        verdict,
        message: message.into(),
        scan_id: None,
        scan_count: None,
        first_scan: None,
        product: None,
        lot: None,
        production_date: None,
        expiry_date: None,
        region: None,
        diversion: None,
        code_id: None,
    }
}

/// Invalid scans one client address may make per hour, counted in the
/// counter `guess:{address}:{hour}`.
fn guess_key(ctx: &Context, t: chrono::DateTime<chrono::Utc>) -> String {
    let addr = ctx.client_address.as_deref().unwrap_or("unknown");
    format!("guess:{addr}:{}", t.format("%Y%m%d%H"))
}

fn rate_limited() -> Error {
    Error::refused(
        "RATE_LIMITED",
        "too many invalid codes from this address; try again in an hour",
    )
}

pub(crate) fn scan(ctx: &Context, input: ScanInput) -> Result<ScanResult> {
    let at = now();
    let limit = config()?.invalid_scans_per_hour;
    let guess = guess_key(ctx, at);
    if counters::get(&guess)? >= limit {
        return Err(rate_limited());
    }
    if let Some(k) = &input.idempotency_key {
        if k.is_empty() || k.len() > 100 {
            return Err(Error::invalid("idempotencyKey: 1-100 characters"));
        }
        let page = records::query::<Stored>("scans", "idem", &json!(k), None, 1)?;
        if let Some(s) = page.records.into_iter().next() {
            return Ok(s.data.result);
        }
    }
    let location = match &input.location {
        Some(l) => {
            keel_codes_core::geo::check_point(l.lat, l.lon)
                .map_err(|e| Error::invalid(format!("location: {e}")))?;
            Some((l.lat, l.lon))
        }
        None => None,
    };
    // The scan's region: the one named, or the innermost of the org tree's
    // regions whose boundary holds the location.
    let region = match (&input.region, location) {
        (Some(r), _) => Some(regions::require("region", r)?),
        (None, Some((lat, lon))) => regions::locate(lat, lon)?,
        (None, None) => None,
    };
    let identifiers: Vec<(&str, &str)> = input
        .identifiers
        .iter()
        .flatten()
        .map(|i| (i.kind.as_str(), i.value.as_str()))
        .collect();
    let code = match resolve(&input.code)? {
        Ok(c) => c,
        Err(why) => {
            if let Outcome::LimitReached(_) = counters::add(&guess, 1, 0, limit, None)? {
                return Err(rate_limited());
            }
            return Ok(invalid(why));
        }
    };
    // The signed-in consumer of a public scan; names only from a trusted
    // caller (a key or an operator: a store's till, an ERP).
    let person = persons::acting_for(ctx, &identifiers)?.map(|p| p.id);
    record(&code, at, region, location, person, input.idempotency_key)
}

fn record(
    code: &Code,
    at: chrono::DateTime<chrono::Utc>,
    region_node: Option<Node>,
    location: Option<(f64, f64)>,
    person: Option<String>,
    idem: Option<String>,
) -> Result<ScanResult> {
    let b = &code.batch;
    let product = crate::products::load(&b.product)?;
    let region = region_node.as_ref().map(|n| n.code.clone());
    let state = code.state();
    // What only needs reading comes before the scan's first write (the
    // count), which takes the write transaction: the diversion check and a
    // repeat scan's first-scan record. Shipped to CN-GD and scanned in
    // CN-GD-SZ (under it in the org tree) is no diversion; in CN-SH it is.
    let diversion = match (&region_node, state) {
        (Some(r), CodeState::Active) => match shipments::of_code(code)? {
            Some((s, _)) if !regions::within(r, &s.region, s.region_id.as_deref())? => {
                Some(Diversion {
                    scan_region: r.code.clone(),
                    allowed_region: s.region.clone(),
                    shipment: s.id.clone(),
                    reference: s.reference.clone(),
                    distributor: s.distributor.clone(),
                    distributor_name: s.distributor_name.clone(),
                })
            }
            _ => None,
        },
        _ => None,
    };
    let seen = match state {
        CodeState::Active => records::get::<FirstScan>("scanned", &code.key())?.map(|r| r.data),
        _ => None,
    };
    let (verdict, count, first) = match state {
        CodeState::Voided => (Verdict::Voided, None, None),
        CodeState::Inactive => (Verdict::NotActivated, None, None),
        CodeState::Active => {
            let n = match counters::add(&format!("scans:{}", code.key()), 1, 0, i64::MAX, None)? {
                Outcome::Applied(n) | Outcome::LimitReached(n) => n,
            };
            let first = if n == 1 {
                let f = FirstScan {
                    at: rfc3339(at),
                    region: region.clone(),
                };
                records::put("scanned", &code.key(), &f, Expect::Absent)?;
                None
            } else {
                // Read before the count unless the first scan committed
                // in between.
                match seen {
                    Some(f) => Some(f),
                    None => records::get::<FirstScan>("scanned", &code.key())?.map(|r| r.data),
                }
            };
            let v = if n == 1 {
                Verdict::Genuine
            } else {
                Verdict::GenuineScannedBefore
            };
            (v, Some(n), first)
        }
    };
    let message = match verdict {
        Verdict::Genuine => format!("Genuine {}. This is the first time this code is scanned.", product.name),
        Verdict::GenuineScannedBefore => {
            let before = count.unwrap_or(1) - 1;
            let since = first
                .as_ref()
                .map(|f| format!(", first on {}{}", &f.at[..10], f.region.as_ref().map(|r| format!(" in {r}")).unwrap_or_default()))
                .unwrap_or_default();
            format!(
                "Genuine {}, but this code has been scanned {before} time{} before{since}. If you just bought it, ask the seller.",
                product.name,
                if before == 1 { "" } else { "s" }
            )
        }
        Verdict::NotActivated => "This code has not been activated: the product has not left the factory through the normal channel. Please contact the brand.".into(),
        Verdict::Voided => "This code was withdrawn by the brand (recall or damaged labels). Do not use this product; please contact the brand.".into(),
        _ => unreachable!("invalid codes return earlier"),
    };
    let id = time_key(at)?;
    let day = at.format("%Y-%m-%d").to_string();
    let result = ScanResult {
        verdict,
        message,
        scan_id: Some(id.clone()),
        scan_count: count,
        first_scan: first.clone(),
        product: Some(ScanProduct {
            sku: product.sku.clone(),
            name: product.name.clone(),
            gtin: product.gtin.clone(),
        }),
        lot: Some(b.lot.clone()),
        production_date: b.production_date.clone(),
        expiry_date: b.expiry_date.clone(),
        region: region.clone(),
        diversion: diversion.clone(),
        code_id: Some(code.id()),
    };
    let stored = Stored {
        id: id.clone(),
        code: code.key(),
        code_id: code.id(),
        at: rfc3339(at),
        day: day.clone(),
        verdict,
        sku: b.product.clone(),
        lot: b.lot.clone(),
        batch: b.id(),
        serial: code.serial,
        region: region.clone(),
        lat: location.map(|l| l.0),
        lon: location.map(|l| l.1),
        person_id: person.clone(),
        scan_count: count,
        diversion: diversion.clone(),
        diversion_day: diversion.as_ref().map(|_| day.clone()),
        idem: idem.clone(),
        result: result.clone(),
    };
    if let Some(k) = &idem
        && let Err(Error::Conflict(_)) =
            records::put("scan_keys", k, &json!({"scan": id}), Expect::Absent)
    {
        return Err(Error::Conflict(
            "a scan with this idempotencyKey is in progress; retry".into(),
        ));
    }
    records::put("scans", &id, &stored, Expect::Absent)?;
    crate::reports::count(
        &day,
        b,
        region.as_deref(),
        verdict == Verdict::Genuine,
        diversion.is_some(),
    )?;
    events::emit(
        "code.scanned",
        person.as_deref(),
        &json!({
            "scanId": id, "codeId": code.id(), "batch": b.id(), "serial": code.serial,
            "sku": b.product, "lot": b.lot, "level": b.level, "verdict": verdict,
            "firstScan": verdict == Verdict::Genuine, "scanCount": count,
            "region": region, "location": location.map(|(lat, lon)| json!({"lat": lat, "lon": lon})),
            "diversion": diversion, "at": rfc3339(at),
        }),
        Some(&format!("scan:{id}")),
    )?;
    Ok(result)
}
