//! The tenant's product catalogue, owned by the kernel and shared by every
//! plugin: products (SPU) and their SKUs. Reading needs the `catalog-read`
//! capability, writing `catalog-write` (contract 0.2).
//!
//! ```no_run
//! use keel_sdk::catalog::{self, SkuKey};
//! # fn f() -> keel_sdk::Result<()> {
//! if let Some((product, sku)) = catalog::find_sku(&SkuKey::Gtin("6901234567892".into()))? {
//!     keel_sdk::log::info(&format!("{} / {}", product.name, sku.name));
//! }
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::bindings::keel::plugin::catalog as wit;
use crate::bindings::keel::plugin::types::ExternalId as WitExternalId;
use crate::{Error, Result};

/// An object's id in another system (an ERP, a mall).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId {
    /// e.g. `kingdee`.
    pub system: String,
    /// e.g. `MAT-0001`.
    pub id: String,
}

impl ExternalId {
    pub fn new(system: impl Into<String>, id: impl Into<String>) -> ExternalId {
        ExternalId {
            system: system.into(),
            id: id.into(),
        }
    }
}

pub(crate) fn external_from_wit(e: WitExternalId) -> ExternalId {
    ExternalId {
        system: e.system,
        id: e.id,
    }
}

pub(crate) fn external_to_wit(e: &ExternalId) -> WitExternalId {
    WitExternalId {
        system: e.system.clone(),
        id: e.id.clone(),
    }
}

/// A JSON object the kernel sent.
pub(crate) fn object(what: &str, text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("{what}: {e}")))
}

/// A sellable variant of a product.
#[derive(Debug, Clone, PartialEq)]
pub struct Sku {
    /// The kernel's id (`sku_…`).
    pub id: String,
    pub product_id: String,
    /// The brand's own SKU code, unique in the tenant.
    pub code: String,
    /// GTIN-8, -12, -13 or -14, check digit verified.
    pub gtin: Option<String>,
    pub name: String,
    /// `active` or `inactive`.
    pub status: String,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub external_ids: Vec<ExternalId>,
}

/// A product (SPU) and its SKUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// The kernel's id (`prd_…`).
    pub id: String,
    /// The brand's own product code, unique in the tenant.
    pub code: String,
    pub name: String,
    pub category: Option<String>,
    /// The unit a consumer buys, e.g. `bottle`.
    pub unit: String,
    /// `active` or `inactive`.
    pub status: String,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub external_ids: Vec<ExternalId>,
    pub skus: Vec<Sku>,
    /// RFC 3339.
    pub updated_at: String,
}

/// How to find one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductKey {
    Id(String),
    Code(String),
    External(ExternalId),
}

/// How to find one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkuKey {
    Id(String),
    Code(String),
    Gtin(String),
    External(ExternalId),
}

/// A page of products; pass `next` as `after` to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub next: Option<String>,
}

/// The most products one [`list_products`] page or [`upsert_products`]
/// call takes.
pub const MAX_BATCH: usize = 1000;

fn sku(s: wit::Sku) -> Result<Sku> {
    Ok(Sku {
        attributes: object("sku attributes", &s.attributes)?,
        id: s.id,
        product_id: s.product_id,
        code: s.code,
        gtin: s.gtin,
        name: s.name,
        status: s.status,
        external_ids: s.external_ids.into_iter().map(external_from_wit).collect(),
    })
}

fn product(p: wit::Product) -> Result<Product> {
    Ok(Product {
        attributes: object("product attributes", &p.attributes)?,
        skus: p.skus.into_iter().map(sku).collect::<Result<_>>()?,
        id: p.id,
        code: p.code,
        name: p.name,
        category: p.category,
        unit: p.unit,
        status: p.status,
        external_ids: p.external_ids.into_iter().map(external_from_wit).collect(),
        updated_at: p.updated_at,
    })
}

/// The product `key` names, if any.
pub fn get_product(key: &ProductKey) -> Result<Option<Product>> {
    let key = match key {
        ProductKey::Id(v) => wit::ProductKey::Id(v.clone()),
        ProductKey::Code(v) => wit::ProductKey::Code(v.clone()),
        ProductKey::External(e) => wit::ProductKey::External(external_to_wit(e)),
    };
    wit::get_product(&key)?.map(product).transpose()
}

/// The SKU `key` names and the product it belongs to, if any.
pub fn find_sku(key: &SkuKey) -> Result<Option<(Product, Sku)>> {
    let key = match key {
        SkuKey::Id(v) => wit::SkuKey::Id(v.clone()),
        SkuKey::Code(v) => wit::SkuKey::Code(v.clone()),
        SkuKey::Gtin(v) => wit::SkuKey::Gtin(v.clone()),
        SkuKey::External(e) => wit::SkuKey::External(external_to_wit(e)),
    };
    match wit::find_sku(&key)? {
        Some((p, s)) => Ok(Some((product(p)?, sku(s)?))),
        None => Ok(None),
    }
}

/// Products in code order, `limit` at most [`MAX_BATCH`].
pub fn list_products(after: Option<&str>, limit: u32) -> Result<ProductPage> {
    let page = wit::list_products(after, limit)?;
    Ok(ProductPage {
        products: page
            .products
            .into_iter()
            .map(product)
            .collect::<Result<_>>()?,
        next: page.next,
    })
}

/// Creates or updates products by code, with their SKUs by code: each item
/// serializes to the object GraphQL's `ProductInput` takes (at most
/// [`MAX_BATCH`]). Idempotent; one invalid item fails the whole batch,
/// naming it. Returns how many products changed.
pub fn upsert_products<T: Serialize>(products: &[T]) -> Result<u32> {
    let json = serde_json::to_string(products).map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(wit::upsert_products(&json)?)
}
