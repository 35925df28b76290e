//! One Meta: the tenant's product catalogue, owned by the kernel and read by
//! every module.
//!
//! Products (SPU, ids `prd_…`) and their SKUs (ids `sku_…`) are keyed by the
//! brand's own codes, unique in the tenant; a SKU may carry a GTIN (check
//! digit verified, stored in its 14-digit form, unique in the tenant) and
//! both may carry ids in other systems (`kingdee:MAT-0001`), each owned by
//! one product or one SKU. An ERP writes the catalogue with
//! [`upsert_products`] — batches of up to 1,000 products, idempotent, all or
//! nothing — and everyone reads it with [`get_product`], [`find_sku`] and
//! [`list_products`]. A change emits `product.created` or `product.updated`
//! in the same transaction. The guide for ERP teams is `docs/catalog.md`.

mod input;
mod upsert;

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::db::Conn;
pub use crate::master_data::{ExternalId, MAX_EXTERNAL_IDS, Patch};
use crate::{Error, Result, TenantId, Timestamp};
pub use input::{
    MAX_ATTRIBUTES_BYTES, MAX_CODE_CHARS, MAX_PRODUCTS_PER_CALL, MAX_SKUS_PER_CALL,
    MAX_SKUS_PER_PRODUCT, ProductInput, SkuInput, normalize_gtin, parse_products,
    parse_products_json,
};
pub use upsert::{
    Change, EVENT_CREATED, EVENT_UPDATED, UpsertOutcome, UpsertedProduct, event_schemas,
    upsert_products, upsert_products_json,
};

/// The most products one page lists.
pub const MAX_PAGE: u32 = 1000;

/// Whether a product or SKU is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Active,
    Inactive,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }

    /// `active` or `inactive` (any case, surrounding spaces ignored).
    pub fn parse(field: &str, s: &str) -> Result<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(Status::Active),
            "inactive" => Ok(Status::Inactive),
            _ => {
                let shown: String = s.chars().take(40).collect();
                Err(Error::bad_input(
                    field,
                    format!("{shown:?} is not a status; use active or inactive"),
                ))
            }
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sellable variant of a product.
#[derive(Debug, Clone, PartialEq)]
pub struct Sku {
    /// `sku_…`.
    pub id: String,
    pub product_id: String,
    /// The brand's SKU code, unique in the tenant.
    pub code: String,
    /// 14 digits (a GTIN-8, -12 or -13 zero-padded), unique in the tenant.
    pub gtin: Option<String>,
    pub name: String,
    pub status: Status,
    pub attributes: Map<String, Value>,
    /// Sorted by system, then id.
    pub external_ids: Vec<ExternalId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A product (SPU) with its SKUs (in code order).
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// `prd_…`.
    pub id: String,
    /// The brand's product code, unique in the tenant.
    pub code: String,
    pub name: String,
    pub category: Option<String>,
    /// The unit a consumer buys, e.g. `bottle`.
    pub unit: String,
    pub status: Status,
    pub attributes: Map<String, Value>,
    /// Sorted by system, then id.
    pub external_ids: Vec<ExternalId>,
    pub skus: Vec<Sku>,
    pub created_at: Timestamp,
    /// The last change of the product or of one of its SKUs.
    pub updated_at: Timestamp,
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
    /// Any of GTIN-8, -12, -13 or -14; compared in its 14-digit form.
    Gtin(String),
    External(ExternalId),
}

/// One page of products in code order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductPage {
    pub products: Vec<Product>,
    /// The `after` of the next page, when there is one.
    pub next: Option<String>,
}

const PRODUCT_COLUMNS: &str =
    "id, code, name, category, unit, status, attributes, created_at, updated_at";
const SKU_COLUMNS: &str =
    "id, product_id, code, gtin, name, status, attributes, created_at, updated_at";

/// How many values one `IN (…)` list binds.
const CHUNK: usize = 500;

fn status_of(row: &AnyRow) -> Result<Status> {
    let s: String = row.try_get("status")?;
    Status::parse("status", &s)
        .map_err(|_| Error::Internal(anyhow::anyhow!("stored catalogue status {s:?}")))
}

fn attributes_of(row: &AnyRow) -> Result<Map<String, Value>> {
    Ok(serde_json::from_str(
        &row.try_get::<String, _>("attributes")?,
    )?)
}

fn product_from_row(row: &AnyRow) -> Result<Product> {
    Ok(Product {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        category: row.try_get("category")?,
        unit: row.try_get("unit")?,
        status: status_of(row)?,
        attributes: attributes_of(row)?,
        external_ids: Vec::new(),
        skus: Vec::new(),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

fn sku_from_row(row: &AnyRow) -> Result<Sku> {
    Ok(Sku {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        code: row.try_get("code")?,
        gtin: row.try_get("gtin")?,
        name: row.try_get("name")?,
        status: status_of(row)?,
        attributes: attributes_of(row)?,
        external_ids: Vec::new(),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

/// Runs `{sql} AND {column} IN (…)` over `values` in chunks. `sql` binds
/// the tenant as `$1` and then `extra` as `$2…`.
async fn select_in(
    conn: &mut Conn,
    tenant: &TenantId,
    sql: &str,
    extra: &[&str],
    column: &str,
    values: &[String],
) -> Result<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for chunk in values.chunks(CHUNK) {
        let first = extra.len() + 2;
        let list = (first..first + chunk.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("{sql} AND {column} IN ({list})");
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for e in extra {
            q = q.bind(*e);
        }
        for v in chunk {
            q = q.bind(v);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// The external ids of `owners` (products' and SKUs' ids), each list sorted.
async fn external_ids_of(
    conn: &mut Conn,
    tenant: &TenantId,
    owners: &[String],
) -> Result<HashMap<String, Vec<ExternalId>>> {
    let rows = select_in(
        conn,
        tenant,
        "SELECT owner_id, system, external_id FROM catalog_external_ids WHERE tenant_id = $1",
        &[],
        "owner_id",
        owners,
    )
    .await?;
    let mut out: HashMap<String, Vec<ExternalId>> = HashMap::new();
    for r in &rows {
        out.entry(r.try_get("owner_id")?)
            .or_default()
            .push(ExternalId {
                system: r.try_get("system")?,
                id: r.try_get("external_id")?,
            });
    }
    for list in out.values_mut() {
        list.sort();
    }
    Ok(out)
}

/// Fills in the SKUs and external ids of `products` (fresh from their rows).
async fn complete(
    conn: &mut Conn,
    tenant: &TenantId,
    mut products: Vec<Product>,
) -> Result<Vec<Product>> {
    if products.is_empty() {
        return Ok(products);
    }
    let ids: Vec<String> = products.iter().map(|p| p.id.clone()).collect();
    let rows = select_in(
        conn,
        tenant,
        &format!("SELECT {SKU_COLUMNS} FROM skus WHERE tenant_id = $1"),
        &[],
        "product_id",
        &ids,
    )
    .await?;
    let skus = rows.iter().map(sku_from_row).collect::<Result<Vec<_>>>()?;
    let owners: Vec<String> = ids
        .iter()
        .cloned()
        .chain(skus.iter().map(|s| s.id.clone()))
        .collect();
    let mut external = external_ids_of(conn, tenant, &owners).await?;
    let mut by_product: HashMap<String, Vec<Sku>> = HashMap::new();
    for mut s in skus {
        s.external_ids = external.remove(&s.id).unwrap_or_default();
        by_product.entry(s.product_id.clone()).or_default().push(s);
    }
    for p in &mut products {
        p.external_ids = external.remove(&p.id).unwrap_or_default();
        p.skus = by_product.remove(&p.id).unwrap_or_default();
        p.skus.sort_by(|a, b| a.code.cmp(&b.code));
    }
    Ok(products)
}

/// The owner (a product's or SKU's id) of an external id.
async fn external_owner(
    conn: &mut Conn,
    tenant: &TenantId,
    kind: &str,
    e: &ExternalId,
) -> Result<Option<String>> {
    let e = crate::master_data::check_external_id("externalId", e)?;
    Ok(sqlx::query_scalar(
        "SELECT owner_id FROM catalog_external_ids \
         WHERE tenant_id = $1 AND kind = $2 AND external_id = $3 AND system = $4",
    )
    .bind(tenant.as_str())
    .bind(kind)
    .bind(&e.id)
    .bind(&e.system)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A product of `tenant` with its SKUs, or `None` (also for another
/// tenant's product: it does not exist here).
pub async fn get_product(
    conn: &mut Conn,
    tenant: &TenantId,
    key: &ProductKey,
) -> Result<Option<Product>> {
    let (column, value) = match key {
        ProductKey::Id(id) => ("id", id.clone()),
        ProductKey::Code(code) => ("code", input::check_code("code", code)?),
        ProductKey::External(e) => match external_owner(conn, tenant, "product", e).await? {
            Some(id) => ("id", id),
            None => return Ok(None),
        },
    };
    let row = sqlx::query(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE tenant_id = $1 AND {column} = $2"
    ))
    .bind(tenant.as_str())
    .bind(&value)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let product = product_from_row(&row)?;
    Ok(complete(conn, tenant, vec![product]).await?.pop())
}

/// A SKU of `tenant` and the product it belongs to, or `None`.
pub async fn find_sku(
    conn: &mut Conn,
    tenant: &TenantId,
    key: &SkuKey,
) -> Result<Option<(Product, Sku)>> {
    let (column, value) = match key {
        SkuKey::Id(id) => ("id", id.clone()),
        SkuKey::Code(code) => ("code", input::check_code("code", code)?),
        SkuKey::Gtin(g) => ("gtin", normalize_gtin("gtin", g)?),
        SkuKey::External(e) => match external_owner(conn, tenant, "sku", e).await? {
            Some(id) => ("id", id),
            None => return Ok(None),
        },
    };
    let found: Option<(String, String)> = sqlx::query(&format!(
        "SELECT id, product_id FROM skus WHERE tenant_id = $1 AND {column} = $2"
    ))
    .bind(tenant.as_str())
    .bind(&value)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| Ok::<_, Error>((r.try_get("id")?, r.try_get("product_id")?)))
    .transpose()?;
    let Some((sku_id, product_id)) = found else {
        return Ok(None);
    };
    let Some(product) = get_product(conn, tenant, &ProductKey::Id(product_id)).await? else {
        return Ok(None);
    };
    let sku = product.skus.iter().find(|s| s.id == sku_id).cloned();
    Ok(sku.map(|s| (product, s)))
}

/// Up to `limit` (1-1000) products with their SKUs, in code order (byte
/// order, the same on both backends), after the code `after`.
pub async fn list_products(
    conn: &mut Conn,
    tenant: &TenantId,
    after: Option<&str>,
    limit: u32,
) -> Result<ProductPage> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad_input("limit", format!("must be 1-{MAX_PAGE}")));
    }
    if let Some(a) = after
        && a.len() > MAX_CODE_CHARS * 4
    {
        return Err(Error::bad_input("after", "not a cursor this API returned"));
    }
    let rows = sqlx::query(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE tenant_id = $1 AND code > $2 \
         ORDER BY code LIMIT $3"
    ))
    .bind(tenant.as_str())
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *conn)
    .await?;
    let mut products = rows
        .iter()
        .map(product_from_row)
        .collect::<Result<Vec<_>>>()?;
    let more = products.len() > limit as usize;
    products.truncate(limit as usize);
    let next = if more {
        products.last().map(|p| p.code.clone())
    } else {
        None
    };
    Ok(ProductPage {
        products: complete(conn, tenant, products).await?,
        next,
    })
}
