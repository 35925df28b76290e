//! `upsert_products`: the ERP's batch write, idempotent and all or nothing.
//!
//! The batch is checked without the database first ([`super::input`]),
//! then the stored products and SKUs it names are read in a few `IN (…)`
//! queries, the final state of every listed object is computed and
//! compared with what is stored, every code, GTIN and external id it
//! claims is checked against its current owner, and only then is anything
//! written — only what differs, with one event per changed product. An
//! upsert of what is stored reads and returns; it writes nothing.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use sqlx::Connection as _;
use sqlx::Row as _;

use super::input::{self, CheckedProduct, CheckedSku, ProductInput};
use super::{
    ExternalId, PRODUCT_COLUMNS, Product, SKU_COLUMNS, Sku, Status, external_ids_of,
    product_from_row, select_in, sku_from_row,
};
use crate::db::Conn;
use crate::error::is_unique_violation;
use crate::events::{self, Event, NewEvent};
use crate::master_data::Patch;
use crate::{Error, Result, TenantId, now};

/// Emitted when an upsert creates a product (with the SKUs it lists).
pub const EVENT_CREATED: &str = "product.created";
/// Emitted when an upsert changes a product or any SKU it lists.
pub const EVENT_UPDATED: &str = "product.updated";

/// What an upsert did to one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    /// The product, or one of the SKUs listed with it, changed.
    Updated,
    Unchanged,
}

/// One product of an upsert, in the order of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertedProduct {
    pub id: String,
    pub code: String,
    pub change: Change,
    pub skus_created: u32,
    pub skus_updated: u32,
}

/// What an upsert did.
#[derive(Debug, Clone, Default)]
pub struct UpsertOutcome {
    pub products: Vec<UpsertedProduct>,
    /// The `product.*` events appended, for the outbox of the same
    /// transaction (async subscribers).
    pub events: Vec<Event>,
}

impl UpsertOutcome {
    /// How many products were created or updated (0 for a repeat).
    pub fn changed(&self) -> u32 {
        self.products
            .iter()
            .filter(|p| p.change != Change::Unchanged)
            .count() as u32
    }

    /// How many products had this outcome.
    pub fn count(&self, change: Change) -> u32 {
        self.products.iter().filter(|p| p.change == change).count() as u32
    }

    pub fn skus_created(&self) -> u32 {
        self.products.iter().map(|p| p.skus_created).sum()
    }

    pub fn skus_updated(&self) -> u32 {
        self.products.iter().map(|p| p.skus_updated).sum()
    }
}

/// The JSON Schemas of the payloads of `product.created` and
/// `product.updated`, for the event catalogue.
pub fn event_schemas() -> Vec<(&'static str, Value)> {
    let sku_refs = json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["id", "code"],
            "properties": {"id": {"type": "string"}, "code": {"type": "string"}},
        },
    });
    let common = json!({
        "productId": {"type": "string"},
        "code": {"type": "string"},
        "actor": {"type": "string"},
    });
    let with = |extra: Value, required: &[&str]| {
        let mut props = common.as_object().cloned().unwrap_or_default();
        props.extend(extra.as_object().cloned().unwrap_or_default());
        json!({"type": "object", "required": required, "properties": props})
    };
    vec![
        (
            EVENT_CREATED,
            with(
                json!({"skus": sku_refs}),
                &["productId", "code", "actor", "skus"],
            ),
        ),
        (
            EVENT_UPDATED,
            with(
                json!({
                    "changedFields": {"type": "array", "items": {"type": "string"}},
                    "skusCreated": sku_refs,
                    "skusUpdated": sku_refs,
                }),
                &[
                    "productId",
                    "code",
                    "actor",
                    "changedFields",
                    "skusCreated",
                    "skusUpdated",
                ],
            ),
        ),
    ]
}

/// [`upsert_products`] for the JSON form of a batch (the WIT's
/// `upsert-products(json)`), checked exactly as GraphQL's input is.
pub async fn upsert_products_json(
    conn: &mut Conn,
    tenant: &TenantId,
    json: &str,
    actor: &str,
) -> Result<UpsertOutcome> {
    let items = input::parse_products_json(json)?;
    upsert_products(conn, tenant, items, actor).await
}

/// Creates or updates up to 1,000 products by code, with the SKUs each
/// lists by code, in `conn`'s transaction (inside a savepoint of its own:
/// a refused batch leaves nothing behind even if the caller goes on).
///
/// A field left out keeps its stored value; a field sent replaces it.
/// SKUs a product does not list are left alone. Upserting what is stored
/// changes nothing and emits nothing. One invalid item, a code, GTIN or
/// external id owned by another object, or a SKU listed under a product it
/// does not belong to refuses the whole batch, naming the item.
/// `actor` (`key:…`, `operator:…`, a plugin) is recorded in the events.
pub async fn upsert_products(
    conn: &mut Conn,
    tenant: &TenantId,
    items: Vec<ProductInput>,
    actor: &str,
) -> Result<UpsertOutcome> {
    let batch = input::check_batch(items)?;
    if batch.is_empty() {
        return Ok(UpsertOutcome::default());
    }
    let mut tx = conn.begin().await?;
    let out = run(&mut tx, tenant, batch, actor).await?;
    tx.commit().await?;
    Ok(out)
}

/// The final state of one product of the batch.
struct Planned {
    path: String,
    id: String,
    code: String,
    new: bool,
    name: String,
    category: Option<String>,
    unit: String,
    status: Status,
    attributes: Map<String, Value>,
    external_ids: Vec<ExternalId>,
    stored_external_ids: Vec<ExternalId>,
    changed_fields: Vec<&'static str>,
    skus: Vec<PlannedSku>,
}

/// The final state of one SKU of the batch.
struct PlannedSku {
    path: String,
    id: String,
    code: String,
    new: bool,
    changed: bool,
    gtin: Option<String>,
    stored_gtin: Option<String>,
    name: String,
    status: Status,
    attributes: Map<String, Value>,
    external_ids: Vec<ExternalId>,
    stored_external_ids: Vec<ExternalId>,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn patched(p: Patch<String>, stored: Option<String>) -> Option<String> {
    p.apply(stored)
}

async fn run(
    conn: &mut Conn,
    tenant: &TenantId,
    batch: Vec<CheckedProduct>,
    actor: &str,
) -> Result<UpsertOutcome> {
    // What is stored under the batch's codes.
    let codes: Vec<String> = batch.iter().map(|p| p.code.clone()).collect();
    let sku_codes: Vec<String> = batch
        .iter()
        .flat_map(|p| p.skus.iter().map(|s| s.code.clone()))
        .collect();
    let products: HashMap<String, Product> = select_in(
        conn,
        tenant,
        &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE tenant_id = $1"),
        &[],
        "code",
        &codes,
    )
    .await?
    .iter()
    .map(|r| product_from_row(r).map(|p| (p.code.clone(), p)))
    .collect::<Result<_>>()?;
    let skus: HashMap<String, Sku> = select_in(
        conn,
        tenant,
        &format!("SELECT {SKU_COLUMNS} FROM skus WHERE tenant_id = $1"),
        &[],
        "code",
        &sku_codes,
    )
    .await?
    .iter()
    .map(|r| sku_from_row(r).map(|s| (s.code.clone(), s)))
    .collect::<Result<_>>()?;
    let owners: Vec<String> = products
        .values()
        .map(|p| p.id.clone())
        .chain(skus.values().map(|s| s.id.clone()))
        .collect();
    let mut stored_ext = external_ids_of(conn, tenant, &owners).await?;

    let mut plan = Vec::with_capacity(batch.len());
    for mut p in batch {
        let stored = products.get(&p.code);
        let mut planned_skus = Vec::with_capacity(p.skus.len());
        for s in std::mem::take(&mut p.skus) {
            let stored_sku = skus.get(&s.code);
            if let Some(ss) = stored_sku
                && stored.is_none_or(|sp| sp.id != ss.product_id)
            {
                let owner = code_of(conn, tenant, "products", &ss.product_id).await?;
                return Err(Error::Conflict(format!(
                    "{}.code: the SKU {:?} belongs to the product {owner:?}; a SKU stays with \
                     its product (give the new one another code)",
                    s.path, s.code
                )));
            }
            let stored_ids = stored_sku
                .and_then(|ss| stored_ext.remove(&ss.id))
                .unwrap_or_default();
            planned_skus.push(plan_sku(s, stored_sku, stored_ids));
        }
        let stored_ids = stored
            .and_then(|sp| stored_ext.remove(&sp.id))
            .unwrap_or_default();
        plan.push(plan_product(p, stored, stored_ids, planned_skus));
    }

    check_gtins(conn, tenant, &plan).await?;
    check_external_ids(conn, tenant, &plan).await?;
    write(conn, tenant, &plan).await?;

    let mut outcome = UpsertOutcome::default();
    let mut new_events = Vec::new();
    for p in &plan {
        let created: Vec<&PlannedSku> = p.skus.iter().filter(|s| s.new).collect();
        let updated: Vec<&PlannedSku> = p.skus.iter().filter(|s| !s.new && s.changed).collect();
        let refs = |list: &[&PlannedSku]| -> Value {
            list.iter()
                .map(|s| json!({"id": s.id, "code": s.code}))
                .collect()
        };
        let change = if p.new {
            Change::Created
        } else if !p.changed_fields.is_empty() || !created.is_empty() || !updated.is_empty() {
            Change::Updated
        } else {
            Change::Unchanged
        };
        let payload = match change {
            Change::Created => Some((
                EVENT_CREATED,
                json!({"productId": p.id, "code": p.code, "actor": actor, "skus": refs(&created)}),
            )),
            Change::Updated => Some((
                EVENT_UPDATED,
                json!({
                    "productId": p.id, "code": p.code, "actor": actor,
                    "changedFields": p.changed_fields,
                    "skusCreated": refs(&created), "skusUpdated": refs(&updated),
                }),
            )),
            Change::Unchanged => None,
        };
        if let Some((event_type, payload)) = payload {
            new_events.push(NewEvent {
                event_type: event_type.into(),
                person_id: None,
                payload,
                idempotency_key: None,
                occurred_at: None,
            });
        }
        outcome.products.push(UpsertedProduct {
            id: p.id.clone(),
            code: p.code.clone(),
            change,
            skus_created: created.len() as u32,
            skus_updated: updated.len() as u32,
        });
    }
    outcome.events = events::append_batch(conn, tenant, new_events, "kernel").await?;
    Ok(outcome)
}

fn plan_product(
    p: CheckedProduct,
    stored: Option<&Product>,
    stored_external_ids: Vec<ExternalId>,
    skus: Vec<PlannedSku>,
) -> Planned {
    let category = patched(p.category, stored.and_then(|s| s.category.clone()));
    let status = p
        .status
        .or(stored.map(|s| s.status))
        .unwrap_or(Status::Active);
    let attributes = p
        .attributes
        .or_else(|| stored.map(|s| s.attributes.clone()))
        .unwrap_or_default();
    let external_ids = p
        .external_ids
        .unwrap_or_else(|| stored_external_ids.clone());
    let mut changed_fields = Vec::new();
    if let Some(s) = stored {
        let diffs = [
            ("name", s.name != p.name),
            ("category", s.category != category),
            ("unit", s.unit != p.unit),
            ("status", s.status != status),
            ("attributes", s.attributes != attributes),
            ("externalIds", stored_external_ids != external_ids),
        ];
        changed_fields = diffs.iter().filter(|d| d.1).map(|d| d.0).collect();
    }
    Planned {
        path: p.path,
        id: stored.map_or_else(|| new_id("prd"), |s| s.id.clone()),
        code: p.code,
        new: stored.is_none(),
        name: p.name,
        category,
        unit: p.unit,
        status,
        attributes,
        external_ids,
        stored_external_ids,
        changed_fields,
        skus,
    }
}

fn plan_sku(
    s: CheckedSku,
    stored: Option<&Sku>,
    stored_external_ids: Vec<ExternalId>,
) -> PlannedSku {
    let stored_gtin = stored.and_then(|x| x.gtin.clone());
    let gtin = patched(s.gtin, stored_gtin.clone());
    let status = s
        .status
        .or(stored.map(|x| x.status))
        .unwrap_or(Status::Active);
    let attributes = s
        .attributes
        .or_else(|| stored.map(|x| x.attributes.clone()))
        .unwrap_or_default();
    let external_ids = s
        .external_ids
        .unwrap_or_else(|| stored_external_ids.clone());
    let changed = stored.is_none_or(|x| {
        x.gtin != gtin
            || x.name != s.name
            || x.status != status
            || x.attributes != attributes
            || stored_external_ids != external_ids
    });
    PlannedSku {
        path: s.path,
        id: stored.map_or_else(|| new_id("sku"), |x| x.id.clone()),
        code: s.code,
        new: stored.is_none(),
        changed,
        gtin,
        stored_gtin,
        name: s.name,
        status,
        attributes,
        external_ids,
        stored_external_ids,
    }
}

/// The code of a product or SKU by id (for messages).
async fn code_of(conn: &mut Conn, tenant: &TenantId, table: &str, id: &str) -> Result<String> {
    let code: Option<String> = sqlx::query_scalar(&format!(
        "SELECT code FROM {table} WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(code.unwrap_or_else(|| id.to_owned()))
}

/// Refuses a GTIN that a SKU takes while another SKU keeps it.
async fn check_gtins(conn: &mut Conn, tenant: &TenantId, plan: &[Planned]) -> Result<()> {
    let all = || plan.iter().flat_map(|p| p.skus.iter());
    let claims: Vec<&PlannedSku> = all()
        .filter(|s| s.gtin.is_some() && s.gtin != s.stored_gtin)
        .collect();
    if claims.is_empty() {
        return Ok(());
    }
    let wanted: Vec<String> = claims.iter().filter_map(|s| s.gtin.clone()).collect();
    let rows = select_in(
        conn,
        tenant,
        "SELECT id, code, gtin FROM skus WHERE tenant_id = $1",
        &[],
        "gtin",
        &wanted,
    )
    .await?;
    let mut owners: HashMap<String, (String, String)> = HashMap::new();
    for r in &rows {
        owners.insert(r.try_get("gtin")?, (r.try_get("id")?, r.try_get("code")?));
    }
    let in_batch: HashMap<&str, &PlannedSku> = all().map(|s| (s.id.as_str(), s)).collect();
    for s in claims {
        let Some(g) = &s.gtin else { continue };
        let Some((owner, owner_code)) = owners.get(g) else {
            continue;
        };
        let released = in_batch
            .get(owner.as_str())
            .is_some_and(|o| o.gtin.as_ref() != Some(g));
        if *owner != s.id && !released {
            return Err(Error::Conflict(format!(
                "{}.gtin: the GTIN {g} belongs to the SKU {owner_code:?}",
                s.path
            )));
        }
    }
    Ok(())
}

/// Refuses an external id that an object takes while another keeps it.
async fn check_external_ids(conn: &mut Conn, tenant: &TenantId, plan: &[Planned]) -> Result<()> {
    let products = plan
        .iter()
        .map(|p| (&p.path, &p.id, &p.external_ids, &p.stored_external_ids));
    let skus = plan.iter().flat_map(|p| {
        p.skus
            .iter()
            .map(|s| (&s.path, &s.id, &s.external_ids, &s.stored_external_ids))
    });
    for (kind, table, objects) in [
        ("product", "products", products.collect::<Vec<_>>()),
        ("sku", "skus", skus.collect::<Vec<_>>()),
    ] {
        let claims: Vec<(&String, &String, &ExternalId)> = objects
            .iter()
            .flat_map(|(path, id, now, before)| {
                now.iter()
                    .filter(|e| !before.contains(e))
                    .map(move |e| (*path, *id, e))
            })
            .collect();
        if claims.is_empty() {
            continue;
        }
        let wanted: Vec<String> = claims.iter().map(|c| c.2.id.clone()).collect();
        let rows = select_in(
            conn,
            tenant,
            "SELECT system, external_id, owner_id FROM catalog_external_ids \
             WHERE tenant_id = $1 AND kind = $2",
            &[kind],
            "external_id",
            &wanted,
        )
        .await?;
        let mut owners: HashMap<ExternalId, String> = HashMap::new();
        for r in &rows {
            let e = ExternalId {
                system: r.try_get("system")?,
                id: r.try_get("external_id")?,
            };
            owners.insert(e, r.try_get("owner_id")?);
        }
        let finals: HashMap<&str, &Vec<ExternalId>> =
            objects.iter().map(|o| (o.1.as_str(), o.2)).collect();
        for (path, id, e) in claims {
            let Some(owner) = owners.get(e) else { continue };
            let released = finals.get(owner.as_str()).is_some_and(|f| !f.contains(e));
            if owner != id && !released {
                let code = code_of(conn, tenant, table, owner).await?;
                return Err(Error::Conflict(format!(
                    "{path}.externalIds: the external id {e} belongs to the {kind} {code:?}"
                )));
            }
        }
    }
    Ok(())
}

/// A value bound into a multi-row insert.
enum Arg<'a> {
    Text(&'a str),
    Maybe(Option<&'a str>),
    Int(i64),
}

/// `INSERT INTO {head} VALUES (…), (…)` with `width` values per row, in
/// statements of at most 100 rows.
async fn insert_rows(
    conn: &mut Conn,
    head: &str,
    width: usize,
    rows: &[Vec<Arg<'_>>],
) -> Result<()> {
    for chunk in rows.chunks(100) {
        let values = (0..chunk.len())
            .map(|r| {
                let row = (1..=width)
                    .map(|c| format!("${}", r * width + c))
                    .collect::<Vec<_>>();
                format!("({})", row.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO {head} VALUES {values}");
        let mut q = sqlx::query(&sql);
        for arg in chunk.iter().flatten() {
            q = match arg {
                Arg::Text(s) => q.bind(*s),
                Arg::Maybe(s) => q.bind(*s),
                Arg::Int(n) => q.bind(*n),
            };
        }
        q.execute(&mut *conn).await.map_err(write_error)?;
    }
    Ok(())
}

/// A unique violation while writing means a concurrent writer took a code,
/// GTIN or external id after this batch read it: the batch is refused as a
/// whole, and a retry sees the other write.
fn write_error(e: sqlx::Error) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict(
            "a code, GTIN or external id of this batch was taken by a concurrent write; \
             retry the batch"
                .into(),
        )
    } else {
        e.into()
    }
}

async fn execute<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    conn: &mut Conn,
) -> Result<()> {
    q.execute(&mut *conn).await.map_err(write_error)?;
    Ok(())
}

/// Writes what differs: external ids given up and GTINs moved first, so
/// that objects of one batch may swap them.
async fn write(conn: &mut Conn, tenant: &TenantId, plan: &[Planned]) -> Result<()> {
    let t = now().0;
    let t_ = tenant.as_str();
    let skus = || plan.iter().flat_map(|p| p.skus.iter());
    let ext_changes = plan
        .iter()
        .map(|p| ("product", &p.id, &p.external_ids, &p.stored_external_ids))
        .chain(skus().map(|s| ("sku", &s.id, &s.external_ids, &s.stored_external_ids)));
    let mut added: Vec<Vec<Arg<'_>>> = Vec::new();
    for (kind, owner, now, before) in ext_changes {
        for e in before.iter().filter(|e| !now.contains(e)) {
            let q = sqlx::query(
                "DELETE FROM catalog_external_ids \
                 WHERE tenant_id = $1 AND kind = $2 AND external_id = $3 AND system = $4",
            )
            .bind(t_)
            .bind(kind)
            .bind(&e.id)
            .bind(&e.system);
            execute(q, conn).await?;
        }
        for e in now.iter().filter(|e| !before.contains(e)) {
            added.push(vec![
                Arg::Text(t_),
                Arg::Text(kind),
                Arg::Text(&e.id),
                Arg::Text(&e.system),
                Arg::Text(owner),
            ]);
        }
    }
    for s in skus().filter(|s| s.stored_gtin.is_some() && s.gtin != s.stored_gtin) {
        let q = sqlx::query("UPDATE skus SET gtin = NULL WHERE tenant_id = $1 AND id = $2")
            .bind(t_)
            .bind(&s.id);
        execute(q, conn).await?;
    }

    let mut new_products = Vec::new();
    let mut attributes: HashMap<&str, String> = HashMap::new();
    for p in plan {
        if p.new || !p.changed_fields.is_empty() {
            attributes.insert(&p.id, serde_json::to_string(&p.attributes)?);
        }
        for s in p.skus.iter().filter(|s| s.changed) {
            attributes.insert(&s.id, serde_json::to_string(&s.attributes)?);
        }
    }
    let attrs = |id: &str| attributes.get(id).map_or("{}", String::as_str);
    for p in plan {
        let sku_changed = p.skus.iter().any(|s| s.changed);
        if p.new {
            new_products.push(vec![
                Arg::Text(&p.id),
                Arg::Text(t_),
                Arg::Text(&p.code),
                Arg::Text(&p.name),
                Arg::Maybe(p.category.as_deref()),
                Arg::Text(&p.unit),
                Arg::Text(p.status.as_str()),
                Arg::Text(attrs(&p.id)),
                Arg::Int(t),
                Arg::Int(t),
            ]);
        } else if !p.changed_fields.is_empty() {
            let q = sqlx::query(
                "UPDATE products SET name = $1, category = $2, unit = $3, status = $4, \
                 attributes = $5, updated_at = $6 WHERE tenant_id = $7 AND id = $8",
            )
            .bind(&p.name)
            .bind(p.category.as_deref())
            .bind(&p.unit)
            .bind(p.status.as_str())
            .bind(attrs(&p.id))
            .bind(t)
            .bind(t_)
            .bind(&p.id);
            execute(q, conn).await?;
        } else if sku_changed {
            let q =
                sqlx::query("UPDATE products SET updated_at = $1 WHERE tenant_id = $2 AND id = $3")
                    .bind(t)
                    .bind(t_)
                    .bind(&p.id);
            execute(q, conn).await?;
        }
    }
    insert_rows(
        conn,
        "products (id, tenant_id, code, name, category, unit, status, attributes, created_at, updated_at)",
        10,
        &new_products,
    )
    .await?;

    let mut new_skus = Vec::new();
    for p in plan {
        for s in p.skus.iter().filter(|s| s.changed) {
            if s.new {
                new_skus.push(vec![
                    Arg::Text(&s.id),
                    Arg::Text(t_),
                    Arg::Text(&p.id),
                    Arg::Text(&s.code),
                    Arg::Maybe(s.gtin.as_deref()),
                    Arg::Text(&s.name),
                    Arg::Text(s.status.as_str()),
                    Arg::Text(attrs(&s.id)),
                    Arg::Int(t),
                    Arg::Int(t),
                ]);
                continue;
            }
            let q = sqlx::query(
                "UPDATE skus SET gtin = $1, name = $2, status = $3, attributes = $4, \
                 updated_at = $5 WHERE tenant_id = $6 AND id = $7",
            )
            .bind(s.gtin.as_deref())
            .bind(&s.name)
            .bind(s.status.as_str())
            .bind(attrs(&s.id))
            .bind(t)
            .bind(t_)
            .bind(&s.id);
            execute(q, conn).await?;
        }
    }
    insert_rows(
        conn,
        "skus (id, tenant_id, product_id, code, gtin, name, status, attributes, created_at, updated_at)",
        10,
        &new_skus,
    )
    .await?;
    insert_rows(
        conn,
        "catalog_external_ids (tenant_id, kind, external_id, system, owner_id)",
        5,
        &added,
    )
    .await?;
    Ok(())
}
