//! One ID: one person per human across channels.
//!
//! Identifiers (phone, e-mail, WeChat openid/unionid, member number, an ERP's
//! id) point at a person. [`identify`] finds or creates the person behind a
//! set of identifiers; [`link`] adds one; [`merge`] folds a duplicate into a
//! survivor with an audit trail. A merged person keeps its row, pointing at
//! its survivor, so old references still resolve. Profile attributes are
//! JSON that modules read and write.

mod batch;
mod erase;
mod identifiers;
mod merge;

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use sqlx::Row as _;

use crate::db::Conn;
use crate::{Error, Result, TenantId, Timestamp, now};
pub use batch::{Lookup, MAX_BATCH, create_batch, identify_batch, lookup_batch, still_live};
pub use erase::{Erased, erase};
pub use identifiers::{Identifier, KINDS, check_limits, max_values};
pub use merge::{MergeRecord, Merged, merge, merges};

/// The largest profile, serialised.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;
/// How many identifiers one call may name.
pub const MAX_IDENTIFIERS_PER_CALL: usize = 20;

/// A person, with its identifiers and profile.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub attributes: Map<String, Value>,
    pub identifiers: Vec<Identifier>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Input of [`identify`].
#[derive(Debug, Clone, Default)]
pub struct Identify {
    pub identifiers: Vec<(String, String)>,
    /// Merged into the profile (JSON merge patch: `null` removes a key).
    pub attributes: Option<Map<String, Value>>,
    /// When the identifiers point at several persons: merge them into the
    /// oldest (true) or refuse with a conflict (false).
    pub merge: bool,
}

/// Output of [`identify`].
#[derive(Debug, Clone)]
pub struct Identified {
    pub person: Person,
    pub created: bool,
    /// Persons folded into `person` by this call.
    pub merged: Vec<String>,
    /// The `person.merged` event of each, for the tenant's subscribers.
    pub merge_events: Vec<crate::events::Event>,
}

/// Follows merge pointers from `id` to the live person (within `tenant`).
pub(crate) async fn resolve_live(
    conn: &mut Conn,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<String>> {
    let mut current = id.to_owned();
    for _ in 0..32 {
        let row = sqlx::query("SELECT merged_into FROM persons WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(&current)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            None => return Ok(None),
            Some(r) => match r.try_get::<Option<String>, _>("merged_into")? {
                None => return Ok(Some(current)),
                Some(next) => current = next,
            },
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "merge chain of person {id} too long"
    )))
}

/// The live person behind `id` and every person merged into it, directly
/// or through earlier merges: the ids its history was recorded under.
pub async fn lineage(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Vec<String>> {
    let live = resolve_live(conn, tenant, id)
        .await?
        .ok_or_else(|| Error::not_found("person", id))?;
    let mut all = vec![live];
    let mut frontier = 0;
    while frontier < all.len() && all.len() < 1000 {
        let children: Vec<String> =
            sqlx::query_scalar("SELECT id FROM persons WHERE tenant_id = $1 AND merged_into = $2")
                .bind(tenant.as_str())
                .bind(&all[frontier])
                .fetch_all(&mut *conn)
                .await?;
        all.extend(children);
        frontier += 1;
    }
    Ok(all)
}

/// The person `id` of `tenant` (a merged id resolves to its survivor): one
/// statement for a person never merged away.
pub async fn get(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Person> {
    match fetch(conn, tenant, id).await? {
        None => Err(Error::not_found("person", id)),
        Some((person, None)) => Ok(person),
        Some((_, Some(survivor))) => {
            let live = resolve_live(conn, tenant, &survivor)
                .await?
                .ok_or_else(|| Error::not_found("person", id))?;
            load(conn, tenant, &live).await
        }
    }
}

/// The row `id` itself, merged away or not.
async fn load(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Person> {
    fetch(conn, tenant, id)
        .await?
        .map(|(person, _)| person)
        .ok_or_else(|| Error::not_found("person", id))
}

/// The row `id` with its identifiers, in one statement, and the person it
/// was merged into, if any; `None` for an erased person too, so nothing
/// reads, links to, merges or writes attributes of one.
async fn fetch(
    conn: &mut Conn,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<(Person, Option<String>)>> {
    let rows = sqlx::query(
        "SELECT p.id, p.merged_into, p.attributes, p.created_at, p.updated_at, i.kind, i.value \
         FROM persons p LEFT JOIN person_identifiers i \
           ON i.tenant_id = p.tenant_id AND i.person_id = p.id \
         WHERE p.tenant_id = $1 AND p.id = $2 AND p.erased_at IS NULL \
         ORDER BY i.kind, i.created_at, i.value",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let attributes: Map<String, Value> =
        serde_json::from_str(&first.try_get::<String, _>("attributes")?)?;
    let mut identifiers = Vec::with_capacity(rows.len());
    for r in &rows {
        if let (Some(kind), Some(value)) = (
            r.try_get::<Option<String>, _>("kind")?,
            r.try_get::<Option<String>, _>("value")?,
        ) {
            identifiers.push(Identifier { kind, value });
        }
    }
    let person = Person {
        id: first.try_get("id")?,
        attributes,
        identifiers,
        created_at: Timestamp(first.try_get("created_at")?),
        updated_at: Timestamp(first.try_get("updated_at")?),
    };
    Ok(Some((person, first.try_get("merged_into")?)))
}

async fn identifiers_of(
    conn: &mut Conn,
    tenant: &TenantId,
    person: &str,
) -> Result<Vec<Identifier>> {
    let rows = sqlx::query(
        "SELECT kind, value FROM person_identifiers WHERE tenant_id = $1 AND person_id = $2 \
         ORDER BY kind, created_at, value",
    )
    .bind(tenant.as_str())
    .bind(person)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Identifier {
                kind: r.try_get("kind")?,
                value: r.try_get("value")?,
            })
        })
        .collect()
}

/// The person an identifier points at, if any.
pub async fn find_by_identifier(
    conn: &mut Conn,
    tenant: &TenantId,
    kind: &str,
    value: &str,
) -> Result<Option<Person>> {
    let id = Identifier::parse("identifier", kind, value)?;
    match owner_of(conn, tenant, &id).await? {
        Some(pid) => Ok(Some(get(conn, tenant, &pid).await?)),
        None => Ok(None),
    }
}

async fn owner_of(conn: &mut Conn, tenant: &TenantId, id: &Identifier) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT person_id FROM person_identifiers WHERE tenant_id = $1 AND kind = $2 AND value = $3",
    )
    .bind(tenant.as_str())
    .bind(&id.kind)
    .bind(&id.value)
    .fetch_optional(&mut *conn)
    .await?)
}

fn parse_all(input: &[(String, String)]) -> Result<Vec<Identifier>> {
    if input.is_empty() {
        return Err(Error::bad_input(
            "identifiers",
            "give at least one identifier",
        ));
    }
    if input.len() > MAX_IDENTIFIERS_PER_CALL {
        return Err(Error::bad_input(
            "identifiers",
            format!("at most {MAX_IDENTIFIERS_PER_CALL} identifiers per call"),
        ));
    }
    let mut out: Vec<Identifier> = Vec::with_capacity(input.len());
    for (i, (k, v)) in input.iter().enumerate() {
        let id = Identifier::parse(&format!("identifiers[{i}]"), k, v)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn check_attributes_size(attrs: &Map<String, Value>) -> Result<()> {
    let size = serde_json::to_string(attrs)?.len();
    if size > MAX_ATTRIBUTES_BYTES {
        return Err(Error::bad_input(
            "attributes",
            format!("the profile would be {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES}"),
        ));
    }
    Ok(())
}

/// Applies a JSON merge patch (RFC 7386) to a profile.
fn apply_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let entry = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(t) = entry {
                    apply_patch(t, p);
                } else {
                    *entry = Value::Object(Map::new());
                    if let Value::Object(t) = entry {
                        apply_patch(t, p);
                    }
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// Attaches an identifier that was free when looked up. If a concurrent
/// transaction claimed it meanwhile, the caller gets a retryable conflict
/// (a retry finds the identifier's owner).
async fn attach(conn: &mut Conn, tenant: &TenantId, person: &str, id: &Identifier) -> Result<()> {
    let res = sqlx::query(
        "INSERT INTO person_identifiers (tenant_id, kind, value, person_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&id.kind)
    .bind(&id.value)
    .bind(person)
    .bind(now().0)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() == 0 {
        return Err(Error::Conflict(format!(
            "{} {:?} was claimed by a concurrent request; retry",
            id.kind, id.value
        )));
    }
    Ok(())
}

async fn write_attributes(
    conn: &mut Conn,
    tenant: &TenantId,
    person: &str,
    attrs: &Map<String, Value>,
) -> Result<()> {
    sqlx::query(
        "UPDATE persons SET attributes = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
    )
    .bind(serde_json::to_string(attrs)?)
    .bind(now().0)
    .bind(tenant.as_str())
    .bind(person)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The one live person that already holds every one of `identifiers`,
/// found without writing anything; `None` when [`identify`] would have to
/// write (a new person, an identifier to attach, or persons to merge).
/// Lets a caller resolve a known person off a write transaction.
pub async fn lookup(
    conn: &mut Conn,
    tenant: &TenantId,
    identifiers: &[(String, String)],
) -> Result<Option<Person>> {
    let ids = parse_all(identifiers)?;
    let mut owner: Option<String> = None;
    for id in &ids {
        let Some(pid) = owner_of(conn, tenant, id).await? else {
            return Ok(None);
        };
        // An identifier still on a merged-away person is re-attached to
        // the survivor by `identify`: a write.
        match (resolve_live(conn, tenant, &pid).await?, &owner) {
            (Some(live), _) if live != pid => return Ok(None),
            (Some(live), None) => owner = Some(live),
            (Some(live), Some(o)) if &live == o => {}
            _ => return Ok(None),
        }
    }
    let Some(pid) = owner else { return Ok(None) };
    // Read without a transaction, a merge may have moved identifiers since
    // the lookups above: only a person holding them all is the answer.
    let person = load(conn, tenant, &pid).await?;
    Ok(ids
        .iter()
        .all(|i| person.identifiers.contains(i))
        .then_some(person))
}

/// Finds or creates the person behind `input.identifiers`, attaches the
/// identifiers it lacks and applies the attribute patch. Refuses, changing
/// nothing, when an identifier is junk, when a kind would exceed its limit,
/// or when the identifiers point at several persons and `merge` is false.
pub async fn identify(
    conn: &mut Conn,
    tenant: &TenantId,
    input: Identify,
    actor: &str,
) -> Result<Identified> {
    let ids = parse_all(&input.identifiers)?;
    if let Some(a) = &input.attributes {
        check_attributes_size(a)?;
    }
    let mut owners: BTreeSet<String> = BTreeSet::new();
    for id in &ids {
        if let Some(pid) = owner_of(conn, tenant, id).await?
            && let Some(live) = resolve_live(conn, tenant, &pid).await?
        {
            owners.insert(live);
        }
    }
    let mut merged = Vec::new();
    let mut merge_events = Vec::new();
    let (person_id, created) = match owners.len() {
        0 => {
            check_limits(&ids)?;
            let id = uuid::Uuid::now_v7().to_string();
            let t = now();
            sqlx::query(
                "INSERT INTO persons (id, tenant_id, attributes, created_at, updated_at) VALUES ($1, $2, '{}', $3, $3)",
            )
            .bind(&id)
            .bind(tenant.as_str())
            .bind(t.0)
            .execute(&mut *conn)
            .await?;
            (id, true)
        }
        1 => (owners.into_iter().next().unwrap_or_default(), false),
        n => {
            if !input.merge {
                return Err(Error::Conflict(format!(
                    "these identifiers belong to {n} different persons; pass merge: true or merge them with mergePersons"
                )));
            }
            // Oldest person survives: UUIDv7 ids sort by creation time.
            let mut all: Vec<String> = owners.into_iter().collect();
            let survivor = all.remove(0);
            for other in all {
                let m = merge::merge(
                    conn,
                    tenant,
                    &survivor,
                    &other,
                    "identify: shared identifiers",
                    actor,
                )
                .await?;
                merge_events.push(m.event);
                merged.push(other);
            }
            (survivor, false)
        }
    };
    let existing = identifiers_of(conn, tenant, &person_id).await?;
    let missing: Vec<&Identifier> = ids.iter().filter(|i| !existing.contains(i)).collect();
    check_limits(existing.iter().chain(missing.iter().copied()))?;
    for id in missing {
        attach(conn, tenant, &person_id, id).await?;
    }
    if let Some(patch) = &input.attributes {
        let mut person = load(conn, tenant, &person_id).await?;
        apply_patch(&mut person.attributes, patch);
        check_attributes_size(&person.attributes)?;
        write_attributes(conn, tenant, &person_id, &person.attributes).await?;
    }
    let person = load(conn, tenant, &person_id).await?;
    Ok(Identified {
        person,
        created,
        merged,
        merge_events,
    })
}

/// Adds an identifier to a person. An identifier already on another person
/// is a conflict (merge the two instead); on this person, nothing changes.
pub async fn link(
    conn: &mut Conn,
    tenant: &TenantId,
    person_id: &str,
    kind: &str,
    value: &str,
) -> Result<Person> {
    let id = Identifier::parse("identifier", kind, value)?;
    let live = resolve_live(conn, tenant, person_id)
        .await?
        .ok_or_else(|| Error::not_found("person", person_id))?;
    if let Some(owner) = owner_of(conn, tenant, &id).await? {
        let owner_live = resolve_live(conn, tenant, &owner).await?;
        if owner_live.as_deref() == Some(live.as_str()) {
            return load(conn, tenant, &live).await;
        }
        return Err(Error::Conflict(format!(
            "{} {:?} already identifies another person; merge the two persons instead",
            id.kind, id.value
        )));
    }
    let existing = identifiers_of(conn, tenant, &live).await?;
    check_limits(existing.iter().chain(std::iter::once(&id)))?;
    attach(conn, tenant, &live, &id).await?;
    load(conn, tenant, &live).await
}

/// Applies a JSON merge patch to a person's profile attributes.
pub async fn set_attributes(
    conn: &mut Conn,
    tenant: &TenantId,
    person_id: &str,
    patch: &Map<String, Value>,
) -> Result<Person> {
    let mut person = get(conn, tenant, person_id).await?;
    apply_patch(&mut person.attributes, patch);
    check_attributes_size(&person.attributes)?;
    write_attributes(conn, tenant, &person.id, &person.attributes).await?;
    load(conn, tenant, &person.id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_removes_and_nests() {
        let mut t = json!({"tier": "gold", "tags": ["a"], "addr": {"city": "SZ", "zip": "518000"}})
            .as_object()
            .cloned()
            .unwrap();
        let p = json!({"tier": null, "addr": {"zip": null, "street": "X"}, "points": 5})
            .as_object()
            .cloned()
            .unwrap();
        apply_patch(&mut t, &p);
        assert_eq!(
            Value::Object(t),
            json!({"tags": ["a"], "addr": {"city": "SZ", "street": "X"}, "points": 5})
        );
    }
}
