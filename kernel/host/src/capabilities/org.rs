//! `keel:plugin/org` (0.2): the tenant's organisation tree, read with
//! `org-read`, written with `org-write`.
//!
//! A plugin reads the whole tenant's tree: it is the plugin that enforces
//! its caller's scope on what it shows (`call-context.scope`, with the
//! SDK's helper), the way `rewards` limits a scoped marketer's campaigns.
//! Its writes for a client are held by the kernel to what the client could
//! write itself: the `org` write right, and for a client limited to a node,
//! that node's subtree. Writes append `org.*` events in the call's
//! transaction and reach subscribers like any event.

use keel_core::org::{self, ExternalId, GeoPoint, NodeKey, NodeKind, Scope};

use super::wit;
use crate::bindings::WitError;
use crate::bindings::keel::plugin::org::{self as w, Host};
use crate::bindings::keel::plugin::types::ExternalId as WitExternalId;
use crate::manifest::Capability;
use crate::state::State;

fn kind_to_wit(k: NodeKind) -> w::NodeKind {
    match k {
        NodeKind::Headquarters => w::NodeKind::Headquarters,
        NodeKind::Region => w::NodeKind::Region,
        NodeKind::Distributor => w::NodeKind::Distributor,
        NodeKind::Store => w::NodeKind::Store,
        NodeKind::Warehouse => w::NodeKind::Warehouse,
    }
}

fn node_to_wit(n: org::Node) -> w::Node {
    w::Node {
        id: n.id,
        kind: kind_to_wit(n.kind),
        code: n.code,
        name: n.name,
        parent_id: n.parent_id,
        status: n.status.as_str().to_owned(),
        address: n.address,
        location: n.location.map(|p| w::GeoPoint {
            lat: p.lat,
            lng: p.lng,
        }),
        boundary: n.boundary.map(|b| b.to_string()),
        attributes: serde_json::Value::Object(n.attributes).to_string(),
        external_ids: n
            .external_ids
            .into_iter()
            .map(|e| WitExternalId {
                system: e.system,
                id: e.id,
            })
            .collect(),
    }
}

fn staff_to_wit(s: org::Staff) -> w::Staff {
    w::Staff {
        person_id: s.person_id,
        node_id: s.node_id,
        role: s.role,
    }
}

/// A page size the plugin asked for, within the kernel's page.
fn page_limit(limit: u32) -> Result<usize, WitError> {
    if limit == 0 || limit as usize > org::MAX_PAGE {
        return Err(WitError::InvalidInput(format!(
            "limit: must be 1-{}",
            org::MAX_PAGE
        )));
    }
    Ok(limit as usize)
}

impl Host for State {
    async fn get_node(
        &mut self,
        key: w::NodeKey,
    ) -> wasmtime::Result<Result<Option<w::Node>, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let key = match key {
            w::NodeKey::Id(id) => NodeKey::Id(id),
            w::NodeKey::Code(code) => NodeKey::Code(code),
            w::NodeKey::External(e) => NodeKey::External(ExternalId {
                system: e.system,
                id: e.id,
            }),
        };
        let tenant = self.tenant().clone();
        Ok(
            wit(org::get_node(&mut *self.read().await?, &tenant, Scope::Tenant, &key).await)?
                .map(|n| n.map(node_to_wit)),
        )
    }

    async fn ancestors(&mut self, id: String) -> wasmtime::Result<Result<Vec<w::Node>, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        Ok(
            wit(org::ancestors(&mut *self.read().await?, &tenant, Scope::Tenant, &id).await)?
                .map(|ns| ns.into_iter().map(node_to_wit).collect()),
        )
    }

    async fn children(
        &mut self,
        parent_id: Option<String>,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<w::NodePage, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let limit = match page_limit(limit) {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let tenant = self.tenant().clone();
        Ok(wit(org::children(
            &mut *self.read().await?,
            &tenant,
            Scope::Tenant,
            parent_id.as_deref(),
            after.as_deref(),
            limit,
        )
        .await)?
        .map(|page| w::NodePage {
            nodes: page.nodes.into_iter().map(node_to_wit).collect(),
            next: page.next,
        }))
    }

    async fn is_within(
        &mut self,
        id: String,
        ancestor_id: String,
    ) -> wasmtime::Result<Result<bool, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        wit(org::is_within(
            &mut *self.read().await?,
            &tenant,
            Scope::Tenant,
            &id,
            &ancestor_id,
        )
        .await)
    }

    async fn regions_at(
        &mut self,
        point: w::GeoPoint,
    ) -> wasmtime::Result<Result<Vec<w::Node>, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let point = GeoPoint {
            lat: point.lat,
            lng: point.lng,
        };
        let tenant = self.tenant().clone();
        Ok(
            wit(org::regions_at(&mut *self.read().await?, &tenant, Scope::Tenant, point).await)?
                .map(|ns| ns.into_iter().map(node_to_wit).collect()),
        )
    }

    async fn staff_of_node(
        &mut self,
        node_id: String,
    ) -> wasmtime::Result<Result<Vec<w::Staff>, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        Ok(wit(
            org::staff_of_node(&mut *self.read().await?, &tenant, Scope::Tenant, &node_id).await,
        )?
        .map(|s| s.into_iter().map(staff_to_wit).collect()))
    }

    async fn staff_of_person(
        &mut self,
        person_id: String,
    ) -> wasmtime::Result<Result<Vec<w::Staff>, WitError>> {
        if let Err(e) = self.require(Capability::OrgRead) {
            return Ok(Err(e));
        }
        let tenant = self.tenant().clone();
        Ok(wit(
            org::staff_of_person(&mut *self.read().await?, &tenant, Scope::Tenant, &person_id)
                .await,
        )?
        .map(|s| s.into_iter().map(staff_to_wit).collect()))
    }

    async fn upsert_nodes(&mut self, nodes: String) -> wasmtime::Result<Result<u32, WitError>> {
        if let Err(e) = self.require_write_for_caller(Capability::OrgWrite) {
            return Ok(Err(e));
        }
        let inputs = match wit(org::parse_nodes_json(&nodes))? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let tenant = self.tenant().clone();
        let actor = format!("plugin:{}", self.namespace());
        let savepoint = self.begin_batch().await?;
        // Written for a caller limited to an org node, the nodes stay under
        // it, as they would in the kernel's own upsert.
        let scope = self.chain.scope.clone();
        let outcome = match wit(org::upsert_nodes(
            self.conn().await?,
            &tenant,
            Scope::of(scope.as_deref()),
            &inputs,
            &actor,
        )
        .await)?
        {
            Ok(o) => o,
            Err(e) => {
                self.end_batch(&savepoint, false).await?;
                return Ok(Err(e));
            }
        };
        if let Err(e) = self.deliver_and_end(&savepoint, &outcome.events).await? {
            return Ok(Err(e));
        }
        Ok(Ok(u32::try_from(outcome.changed()).unwrap_or(u32::MAX)))
    }
}
