//! The organisation tree (One Meta): a brand's headquarters, sales regions,
//! distributors, stores and warehouses, their staff, and the org node a
//! credential may be limited to ("HQ sets the rules, regions spend").
//!
//! Nodes have the kernel's id (`org_…`) and the brand's own `code`, unique
//! in the tenant; external ids (`system`, `id`) name them in other systems.
//! Which kind may sit under which is fixed by [`NodeKind::may_be_under`]:
//! headquarters are roots; regions nest under headquarters and regions;
//! distributors, stores and warehouses sit under headquarters, regions or
//! distributors (distributors also under distributors); stores and
//! warehouses have no children. Any kind but headquarters may also be a
//! root, for a brand that keeps no headquarters node.
//!
//! Each node keeps its materialised path (`org_a/org_b/`), so "is X within
//! Y" compares two strings and "everything under Y" is one index range;
//! moving a node rewrites its subtree's paths in one statement.
//!
//! A [`Scope`] is what a caller may see and change: the whole tenant, or
//! one node and everything under it. Outside its scope a node does not
//! exist for reads (`NOT_FOUND`), and writes are `FORBIDDEN`.
//!
//! Writes go through [`upsert_nodes`] (batches by code) and the staff
//! functions; each change appends a kernel event (`org.node_created`,
//! `org.node_updated`, `org.staff_added`, `org.staff_removed`) in the same
//! transaction, and nothing else changes when one item of a batch fails.

mod geo;
mod input;
mod staff;
mod upsert;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use sqlx::Row as _;

use crate::db::Conn;
use crate::{Error, Result, TenantId, Timestamp};

pub use crate::master_data::{ExternalId, MAX_EXTERNAL_IDS, Patch};
pub use geo::{Boundary, BoundingBox, GeoPoint, MAX_BOUNDARY_POSITIONS, MAX_BOUNDARY_RINGS};
pub use input::{MAX_BATCH, NodeInput, parse_nodes_json};
pub use staff::{
    MAX_STAFF_PER_NODE, Staff, StaffChange, add_staff, remove_staff, staff_of_node, staff_of_person,
};
pub use upsert::{Change, UpsertOutcome, Upserted, upsert_nodes};

/// The most nodes one page returns.
pub const MAX_PAGE: usize = 200;
/// The deepest a node may sit (a root has depth 0).
pub const MAX_DEPTH: i64 = 15;
/// The largest attributes object, serialised.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;

/// What a node is in the brand's organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Headquarters,
    Region,
    Distributor,
    Store,
    Warehouse,
}

impl NodeKind {
    pub const ALL: [NodeKind; 5] = [
        NodeKind::Headquarters,
        NodeKind::Region,
        NodeKind::Distributor,
        NodeKind::Store,
        NodeKind::Warehouse,
    ];

    /// The stored (and WIT) name: `headquarters`, `region`, …
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Headquarters => "headquarters",
            NodeKind::Region => "region",
            NodeKind::Distributor => "distributor",
            NodeKind::Store => "store",
            NodeKind::Warehouse => "warehouse",
        }
    }

    /// Parses a kind by name, in any letter case (`store`, `STORE`).
    pub fn parse(s: &str) -> Option<NodeKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// True when a node of this kind may have a parent of kind `parent`
    /// (`None`: be a root).
    pub fn may_be_under(self, parent: Option<NodeKind>) -> bool {
        use NodeKind::*;
        match (self, parent) {
            (Headquarters, p) => p.is_none(),
            (_, None) => true,
            (Region, Some(p)) => matches!(p, Headquarters | Region),
            (Distributor, Some(p)) => matches!(p, Headquarters | Region | Distributor),
            (Store | Warehouse, Some(p)) => matches!(p, Headquarters | Region | Distributor),
        }
    }

    /// The kinds a node of this kind may have as its parent, for messages.
    fn parents_allowed(self) -> &'static str {
        match self {
            NodeKind::Headquarters => "none: headquarters are roots",
            NodeKind::Region => "headquarters or a region",
            NodeKind::Distributor => "headquarters, a region or a distributor",
            NodeKind::Store | NodeKind::Warehouse => "headquarters, a region or a distributor",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeKind::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown kind {s:?}; kinds are headquarters, region, distributor, store, warehouse"
            ))
        })
    }
}

/// Whether a node is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NodeStatus {
    #[default]
    Active,
    Inactive,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Inactive => "inactive",
        }
    }

    /// Parses a status by name, in any letter case.
    pub fn parse(s: &str) -> Option<NodeStatus> {
        [NodeStatus::Active, NodeStatus::Inactive]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

impl<'de> Deserialize<'de> for NodeStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeStatus::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown status {s:?}; statuses are active, inactive"
            ))
        })
    }
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The kernel's id, `org_` and 32 hex digits.
    pub id: String,
    pub kind: NodeKind,
    /// The brand's own code, unique in the tenant (e.g. `CN-GD`).
    pub code: String,
    pub name: String,
    pub parent_id: Option<String>,
    /// How many ancestors it has (a root: 0).
    pub depth: i64,
    pub status: NodeStatus,
    pub address: Option<String>,
    pub location: Option<GeoPoint>,
    /// A region's boundary (canonical GeoJSON Polygon or MultiPolygon).
    pub boundary: Option<Value>,
    pub attributes: Map<String, Value>,
    /// Sorted by system.
    pub external_ids: Vec<ExternalId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub(crate) path: String,
}

impl Node {
    /// The node as the WIT's `node` record and the events' payloads show
    /// it (camelCase JSON), with or without its boundary.
    pub fn to_json(&self, with_boundary: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "code": self.code,
            "name": self.name,
            "parentId": self.parent_id,
            "status": self.status.as_str(),
            "address": self.address,
            "location": self.location,
            "attributes": self.attributes,
            "externalIds": self.external_ids,
        });
        if with_boundary {
            v["boundary"] = self.boundary.clone().unwrap_or(Value::Null);
        }
        v
    }

    /// The ids of its ancestors, the root first, ending with its parent.
    pub fn ancestor_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        ids.pop();
        ids
    }

    /// True when this node is `other` or lies under it.
    pub fn is_within(&self, other: &Node) -> bool {
        self.path.starts_with(&other.path)
    }
}

/// How a caller names a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKey {
    Id(String),
    Code(String),
    External(ExternalId),
}

/// The part of the tree an operation may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope<'a> {
    /// The whole tenant.
    #[default]
    Tenant,
    /// This node (by id) and everything under it.
    Node(&'a str),
}

impl<'a> Scope<'a> {
    /// The scope of a credential limited to `org_scope` (none: the tenant).
    pub fn of(org_scope: Option<&'a str>) -> Scope<'a> {
        org_scope.map_or(Scope::Tenant, Scope::Node)
    }
}

/// The scope's node, resolved: its id, code and path.
#[derive(Debug, Clone)]
pub(crate) struct ScopeNode {
    pub code: String,
    pub path: String,
}

impl ScopeNode {
    fn covers(&self, path: &str) -> bool {
        path.starts_with(&self.path)
    }
}

/// Resolves a scope: `None` for the whole tenant. A scope whose node is
/// gone (it never is: nodes are not deleted) sees nothing.
pub(crate) async fn resolve_scope(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
) -> Result<Option<ScopeNode>> {
    let Scope::Node(id) = scope else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT code, path FROM org_nodes WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            Error::Forbidden(format!(
                "the org node {id} this credential is limited to does not exist"
            ))
        })?;
    Ok(Some(ScopeNode {
        code: row.try_get("code")?,
        path: row.try_get("path")?,
    }))
}

/// The exclusive upper bound of the subtree range of `path`.
fn path_end(path: &str) -> String {
    let mut end = path[..path.len() - 1].to_owned();
    end.push('0');
    end
}

pub(crate) const COLUMNS: &str = "id, kind, code, name, parent_id, path, depth, status, address, \
     lat, lng, boundary, attributes, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Node> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let stored = |what: &str, v: &str| Error::Internal(anyhow::anyhow!("stored org {what} {v:?}"));
    let lat: Option<f64> = row.try_get("lat")?;
    let lng: Option<f64> = row.try_get("lng")?;
    let attributes = match serde_json::from_str(&row.try_get::<String, _>("attributes")?)? {
        Value::Object(m) => m,
        _ => return Err(stored("attributes", "not an object")),
    };
    Ok(Node {
        id: row.try_get("id")?,
        kind: NodeKind::parse(&kind).ok_or_else(|| stored("kind", &kind))?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        parent_id: row.try_get("parent_id")?,
        depth: row.try_get("depth")?,
        status: NodeStatus::parse(&status).ok_or_else(|| stored("status", &status))?,
        address: row.try_get("address")?,
        location: lat.zip(lng).map(|(lat, lng)| GeoPoint { lat, lng }),
        boundary: row
            .try_get::<Option<String>, _>("boundary")?
            .map(|b| serde_json::from_str(&b))
            .transpose()?,
        attributes,
        external_ids: Vec::new(),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        path: row.try_get("path")?,
    })
}

/// Fills in the external ids of `nodes` (one query).
pub(crate) async fn with_external_ids(
    conn: &mut Conn,
    tenant: &TenantId,
    mut nodes: Vec<Node>,
) -> Result<Vec<Node>> {
    if nodes.is_empty() {
        return Ok(nodes);
    }
    let mut by_node: HashMap<String, Vec<ExternalId>> = HashMap::new();
    for chunk in nodes.chunks(500) {
        let sql = format!(
            "SELECT node_id, system, external_id FROM org_external_ids \
             WHERE tenant_id = $1 AND node_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for n in chunk {
            q = q.bind(&n.id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            by_node
                .entry(row.try_get("node_id")?)
                .or_default()
                .push(ExternalId {
                    system: row.try_get("system")?,
                    id: row.try_get("external_id")?,
                });
        }
    }
    for n in &mut nodes {
        let mut ids = by_node.remove(&n.id).unwrap_or_default();
        ids.sort();
        n.external_ids = ids;
    }
    Ok(nodes)
}

/// `$first, $first+1, …` for `count` parameters.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One node by id, whatever the scope (for the kernel's own checks).
pub(crate) async fn load(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Option<Node>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM org_nodes WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(with_external_ids(conn, tenant, vec![from_row(&r)?])
            .await?
            .pop()),
        None => Ok(None),
    }
}

/// A node the scope can see, or `NOT_FOUND` naming `id`.
pub(crate) async fn visible(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Option<&ScopeNode>,
    id: &str,
) -> Result<Node> {
    match load(conn, tenant, id).await? {
        Some(n) if scope.is_none_or(|s| s.covers(&n.path)) => Ok(n),
        _ => Err(Error::not_found("org node", id)),
    }
}

/// A node by id, code or external id; `None` when there is none in the
/// scope.
pub async fn get_node(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    key: &NodeKey,
) -> Result<Option<Node>> {
    let scope = resolve_scope(conn, tenant, scope).await?;
    let id = match key {
        NodeKey::Id(id) => Some(id.clone()),
        NodeKey::Code(code) => {
            sqlx::query_scalar("SELECT id FROM org_nodes WHERE tenant_id = $1 AND code = $2")
                .bind(tenant.as_str())
                .bind(code)
                .fetch_optional(&mut *conn)
                .await?
        }
        NodeKey::External(x) => {
            sqlx::query_scalar(
                "SELECT node_id FROM org_external_ids WHERE tenant_id = $1 AND system = $2 AND external_id = $3",
            )
            .bind(tenant.as_str())
            .bind(&x.system)
            .bind(&x.id)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    let Some(id) = id else { return Ok(None) };
    Ok(load(conn, tenant, &id)
        .await?
        .filter(|n| scope.as_ref().is_none_or(|s| s.covers(&n.path))))
}

/// The ancestors of a node that the scope can see, the root first, ending
/// with its parent. `NOT_FOUND` when the node is not in the scope.
pub async fn ancestors(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    id: &str,
) -> Result<Vec<Node>> {
    let scope = resolve_scope(conn, tenant, scope).await?;
    let node = visible(conn, tenant, scope.as_ref(), id).await?;
    let ids = node.ancestor_ids();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM org_nodes WHERE tenant_id = $1 AND id IN ({}) ORDER BY depth",
        placeholders(2, ids.len())
    );
    let mut q = sqlx::query(&sql).bind(tenant.as_str());
    for i in &ids {
        q = q.bind(i);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let nodes = rows
        .iter()
        .map(from_row)
        .filter(|n| {
            n.as_ref()
                .map_or(true, |n| scope.as_ref().is_none_or(|s| s.covers(&n.path)))
        })
        .collect::<Result<Vec<_>>>()?;
    with_external_ids(conn, tenant, nodes).await
}

/// Which nodes to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing<'a> {
    /// The roots of what the scope can see: the tenant's roots, or the
    /// scope's own node.
    Roots,
    /// The direct children of a node.
    ChildrenOf(&'a str),
    /// Every node under a node (not the node itself).
    Under(&'a str),
}

/// One page of nodes, in code order.
#[derive(Debug, Clone)]
pub struct NodePage {
    pub nodes: Vec<Node>,
    /// The cursor of the next page (the last node's code), if there is one.
    pub next: Option<String>,
}

/// Lists nodes in code order, after the code `after`, at most `limit`
/// (1 to [`MAX_PAGE`]), optionally of one kind.
pub async fn list(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    listing: Listing<'_>,
    kind: Option<NodeKind>,
    after: Option<&str>,
    limit: usize,
) -> Result<NodePage> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad_input("first", format!("must be 1-{MAX_PAGE}")));
    }
    if after.is_some_and(|a| a.len() > input::MAX_CODE) {
        return Err(Error::bad_input("after", "is not a cursor of this list"));
    }
    let scope = resolve_scope(conn, tenant, scope).await?;
    let mut sql = format!("SELECT {COLUMNS} FROM org_nodes WHERE tenant_id = $1");
    let mut binds: Vec<String> = Vec::new();
    let mut push = |cond: &str, v: String, sql: &mut String| {
        binds.push(v);
        sql.push_str(&format!(" AND {cond} ${}", binds.len() + 1));
    };
    match (listing, &scope) {
        (Listing::Roots, None) => sql.push_str(" AND parent_id IS NULL"),
        (Listing::Roots, Some(s)) => push("path =", s.path.clone(), &mut sql),
        (Listing::ChildrenOf(id), _) => {
            let parent = visible(conn, tenant, scope.as_ref(), id).await?;
            push("parent_id =", parent.id, &mut sql);
        }
        (Listing::Under(id), _) => {
            let top = visible(conn, tenant, scope.as_ref(), id).await?;
            push("path >", top.path.clone(), &mut sql);
            push("path <", path_end(&top.path), &mut sql);
        }
    }
    if let Some(k) = kind {
        push("kind =", k.as_str().to_owned(), &mut sql);
    }
    if let Some(a) = after {
        push("code >", a.to_owned(), &mut sql);
    }
    sql.push_str(&format!(" ORDER BY code LIMIT ${}", binds.len() + 2));
    let mut q = sqlx::query(&sql).bind(tenant.as_str());
    for b in &binds {
        q = q.bind(b);
    }
    let rows = q.bind((limit + 1) as i64).fetch_all(&mut *conn).await?;
    let mut nodes = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let more = nodes.len() > limit;
    nodes.truncate(limit);
    let next = more.then(|| nodes.last().map(|n| n.code.clone())).flatten();
    Ok(NodePage {
        nodes: with_external_ids(conn, tenant, nodes).await?,
        next,
    })
}

/// The direct children of `parent_id` (or the roots), in code order: the
/// WIT's `children`.
pub async fn children(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    parent_id: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<NodePage> {
    let listing = parent_id.map_or(Listing::Roots, Listing::ChildrenOf);
    list(conn, tenant, scope, listing, None, after, limit).await
}

/// True when `id` is `ancestor_id` or lies under it. Both must be in the
/// scope (`NOT_FOUND` otherwise).
pub async fn is_within(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    id: &str,
    ancestor_id: &str,
) -> Result<bool> {
    let scope = resolve_scope(conn, tenant, scope).await?;
    let node = visible(conn, tenant, scope.as_ref(), id).await?;
    let ancestor = visible(conn, tenant, scope.as_ref(), ancestor_id).await?;
    Ok(node.is_within(&ancestor))
}

/// The regions whose boundary contains `point`, innermost first (deepest
/// in the tree; then by code), among those the scope can see.
pub async fn regions_at(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    point: GeoPoint,
) -> Result<Vec<Node>> {
    point.validate("point")?;
    let scope = resolve_scope(conn, tenant, scope).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM org_nodes WHERE tenant_id = $1 AND boundary IS NOT NULL \
         AND min_lat <= $2 AND max_lat >= $2 AND min_lng <= $3 AND max_lng >= $3"
    ))
    .bind(tenant.as_str())
    .bind(point.lat)
    .bind(point.lng)
    .fetch_all(&mut *conn)
    .await?;
    let mut found = Vec::new();
    for row in &rows {
        let n = from_row(row)?;
        if scope.as_ref().is_some_and(|s| !s.covers(&n.path)) {
            continue;
        }
        let Some(b) = &n.boundary else { continue };
        if Boundary::parse("boundary", b)?.contains(point) {
            found.push(n);
        }
    }
    found.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.code.cmp(&b.code)));
    with_external_ids(conn, tenant, found).await
}

/// Checks that a credential limited to `granter` (`None`: the whole
/// tenant) may create one limited to `granted`: the node must exist, and
/// a limited credential hands out only its own node or nodes under it —
/// never the whole tenant.
pub async fn check_grant(
    conn: &mut Conn,
    tenant: &TenantId,
    granter: Option<&str>,
    granted: Option<&str>,
) -> Result<()> {
    let target = match granted {
        Some(id) => Some(
            load(conn, tenant, id)
                .await?
                .ok_or_else(|| Error::bad_input("orgScope", format!("no org node {id:?}")))?,
        ),
        None => None,
    };
    let Some(own) = resolve_scope(conn, tenant, Scope::of(granter)).await? else {
        return Ok(());
    };
    match target {
        Some(t) if own.covers(&t.path) => Ok(()),
        Some(t) => Err(Error::Forbidden(format!(
            "org node {} is outside {}, the org node this credential is limited to; \
             it may hand out only {} or a node under it",
            t.code, own.code, own.code
        ))),
        None => Err(Error::Forbidden(format!(
            "this credential is limited to org node {}; it may not create a credential for the \
             whole tenant: give an orgScope at or under {}",
            own.code, own.code
        ))),
    }
}

/// The SQL condition (and its two bind values) that keeps a credential
/// query to those limited to `scope`'s node or a node under it.
pub(crate) async fn credential_filter(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
) -> Result<Option<(String, String)>> {
    Ok(resolve_scope(conn, tenant, scope).await?.map(|s| {
        let end = path_end(&s.path);
        (s.path, end)
    }))
}

/// True when `scope` covers a credential limited to `node` (`None`: the
/// whole tenant): the tenant covers every credential; a node covers those
/// limited to it or to a node under it.
pub async fn covers(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    node: Option<&str>,
) -> Result<bool> {
    let Some(s) = resolve_scope(conn, tenant, scope).await? else {
        return Ok(true);
    };
    let Some(node) = node else { return Ok(false) };
    Ok(load(conn, tenant, node)
        .await?
        .is_some_and(|n| s.covers(&n.path)))
}
