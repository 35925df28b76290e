//! The tenant's organisation tree, owned by the kernel: headquarters, sales
//! regions, distributors, stores and warehouses, and the staff attached to
//! them. Reading needs the `org-read` capability, writing `org-write`
//! (contract 0.2).
//!
//! ```no_run
//! # use keel_sdk::{Context, Error, Result};
//! # struct Campaign { region: String }
//! # fn check(ctx: &Context, campaign: &Campaign) -> Result<()> {
//! // A scoped caller may act only under its node.
//! if let Some(scope) = ctx.scope() {
//!     if !keel_sdk::org::is_within(&campaign.region, scope)? {
//!         return Err(Error::Denied(format!("outside {scope}")));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::bindings::keel::plugin::org as wit;
use crate::catalog::{ExternalId, external_from_wit, external_to_wit, object};
use crate::{Error, Result};

/// What a node of the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Headquarters,
    Region,
    Distributor,
    Store,
    Warehouse,
}

/// A point on the earth, WGS-84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub lat: f64,
    pub lng: f64,
}

/// A node of the organisation tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The kernel's id (`org_…`).
    pub id: String,
    pub kind: NodeKind,
    /// The brand's own code, unique in the tenant (e.g. `CN-GD`).
    pub code: String,
    pub name: String,
    pub parent_id: Option<String>,
    /// `active` or `inactive`.
    pub status: String,
    pub address: Option<String>,
    pub location: Option<GeoPoint>,
    /// A region's boundary: a GeoJSON Polygon or MultiPolygon.
    pub boundary: Option<serde_json::Value>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub external_ids: Vec<ExternalId>,
}

/// How to find one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKey {
    Id(String),
    Code(String),
    External(ExternalId),
}

/// A page of nodes; pass `next` as `after` to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePage {
    pub nodes: Vec<Node>,
    pub next: Option<String>,
}

/// A person who works at a node: a shopping guide, a salesperson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub person_id: String,
    pub node_id: String,
    /// e.g. `guide`, `salesperson`, `manager`.
    pub role: String,
}

/// The most nodes one [`children`] page or [`upsert_nodes`] call takes.
pub const MAX_BATCH: usize = 1000;

fn kind(k: wit::NodeKind) -> NodeKind {
    match k {
        wit::NodeKind::Headquarters => NodeKind::Headquarters,
        wit::NodeKind::Region => NodeKind::Region,
        wit::NodeKind::Distributor => NodeKind::Distributor,
        wit::NodeKind::Store => NodeKind::Store,
        wit::NodeKind::Warehouse => NodeKind::Warehouse,
    }
}

fn node(n: wit::Node) -> Result<Node> {
    let boundary = n
        .boundary
        .map(|b| serde_json::from_str(&b).map_err(|e| Error::Internal(format!("boundary: {e}"))))
        .transpose()?;
    Ok(Node {
        attributes: object("node attributes", &n.attributes)?,
        boundary,
        id: n.id,
        kind: kind(n.kind),
        code: n.code,
        name: n.name,
        parent_id: n.parent_id,
        status: n.status,
        address: n.address,
        location: n.location.map(|p| GeoPoint {
            lat: p.lat,
            lng: p.lng,
        }),
        external_ids: n.external_ids.into_iter().map(external_from_wit).collect(),
    })
}

fn nodes(list: Vec<wit::Node>) -> Result<Vec<Node>> {
    list.into_iter().map(node).collect()
}

fn staff(list: Vec<wit::Staff>) -> Vec<Staff> {
    list.into_iter()
        .map(|s| Staff {
            person_id: s.person_id,
            node_id: s.node_id,
            role: s.role,
        })
        .collect()
}

/// The node `key` names, if any.
pub fn get_node(key: &NodeKey) -> Result<Option<Node>> {
    let key = match key {
        NodeKey::Id(v) => wit::NodeKey::Id(v.clone()),
        NodeKey::Code(v) => wit::NodeKey::Code(v.clone()),
        NodeKey::External(e) => wit::NodeKey::External(external_to_wit(e)),
    };
    wit::get_node(&key)?.map(node).transpose()
}

/// The node's ancestors, the root first, ending with its parent.
pub fn ancestors(id: &str) -> Result<Vec<Node>> {
    nodes(wit::ancestors(id)?)
}

/// Direct children of a node (or the roots, for `None`), in code order.
pub fn children(parent_id: Option<&str>, after: Option<&str>, limit: u32) -> Result<NodePage> {
    let page = wit::children(parent_id, after, limit)?;
    Ok(NodePage {
        nodes: nodes(page.nodes)?,
        next: page.next,
    })
}

/// True when `id` is `ancestor_id` or lies under it: the check behind a
/// scoped caller ([`Context::scope`](crate::Context::scope)).
pub fn is_within(id: &str, ancestor_id: &str) -> Result<bool> {
    Ok(wit::is_within(id, ancestor_id)?)
}

/// The region nodes whose boundary contains the point, innermost first.
pub fn regions_at(point: GeoPoint) -> Result<Vec<Node>> {
    nodes(wit::regions_at(wit::GeoPoint {
        lat: point.lat,
        lng: point.lng,
    })?)
}

/// The staff of a node.
pub fn staff_of_node(node_id: &str) -> Result<Vec<Staff>> {
    Ok(staff(wit::staff_of_node(node_id)?))
}

/// The nodes a person works at, with their roles.
pub fn staff_of_person(person_id: &str) -> Result<Vec<Staff>> {
    Ok(staff(wit::staff_of_person(person_id)?))
}

/// Creates or updates nodes by code: each item serializes to the object
/// GraphQL's `OrgNodeInput` takes (at most [`MAX_BATCH`], parents before
/// children or already stored). Idempotent; one invalid item fails the
/// batch, naming it. Returns how many nodes changed.
pub fn upsert_nodes<T: Serialize>(nodes: &[T]) -> Result<u32> {
    let json = serde_json::to_string(nodes).map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(wit::upsert_nodes(&json)?)
}
