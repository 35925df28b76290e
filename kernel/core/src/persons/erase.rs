//! Erasing a person: personal-information rights (China's PIPL art. 47,
//! the GDPR's art. 17).
//!
//! In one transaction, for the live person and every person merged into
//! it: their identifiers are deleted, their attributes emptied, the merges
//! between them deleted (they held identifiers and reasons), and their
//! events anonymised — payload replaced by `{"erased": true}` and the
//! person unlinked — with deliveries still pending for those events given
//! up (a subscriber would get nothing to act on). The person rows stay, as
//! opaque ids other records point at, marked `erased_at`. An audit record
//! keeps who asked, why and how much was removed, and `person.erased` is
//! emitted so that every plugin erases what it holds (the hook each must
//! honour: records under the person's id, copies of identifiers or
//! attributes).

use serde_json::json;

use crate::db::Conn;
use crate::events::{self, NewEvent};
use crate::{Error, Result, TenantId, now};

/// The outcome of [`erase`].
#[derive(Debug, Clone)]
pub struct Erased {
    /// The audit record's id.
    pub id: String,
    /// The live person erased.
    pub person_id: String,
    /// It and every person merged into it.
    pub persons: Vec<String>,
    pub identifiers: u64,
    pub events: u64,
    /// `person.erased`, for the caller to hand to the tenant's subscribers.
    pub event: events::Event,
}

/// Erases the person `id` (a merged id erases its survivor: one data
/// subject) and everything the kernel holds of them; see the module docs.
/// `reason` is kept in the audit record: a ticket number, not personal
/// data.
pub async fn erase(
    conn: &mut Conn,
    tenant: &TenantId,
    id: &str,
    reason: &str,
    actor: &str,
) -> Result<Erased> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(Error::bad_input(
            "reason",
            "1-200 characters, no control characters (e.g. the request's ticket number)",
        ));
    }
    let persons = super::lineage(conn, tenant, id).await?;
    let live = persons[0].clone();
    // Lock the live person first: a merge or another erasure of it waits.
    sqlx::query("UPDATE persons SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(&live)
        .execute(&mut *conn)
        .await?;
    let t = now();
    let (mut identifiers, mut anonymised) = (0u64, 0u64);
    for p in &persons {
        identifiers +=
            sqlx::query("DELETE FROM person_identifiers WHERE tenant_id = $1 AND person_id = $2")
                .bind(tenant.as_str())
                .bind(p)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE persons SET attributes = '{}', updated_at = $1, erased_at = $1 WHERE tenant_id = $2 AND id = $3",
        )
        .bind(t.0)
        .bind(tenant.as_str())
        .bind(p)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM person_merges WHERE tenant_id = $1 AND (survivor_id = $2 OR merged_id = $2)",
        )
        .bind(tenant.as_str())
        .bind(p)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE outbox SET dead_at = $1, last_error = 'its person was erased' \
             WHERE tenant_id = $2 AND delivered_at IS NULL AND dead_at IS NULL \
             AND event_id IN (SELECT id FROM events WHERE tenant_id = $2 AND person_id = $3)",
        )
        .bind(t.0)
        .bind(tenant.as_str())
        .bind(p)
        .execute(&mut *conn)
        .await?;
        anonymised += sqlx::query(
            "UPDATE events SET payload = '{\"erased\":true}', person_id = NULL WHERE tenant_id = $1 AND person_id = $2",
        )
        .bind(tenant.as_str())
        .bind(p)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    let record = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO person_erasures (id, tenant_id, person_id, persons, identifiers, events, reason, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&record)
    .bind(tenant.as_str())
    .bind(&live)
    .bind(persons.len() as i64)
    .bind(identifiers as i64)
    .bind(anonymised as i64)
    .bind(reason)
    .bind(actor)
    .bind(t.0)
    .execute(&mut *conn)
    .await?;
    let event = events::append(
        conn,
        tenant,
        NewEvent {
            event_type: "person.erased".into(),
            person_id: Some(live.clone()),
            payload: json!({"personId": live, "erasedIds": persons}),
            idempotency_key: Some(format!("person.erased:{record}")),
            occurred_at: None,
        },
        "kernel",
    )
    .await?;
    Ok(Erased {
        id: record,
        person_id: live,
        persons,
        identifiers,
        events: anonymised,
        event,
    })
}
