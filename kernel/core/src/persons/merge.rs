//! Merging two persons into one, with guardrails and an audit trail.

use serde_json::json;
use sqlx::Row as _;

use super::{Identifier, Person, check_attributes_size, check_limits, load};
use crate::db::Conn;
use crate::events::{self, NewEvent};
use crate::{Error, Result, TenantId, Timestamp, now};

/// One merge, as the audit trail keeps it.
#[derive(Debug, Clone)]
pub struct MergeRecord {
    pub id: String,
    pub survivor_id: String,
    pub merged_id: String,
    pub reason: String,
    /// Who asked for it: `key:…`, `operator:…`.
    pub actor: String,
    /// The identifiers that moved from the merged person to the survivor.
    pub identifiers: Vec<Identifier>,
    pub created_at: Timestamp,
}

async fn must_be_live(conn: &mut Conn, tenant: &TenantId, field: &str, id: &str) -> Result<()> {
    let row = sqlx::query("SELECT merged_into FROM persons WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::not_found("person", id))?;
    if let Some(into) = row.try_get::<Option<String>, _>("merged_into")? {
        return Err(Error::Conflict(format!(
            "{field}: person {id:?} was already merged into {into:?}"
        )));
    }
    Ok(())
}

/// Folds `merged_id` into `survivor_id`: identifiers move, profile
/// attributes combine (the survivor's win), the merged person points at the
/// survivor, and the merge is recorded and emitted as `person.merged`.
/// Refused, changing nothing, when either person is unknown or already
/// merged, when they are the same, or when the combined identifiers would
/// break a per-kind limit.
pub async fn merge(
    conn: &mut Conn,
    tenant: &TenantId,
    survivor_id: &str,
    merged_id: &str,
    reason: &str,
    actor: &str,
) -> Result<Merged> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::bad_input("reason", "must be 1-500 characters"));
    }
    if survivor_id == merged_id {
        return Err(Error::bad_input(
            "mergedId",
            "a person cannot be merged into itself",
        ));
    }
    // Lock both rows first (one statement, so two merges of the same pair
    // lock in the same order), then check them: a concurrent merge of
    // either person waits here and then sees the first one's outcome.
    sqlx::query(
        "UPDATE persons SET updated_at = updated_at WHERE tenant_id = $1 AND (id = $2 OR id = $3)",
    )
    .bind(tenant.as_str())
    .bind(survivor_id)
    .bind(merged_id)
    .execute(&mut *conn)
    .await?;
    must_be_live(conn, tenant, "survivorId", survivor_id).await?;
    must_be_live(conn, tenant, "mergedId", merged_id).await?;
    let survivor = load(conn, tenant, survivor_id).await?;
    let merged = load(conn, tenant, merged_id).await?;
    check_limits(survivor.identifiers.iter().chain(merged.identifiers.iter()))?;

    let mut attributes = merged.attributes.clone();
    for (k, v) in &survivor.attributes {
        attributes.insert(k.clone(), v.clone());
    }
    check_attributes_size(&attributes)?;
    let t = now();
    sqlx::query(
        "UPDATE person_identifiers SET person_id = $1 WHERE tenant_id = $2 AND person_id = $3",
    )
    .bind(survivor_id)
    .bind(tenant.as_str())
    .bind(merged_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE persons SET merged_into = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND merged_into IS NULL",
    )
    .bind(survivor_id)
    .bind(t.0)
    .bind(tenant.as_str())
    .bind(merged_id)
    .execute(&mut *conn)
    .await?;
    super::write_attributes(conn, tenant, survivor_id, &attributes).await?;
    let record_id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO person_merges (id, tenant_id, survivor_id, merged_id, reason, actor, identifiers, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&record_id)
    .bind(tenant.as_str())
    .bind(survivor_id)
    .bind(merged_id)
    .bind(reason)
    .bind(actor)
    .bind(serde_json::to_string(&merged.identifiers)?)
    .bind(t.0)
    .execute(&mut *conn)
    .await?;
    let event = events::append(
        conn,
        tenant,
        NewEvent {
            event_type: "person.merged".into(),
            person_id: Some(survivor_id.to_owned()),
            payload: json!({
                "survivorId": survivor_id,
                "mergedId": merged_id,
                "reason": reason,
                "actor": actor,
                "identifiers": merged.identifiers,
            }),
            idempotency_key: Some(format!("person.merged:{record_id}")),
            occurred_at: None,
        },
        "kernel",
    )
    .await?;
    Ok(Merged {
        person: load(conn, tenant, survivor_id).await?,
        event,
    })
}

/// The outcome of [`merge`]: the survivor as it is now, and the
/// `person.merged` event, for the caller to hand to the tenant's
/// subscribers with its transaction (the outbox).
#[derive(Debug, Clone)]
pub struct Merged {
    pub person: Person,
    pub event: events::Event,
}

/// The merges a person took part in (as survivor or as merged), oldest first.
pub async fn merges(
    conn: &mut Conn,
    tenant: &TenantId,
    person_id: &str,
) -> Result<Vec<MergeRecord>> {
    let rows = sqlx::query(
        "SELECT id, survivor_id, merged_id, reason, actor, identifiers, created_at FROM person_merges \
         WHERE tenant_id = $1 AND (survivor_id = $2 OR merged_id = $2) ORDER BY created_at, id",
    )
    .bind(tenant.as_str())
    .bind(person_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MergeRecord {
                id: r.try_get("id")?,
                survivor_id: r.try_get("survivor_id")?,
                merged_id: r.try_get("merged_id")?,
                reason: r.try_get("reason")?,
                actor: r.try_get("actor")?,
                identifiers: serde_json::from_str(&r.try_get::<String, _>("identifiers")?)?,
                created_at: Timestamp(r.try_get("created_at")?),
            })
        })
        .collect()
}
