//! Staff: persons (One ID) who work at an org node with a role — a
//! shopping guide at a store, a salesperson of a distributor, a region's
//! manager. Adding what is there already, or removing what is not, changes
//! nothing and emits nothing.

use serde_json::json;
use sqlx::Row as _;

use super::{Scope, ScopeNode, resolve_scope, visible};
use crate::db::Conn;
use crate::events::{self, Event, NewEvent};
use crate::persons;
use crate::{Error, Result, TenantId, Timestamp, now};

/// The most staff entries one node may have.
pub const MAX_STAFF_PER_NODE: i64 = 10_000;

/// A person working at a node with a role.
#[derive(Debug, Clone, PartialEq)]
pub struct Staff {
    pub person_id: String,
    pub node_id: String,
    /// e.g. `guide`, `salesperson`, `manager`.
    pub role: String,
    pub created_at: Timestamp,
}

/// What a staff write did: the entry, and its event when it changed
/// anything.
#[derive(Debug, Clone)]
pub struct StaffChange {
    pub staff: Staff,
    pub event: Option<Event>,
}

fn check_role(role: &str) -> Result<()> {
    let ok = !role.is_empty()
        && role.len() <= 32
        && role.as_bytes()[0].is_ascii_lowercase()
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(
            "role",
            "must be 1-32 of a-z, 0-9 and '_', starting with a letter, e.g. guide",
        ))
    }
}

/// The node a scoped write may touch: outside the scope it is `FORBIDDEN`
/// (naming the node), unknown it is `NOT_FOUND`.
async fn writable(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Option<&ScopeNode>,
    node_id: &str,
) -> Result<super::Node> {
    let node = visible(conn, tenant, None, node_id).await?;
    match scope {
        Some(s) if !s.covers(&node.path) => Err(Error::Forbidden(format!(
            "org node {} is outside {}, the org node this credential is limited to",
            node.code, s.code
        ))),
        _ => Ok(node),
    }
}

async fn live_person(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<String> {
    persons::resolve_live(conn, tenant, id)
        .await?
        .ok_or_else(|| Error::not_found("person", id))
}

async fn emit(
    conn: &mut Conn,
    tenant: &TenantId,
    event_type: &str,
    node: &super::Node,
    person_id: &str,
    role: &str,
    actor: &str,
) -> Result<Event> {
    events::append(
        conn,
        tenant,
        NewEvent {
            event_type: event_type.into(),
            person_id: Some(person_id.to_owned()),
            payload: json!({
                "nodeId": node.id,
                "nodeCode": node.code,
                "personId": person_id,
                "role": role,
                "actor": actor,
            }),
            idempotency_key: None,
            occurred_at: None,
        },
        "kernel",
    )
    .await
}

/// Attaches a person to a node with a role (`org.staff_added`).
pub async fn add_staff(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    node_id: &str,
    person_id: &str,
    role: &str,
    actor: &str,
) -> Result<StaffChange> {
    check_role(role)?;
    let scope = resolve_scope(conn, tenant, scope).await?;
    let node = writable(conn, tenant, scope.as_ref(), node_id).await?;
    let person = live_person(conn, tenant, person_id).await?;
    let existing = sqlx::query(
        "SELECT created_at FROM org_staff WHERE tenant_id = $1 AND node_id = $2 AND person_id = $3 AND role = $4",
    )
    .bind(tenant.as_str())
    .bind(&node.id)
    .bind(&person)
    .bind(role)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        return Ok(StaffChange {
            staff: Staff {
                person_id: person,
                node_id: node.id,
                role: role.to_owned(),
                created_at: Timestamp(row.try_get("created_at")?),
            },
            event: None,
        });
    }
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM org_staff WHERE tenant_id = $1 AND node_id = $2")
            .bind(tenant.as_str())
            .bind(&node.id)
            .fetch_one(&mut *conn)
            .await?;
    if count >= MAX_STAFF_PER_NODE {
        return Err(Error::Conflict(format!(
            "org node {} has {MAX_STAFF_PER_NODE} staff entries, the most a node may have",
            node.code
        )));
    }
    let t = now();
    let inserted = sqlx::query(
        "INSERT INTO org_staff (tenant_id, node_id, person_id, role, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, node_id, person_id, role) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&node.id)
    .bind(&person)
    .bind(role)
    .bind(t.0)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let event = if inserted == 1 {
        Some(emit(conn, tenant, "org.staff_added", &node, &person, role, actor).await?)
    } else {
        None
    };
    Ok(StaffChange {
        staff: Staff {
            person_id: person,
            node_id: node.id,
            role: role.to_owned(),
            created_at: t,
        },
        event,
    })
}

/// Detaches a person from a node in a role (`org.staff_removed`); `None`
/// when they were not attached so.
pub async fn remove_staff(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    node_id: &str,
    person_id: &str,
    role: &str,
    actor: &str,
) -> Result<Option<StaffChange>> {
    check_role(role)?;
    let scope = resolve_scope(conn, tenant, scope).await?;
    let node = writable(conn, tenant, scope.as_ref(), node_id).await?;
    // Entries made before a merge name the merged person: remove those too.
    let lineage = persons::lineage(conn, tenant, person_id).await?;
    let mut removed: Option<Timestamp> = None;
    for p in &lineage {
        let row = sqlx::query(
            "DELETE FROM org_staff WHERE tenant_id = $1 AND node_id = $2 AND person_id = $3 AND role = $4 \
             RETURNING created_at",
        )
        .bind(tenant.as_str())
        .bind(&node.id)
        .bind(p)
        .bind(role)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            removed = Some(Timestamp(r.try_get("created_at")?));
        }
    }
    let Some(created_at) = removed else {
        return Ok(None);
    };
    let person = lineage[0].clone();
    let event = emit(
        conn,
        tenant,
        "org.staff_removed",
        &node,
        &person,
        role,
        actor,
    )
    .await?;
    Ok(Some(StaffChange {
        staff: Staff {
            person_id: person,
            node_id: node.id,
            role: role.to_owned(),
            created_at,
        },
        event: Some(event),
    }))
}

fn staff_from_row(row: &sqlx::any::AnyRow) -> Result<Staff> {
    Ok(Staff {
        person_id: row.try_get("person_id")?,
        node_id: row.try_get("node_id")?,
        role: row.try_get("role")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

/// Staff entries name the live person: one made before a merge names the
/// merged person, whose survivor it now means.
async fn to_live(conn: &mut Conn, tenant: &TenantId, mut list: Vec<Staff>) -> Result<Vec<Staff>> {
    for s in &mut list {
        if let Some(live) = persons::resolve_live(conn, tenant, &s.person_id).await? {
            s.person_id = live;
        }
    }
    list.sort_by(|a, b| {
        (&a.node_id, &a.role, &a.person_id).cmp(&(&b.node_id, &b.role, &b.person_id))
    });
    list.dedup_by(|a, b| a.node_id == b.node_id && a.role == b.role && a.person_id == b.person_id);
    Ok(list)
}

/// The staff of a node, by role then person. `NOT_FOUND` when the node is
/// not in the scope.
pub async fn staff_of_node(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    node_id: &str,
) -> Result<Vec<Staff>> {
    let scope = resolve_scope(conn, tenant, scope).await?;
    let node = visible(conn, tenant, scope.as_ref(), node_id).await?;
    let rows = sqlx::query(
        "SELECT s.person_id, s.node_id, s.role, s.created_at FROM org_staff s \
         JOIN persons p ON p.tenant_id = s.tenant_id AND p.id = s.person_id \
         WHERE s.tenant_id = $1 AND s.node_id = $2 AND p.merged_into IS NULL",
    )
    .bind(tenant.as_str())
    .bind(&node.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut list = rows
        .iter()
        .map(staff_from_row)
        .collect::<Result<Vec<_>>>()?;
    // The rare entries of merged persons, resolved one by one.
    let merged = sqlx::query(
        "SELECT s.person_id, s.node_id, s.role, s.created_at FROM org_staff s \
         JOIN persons p ON p.tenant_id = s.tenant_id AND p.id = s.person_id \
         WHERE s.tenant_id = $1 AND s.node_id = $2 AND p.merged_into IS NOT NULL",
    )
    .bind(tenant.as_str())
    .bind(&node.id)
    .fetch_all(&mut *conn)
    .await?;
    if merged.is_empty() {
        list.sort_by(|a, b| (&a.role, &a.person_id).cmp(&(&b.role, &b.person_id)));
        return Ok(list);
    }
    list.extend(
        merged
            .iter()
            .map(staff_from_row)
            .collect::<Result<Vec<_>>>()?,
    );
    to_live(conn, tenant, list).await
}

/// The nodes a person works at (including entries made under persons
/// merged into them), among the nodes the scope can see, by node then role.
/// `NOT_FOUND` when there is no such person.
pub async fn staff_of_person(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    person_id: &str,
) -> Result<Vec<Staff>> {
    let scope = resolve_scope(conn, tenant, scope).await?;
    let lineage = persons::lineage(conn, tenant, person_id).await?;
    let mut list = Vec::new();
    for p in &lineage {
        let rows = sqlx::query(
            "SELECT s.person_id, s.node_id, s.role, s.created_at, n.path FROM org_staff s \
             JOIN org_nodes n ON n.id = s.node_id \
             WHERE s.tenant_id = $1 AND s.person_id = $2",
        )
        .bind(tenant.as_str())
        .bind(p)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let path: String = row.try_get("path")?;
            if scope.as_ref().is_none_or(|s| s.covers(&path)) {
                let mut s = staff_from_row(row)?;
                s.person_id = lineage[0].clone();
                list.push(s);
            }
        }
    }
    to_live(conn, tenant, list).await
}
