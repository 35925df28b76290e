//! The organisation tree over GraphQL: nodes, their lookups and listings,
//! regions at a point, staff, and the batch upsert (`docs/org.md`).
//!
//! Every operation acts within the caller's org scope: a credential limited
//! to a node sees that node and what lies under it (other nodes are null,
//! absent from lists, or `NOT_FOUND` when named), and writes only there
//! (`FORBIDDEN`, naming the node).

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject,
};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::org::{self, Listing, NodeKey, Patch, Scope};
use keel_core::{Error, TenantId, catalog};
use serde_json::{Map, Value};

use super::catalog::ExternalId;
use super::events::PageInfo;
use super::persons::Person;
use super::{authorize, commit, enqueue, principal, services, to_time};
use crate::errors::Gql as _;

/// Page size when `first` is not given.
const DEFAULT_PAGE: i32 = 50;

/// What a node is in the brand's organisation.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum OrgNodeKind {
    Headquarters,
    Region,
    Distributor,
    Store,
    Warehouse,
}

impl From<org::NodeKind> for OrgNodeKind {
    fn from(k: org::NodeKind) -> Self {
        match k {
            org::NodeKind::Headquarters => OrgNodeKind::Headquarters,
            org::NodeKind::Region => OrgNodeKind::Region,
            org::NodeKind::Distributor => OrgNodeKind::Distributor,
            org::NodeKind::Store => OrgNodeKind::Store,
            org::NodeKind::Warehouse => OrgNodeKind::Warehouse,
        }
    }
}

impl From<OrgNodeKind> for org::NodeKind {
    fn from(k: OrgNodeKind) -> Self {
        match k {
            OrgNodeKind::Headquarters => org::NodeKind::Headquarters,
            OrgNodeKind::Region => org::NodeKind::Region,
            OrgNodeKind::Distributor => org::NodeKind::Distributor,
            OrgNodeKind::Store => org::NodeKind::Store,
            OrgNodeKind::Warehouse => org::NodeKind::Warehouse,
        }
    }
}

/// Whether a node is in use.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum OrgNodeStatus {
    Active,
    Inactive,
}

impl From<org::NodeStatus> for OrgNodeStatus {
    fn from(s: org::NodeStatus) -> Self {
        match s {
            org::NodeStatus::Active => OrgNodeStatus::Active,
            org::NodeStatus::Inactive => OrgNodeStatus::Inactive,
        }
    }
}

impl From<OrgNodeStatus> for org::NodeStatus {
    fn from(s: OrgNodeStatus) -> Self {
        match s {
            OrgNodeStatus::Active => org::NodeStatus::Active,
            OrgNodeStatus::Inactive => org::NodeStatus::Inactive,
        }
    }
}

/// A point on the earth, in WGS-84 degrees.
#[derive(SimpleObject, InputObject, Clone, Copy)]
#[graphql(input_name = "GeoPointInput")]
pub(crate) struct GeoPoint {
    lat: f64,
    lng: f64,
}

fn to_external(e: org::ExternalId) -> ExternalId {
    catalog::ExternalId {
        system: e.system,
        id: e.id,
    }
    .into()
}

fn from_external(e: ExternalId) -> org::ExternalId {
    let e: catalog::ExternalId = e.into();
    org::ExternalId {
        system: e.system,
        id: e.id,
    }
}

/// A node of the organisation tree: headquarters, a sales region, a
/// distributor, a store or a warehouse.
#[derive(SimpleObject)]
#[graphql(complex)]
pub(crate) struct OrgNode {
    /// `org_…`.
    id: ID,
    kind: OrgNodeKind,
    /// The brand's own code, unique in the tenant (e.g. `CN-GD`).
    code: String,
    name: String,
    parent_id: Option<ID>,
    /// How many ancestors the node has (a root: 0).
    depth: i32,
    status: OrgNodeStatus,
    address: Option<String>,
    location: Option<GeoPoint>,
    /// A region's boundary: a GeoJSON Polygon or MultiPolygon.
    boundary: Option<Json<Value>>,
    /// A JSON object.
    attributes: Json<Map<String, Value>>,
    external_ids: Vec<ExternalId>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<org::Node> for OrgNode {
    fn from(n: org::Node) -> Self {
        OrgNode {
            id: n.id.into(),
            kind: n.kind.into(),
            code: n.code,
            name: n.name,
            parent_id: n.parent_id.map(Into::into),
            depth: n.depth as i32,
            status: n.status.into(),
            address: n.address,
            location: n.location.map(|l| GeoPoint {
                lat: l.lat,
                lng: l.lng,
            }),
            boundary: n.boundary.map(Json),
            attributes: Json(n.attributes),
            external_ids: n.external_ids.into_iter().map(to_external).collect(),
            created_at: to_time(n.created_at),
            updated_at: to_time(n.updated_at),
        }
    }
}

/// The caller's tenant and org scope, once it may `action` the org tree.
async fn caller<'a>(
    ctx: &Context<'a>,
    action: Action,
) -> async_graphql::Result<(TenantId, Scope<'a>)> {
    let tenant = authorize(ctx, objects::ORG, action).await?;
    Ok((tenant, Scope::of(principal(ctx)?.org_scope.as_deref())))
}

async fn reader(
    ctx: &Context<'_>,
) -> async_graphql::Result<impl std::ops::DerefMut<Target = keel_core::Conn>> {
    services(ctx)
        .db
        .reader()
        .acquire()
        .await
        .map_err(Error::from)
        .gql()
}

#[ComplexObject]
impl OrgNode {
    /// The parent; null for a root, and above the node the caller is
    /// limited to.
    async fn parent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OrgNode>> {
        let Some(pid) = &self.parent_id else {
            return Ok(None);
        };
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let mut conn = reader(ctx).await?;
        let found = org::get_node(&mut conn, &tenant, scope, &NodeKey::Id(pid.0.clone()))
            .await
            .gql()?;
        Ok(found.map(Into::into))
    }

    /// The people who work here, by role then person.
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrgStaff>> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let mut conn = reader(ctx).await?;
        let list = org::staff_of_node(&mut conn, &tenant, scope, &self.id)
            .await
            .gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}

/// A person who works at a node with a role.
#[derive(SimpleObject)]
#[graphql(complex)]
pub(crate) struct OrgStaff {
    person_id: ID,
    node_id: ID,
    /// e.g. `guide`, `salesperson`, `manager`.
    role: String,
    created_at: DateTime<Utc>,
}

impl From<org::Staff> for OrgStaff {
    fn from(s: org::Staff) -> Self {
        OrgStaff {
            person_id: s.person_id.into(),
            node_id: s.node_id.into(),
            role: s.role,
            created_at: to_time(s.created_at),
        }
    }
}

#[ComplexObject]
impl OrgStaff {
    /// The node.
    async fn node(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OrgNode>> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let mut conn = reader(ctx).await?;
        let found = org::get_node(
            &mut conn,
            &tenant,
            scope,
            &NodeKey::Id(self.node_id.0.clone()),
        )
        .await
        .gql()?;
        Ok(found.map(Into::into))
    }

    /// The person (needs permission to read persons, which are
    /// tenant-wide).
    async fn person(&self, ctx: &Context<'_>) -> async_graphql::Result<Person> {
        let tenant = authorize(ctx, objects::PERSONS, Action::Read).await?;
        let mut conn = reader(ctx).await?;
        Ok(keel_core::persons::get(&mut conn, &tenant, &self.person_id)
            .await
            .gql()?
            .into())
    }
}

#[derive(SimpleObject)]
pub(crate) struct OrgNodeEdge {
    /// The node's code.
    cursor: String,
    node: OrgNode,
}

/// A page of nodes in code order (byte order; Relay connection).
#[derive(SimpleObject)]
pub(crate) struct OrgNodeConnection {
    edges: Vec<OrgNodeEdge>,
    page_info: PageInfo,
}

/// A node to create or update by `code`. A field left out keeps its stored
/// value (a new node gets the default); `null` clears it; a value replaces
/// it entirely (`attributes` and `externalIds` are not merged). A parent is
/// named by code: stored already, or earlier in the batch.
#[derive(InputObject)]
pub(crate) struct OrgNodeInput {
    /// 1-64 of `A-Z a-z 0-9 . _ : -`.
    code: String,
    kind: OrgNodeKind,
    name: String,
    /// The parent's code; `null` makes the node a root.
    parent_code: MaybeUndefined<String>,
    /// A new node is `ACTIVE`.
    status: Option<OrgNodeStatus>,
    address: MaybeUndefined<String>,
    location: MaybeUndefined<GeoPoint>,
    /// A region's GeoJSON Polygon or MultiPolygon: closed rings, WGS-84
    /// `[longitude, latitude]`, at most 10,000 positions.
    boundary: MaybeUndefined<Json<Value>>,
    /// A JSON object, at most 64 KiB.
    attributes: MaybeUndefined<Json<Value>>,
    /// The node's ids in other systems, one per system.
    external_ids: MaybeUndefined<Vec<ExternalId>>,
}

fn patch<T, U>(v: MaybeUndefined<T>, f: impl FnOnce(T) -> U) -> Patch<U> {
    match v {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(x) => Patch::Set(f(x)),
    }
}

impl From<OrgNodeInput> for org::NodeInput {
    fn from(n: OrgNodeInput) -> Self {
        org::NodeInput {
            code: n.code,
            kind: n.kind.into(),
            name: n.name,
            parent_code: patch(n.parent_code, |p| p),
            status: n.status.map(Into::into),
            address: patch(n.address, |a| a),
            location: patch(n.location, |l| org::GeoPoint {
                lat: l.lat,
                lng: l.lng,
            }),
            boundary: patch(n.boundary, |b| b.0),
            attributes: patch(n.attributes, |a| a.0),
            external_ids: patch(n.external_ids, |list| {
                list.into_iter().map(from_external).collect()
            }),
        }
    }
}

/// What an upsert did to one node.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum OrgNodeChange {
    Created,
    Updated,
    Unchanged,
}

/// One node of an upsert, in the order of the input.
#[derive(SimpleObject)]
pub(crate) struct UpsertedOrgNode {
    change: OrgNodeChange,
    node: OrgNode,
}

/// What `upsertOrgNodes` did. A repeat of a stored batch reports 0 changed.
#[derive(SimpleObject)]
pub(crate) struct UpsertOrgNodesPayload {
    /// Nodes created or updated.
    changed: i32,
    created: i32,
    updated: i32,
    unchanged: i32,
    nodes: Vec<UpsertedOrgNode>,
}

impl From<org::UpsertOutcome> for UpsertOrgNodesPayload {
    fn from(o: org::UpsertOutcome) -> Self {
        let n = |c| o.nodes.iter().filter(|x| x.change == c).count() as i32;
        UpsertOrgNodesPayload {
            changed: o.changed() as i32,
            created: n(org::Change::Created),
            updated: n(org::Change::Updated),
            unchanged: n(org::Change::Unchanged),
            nodes: o
                .nodes
                .into_iter()
                .map(|u| UpsertedOrgNode {
                    change: match u.change {
                        org::Change::Created => OrgNodeChange::Created,
                        org::Change::Updated => OrgNodeChange::Updated,
                        org::Change::Unchanged => OrgNodeChange::Unchanged,
                    },
                    node: u.node.into(),
                })
                .collect(),
        }
    }
}

/// A person, a node and a role.
#[derive(InputObject)]
pub(crate) struct OrgStaffInput {
    node_id: ID,
    person_id: ID,
    /// 1-32 of `a-z 0-9 _`, e.g. `guide`, `salesperson`, `manager`.
    role: String,
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
pub(crate) struct OrgQuery;

#[Object]
impl OrgQuery {
    /// One node by exactly one of its id, its code or an external id; null
    /// when there is none the caller can see.
    async fn org_node(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        code: Option<String>,
        external_id: Option<ExternalId>,
    ) -> async_graphql::Result<Option<OrgNode>> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let key = one_key(vec![
            ("id", id.map(|i| NodeKey::Id(i.0))),
            ("code", code.map(NodeKey::Code)),
            (
                "externalId",
                external_id.map(|e| NodeKey::External(from_external(e))),
            ),
        ])?;
        let mut conn = reader(ctx).await?;
        let found = org::get_node(&mut conn, &tenant, scope, &key).await.gql()?;
        Ok(found.map(Into::into))
    }

    /// Nodes in code order: the children of `parent`, or everything under
    /// `under`, or (with neither) the roots the caller can see; optionally
    /// of one kind; `first` (at most 200) after the cursor `after`.
    #[graphql(complexity = "first.unwrap_or(50).max(0) as usize * child_complexity")]
    async fn org_nodes(
        &self,
        ctx: &Context<'_>,
        parent: Option<ID>,
        under: Option<ID>,
        kind: Option<OrgNodeKind>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OrgNodeConnection> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let listing = match (&parent, &under) {
            (None, None) => Listing::Roots,
            (Some(p), None) => Listing::ChildrenOf(p),
            (None, Some(u)) => Listing::Under(u),
            (Some(_), Some(_)) => {
                return Err(Error::bad_input("under", "give parent or under, not both")).gql();
            }
        };
        let first = first.unwrap_or(DEFAULT_PAGE);
        let limit = usize::try_from(first).unwrap_or(0);
        let mut conn = reader(ctx).await?;
        let page = org::list(
            &mut conn,
            &tenant,
            scope,
            listing,
            kind.map(Into::into),
            after.as_deref(),
            limit,
        )
        .await
        .gql()?;
        Ok(OrgNodeConnection {
            page_info: PageInfo {
                has_next_page: page.next.is_some(),
                end_cursor: page.nodes.last().map(|n| n.code.clone()),
            },
            edges: page
                .nodes
                .into_iter()
                .map(|n| OrgNodeEdge {
                    cursor: n.code.clone(),
                    node: n.into(),
                })
                .collect(),
        })
    }

    /// The ancestors of a node, the root first, ending with its parent
    /// (only those at or under the node the caller is limited to).
    async fn org_ancestors(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Vec<OrgNode>> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let mut conn = reader(ctx).await?;
        let list = org::ancestors(&mut conn, &tenant, scope, &id).await.gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The regions whose boundary contains the point, innermost first.
    async fn regions_at(
        &self,
        ctx: &Context<'_>,
        lat: f64,
        lng: f64,
    ) -> async_graphql::Result<Vec<OrgNode>> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let mut conn = reader(ctx).await?;
        let list = org::regions_at(&mut conn, &tenant, scope, org::GeoPoint { lat, lng })
            .await
            .gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The staff of a node, or the nodes a person works at: exactly one of
    /// `nodeId` and `personId`.
    async fn org_staff(
        &self,
        ctx: &Context<'_>,
        node_id: Option<ID>,
        person_id: Option<ID>,
    ) -> async_graphql::Result<Vec<OrgStaff>> {
        let (tenant, scope) = caller(ctx, Action::Read).await?;
        let key = one_key(vec![
            ("nodeId", node_id.map(|n| (true, n.0))),
            ("personId", person_id.map(|p| (false, p.0))),
        ])?;
        let mut conn = reader(ctx).await?;
        let list = match key {
            (true, node) => org::staff_of_node(&mut conn, &tenant, scope, &node).await,
            (false, person) => org::staff_of_person(&mut conn, &tenant, scope, &person).await,
        }
        .gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub(crate) struct OrgMutation;

#[Object]
impl OrgMutation {
    /// Creates or updates up to 1,000 nodes by code, in order: all or
    /// nothing, idempotent (a repeat changes nothing and emits nothing).
    /// Moving a node moves its subtree. Each change emits
    /// `org.node_created` or `org.node_updated`.
    async fn upsert_org_nodes(
        &self,
        ctx: &Context<'_>,
        nodes: Vec<OrgNodeInput>,
    ) -> async_graphql::Result<UpsertOrgNodesPayload> {
        let (tenant, scope) = caller(ctx, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let items: Vec<org::NodeInput> = nodes.into_iter().map(Into::into).collect();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let out = org::upsert_nodes(&mut tx, &tenant, scope, &items, &actor)
            .await
            .gql()?;
        enqueue(ctx, &mut tx, &tenant, &out.events).await?;
        commit(tx).await?;
        Ok(out.into())
    }

    /// Attaches a person to a node with a role (`org.staff_added`); adding
    /// what is there already changes nothing.
    async fn add_org_staff(
        &self,
        ctx: &Context<'_>,
        input: OrgStaffInput,
    ) -> async_graphql::Result<OrgStaff> {
        let (tenant, scope) = caller(ctx, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let out = org::add_staff(
            &mut tx,
            &tenant,
            scope,
            &input.node_id,
            &input.person_id,
            &input.role,
            &actor,
        )
        .await
        .gql()?;
        enqueue(ctx, &mut tx, &tenant, out.event.as_slice()).await?;
        commit(tx).await?;
        Ok(out.staff.into())
    }

    /// Detaches a person from a node in a role (`org.staff_removed`); true
    /// when they were attached so, false when there was nothing to remove.
    async fn remove_org_staff(
        &self,
        ctx: &Context<'_>,
        input: OrgStaffInput,
    ) -> async_graphql::Result<bool> {
        let (tenant, scope) = caller(ctx, Action::Write).await?;
        let actor = principal(ctx)?.label();
        let mut tx = services(ctx).db.begin().await.gql()?;
        let out = org::remove_staff(
            &mut tx,
            &tenant,
            scope,
            &input.node_id,
            &input.person_id,
            &input.role,
            &actor,
        )
        .await
        .gql()?;
        let removed = out.is_some();
        if let Some(change) = out {
            enqueue(ctx, &mut tx, &tenant, change.event.as_slice()).await?;
        }
        commit(tx).await?;
        Ok(removed)
    }
}
