//! The product catalogue over GraphQL: products and SKUs, their lookups,
//! and the ERP's batch upsert (`docs/catalog.md`).

use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::Error;
use keel_core::authz::{Action, objects};
use keel_core::catalog::{self, Patch, ProductKey, SkuKey};
use serde_json::{Map, Value};

use super::events::PageInfo;
use super::{authorize, commit, enqueue, principal, services, to_time};
use crate::errors::Gql as _;

/// Page size when `first` is not given.
const DEFAULT_PAGE: i32 = 20;
/// The largest page over GraphQL (each product carries its SKUs).
const MAX_PAGE: i32 = 100;

/// Whether a product or SKU is sold.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum CatalogStatus {
    Active,
    Inactive,
}

impl From<catalog::Status> for CatalogStatus {
    fn from(s: catalog::Status) -> Self {
        match s {
            catalog::Status::Active => CatalogStatus::Active,
            catalog::Status::Inactive => CatalogStatus::Inactive,
        }
    }
}

impl CatalogStatus {
    fn as_str(self) -> &'static str {
        match self {
            CatalogStatus::Active => "active",
            CatalogStatus::Inactive => "inactive",
        }
    }
}

/// An object's id in another system, e.g. `{system: "kingdee", id: "MAT-0001"}`.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "ExternalIdInput")]
pub(crate) struct ExternalId {
    /// Lower case `a-z`, `0-9`, `_`, `-`, `.`, e.g. `kingdee`.
    system: String,
    id: String,
}

impl From<catalog::ExternalId> for ExternalId {
    fn from(e: catalog::ExternalId) -> Self {
        ExternalId {
            system: e.system,
            id: e.id,
        }
    }
}

impl From<ExternalId> for catalog::ExternalId {
    fn from(e: ExternalId) -> Self {
        catalog::ExternalId {
            system: e.system,
            id: e.id,
        }
    }
}

/// A sellable variant of a product.
#[derive(SimpleObject)]
pub(crate) struct Sku {
    /// `sku_…`.
    id: ID,
    product_id: ID,
    /// The brand's SKU code, unique in the tenant.
    code: String,
    /// The GTIN in its 14-digit form (GTIN-8, -12 and -13 zero-padded).
    gtin: Option<String>,
    name: String,
    status: CatalogStatus,
    /// A JSON object (size, flavour, pack…).
    attributes: Json<Map<String, Value>>,
    external_ids: Vec<ExternalId>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<catalog::Sku> for Sku {
    fn from(s: catalog::Sku) -> Self {
        Sku {
            id: s.id.into(),
            product_id: s.product_id.into(),
            code: s.code,
            gtin: s.gtin,
            name: s.name,
            status: s.status.into(),
            attributes: Json(s.attributes),
            external_ids: s.external_ids.into_iter().map(Into::into).collect(),
            created_at: to_time(s.created_at),
            updated_at: to_time(s.updated_at),
        }
    }
}

/// A product (SPU) with its SKUs in code order.
#[derive(SimpleObject)]
pub(crate) struct Product {
    /// `prd_…`.
    id: ID,
    /// The brand's product code, unique in the tenant.
    code: String,
    name: String,
    category: Option<String>,
    /// The unit a consumer buys, e.g. `bottle`.
    unit: String,
    status: CatalogStatus,
    /// A JSON object.
    attributes: Json<Map<String, Value>>,
    external_ids: Vec<ExternalId>,
    skus: Vec<Sku>,
    created_at: DateTime<Utc>,
    /// The last change of the product or of one of its SKUs.
    updated_at: DateTime<Utc>,
}

impl From<catalog::Product> for Product {
    fn from(p: catalog::Product) -> Self {
        Product {
            id: p.id.into(),
            code: p.code,
            name: p.name,
            category: p.category,
            unit: p.unit,
            status: p.status.into(),
            attributes: Json(p.attributes),
            external_ids: p.external_ids.into_iter().map(Into::into).collect(),
            skus: p.skus.into_iter().map(Into::into).collect(),
            created_at: to_time(p.created_at),
            updated_at: to_time(p.updated_at),
        }
    }
}

#[derive(SimpleObject)]
pub(crate) struct ProductEdge {
    /// The product's code.
    cursor: String,
    node: Product,
}

/// A page of products in code order (Relay connection).
#[derive(SimpleObject)]
pub(crate) struct ProductConnection {
    edges: Vec<ProductEdge>,
    page_info: PageInfo,
}

/// A SKU and the product it belongs to.
#[derive(SimpleObject)]
pub(crate) struct SkuWithProduct {
    sku: Sku,
    product: Product,
}

/// A product to create or update by `code`. A field left out keeps its
/// stored value (a new product gets the default); a field sent replaces it
/// entirely — `attributes` are not merged; `null` clears `category`.
#[derive(InputObject)]
pub(crate) struct ProductInput {
    code: String,
    name: String,
    category: MaybeUndefined<String>,
    unit: String,
    /// A new product is `ACTIVE`.
    status: Option<CatalogStatus>,
    /// A JSON object, at most 16 KiB.
    attributes: Option<Json<Value>>,
    /// Replaces the product's external ids.
    external_ids: Option<Vec<ExternalId>>,
    /// SKUs to create or update by code; SKUs not listed are left alone.
    skus: Option<Vec<SkuInput>>,
}

/// A SKU to create or update by `code` (same rules as `ProductInput`).
#[derive(InputObject)]
pub(crate) struct SkuInput {
    code: String,
    /// GTIN-8, -12, -13 or -14, check digit verified; `null` clears it.
    gtin: MaybeUndefined<String>,
    name: String,
    status: Option<CatalogStatus>,
    attributes: Option<Json<Value>>,
    external_ids: Option<Vec<ExternalId>>,
}

fn patch(v: MaybeUndefined<String>) -> Patch<String> {
    match v {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(s) => Patch::Set(s),
    }
}

fn external_ids(v: Option<Vec<ExternalId>>) -> Option<Vec<catalog::ExternalId>> {
    v.map(|list| list.into_iter().map(Into::into).collect())
}

impl From<ProductInput> for catalog::ProductInput {
    fn from(p: ProductInput) -> Self {
        catalog::ProductInput {
            code: p.code,
            name: p.name,
            category: patch(p.category),
            unit: p.unit,
            status: p.status.map(|s| s.as_str().to_owned()),
            attributes: p.attributes.map(|a| a.0),
            external_ids: external_ids(p.external_ids),
            skus: p
                .skus
                .map(|list| list.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<SkuInput> for catalog::SkuInput {
    fn from(s: SkuInput) -> Self {
        catalog::SkuInput {
            code: s.code,
            gtin: patch(s.gtin),
            name: s.name,
            status: s.status.map(|st| st.as_str().to_owned()),
            attributes: s.attributes.map(|a| a.0),
            external_ids: external_ids(s.external_ids),
        }
    }
}

/// What an upsert did to one product.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum CatalogChange {
    Created,
    /// The product, or one of the SKUs listed with it, changed.
    Updated,
    Unchanged,
}

/// One product of an upsert, in the order of the input.
#[derive(SimpleObject)]
pub(crate) struct UpsertedProduct {
    id: ID,
    code: String,
    change: CatalogChange,
    skus_created: i32,
    skus_updated: i32,
}

/// What `upsertProducts` did. A repeat of a stored batch reports 0 changed.
#[derive(SimpleObject)]
pub(crate) struct UpsertProductsPayload {
    /// Products created or updated.
    changed: i32,
    created: i32,
    updated: i32,
    unchanged: i32,
    skus_created: i32,
    skus_updated: i32,
    products: Vec<UpsertedProduct>,
}

impl From<catalog::UpsertOutcome> for UpsertProductsPayload {
    fn from(o: catalog::UpsertOutcome) -> Self {
        let n = |c| o.count(c) as i32;
        UpsertProductsPayload {
            changed: o.changed() as i32,
            created: n(catalog::Change::Created),
            updated: n(catalog::Change::Updated),
            unchanged: n(catalog::Change::Unchanged),
            skus_created: o.skus_created() as i32,
            skus_updated: o.skus_updated() as i32,
            products: o
                .products
                .into_iter()
                .map(|p| UpsertedProduct {
                    id: p.id.into(),
                    code: p.code,
                    change: match p.change {
                        catalog::Change::Created => CatalogChange::Created,
                        catalog::Change::Updated => CatalogChange::Updated,
                        catalog::Change::Unchanged => CatalogChange::Unchanged,
                    },
                    skus_created: p.skus_created as i32,
                    skus_updated: p.skus_updated as i32,
                })
                .collect(),
        }
    }
}

/// Exactly one of the keys a lookup takes.
fn one_key<K>(keys: Vec<(&str, Option<K>)>) -> async_graphql::Result<K> {
    let names: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let mut given: Vec<K> = keys.into_iter().filter_map(|k| k.1).collect();
    if given.len() != 1 {
        return Err(Error::bad_input(
            names[0],
            format!("give exactly one of {}", names.join(", ")),
        ))
        .gql();
    }
    Ok(given.remove(0))
}

#[derive(Default)]
pub(crate) struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// The tenant's products with their SKUs, in code order (byte order),
    /// `first` (at most 100) after the cursor `after`.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let tenant = authorize(ctx, objects::CATALOG, Action::Read).await?;
        let first = first.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(Error::bad_input("first", format!("must be 1-{MAX_PAGE}"))).gql();
        }
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(Error::from)
            .gql()?;
        let page = catalog::list_products(&mut conn, &tenant, after.as_deref(), first as u32)
            .await
            .gql()?;
        Ok(ProductConnection {
            page_info: PageInfo {
                has_next_page: page.next.is_some(),
                end_cursor: page.products.last().map(|p| p.code.clone()),
            },
            edges: page
                .products
                .into_iter()
                .map(|p| ProductEdge {
                    cursor: p.code.clone(),
                    node: p.into(),
                })
                .collect(),
        })
    }

    /// One product by exactly one of its id, its code or an external id;
    /// null when the tenant has none.
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        code: Option<String>,
        external_id: Option<ExternalId>,
    ) -> async_graphql::Result<Option<Product>> {
        let tenant = authorize(ctx, objects::CATALOG, Action::Read).await?;
        let key = one_key(vec![
            ("id", id.map(|i| ProductKey::Id(i.0))),
            ("code", code.map(ProductKey::Code)),
            (
                "externalId",
                external_id.map(|e| ProductKey::External(e.into())),
            ),
        ])?;
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(Error::from)
            .gql()?;
        let found = catalog::get_product(&mut conn, &tenant, &key).await.gql()?;
        Ok(found.map(Into::into))
    }

    /// One SKU and its product by exactly one of its id, its code, its GTIN
    /// (any of its forms) or an external id; null when the tenant has none.
    async fn sku(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        code: Option<String>,
        gtin: Option<String>,
        external_id: Option<ExternalId>,
    ) -> async_graphql::Result<Option<SkuWithProduct>> {
        let tenant = authorize(ctx, objects::CATALOG, Action::Read).await?;
        let key = one_key(vec![
            ("id", id.map(|i| SkuKey::Id(i.0))),
            ("code", code.map(SkuKey::Code)),
            ("gtin", gtin.map(SkuKey::Gtin)),
            (
                "externalId",
                external_id.map(|e| SkuKey::External(e.into())),
            ),
        ])?;
        let mut conn = services(ctx)
            .db
            .reader()
            .acquire()
            .await
            .map_err(Error::from)
            .gql()?;
        let found = catalog::find_sku(&mut conn, &tenant, &key).await.gql()?;
        Ok(found.map(|(p, s)| SkuWithProduct {
            sku: s.into(),
            product: p.into(),
        }))
    }
}

#[derive(Default)]
pub(crate) struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Creates or updates up to 1,000 products by code, with the SKUs each
    /// lists by code: all or nothing, idempotent (a repeat changes nothing
    /// and emits nothing). Each change emits `product.created` or
    /// `product.updated`.
    async fn upsert_products(
        &self,
        ctx: &Context<'_>,
        products: Vec<ProductInput>,
    ) -> async_graphql::Result<UpsertProductsPayload> {
        let tenant = authorize(ctx, objects::CATALOG, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let items = products.into_iter().map(Into::into).collect();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let out = catalog::upsert_products(&mut tx, &tenant, items, &actor)
            .await
            .gql()?;
        enqueue(ctx, &mut tx, &tenant, &out.events).await?;
        commit(tx).await?;
        Ok(out.into())
    }
}
