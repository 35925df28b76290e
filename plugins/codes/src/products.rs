//! Products that carry codes, read from the kernel's product catalogue.
//!
//! A codes "product" is a **SKU** of the kernel catalogue, named by its SKU
//! code (a batch's `product`); its GTIN is the SKU's. The catalogue is the
//! brand's (its ERP writes it with `upsertProducts`); codes only reads it,
//! except through the deprecated `createCodeProduct`, which creates a
//! product with the same code holding one SKU of that code.

use std::cell::RefCell;
use std::collections::HashMap;

use keel_sdk::catalog::{self, ProductKey, SkuKey};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::page_limit;

/// The unit of a product `createCodeProduct` creates, unless given.
pub(crate) const DEFAULT_UNIT: &str = "unit";

/// A product as codes shows it: GraphQL `CodeProduct`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Product {
    /// The kernel SKU's code.
    pub sku: String,
    pub name: String,
    /// The GTIN in its shortest standard form (see [`gtin_display`]).
    pub gtin: Option<String>,
    /// The kernel product's last change (the catalogue's plugin interface
    /// has no creation time).
    pub created_at: String,
}

impl Product {
    fn of(product: &catalog::Product, sku: &catalog::Sku) -> Product {
        Product {
            sku: sku.code.clone(),
            name: sku.name.clone(),
            gtin: sku.gtin.as_deref().map(gtin_display),
            created_at: product.updated_at.clone(),
        }
    }
}

/// The catalogue keeps GTINs in their 14-digit form; codes shows the
/// shortest standard form they pad: GTIN-8 (six leading zeros), GTIN-12
/// (two), GTIN-13 (one), else GTIN-14. A GTIN-13 such as `6901234567892`
/// reads back as given.
pub(crate) fn gtin_display(gtin14: &str) -> String {
    if gtin14.len() != 14 {
        return gtin14.to_owned();
    }
    let keep = if gtin14.starts_with("000000") {
        8
    } else if gtin14.starts_with("00") {
        12
    } else if gtin14.starts_with('0') {
        13
    } else {
        14
    };
    gtin14[14 - keep..].to_owned()
}

thread_local! {
    /// SKUs found during this call (each call runs in a fresh instance): a
    /// page of batches asks for each batch's product.
    static FOUND: RefCell<HashMap<String, Product>> = RefCell::new(HashMap::new());
}

/// The SKU `sku` of the catalogue as codes shows it, if any.
pub(crate) fn find(sku: &str) -> Result<Option<Product>> {
    if let Some(p) = FOUND.with(|f| f.borrow().get(sku).cloned()) {
        return Ok(Some(p));
    }
    let found = catalog::find_sku(&SkuKey::Code(sku.to_owned()))?.map(|(p, s)| Product::of(&p, &s));
    if let Some(p) = &found {
        FOUND.with(|f| f.borrow_mut().insert(sku.to_owned(), p.clone()));
    }
    Ok(found)
}

/// The SKU `sku`, or NOT_FOUND naming it.
pub(crate) fn load(sku: &str) -> Result<Product> {
    find(sku)?.ok_or_else(|| Error::NotFound(format!("no product {sku:?}")))
}

/// The SKU `sku` for new codes: it must exist and be active.
pub(crate) fn load_for_issue(sku: &str) -> Result<Product> {
    let (p, s) = catalog::find_sku(&SkuKey::Code(sku.to_owned()))?
        .ok_or_else(|| Error::NotFound(format!("no product {sku:?}")))?;
    if s.status != "active" {
        return Err(Error::invalid(format!(
            "product: the SKU {sku} is {} in the catalogue; activate it with upsertProducts first",
            s.status
        )));
    }
    Ok(Product::of(&p, &s))
}

#[derive(Deserialize)]
pub(crate) struct CreateInput {
    sku: String,
    name: String,
    gtin: Option<String>,
    unit: Option<String>,
}

fn check_sku(sku: &str) -> Result<()> {
    let ok = !sku.is_empty()
        && sku.len() <= 64
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "sku: 1-64 characters of letters, digits, '-', '_' and '.', got {sku:?}"
        )))
    }
}

/// The kernel's `ProductInput` for a codes product: a product with the
/// SKU's code holding one SKU of that code.
pub(crate) fn product_input(sku: &str, name: &str, unit: &str, gtin: Option<&str>) -> Value {
    let mut s = json!({"code": sku, "name": name});
    if let Some(g) = gtin {
        s["gtin"] = json!(g);
    }
    json!({"code": sku, "name": name, "unit": unit, "skus": [s]})
}

/// Deprecated `createCodeProduct`: writes through to the catalogue (needs
/// `catalog-write`); `upsertProducts` replaces it.
pub(crate) fn create(_ctx: &Context, input: CreateInput) -> Result<Product> {
    check_sku(&input.sku)?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("name: 1-200 characters"));
    }
    if let Some(g) = &input.gtin
        && !keel_codes_core::gtin_valid(g)
    {
        return Err(Error::invalid(format!(
            "gtin: {g:?} is not a GTIN-8/12/13/14 with a valid check digit"
        )));
    }
    let unit = input.unit.as_deref().map(str::trim).unwrap_or(DEFAULT_UNIT);
    if unit.is_empty() || unit.chars().count() > 32 {
        return Err(Error::invalid("unit: 1-32 characters"));
    }
    if find(&input.sku)?.is_some() {
        return Err(Error::Conflict(format!(
            "a product with sku {:?} exists",
            input.sku
        )));
    }
    if catalog::get_product(&ProductKey::Code(input.sku.clone()))?.is_some() {
        return Err(Error::Conflict(format!(
            "a product with sku {0:?} exists: the catalogue has a product {0} (add SKUs to it with upsertProducts)",
            input.sku
        )));
    }
    let item = product_input(&input.sku, name, unit, input.gtin.as_deref());
    catalog::upsert_products(&[item]).map_err(|e| match e {
        Error::Conflict(m) => Error::Conflict(format!("sku {}: {m}", input.sku)),
        Error::InvalidInput(m) => Error::InvalidInput(format!("sku {}: {m}", input.sku)),
        e => e,
    })?;
    load(&input.sku)
}

#[derive(Deserialize)]
pub(crate) struct GetInput {
    sku: String,
}

/// Deprecated `codeProduct(sku)`: the catalogue's SKU (`products`,
/// `product(sku:)` replace it).
pub(crate) fn get(_ctx: &Context, input: GetInput) -> Result<Option<Product>> {
    find(&input.sku)
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    after: Option<String>,
    limit: Option<i64>,
}

/// Deprecated `codeProducts(after, limit)`: the catalogue's SKUs, product by
/// product in code order and each product's SKUs in code order; `after` is
/// the last SKU code of the previous page.
pub(crate) fn list(_ctx: &Context, input: ListInput) -> Result<Vec<Product>> {
    let limit = page_limit(input.limit, 100, 1000)? as usize;
    let mut out = Vec::new();
    // Resume inside the product that holds the `after` SKU.
    let mut cursor = match &input.after {
        None => None,
        Some(after) => match catalog::find_sku(&SkuKey::Code(after.clone()))? {
            Some((p, _)) => {
                for s in p.skus.iter().filter(|s| s.code.as_str() > after.as_str()) {
                    out.push(Product::of(&p, s));
                }
                Some(p.code)
            }
            None => {
                return Err(Error::invalid(format!(
                    "after: {after:?} is not a SKU of the catalogue"
                )));
            }
        },
    };
    while out.len() < limit {
        let want = (limit - out.len()).min(catalog::MAX_BATCH) as u32;
        let page = catalog::list_products(cursor.as_deref(), want)?;
        for p in &page.products {
            out.extend(p.skus.iter().map(|s| Product::of(p, s)));
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}
