//! The upgrade to codes 0.2: the tenant's products and regions move from
//! codes' own `products` and `regions` collections into the kernel's
//! product catalogue and organisation tree.
//!
//! Run by `on-enable` (on enable and on every upgrade), in the call's one
//! transaction: everything is checked before anything is written, and any
//! refusal — named by the old record's SKU or region code — leaves nothing
//! migrated. Then:
//!
//! - each old region becomes an org node of kind `region` (parents before
//!   children, boundaries carried over); a region the tree already has is
//!   left as the brand keeps it, only given the old boundary if it has none;
//! - each old product becomes a catalogue product with the same code
//!   holding one SKU of that code (name, GTIN; unit `unit`); a SKU the
//!   catalogue already has is left as it is, and a product of that code
//!   without that SKU gets it;
//! - the old records are **retired**, not deleted: each gets `retired`
//!   (when), so that a downgrade to 0.1 still finds them, and only records
//!   without it are migrated (by a later upgrade, say, after one);
//! - `settings/migration` records when, and how many.
//!
//! Running it again changes nothing: no record is pending, the marker is
//! there, nothing is written. Batches name products by SKU code, which the
//! catalogue keeps, so they resolve as before.

use keel_sdk::catalog::{self, ProductKey, SkuKey};
use keel_sdk::org::{self, NodeKey, NodeKind};
use keel_sdk::records::{self, Expect, Record};
use keel_sdk::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{now, rfc3339};
use crate::products::{DEFAULT_UNIT, product_input};
use crate::regions::{check_boundary, kind_name};

/// The key in `settings` of the marker.
pub(crate) const MARKER_KEY: &str = "migration";

/// `settings/migration`: the tenant's products and regions are the kernel's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Marker {
    /// Always `kernel-master-data` (codes 0.2).
    pub schema: String,
    /// When the last migration wrote anything.
    pub migrated_at: String,
    /// Old records moved by it.
    pub products: u32,
    pub regions: u32,
}

/// A codes 0.1 product record (collection `products`, key = sku).
#[derive(Debug, Deserialize)]
struct OldProduct {
    sku: String,
    name: String,
    gtin: Option<String>,
}

/// A codes 0.1 region record (collection `regions`, key = code).
#[derive(Debug, Deserialize)]
struct OldRegion {
    code: String,
    name: String,
    /// "" at the top.
    #[serde(default)]
    parent: String,
    boundary: Option<Value>,
}

/// What the capabilities a migration needs are, for a refusal's message.
const NEEDS: &str = "codes 0.2 keeps products in the kernel catalogue and regions in the org tree: \
    grant it catalog-read, catalog-write, org-read and org-write (upgradePlugin keeps the old \
    grants unless given `capabilities`: pass them with the upgrade)";

fn denied(e: Error) -> Error {
    match e {
        Error::Denied(m) => Error::Denied(format!("{NEEDS} ({m})")),
        e => e,
    }
}

/// Refuses an enablement without read access to the catalogue and the org
/// tree, which every product and region lookup needs.
pub(crate) fn check_grants() -> Result<()> {
    catalog::list_products(None, 1).map_err(denied)?;
    org::children(None, None, 1).map_err(denied)?;
    Ok(())
}

/// The records of `collection` not yet retired, in key order.
fn pending(collection: &str) -> Result<Vec<Record<Value>>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = records::scan::<Value>(collection, after.as_deref(), 1000)?;
        out.extend(
            page.records
                .into_iter()
                .filter(|r| r.data.get("retired").is_none_or(Value::is_null)),
        );
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Runs the migration; see the module's documentation.
pub(crate) fn run() -> Result<()> {
    let old_products = pending("products")?;
    let old_regions = pending("regions")?;
    let marker = records::get::<Value>("settings", MARKER_KEY)?;
    if old_products.is_empty() && old_regions.is_empty() && marker.is_some() {
        return Ok(());
    }
    // Everything is read and checked before anything is written.
    let regions = ordered(
        old_regions
            .iter()
            .map(|r| {
                serde_json::from_value::<OldRegion>(r.data.clone()).map_err(|e| {
                    Error::invalid(format!(
                        "upgrade: the old region record {:?} is unreadable: {e}",
                        r.key
                    ))
                })
            })
            .collect::<Result<_>>()?,
    )?;
    let products: Vec<OldProduct> = old_products
        .iter()
        .map(|r| {
            serde_json::from_value(r.data.clone()).map_err(|e| {
                Error::invalid(format!(
                    "upgrade: the old product record {:?} is unreadable: {e}",
                    r.key
                ))
            })
        })
        .collect::<Result<_>>()?;
    let product_items = product_items(&products).map_err(denied)?;
    let region_items = region_items(&regions).map_err(denied)?;
    // A refusal after some of these writes fails the call, whose
    // transaction then takes them all back.
    for chunk in product_items.chunks(catalog::MAX_BATCH) {
        catalog::upsert_products(&chunk.iter().map(|(_, v)| v).collect::<Vec<_>>())
            .map_err(|e| named(e, "products[", "product", chunk))
            .map_err(denied)?;
    }
    for chunk in region_items.chunks(org::MAX_BATCH) {
        org::upsert_nodes(&chunk.iter().map(|(_, v)| v).collect::<Vec<_>>())
            .map_err(|e| named(e, "nodes[", "region", chunk))
            .map_err(denied)?;
    }
    let at = rfc3339(now());
    for (collection, list) in [("products", &old_products), ("regions", &old_regions)] {
        for r in list.iter() {
            let mut data = r.data.clone();
            data["retired"] = json!(at);
            records::put(collection, &r.key, &data, Expect::Version(r.version))?;
        }
    }
    let marker = Marker {
        schema: "kernel-master-data".into(),
        migrated_at: at,
        products: old_products.len() as u32,
        regions: old_regions.len() as u32,
    };
    records::put("settings", MARKER_KEY, &marker, Expect::Any)?;
    Ok(())
}

/// The old regions, checked, parents before children.
fn ordered(mut rest: Vec<OldRegion>) -> Result<Vec<OldRegion>> {
    for r in &rest {
        if let Some(b) = &r.boundary
            && !b.is_null()
        {
            check_boundary(b).map_err(|e| {
                Error::invalid(format!(
                    "upgrade: the old region {}: boundary: {e}; fix it with defineRegion and upgrade again",
                    r.code
                ))
            })?;
        }
    }
    let mut out: Vec<OldRegion> = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        // Ready: its parent is none, or not among those still waiting (it
        // is placed already, or the tree has it, or the upsert says not).
        let waiting: std::collections::HashSet<String> =
            rest.iter().map(|r| r.code.clone()).collect();
        let (now, later): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|r| r.parent.is_empty() || !waiting.contains(&r.parent));
        if now.is_empty() {
            let codes: Vec<&str> = later.iter().map(|r| r.code.as_str()).collect();
            return Err(Error::invalid(format!(
                "upgrade: the old regions {} are each other's parents",
                codes.join(", ")
            )));
        }
        out.extend(now);
        rest = later;
    }
    Ok(out)
}

/// The org upserts the old regions need, each with the code it is for.
fn region_items(regions: &[OldRegion]) -> Result<Vec<(String, Value)>> {
    let mut items = Vec::new();
    for r in regions {
        let boundary = match &r.boundary {
            Some(b) if !b.is_null() => Some(check_boundary(b).map_err(Error::InvalidInput)?),
            _ => None,
        };
        match org::get_node(&NodeKey::Code(r.code.clone()))? {
            Some(n) if n.kind != NodeKind::Region => {
                return Err(Error::Conflict(format!(
                    "upgrade: the old region {0}: the org tree has a {1} {0}; give one of them another code and upgrade again",
                    r.code,
                    kind_name(n.kind)
                )));
            }
            // The brand's own region stands; it only gains a boundary.
            Some(n) => {
                if let (None, Some(b)) = (&n.boundary, boundary) {
                    items.push((
                        r.code.clone(),
                        json!({"code": n.code, "kind": "region", "name": n.name, "boundary": b}),
                    ));
                }
            }
            None => {
                let mut item = json!({"code": r.code, "kind": "region", "name": r.name.trim()});
                if !r.parent.is_empty() {
                    item["parentCode"] = json!(r.parent);
                }
                if let Some(b) = boundary {
                    item["boundary"] = b;
                }
                items.push((r.code.clone(), item));
            }
        }
    }
    Ok(items)
}

/// The catalogue upserts the old products need, each with its SKU.
fn product_items(products: &[OldProduct]) -> Result<Vec<(String, Value)>> {
    let mut items = Vec::new();
    for p in products {
        if catalog::find_sku(&SkuKey::Code(p.sku.clone()))?.is_some() {
            continue;
        }
        let name = p.name.trim();
        let item = match catalog::get_product(&ProductKey::Code(p.sku.clone()))? {
            // A product of that code without the SKU: the SKU joins it.
            Some(existing) => {
                let mut item = product_input(&p.sku, name, &existing.unit, p.gtin.as_deref());
                item["name"] = json!(existing.name);
                item
            }
            None => product_input(&p.sku, name, DEFAULT_UNIT, p.gtin.as_deref()),
        };
        items.push((p.sku.clone(), item));
    }
    Ok(items)
}

/// Names the old record behind a refused item (`nodes[3]…` → its code).
fn named(e: Error, prefix: &str, what: &str, chunk: &[(String, Value)]) -> Error {
    let name = |m: &str| -> String {
        let at = m.find(prefix).map(|i| &m[i + prefix.len()..]);
        let index = at.and_then(|s| s.split(']').next()?.parse::<usize>().ok());
        match index.and_then(|i| chunk.get(i)) {
            Some((code, _)) => format!("upgrade: the old {what} {code}: {m}"),
            None => format!("upgrade: {m}"),
        }
    };
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(name(&m)),
        Error::Conflict(m) => Error::Conflict(name(&m)),
        Error::NotFound(m) => Error::NotFound(name(&m)),
        e => e,
    }
}
