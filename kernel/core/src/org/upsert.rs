//! Batch upserts of org nodes by code: the GraphQL `upsertOrgNodes` and the
//! WIT's `upsert-nodes`, with one validation for both.
//!
//! Items apply in order, in the caller's transaction: a parent is named by
//! code, stored already or earlier in the batch. Fields left out keep their
//! stored value (or their default, for a new node); `null` clears them. An
//! item that changes nothing writes nothing and emits no event, so a retried
//! batch is harmless. Moving a node moves its subtree. The first invalid
//! item fails the batch with an error naming it (`nodes[3].parentCode`),
//! and the batch's savepoint rolls back: nothing of it is written.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::Row as _;

use super::input::{Checked, NodeInput, check, check_batch_size};
use super::{
    Boundary, COLUMNS, MAX_DEPTH, Node, NodeKind, Scope, ScopeNode, from_row, load, path_end,
    placeholders, resolve_scope, with_external_ids,
};
use crate::db::Conn;
use crate::error::is_unique_violation;
use crate::events::{self, Event, NewEvent};
use crate::master_data::Patch;
use crate::{Error, Result, TenantId, now};

/// What an upsert did to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// One node after an upsert.
#[derive(Debug, Clone)]
pub struct Upserted {
    pub node: Node,
    pub change: Change,
}

/// What a batch did: each item's node in input order, and the events it
/// appended (for the caller to hand to subscribers).
#[derive(Debug, Clone, Default)]
pub struct UpsertOutcome {
    pub nodes: Vec<Upserted>,
    pub events: Vec<Event>,
}

impl UpsertOutcome {
    /// How many nodes were created or updated.
    pub fn changed(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.change != Change::Unchanged)
            .count()
    }
}

/// Creates or updates nodes by code, in order, in `conn`'s transaction (see
/// the module docs). A scoped caller may write only nodes at or under its
/// node, and may not move its own node (`FORBIDDEN`, naming the item).
/// `actor` (`key:…`, `operator:…`, `plugin:…`) goes into the events.
pub async fn upsert_nodes(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    inputs: &[NodeInput],
    actor: &str,
) -> Result<UpsertOutcome> {
    check_batch_size(inputs.len())?;
    let mut checked = Vec::with_capacity(inputs.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, input) in inputs.iter().enumerate() {
        checked.push(check(input).map_err(|e| e.at(&format!("nodes[{i}]")))?);
        if let Some(first) = seen.insert(&input.code, i) {
            return Err(Error::bad_input(
                format!("nodes[{i}].code"),
                format!(
                    "{} is also nodes[{first}]; a batch names each node once",
                    input.code
                ),
            ));
        }
    }
    if checked.is_empty() {
        return Ok(UpsertOutcome::default());
    }
    // A savepoint: a failed batch leaves nothing behind even if the caller
    // goes on to commit its transaction.
    let mut sp = sqlx::Connection::begin(&mut *conn).await?;
    match apply_all(&mut sp, tenant, scope, checked, actor).await {
        Ok(out) => {
            sp.commit().await?;
            Ok(out)
        }
        Err(e) => {
            sp.rollback().await?;
            Err(e)
        }
    }
}

async fn apply_all(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    checked: Vec<Checked>,
    actor: &str,
) -> Result<UpsertOutcome> {
    let mut out = UpsertOutcome::default();
    // One batch of tree writes at a time per tenant (see org_trees).
    sqlx::query(
        "INSERT INTO org_trees (tenant_id, version) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = org_trees.version + 1",
    )
    .bind(tenant.as_str())
    .execute(&mut *conn)
    .await?;
    let scope = resolve_scope(conn, tenant, scope).await?;
    let mut codes: Vec<&str> = checked.iter().map(|c| c.code.as_str()).collect();
    for c in &checked {
        if let Patch::Set(p) = &c.parent_code {
            codes.push(p);
        }
    }
    let mut known = prefetch(conn, tenant, &codes).await?;
    for (i, c) in checked.into_iter().enumerate() {
        let (node, change, event) = apply(conn, tenant, scope.as_ref(), &mut known, c, actor)
            .await
            .map_err(|e| e.at(&format!("nodes[{i}]")))?;
        out.nodes.push(Upserted { node, change });
        out.events.extend(event);
    }
    Ok(out)
}

/// The stored nodes with these codes, by code.
async fn prefetch(
    conn: &mut Conn,
    tenant: &TenantId,
    codes: &[&str],
) -> Result<HashMap<String, Node>> {
    let mut unique: Vec<&str> = codes.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut nodes = Vec::new();
    for chunk in unique.chunks(500) {
        let sql = format!(
            "SELECT {COLUMNS} FROM org_nodes WHERE tenant_id = $1 AND code IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for c in chunk {
            q = q.bind(*c);
        }
        for row in q.fetch_all(&mut *conn).await? {
            nodes.push(from_row(&row)?);
        }
    }
    let nodes = with_external_ids(conn, tenant, nodes).await?;
    Ok(nodes.into_iter().map(|n| (n.code.clone(), n)).collect())
}

fn outside(node_code: &str, scope: &ScopeNode) -> Error {
    Error::Forbidden(format!(
        "org node {node_code} is outside {}, the org node this credential is limited to",
        scope.code
    ))
}

/// Applies one item: checks it against the tree, writes it if it changes
/// anything, and appends its event.
async fn apply(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Option<&ScopeNode>,
    known: &mut HashMap<String, Node>,
    c: Checked,
    actor: &str,
) -> Result<(Node, Change, Option<Event>)> {
    let existing = known.get(&c.code).cloned();
    if let (Some(s), Some(e)) = (scope, &existing)
        && !s.covers(&e.path)
    {
        return Err(outside(&e.code, s));
    }
    // The parent after this item, and whether it moved.
    let current_parent = existing.as_ref().and_then(|e| e.parent_id.clone());
    let kind_changed = existing.as_ref().is_some_and(|e| e.kind != c.kind);
    let keep = matches!(c.parent_code, Patch::Keep) && existing.is_some();
    // The parent node, when the checks need it: not for a node that stays
    // where it is as what it is (a retried batch loads no parents).
    let parent: Option<Node> = match &c.parent_code {
        Patch::Keep => match (&current_parent, kind_changed) {
            (Some(pid), true) => Some(
                load(conn, tenant, pid)
                    .await?
                    .ok_or_else(|| Error::Internal(anyhow::anyhow!("org node {pid} vanished")))?,
            ),
            _ => None,
        },
        Patch::Clear => None,
        Patch::Set(code) => Some(known.get(code).cloned().ok_or_else(|| {
            Error::bad_input(
                "parentCode",
                format!(
                    "no org node {code}; a parent is stored already or comes earlier in the batch"
                ),
            )
        })?),
    };
    // Where the node will sit: its parent's id, its path's prefix, its depth.
    let (parent_id, prefix, depth) = match (&parent, &existing) {
        (None, Some(e)) if keep => (
            e.parent_id.clone(),
            e.path[..e.path.len() - e.id.len() - 1].to_owned(),
            e.depth,
        ),
        (p, _) => (
            p.as_ref().map(|p| p.id.clone()),
            p.as_ref().map_or(String::new(), |p| p.path.clone()),
            p.as_ref().map_or(0, |p| p.depth + 1),
        ),
    };
    let moved = existing.is_some() && parent_id != current_parent;
    if let Some(s) = scope
        && (existing.is_none() || moved)
    {
        if existing.as_ref().is_some_and(|e| e.path == s.path) {
            return Err(Error::Forbidden(format!(
                "org node {} is the node this credential is limited to; it cannot move it",
                s.code
            )));
        }
        match &parent {
            Some(p) if s.covers(&p.path) => {}
            Some(p) => return Err(outside(&p.code, s)),
            None => {
                return Err(Error::Forbidden(format!(
                    "org node {} would be a root, outside {}, the org node this credential is limited to",
                    c.code, s.code
                )));
            }
        }
    }
    if let (Some(e), Some(p), true) = (&existing, &parent, moved)
        && p.path.starts_with(&e.path)
    {
        return Err(Error::bad_input(
            "parentCode",
            format!(
                "{} lies under {}: a node cannot move into its own subtree",
                p.code, e.code
            ),
        ));
    }
    if (existing.is_none() || moved || kind_changed)
        && !c.kind.may_be_under(parent.as_ref().map(|p| p.kind))
    {
        let field = if moved || existing.is_none() {
            "parentCode"
        } else {
            "kind"
        };
        let message = match &parent {
            Some(p) => format!(
                "a {} cannot be under the {} {}; its parent may be {}",
                c.kind,
                p.kind,
                p.code,
                c.kind.parents_allowed()
            ),
            None => format!("a {} cannot be a root", c.kind),
        };
        return Err(Error::bad_input(field, message));
    }
    if let (Some(e), true) = (&existing, kind_changed) {
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT kind FROM org_nodes WHERE tenant_id = $1 AND parent_id = $2",
        )
        .bind(tenant.as_str())
        .bind(&e.id)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(k) = kinds
            .iter()
            .filter_map(|k| NodeKind::parse(k))
            .find(|k| !k.may_be_under(Some(c.kind)))
        {
            return Err(Error::bad_input(
                "kind",
                format!(
                    "{} has a {k} under it, which cannot be under a {}",
                    e.code, c.kind
                ),
            ));
        }
    }
    let deepest_below = match (&existing, moved) {
        (Some(e), true) => {
            let max: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(depth) FROM org_nodes WHERE tenant_id = $1 AND path >= $2 AND path < $3",
            )
            .bind(tenant.as_str())
            .bind(&e.path)
            .bind(path_end(&e.path))
            .fetch_one(&mut *conn)
            .await?;
            max.unwrap_or(e.depth) - e.depth
        }
        _ => 0,
    };
    if depth + deepest_below > MAX_DEPTH {
        return Err(Error::bad_input(
            "parentCode",
            format!("the tree may be at most {} levels deep", MAX_DEPTH + 1),
        ));
    }

    let stored = existing.clone();
    let boundary = c
        .boundary
        .apply(stored.as_ref().and_then(|e| e.boundary.clone()));
    if boundary.is_some() && c.kind != NodeKind::Region {
        return Err(Error::bad_input(
            "boundary",
            format!(
                "only a region has a boundary; clear {}'s boundary (null) to make it a {}",
                c.code, c.kind
            ),
        ));
    }
    let t = now();
    let id = stored.as_ref().map_or_else(
        || format!("org_{}", uuid::Uuid::now_v7().simple()),
        |e| e.id.clone(),
    );
    let path = format!("{prefix}{id}/");
    let target = Node {
        id: id.clone(),
        kind: c.kind,
        code: c.code.clone(),
        name: c.name,
        parent_id,
        depth,
        status: c
            .status
            .or(stored.as_ref().map(|e| e.status))
            .unwrap_or_default(),
        address: c
            .address
            .apply(stored.as_ref().and_then(|e| e.address.clone())),
        location: c.location.apply(stored.as_ref().and_then(|e| e.location)),
        boundary,
        attributes: c
            .attributes
            .apply(stored.as_ref().map(|e| e.attributes.clone()))
            .unwrap_or_default(),
        external_ids: c
            .external_ids
            .apply(stored.as_ref().map(|e| e.external_ids.clone()))
            .unwrap_or_default(),
        created_at: stored.as_ref().map_or(t, |e| e.created_at),
        updated_at: t,
        path,
    };
    let changed = stored.as_ref().map(|e| changed_fields(e, &target));
    if changed.as_ref().is_some_and(Vec::is_empty) {
        let e = stored.unwrap_or(target);
        return Ok((e, Change::Unchanged, None));
    }

    let bbox = target
        .boundary
        .as_ref()
        .map(|b| Boundary::parse("boundary", b).map(|b| b.bbox()))
        .transpose()?;
    let attributes = serde_json::to_string(&target.attributes)?;
    let boundary_text = target.boundary.as_ref().map(Value::to_string);
    // sqlx's Any driver types a NULL f64 as float4 on PostgreSQL, and a
    // cached statement keeps the types of its first use: the two writes
    // below with nullable coordinates are prepared anew each time.
    let (lat, lng) = (
        target.location.map(|l| l.lat),
        target.location.map(|l| l.lng),
    );
    match &stored {
        None => {
            let r = sqlx::query(
                "INSERT INTO org_nodes (id, tenant_id, kind, code, name, parent_id, path, depth, status, \
                 address, lat, lng, boundary, min_lat, min_lng, max_lat, max_lng, attributes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19)",
            )
            .bind(&target.id)
            .bind(tenant.as_str())
            .bind(target.kind.as_str())
            .bind(&target.code)
            .bind(&target.name)
            .bind(&target.parent_id)
            .bind(&target.path)
            .bind(target.depth)
            .bind(target.status.as_str())
            .bind(&target.address)
            .bind(lat)
            .bind(lng)
            .bind(&boundary_text)
            .bind(bbox.map(|b| b.min_lat))
            .bind(bbox.map(|b| b.min_lng))
            .bind(bbox.map(|b| b.max_lat))
            .bind(bbox.map(|b| b.max_lng))
            .bind(&attributes)
            .bind(t.0)
            .persistent(false)
            .execute(&mut *conn)
            .await;
            match r {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::Conflict(format!(
                        "org node {} was created at the same time by another call; retry",
                        target.code
                    )));
                }
                r => r?,
            };
        }
        Some(e) => {
            if moved {
                // The node and its subtree take the new path prefix.
                sqlx::query(
                    "UPDATE org_nodes SET path = $1 || substr(path, CAST($2 AS INTEGER)), depth = depth + $3 \
                     WHERE tenant_id = $4 AND path >= $5 AND path < $6",
                )
                .bind(&target.path)
                .bind((e.path.len() + 1) as i64)
                .bind(target.depth - e.depth)
                .bind(tenant.as_str())
                .bind(&e.path)
                .bind(path_end(&e.path))
                .execute(&mut *conn)
                .await?;
                for n in known.values_mut() {
                    if n.path.starts_with(&e.path) {
                        n.path = format!("{}{}", target.path, &n.path[e.path.len()..]);
                        n.depth += target.depth - e.depth;
                    }
                }
            }
            sqlx::query(
                "UPDATE org_nodes SET kind = $1, name = $2, parent_id = $3, status = $4, address = $5, \
                 lat = $6, lng = $7, boundary = $8, min_lat = $9, min_lng = $10, max_lat = $11, max_lng = $12, \
                 attributes = $13, updated_at = $14 WHERE tenant_id = $15 AND id = $16",
            )
            .bind(target.kind.as_str())
            .bind(&target.name)
            .bind(&target.parent_id)
            .bind(target.status.as_str())
            .bind(&target.address)
            .bind(lat)
            .bind(lng)
            .bind(&boundary_text)
            .bind(bbox.map(|b| b.min_lat))
            .bind(bbox.map(|b| b.min_lng))
            .bind(bbox.map(|b| b.max_lat))
            .bind(bbox.map(|b| b.max_lng))
            .bind(&attributes)
            .bind(t.0)
            .bind(tenant.as_str())
            .bind(&target.id)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        }
    }
    if stored
        .as_ref()
        .is_none_or(|e| e.external_ids != target.external_ids)
    {
        replace_external_ids(conn, tenant, scope, &target).await?;
    }
    known.insert(target.code.clone(), target.clone());

    let (event_type, change, mut payload) = match changed {
        None => ("org.node_created", Change::Created, json!({})),
        Some(fields) => (
            "org.node_updated",
            Change::Updated,
            json!({ "changed": fields }),
        ),
    };
    payload["node"] = target.to_json(false);
    payload["actor"] = json!(actor);
    let event = events::append(
        conn,
        tenant,
        NewEvent {
            event_type: event_type.into(),
            person_id: None,
            payload,
            idempotency_key: None,
            occurred_at: None,
        },
        "kernel",
    )
    .await?;
    Ok((target, change, Some(event)))
}

/// The (camelCase) names of the fields that differ between two states.
fn changed_fields(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut diff = |same: bool, name| {
        if !same {
            out.push(name);
        }
    };
    diff(a.kind == b.kind, "kind");
    diff(a.name == b.name, "name");
    diff(a.parent_id == b.parent_id, "parentId");
    diff(a.status == b.status, "status");
    diff(a.address == b.address, "address");
    diff(a.location == b.location, "location");
    diff(a.boundary == b.boundary, "boundary");
    diff(a.attributes == b.attributes, "attributes");
    diff(a.external_ids == b.external_ids, "externalIds");
    out
}

/// Gives `node` exactly its external ids, refusing one that names another
/// node (`CONFLICT`).
async fn replace_external_ids(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Option<&ScopeNode>,
    node: &Node,
) -> Result<()> {
    for (k, x) in node.external_ids.iter().enumerate() {
        let owner = sqlx::query(
            "SELECT n.id, n.code, n.path FROM org_external_ids e JOIN org_nodes n ON n.id = e.node_id \
             WHERE e.tenant_id = $1 AND e.system = $2 AND e.external_id = $3",
        )
        .bind(tenant.as_str())
        .bind(&x.system)
        .bind(&x.id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = owner {
            let (id, code, path): (String, String, String) = (
                row.try_get("id")?,
                row.try_get("code")?,
                row.try_get("path")?,
            );
            if id != node.id {
                let whom = if scope.is_none_or(|s| s.covers(&path)) {
                    format!("org node {code}")
                } else {
                    "another org node".to_owned()
                };
                return Err(Error::Conflict(format!(
                    "externalIds[{k}]: {}/{} already names {whom}",
                    x.system, x.id
                )));
            }
        }
    }
    sqlx::query("DELETE FROM org_external_ids WHERE tenant_id = $1 AND node_id = $2")
        .bind(tenant.as_str())
        .bind(&node.id)
        .execute(&mut *conn)
        .await?;
    for x in &node.external_ids {
        sqlx::query(
            "INSERT INTO org_external_ids (tenant_id, system, external_id, node_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.as_str())
        .bind(&x.system)
        .bind(&x.id)
        .bind(&node.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
