//! Shipments: codes (one by one, by serial range, or by case and pallet)
//! bound to a distributor and the region where they may be sold.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect, Record};
use keel_sdk::{Context, Error, Result, events};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::epcis;
use crate::model::{
    Code, CodeState, Link, any_link_in, batch_by_id, find_link, now, page_limit, parents,
    range_link_key, require_code, rfc3339, single_link_key,
};
use crate::packing::RangeIn;
use crate::regions;

/// A shipment as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Shipment {
    pub id: String,
    pub reference: String,
    pub distributor: String,
    pub distributor_name: Option<String>,
    /// The org tree's region code.
    pub region: String,
    /// The region's org node id (shipments made before codes 0.2 have
    /// none: the code is looked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    pub codes: u64,
    pub ranges: Vec<ShipmentRange>,
    pub status: String,
    pub created_at: String,
    /// SHA-256 of the request, to tell a retry from a different shipment.
    pub digest: String,
    /// The codes named one by one (ids, not secrets).
    pub code_ids: Vec<String>,
}

/// GraphQL `CodeShipment`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShipmentOut {
    id: String,
    reference: String,
    distributor: String,
    distributor_name: Option<String>,
    region: String,
    codes: u64,
    ranges: Vec<ShipmentRange>,
    status: String,
    created_at: String,
}

impl From<Shipment> for ShipmentOut {
    fn from(s: Shipment) -> Self {
        ShipmentOut {
            id: s.id,
            reference: s.reference,
            distributor: s.distributor,
            distributor_name: s.distributor_name,
            region: s.region,
            codes: s.codes,
            ranges: s.ranges,
            status: s.status,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShipmentRange {
    pub batch: String,
    pub from: u32,
    pub to: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShipmentIn {
    reference: String,
    distributor: String,
    distributor_name: Option<String>,
    region: String,
    codes: Option<Vec<String>>,
    ranges: Option<Vec<RangeIn>>,
}

#[derive(Deserialize)]
pub(crate) struct CreateInput {
    input: ShipmentIn,
}

const MAX_CODES: usize = 10_000;

fn text_field(field: &str, v: &str, max: usize) -> Result<String> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{field}: 1-{max} printable characters"
        )));
    }
    Ok(v.to_owned())
}

/// Refuses a code that cannot ship: voided, not active, or already bound
/// (itself or through a case or pallet it is packed in).
fn check_shippable(field: &str, c: &Code) -> Result<()> {
    match c.state() {
        CodeState::Voided => {
            return Err(Error::refused(
                "CODE_VOIDED",
                format!("{field}: {} is voided", c.id()),
            ));
        }
        CodeState::Inactive => {
            return Err(Error::refused(
                "NOT_ACTIVATED",
                format!("{field}: {} is not activated", c.id()),
            ));
        }
        CodeState::Active => {}
    }
    for holder in std::iter::once(c.clone()).chain(parents(c)?) {
        if let Some(b) = find_link("bindings", holder.batch.no, holder.serial)? {
            return Err(Error::refused(
                "ALREADY_SHIPPED",
                format!(
                    "{field}: {} is already shipped in {}{}; nothing was shipped",
                    c.id(),
                    b.data.shipment.unwrap_or_default(),
                    if holder.id() == c.id() {
                        String::new()
                    } else {
                        format!(" (through {})", holder.id())
                    }
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn create(_ctx: &Context, input: CreateInput) -> Result<ShipmentOut> {
    let i = input.input;
    let reference = text_field("reference", &i.reference, 100)?;
    let distributor = text_field("distributor", &i.distributor, 100)?;
    let distributor_name = i
        .distributor_name
        .as_deref()
        .map(|n| text_field("distributorName", n, 200))
        .transpose()?;
    let codes = i.codes.unwrap_or_default();
    let ranges = i.ranges.unwrap_or_default();
    let mut digest = Sha256::new();
    digest.update(
        json!([
            reference,
            distributor,
            i.region,
            codes,
            ranges
                .iter()
                .map(|r| (&r.batch, r.from, r.to))
                .collect::<Vec<_>>()
        ])
        .to_string(),
    );
    let digest: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The reference and "not shipped yet" are checked by reading: one
    // shipment at a time.
    crate::model::one_at_a_time("shipment-seq")?;
    if let Some(existing) = by_reference(&reference)? {
        if existing.data.digest == digest {
            return Ok(existing.data.into());
        }
        return Err(Error::Conflict(format!(
            "shipment {} already has the reference {reference:?} with other contents",
            existing.data.id
        )));
    }
    let region = regions::require("region", &i.region)?;
    if codes.is_empty() && ranges.is_empty() {
        return Err(Error::invalid(
            "codes or ranges: a shipment needs at least one code",
        ));
    }
    if codes.len() > MAX_CODES || ranges.len() > 1000 {
        return Err(Error::invalid(format!(
            "at most {MAX_CODES} codes and 1000 ranges per shipment"
        )));
    }
    let no = match counters::add("shipment-seq", 1, 0, i64::MAX, None)? {
        Outcome::Applied(n) => n,
        Outcome::LimitReached(_) => return Err(Error::Internal("shipment numbers ran out".into())),
    };
    let id = format!("SH{no:06}");
    let at = now();
    let binding = |batch: u32, from: u32, to: u32| Link {
        parent: None,
        shipment: Some(id.clone()),
        batch,
        from,
        to,
        at: rfc3339(at),
    };
    let mut count = 0u64;
    let mut code_ids = Vec::new();
    let mut epcs = Vec::new();
    for (n, text) in codes.iter().enumerate() {
        let field = format!("codes[{n}]");
        let c = require_code(&field, text)?;
        check_shippable(&field, &c)?;
        let key = single_link_key(c.batch.no, c.serial);
        records::put(
            "bindings",
            &key,
            &binding(c.batch.no, c.serial, c.serial),
            Expect::Absent,
        )?;
        count += units_in(&c)?;
        code_ids.push(c.id());
        epcs.push(epcis::epc(&c));
    }
    let mut out_ranges = Vec::new();
    for (n, r) in ranges.iter().enumerate() {
        let b = batch_by_id(&r.batch)?.data;
        let (from, to) = b.check_range(r.from, r.to)?;
        if let Some(v) = b.voided.iter().find(|v| v.overlaps(from, to)) {
            return Err(Error::refused(
                "CODE_VOIDED",
                format!(
                    "ranges[{n}]: serials {}..{} of {} are voided; nothing was shipped",
                    v.from.max(from),
                    v.to.min(to),
                    r.batch
                ),
            ));
        }
        let active: u64 = b
            .activated
            .iter()
            .filter(|a| a.overlaps(from, to))
            .map(|a| (a.to.min(to) - a.from.max(from)) as u64 + 1)
            .sum();
        if active != (to - from) as u64 + 1 {
            return Err(Error::refused(
                "NOT_ACTIVATED",
                format!(
                    "ranges[{n}]: not every serial of {from}..{to} of {} is activated; nothing was shipped",
                    r.batch
                ),
            ));
        }
        if let Some(l) = any_link_in("bindings", b.no, from, to)? {
            return Err(Error::refused(
                "ALREADY_SHIPPED",
                format!(
                    "ranges[{n}]: serials {}..{} of {} are already shipped in {}; nothing was shipped",
                    l.data.from.max(from),
                    l.data.to.min(to),
                    r.batch,
                    l.data.shipment.unwrap_or_default()
                ),
            ));
        }
        for serial in [from, to] {
            check_shippable(
                &format!("ranges[{n}]"),
                &Code {
                    batch: b.clone(),
                    serial,
                },
            )?;
        }
        records::put(
            "bindings",
            &range_link_key(b.no, to),
            &binding(b.no, from, to),
            Expect::Absent,
        )?;
        count += (to - from) as u64 + 1;
        out_ranges.push(ShipmentRange {
            batch: b.id(),
            from,
            to,
        });
    }
    let shipment = Shipment {
        id: id.clone(),
        reference,
        distributor,
        distributor_name,
        region: region.code,
        region_id: Some(region.id),
        codes: count,
        ranges: out_ranges,
        status: "shipped".into(),
        created_at: rfc3339(at),
        digest,
        code_ids,
    };
    records::put("shipments", &id, &shipment, Expect::Absent)?;
    let event = json!({
        "type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping",
        "disposition": "in_transit", "epcList": epcs,
        "keel:serialRanges": shipment.ranges,
        "bizTransactionList": [{"type": "desadv", "bizTransaction": shipment.reference}],
        "destinationList": [{"type": "owning_party", "destination": shipment.distributor}],
        "keel:salesRegion": shipment.region, "keel:shipment": id,
    });
    for lot in lots_of(&codes_and_ranges(&shipment))? {
        epcis::record(&lot, at, event.clone())?;
    }
    events::emit(
        "codes.shipped",
        None,
        &json!({
            "shipment": id, "reference": shipment.reference, "distributor": shipment.distributor,
            "region": shipment.region, "codes": count,
        }),
        Some(&format!("shipment:{id}")),
    )?;
    Ok(shipment.into())
}

/// How many units a code stands for: 1, or what its case or pallet holds.
fn units_in(c: &Code) -> Result<u64> {
    if c.batch.level == crate::model::Level::Unit {
        return Ok(1);
    }
    let mut total = 0u64;
    let page = records::query::<Link>("links", "parent", &json!(c.key()), None, 1000)?;
    for l in page.records {
        let n = l.data.to as u64 - l.data.from as u64 + 1;
        total += if l.key.starts_with("u:") {
            units_in(&crate::model::code_by_key(&crate::model::unit_key(
                l.data.batch,
                l.data.from,
            ))?)?
        } else {
            n
        };
    }
    Ok(total.max(1))
}

fn codes_and_ranges(s: &Shipment) -> Vec<u32> {
    let mut batches: Vec<u32> = s
        .code_ids
        .iter()
        .filter_map(|id| id.strip_prefix('B')?.split('/').next()?.parse().ok())
        .chain(
            s.ranges
                .iter()
                .filter_map(|r| r.batch.strip_prefix('B')?.parse().ok()),
        )
        .collect();
    batches.sort_unstable();
    batches.dedup();
    batches
}

fn lots_of(batches: &[u32]) -> Result<Vec<String>> {
    let mut lots = Vec::new();
    for b in batches {
        if let Some(batch) = crate::model::load_batch(*b)? {
            lots.push(batch.data.lot_key);
        }
    }
    lots.sort();
    lots.dedup();
    Ok(lots)
}

fn by_reference(reference: &str) -> Result<Option<Record<Shipment>>> {
    let page = records::query::<Shipment>("shipments", "reference", &json!(reference), None, 1)?;
    Ok(page.records.into_iter().next())
}

#[derive(Deserialize)]
pub(crate) struct IdInput {
    id: String,
}

pub(crate) fn load(id: &str) -> Result<Option<Shipment>> {
    Ok(records::get::<Shipment>("shipments", id)?.map(|r| r.data))
}

pub(crate) fn get(_ctx: &Context, input: IdInput) -> Result<Option<ShipmentOut>> {
    Ok(load(&input.id)?.map(ShipmentOut::from))
}

/// Unbinds a shipment's codes (a return, a mistake); the record stays.
pub(crate) fn cancel(_ctx: &Context, input: IdInput) -> Result<ShipmentOut> {
    let mut s = records::get::<Shipment>("shipments", &input.id)?
        .ok_or_else(|| Error::NotFound(format!("no shipment {}", input.id)))?;
    if s.data.status == "cancelled" {
        return Err(Error::refused(
            "ALREADY_CANCELLED",
            format!("shipment {} is already cancelled", input.id),
        ));
    }
    loop {
        let page = records::query::<Link>("bindings", "shipment", &json!(input.id), None, 1000)?;
        for l in &page.records {
            records::delete("bindings", &l.key, Some(l.version))?;
        }
        if page.next.is_none() {
            break;
        }
    }
    s.data.status = "cancelled".into();
    records::put("shipments", &s.key, &s.data, Expect::Version(s.version))?;
    events::emit(
        "codes.shipment_cancelled",
        None,
        &json!({"shipment": input.id}),
        Some(&format!("shipment-cancel:{}", input.id)),
    )?;
    Ok(s.data.into())
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    after: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn list(_ctx: &Context, input: ListInput) -> Result<Vec<ShipmentOut>> {
    let limit = page_limit(input.limit, 100, 1000)?;
    let page = records::scan::<Shipment>("shipments", input.after.as_deref(), limit)?;
    Ok(page.records.into_iter().map(|r| r.data.into()).collect())
}

/// The shipment that binds a code — its own binding, else its case's or
/// pallet's — with the code id where the binding was found.
pub(crate) fn of_code(c: &Code) -> Result<Option<(Shipment, String)>> {
    for holder in std::iter::once(c.clone()).chain(parents(c)?) {
        if let Some(b) = find_link("bindings", holder.batch.no, holder.serial)?
            && let Some(id) = b.data.shipment
            && let Some(s) = load(&id)?
        {
            return Ok(Some((s, holder.id())));
        }
    }
    Ok(None)
}
