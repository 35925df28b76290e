//! Erasing a person: personal-information rights (China's PIPL art. 47,
//! the GDPR's art. 17).
//!
//! In one transaction, for the live person and every person merged into
//! it: their identifiers are deleted, their attributes emptied, the merges
//! between them deleted (they held identifiers and reasons), and their
//! events anonymised — payload replaced by `{"erased": true}` and the
//! person unlinked. An erasure waits for the person's events still being
//! delivered (a payout in flight must reach its subscriber first): it is
//! refused with `CONFLICT` until they are delivered or dead. The person
//! rows stay, as opaque ids other records point at, marked `erased_at`:
//! the kernel no longer finds them (`get`, links, merges, attributes). An audit record
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
    // Lock the live person, then make sure it still is: a merge into or
    // out of it (which locks both rows) either committed before — and is
    // seen here — or waits for this erasure.
    let mut live = None;
    for _ in 0..4 {
        let candidate = super::resolve_live(conn, tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("person", id))?;
        sqlx::query("UPDATE persons SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(&candidate)
            .execute(&mut *conn)
            .await?;
        if super::resolve_live(conn, tenant, &candidate)
            .await?
            .as_deref()
            == Some(candidate.as_str())
        {
            live = Some(candidate);
            break;
        }
    }
    let live = live.ok_or_else(|| {
        Error::Conflict(format!("person {id:?} is being merged meanwhile; retry"))
    })?;
    let persons = super::lineage(conn, tenant, &live).await?;
    if persons.len() >= 1000 {
        return Err(Error::Conflict(format!(
            "person {live:?} has 1,000 or more persons merged into it: erase them in parts"
        )));
    }
    for p in &persons {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o JOIN events e ON e.id = o.event_id \
             WHERE o.tenant_id = $1 AND e.tenant_id = $1 AND e.person_id = $2 \
             AND o.delivered_at IS NULL AND o.dead_at IS NULL",
        )
        .bind(tenant.as_str())
        .bind(p)
        .fetch_one(&mut *conn)
        .await?;
        if pending > 0 {
            return Err(Error::Conflict(format!(
                "{pending} events of person {p:?} are still being delivered to plugins; retry once they are"
            )));
        }
    }
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
