//! [`identify_batch`]: resolve-or-create for many people at once (ingest).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};
use sqlx::{Connection as _, Row as _};

use super::{Identified, Identifier, Identify, Person, check_attributes_size, identify, parse_all};
use crate::db::Conn;
use crate::{Error, Result, TenantId, Timestamp};

/// Identifiers (or persons) per statement of [`lookup_batch`].
const PER_STATEMENT: usize = 400;

/// The most items one [`identify_batch`] takes.
pub const MAX_BATCH: usize = 1000;

/// [`identify`] for up to [`MAX_BATCH`] people, one result per item, in
/// order, all in `conn`'s transaction.
///
/// Every item is checked first (identifiers, attribute sizes), so a bad
/// one refuses the batch, naming it (`batch[3].identifiers[0]`), before
/// anything is read or written. The items then run in order inside a
/// savepoint: a later item sees what an earlier one created (two items
/// naming one phone number yield one person), and any refusal — a kind
/// over its limit, identifiers of several persons without `merge` —
/// leaves nothing behind. Each result is the person as its item left it.
pub async fn identify_batch(
    conn: &mut Conn,
    tenant: &TenantId,
    batch: Vec<Identify>,
    actor: &str,
) -> Result<Vec<Identified>> {
    if batch.len() > MAX_BATCH {
        return Err(Error::bad_input(
            "batch",
            format!("{} items; at most {MAX_BATCH} per call", batch.len()),
        ));
    }
    let at = |i: usize| move |e: Error| e.at(&format!("batch[{i}]"));
    for (i, item) in batch.iter().enumerate() {
        parse_all(&item.identifiers).map_err(at(i))?;
        if let Some(a) = &item.attributes {
            check_attributes_size(a).map_err(at(i))?;
        }
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for (i, item) in batch.into_iter().enumerate() {
        out.push(
            identify(&mut tx, tenant, item, actor)
                .await
                .map_err(at(i))?,
        );
    }
    tx.commit().await?;
    Ok(out)
}

/// The live persons `ids` with their identifiers (in [`super::get`]'s
/// order), a few statements in all; an id merged away, erased or unknown
/// is left out.
async fn load_many(
    conn: &mut Conn,
    tenant: &TenantId,
    ids: &[&str],
) -> Result<HashMap<String, Person>> {
    let mut persons: HashMap<String, Person> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(PER_STATEMENT) {
        let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", 2 + i)).collect();
        let sql = format!(
            "SELECT p.id, p.attributes, p.created_at, p.updated_at, i.kind, i.value \
             FROM persons p LEFT JOIN person_identifiers i \
               ON i.tenant_id = p.tenant_id AND i.person_id = p.id \
             WHERE p.tenant_id = $1 AND p.id IN ({}) AND p.merged_into IS NULL AND p.erased_at IS NULL \
             ORDER BY p.id, i.kind, i.created_at, i.value",
            params.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let id: String = r.try_get("id")?;
            if !persons.contains_key(&id) {
                let attributes: Map<String, Value> =
                    serde_json::from_str(&r.try_get::<String, _>("attributes")?)?;
                let person = Person {
                    id: id.clone(),
                    attributes,
                    identifiers: Vec::new(),
                    created_at: Timestamp(r.try_get("created_at")?),
                    updated_at: Timestamp(r.try_get("updated_at")?),
                };
                persons.insert(id.clone(), person);
            }
            if let (Some(kind), Some(value), Some(p)) = (
                r.try_get::<Option<String>, _>("kind")?,
                r.try_get::<Option<String>, _>("value")?,
                persons.get_mut(&id),
            ) {
                p.identifiers.push(Identifier { kind, value });
            }
        }
    }
    Ok(persons)
}

/// Which of `ids` are still live persons (neither merged away nor
/// erased): one primary-key read each, a few statements in all. Checks,
/// in a write transaction, what [`lookup_batch`] read before it: a merge
/// or an erasure is the only way a person stops holding an identifier.
pub async fn still_live(
    conn: &mut Conn,
    tenant: &TenantId,
    ids: &[&str],
) -> Result<HashSet<String>> {
    let mut live = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(PER_STATEMENT) {
        let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", 2 + i)).collect();
        let sql = format!(
            "SELECT id FROM persons WHERE tenant_id = $1 AND id IN ({}) \
             AND merged_into IS NULL AND erased_at IS NULL",
            params.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(*id);
        }
        live.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(live)
}

/// What [`lookup_batch`] found for a batch of items.
#[derive(Debug, Default)]
pub struct Lookup {
    /// Per item, the one live person that already holds every one of its
    /// identifiers; `None` where [`identify`] would have to write (a new
    /// person, an identifier to attach or to move off a merged person,
    /// persons to merge) or the identifiers are not valid.
    pub known: Vec<Option<Person>>,
    /// Per item: its identifiers are valid, within the limits of one
    /// person, held by nobody, and shared with no other item not known:
    /// [`create_batch`] can create its person.
    pub new: Vec<bool>,
}

/// [`super::lookup`] for many items in a few statements, with the items
/// whose persons can be created in one go. Reads only; the caller's
/// item-by-item path handles (and reports) every item it leaves.
pub async fn lookup_batch(
    conn: &mut Conn,
    tenant: &TenantId,
    items: &[Vec<(String, String)>],
) -> Result<Lookup> {
    let parsed: Vec<Option<Vec<Identifier>>> = items.iter().map(|i| parse_all(i).ok()).collect();
    let wanted: HashSet<&Identifier> = parsed.iter().flatten().flatten().collect();
    let wanted: Vec<&Identifier> = wanted.into_iter().collect();
    // Who holds each identifier: a live person, or `None` for one still on
    // a merged-away or erased person's row.
    let mut owner: HashMap<(String, String), Option<String>> = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(PER_STATEMENT) {
        let pairs: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 + 2 * i, 3 + 2 * i))
            .collect();
        // Driven by the list, each pair found by the primary key: without
        // statistics SQLite's planner otherwise reads every identifier of
        // the tenant and tries the list on each (`CROSS JOIN` fixes its
        // join order; PostgreSQL plans it as a plain join).
        let sql = format!(
            "SELECT i.kind, i.value, i.person_id, \
               CASE WHEN p.merged_into IS NULL AND p.erased_at IS NULL THEN 1 ELSE 0 END AS live \
             FROM (VALUES {}) AS w CROSS JOIN person_identifiers i CROSS JOIN persons p \
             WHERE i.tenant_id = $1 AND i.kind = w.column1 AND i.value = w.column2 \
               AND p.tenant_id = i.tenant_id AND p.id = i.person_id",
            pairs.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(id.kind.as_str()).bind(id.value.as_str());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let live = r.try_get::<i32, _>("live")? == 1;
            let person: String = r.try_get("person_id")?;
            owner.insert(
                (r.try_get("kind")?, r.try_get("value")?),
                live.then_some(person),
            );
        }
    }
    let key = |id: &Identifier| (id.kind.clone(), id.value.clone());
    // Each item's one holder, if every identifier has the same live one.
    let holder: Vec<Option<&String>> = parsed
        .iter()
        .map(|ids| {
            let ids = ids.as_ref()?;
            let mut found: Option<&String> = None;
            for id in ids {
                let o = owner.get(&key(id))?.as_ref()?;
                match found {
                    Some(f) if f != o => return None,
                    _ => found = Some(o),
                }
            }
            found
        })
        .collect();
    let ids: BTreeSet<&str> = holder.iter().flatten().map(|s| s.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let persons = load_many(conn, tenant, &ids).await?;
    // Read without a transaction, a merge may have moved identifiers
    // between the two reads: only a person holding them all is the answer.
    let known: Vec<Option<Person>> = parsed
        .iter()
        .zip(&holder)
        .map(|(ids, h)| {
            let p = persons.get(h.as_ref()?.as_str())?;
            ids.as_ref()?
                .iter()
                .all(|i| p.identifiers.contains(i))
                .then(|| p.clone())
        })
        .collect();
    // New: every identifier free, and in no other item left unknown (two
    // items naming one phone are one person, found item by item).
    let mut uses: HashMap<&Identifier, usize> = HashMap::new();
    for (ids, k) in parsed.iter().zip(&known) {
        if let (Some(ids), None) = (ids, k) {
            for id in ids {
                *uses.entry(id).or_default() += 1;
            }
        }
    }
    let new = parsed
        .iter()
        .zip(&known)
        .map(|(ids, k)| match (ids, k) {
            (Some(ids), None) => {
                ids.iter()
                    .all(|id| uses[id] == 1 && !owner.contains_key(&key(id)))
                    && super::check_limits(ids).is_ok()
            }
            _ => false,
        })
        .collect();
    Ok(Lookup { known, new })
}

/// Creates one person per item, holding the item's identifiers, in a few
/// statements: for the items [`lookup_batch`] found `new`, in the caller's
/// transaction. Each identifier is stamped one microsecond after the one
/// before it, as attaching them one by one would order them. An
/// identifier another transaction took meanwhile is a retryable conflict;
/// earlier rows may stand, so run this behind a savepoint and roll back
/// on error. The persons as [`super::get`] would read them, in order.
pub async fn create_batch(
    conn: &mut Conn,
    tenant: &TenantId,
    items: &[Vec<(String, String)>],
) -> Result<Vec<Person>> {
    let t = crate::now().0;
    let mut created = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let identifiers = parse_all(item).map_err(|e| e.at(&format!("batch[{i}]")))?;
        super::check_limits(&identifiers).map_err(|e| e.at(&format!("batch[{i}]")))?;
        created.push((uuid::Uuid::now_v7().to_string(), identifiers));
    }
    for chunk in created.chunks(PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, $1, '{{}}', $2, $2)", 3 + i))
            .collect();
        let sql = format!(
            "INSERT INTO persons (id, tenant_id, attributes, created_at, updated_at) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(t);
        for (id, _) in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    // In identifier order: concurrent batches wait on each other's rows in
    // one order on PostgreSQL.
    let mut links: Vec<(&Identifier, &str, i64)> = created
        .iter()
        .flat_map(|(p, ids)| {
            ids.iter()
                .enumerate()
                .map(move |(j, i)| (i, p.as_str(), t + j as i64))
        })
        .collect();
    links.sort();
    for chunk in links.chunks(PER_STATEMENT / 2) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "($1, ${}, ${}, ${}, ${})",
                    2 + 4 * i,
                    3 + 4 * i,
                    4 + 4 * i,
                    5 + 4 * i
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO person_identifiers (tenant_id, kind, value, person_id, created_at) \
             VALUES {} ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for (id, person, at) in chunk {
            q = q
                .bind(id.kind.as_str())
                .bind(id.value.as_str())
                .bind(*person)
                .bind(*at);
        }
        let res = q.execute(&mut *conn).await?;
        if (res.rows_affected() as usize) < chunk.len() {
            return Err(Error::Conflict(
                "an identifier was claimed by a concurrent request; retry".into(),
            ));
        }
    }
    let ids: Vec<&str> = created.iter().map(|(p, _)| p.as_str()).collect();
    let mut persons = load_many(conn, tenant, &ids).await?;
    ids.iter()
        .map(|id| {
            persons
                .remove(*id)
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("person {id} not read back")))
        })
        .collect()
}
