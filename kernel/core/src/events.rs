//! One Data: the tenant's append-only event stream.
//!
//! Events (`code.scanned`, `order.paid`, `person.merged`, …) are appended,
//! never changed. An append with an idempotency key already used in the
//! tenant returns the event stored the first time instead of a second one,
//! so that a retried write is harmless.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row as _;

use crate::db::Conn;
use crate::{Db, Error, Result, TenantId, Timestamp, now, persons};

pub mod catalog;

/// The largest payload, serialised.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The most events one page returns.
pub const MAX_PAGE: usize = 100;

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// Position in the tenant's log: grows in commit order, so a reader
    /// that resumes after the last position it saw never skips an event.
    pub seq: i64,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub person_id: Option<String>,
    pub payload: Value,
    pub idempotency_key: Option<String>,
    /// Who appended it: `kernel`, a plugin's name, or a principal label.
    pub producer: String,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Dotted lower-case name, e.g. `code.scanned`.
    pub event_type: String,
    pub person_id: Option<String>,
    /// A JSON object.
    pub payload: Value,
    pub idempotency_key: Option<String>,
    /// When it happened, if not now.
    pub occurred_at: Option<Timestamp>,
}

/// Checks an event type: dot-separated segments of `a-z`, `0-9`, `_`, at
/// least two segments, at most 100 characters.
pub fn validate_type(field: &str, t: &str) -> Result<()> {
    let segs: Vec<&str> = t.split('.').collect();
    let ok = t.len() <= 100
        && segs.len() >= 2
        && segs.iter().all(|s| {
            s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(
            field,
            format!("{t:?} is not an event type; write dotted lower-case words, e.g. order.paid"),
        ))
    }
}

/// The namespaces (first segment) of the event types the kernel itself
/// emits, such as `person.merged`. Nobody else may emit a type in them: not
/// a plugin, not an API key.
pub const KERNEL_NAMESPACES: &[&str] = &[
    "person", "tenant", "keel", "kernel", "product", "org", "schedule",
];

/// True when `t` is one of the kernel's own event types.
pub fn kernel_owns(t: &str) -> bool {
    t.split('.')
        .next()
        .is_some_and(|ns| KERNEL_NAMESPACES.contains(&ns))
}

const COLUMNS: &str = "tenant_seq AS seq, id, type, occurred_at, recorded_at, person_id, payload, \
                       idempotency_key, producer";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Event> {
    Ok(Event {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        event_type: row.try_get("type")?,
        occurred_at: Timestamp(row.try_get("occurred_at")?),
        recorded_at: Timestamp(row.try_get("recorded_at")?),
        person_id: row.try_get("person_id")?,
        payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
        idempotency_key: row.try_get("idempotency_key")?,
        producer: row.try_get("producer")?,
    })
}

/// Appends an event in `conn`'s transaction (or returns the one already
/// stored under the same idempotency key).
pub async fn append(
    conn: &mut Conn,
    tenant: &TenantId,
    new: NewEvent,
    producer: &str,
) -> Result<Event> {
    let payload = checked_payload(&new)?;
    // No look-up of the idempotency key first: the insert below finds a
    // stored event (a retry) itself, which saves a statement on every new
    // event and costs a skipped position on a retry (readers follow
    // positions in order; they never count on them being dense).
    let t = now();
    let id = uuid::Uuid::now_v7().to_string();
    // The tenant's head row stays locked until this transaction ends, so
    // positions are taken in commit order (append late in a transaction).
    let tenant_seq: i64 = sqlx::query_scalar(
        "INSERT INTO event_heads (tenant_id, last_seq) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET last_seq = event_heads.last_seq + 1 RETURNING last_seq",
    )
    .bind(tenant.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let row = Row {
        id: &id,
        new: &new,
        at: t,
        payload: &payload,
        producer,
        tenant_seq,
    };
    // The person is checked by the insert itself (a live person, in one
    // statement); only when nothing was inserted is it looked at apart. A
    // refused append so stores no event but may skip a position.
    if let Some(r) = row.insert(conn, tenant, new.person_id.as_deref()).await? {
        return from_row(&r);
    }
    // A retry (the key names a stored event) gets the stored event. No
    // concurrent append of the key can have won since: it would need the
    // head row this transaction holds.
    if let Some(k) = &new.idempotency_key
        && let Some(e) = by_idempotency_key(conn, tenant, k).await?
    {
        same_origin(&e, &new.event_type, producer, "idempotencyKey")?;
        return Ok(e);
    }
    // Else the person is no live person of the tenant: merged away (the
    // event goes to the survivor), or none.
    if let Some(p) = &new.person_id {
        let live = persons::resolve_live(conn, tenant, p)
            .await?
            .ok_or_else(|| Error::bad_input("personId", format!("no person {p:?}")))?;
        if live != *p
            && let Some(r) = row.insert(conn, tenant, Some(&live)).await?
        {
            return from_row(&r);
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "the event {} of type {} was not stored, and no stored event has its key",
        row.id,
        new.event_type
    )))
}

/// The row [`append`] writes.
struct Row<'a> {
    id: &'a str,
    new: &'a NewEvent,
    at: Timestamp,
    payload: &'a str,
    producer: &'a str,
    tenant_seq: i64,
}

impl Row<'_> {
    /// Inserts the event for `person` if that person is live (not merged
    /// away) and the idempotency key is free; the stored row, or `None`.
    async fn insert(
        &self,
        conn: &mut Conn,
        tenant: &TenantId,
        person: Option<&str>,
    ) -> Result<Option<sqlx::any::AnyRow>> {
        Ok(sqlx::query(&format!(
            "INSERT INTO events (id, tenant_id, type, occurred_at, recorded_at, person_id, payload, idempotency_key, producer, tenant_seq) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
             WHERE $6 IS NULL OR EXISTS \
               (SELECT 1 FROM persons WHERE tenant_id = $2 AND id = $6 AND merged_into IS NULL) \
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(self.id)
        .bind(tenant.as_str())
        .bind(&self.new.event_type)
        .bind(self.new.occurred_at.unwrap_or(self.at).0)
        .bind(self.at.0)
        .bind(person)
        .bind(self.payload)
        .bind(&self.new.idempotency_key)
        .bind(self.producer)
        .bind(self.tenant_seq)
        .fetch_optional(&mut *conn)
        .await?)
    }
}

/// `Ok` when a retry may have the event stored under its idempotency key:
/// the retry is of the same type and, when a plugin is either producer, by
/// that plugin; `CONFLICT` otherwise. A
/// key is the tenant's, so no one may take a plugin's (a client holding a
/// plugin's next key would stop the plugin's event and read it back); the
/// tenant's credentials (`key:…`, `operator:…`) may retry each other's, as
/// an integration does after its key is rotated.
fn same_origin(stored: &Event, event_type: &str, producer: &str, field: &str) -> Result<()> {
    let credential = |p: &str| p.contains(':');
    let same_producer =
        stored.producer == producer || (credential(&stored.producer) && credential(producer));
    if !same_producer || stored.event_type != event_type {
        return Err(Error::Conflict(format!(
            "{field}: the key {:?} already names another producer's or another type's event; use a key of your own",
            stored.idempotency_key.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Checks an event to append without the database; returns its payload
/// serialised.
fn checked_payload(new: &NewEvent) -> Result<String> {
    validate_type("type", &new.event_type)?;
    if !new.payload.is_object() {
        return Err(Error::bad_input("payload", "must be a JSON object"));
    }
    let payload = serde_json::to_string(&new.payload)?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::bad_input(
            "payload",
            format!(
                "is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            ),
        ));
    }
    if let Some(k) = &new.idempotency_key
        && (k.is_empty() || k.len() > 200)
    {
        return Err(Error::bad_input(
            "idempotencyKey",
            "must be 1-200 characters",
        ));
    }
    Ok(payload)
}

async fn by_idempotency_key(
    conn: &mut Conn,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<Event>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND idempotency_key = $2"
    ))
    .bind(tenant.as_str())
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The most events one [`append_batch`] takes.
pub const MAX_BATCH: usize = 1000;

/// Appends up to [`MAX_BATCH`] events in `conn`'s transaction, in order,
/// and returns them in the same order.
///
/// Each event is what [`append`] would make of it: an idempotency key
/// already used in the tenant (or earlier in the batch) yields the event
/// stored under it, not a second one, so a retried batch returns the same
/// ids and stores nothing twice. One invalid event refuses the batch,
/// naming it (`events[3].type`), before anything is written; the writes
/// run inside a savepoint, so a failure leaves nothing behind. The batch
/// costs a handful of statements, not one round trip per event.
pub async fn append_batch(
    conn: &mut Conn,
    tenant: &TenantId,
    batch: Vec<NewEvent>,
    producer: &str,
) -> Result<Vec<Event>> {
    if batch.len() > MAX_BATCH {
        return Err(Error::bad_input(
            "events",
            format!("{} events; at most {MAX_BATCH} per call", batch.len()),
        ));
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let at = |i: usize| move |e: Error| e.at(&format!("events[{i}]"));
    let payloads = batch
        .iter()
        .enumerate()
        .map(|(i, e)| checked_payload(e).map_err(at(i)))
        .collect::<Result<Vec<_>>>()?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let conn: &mut Conn = &mut tx;

    // Keys already stored, and the first use of each key in the batch.
    let keys: Vec<String> = batch
        .iter()
        .filter_map(|e| e.idempotency_key.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut stored: HashMap<String, Event> = HashMap::new();
    for chunk in keys.chunks(500) {
        let list = placeholders_from(2, chunk.len());
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND idempotency_key IN ({list})"
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for k in chunk {
            q = q.bind(k);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let e = from_row(&row)?;
            stored.insert(e.idempotency_key.clone().unwrap_or_default(), e);
        }
    }
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    let mut fresh: Vec<usize> = Vec::new();
    for (i, e) in batch.iter().enumerate() {
        match e.idempotency_key.as_deref() {
            Some(k) if stored.contains_key(k) => {
                same_origin(&stored[k], &e.event_type, producer, "idempotencyKey")
                    .map_err(at(i))?;
            }
            // A key repeated in the batch names its first event: of the
            // same type, as a retry of a stored one must be.
            Some(k) if first_use.contains_key(k) => {
                if batch[first_use[k]].event_type != e.event_type {
                    return Err(Error::Conflict(format!(
                        "idempotencyKey: the key {k:?} already names an event of type {} \
                         earlier in this batch",
                        batch[first_use[k]].event_type
                    )))
                    .map_err(at(i));
                }
            }
            Some(k) => {
                first_use.insert(k, i);
                fresh.push(i);
            }
            None => fresh.push(i),
        }
    }

    // The persons the fresh events name, each resolved once.
    let mut persons: HashMap<&str, String> = HashMap::new();
    for &i in &fresh {
        if let Some(p) = batch[i].person_id.as_deref()
            && !persons.contains_key(p)
        {
            let live = persons::resolve_live(conn, tenant, p)
                .await?
                .ok_or_else(|| Error::bad_input("personId", format!("no person {p:?}")))
                .map_err(at(i))?;
            persons.insert(p, live);
        }
    }

    // Positions for the fresh events, taken at once under the head's lock.
    let mut inserted: HashMap<String, Event> = HashMap::new();
    let mut ids: Vec<String> = Vec::with_capacity(batch.len());
    if !fresh.is_empty() {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO event_heads (tenant_id, last_seq) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET last_seq = event_heads.last_seq + excluded.last_seq \
             RETURNING last_seq",
        )
        .bind(tenant.as_str())
        .bind(fresh.len() as i64)
        .fetch_one(&mut *conn)
        .await?;
        let mut seq = last - fresh.len() as i64;
        let t = now();
        let mut rows = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            seq += 1;
            let e = &batch[i];
            let id = uuid::Uuid::now_v7().to_string();
            ids.push(id.clone());
            rows.push((i, id, seq, e.occurred_at.unwrap_or(t).0));
        }
        for chunk in rows.chunks(100) {
            let values = (0..chunk.len())
                .map(|r| format!("({})", placeholders_from(r * 10 + 1, 10)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO events (id, tenant_id, type, occurred_at, recorded_at, person_id, payload, \
                 idempotency_key, producer, tenant_seq) VALUES {values} \
                 ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
            );
            let mut q = sqlx::query(&sql);
            for (i, id, seq, occurred_at) in chunk {
                let e = &batch[*i];
                q = q
                    .bind(id)
                    .bind(tenant.as_str())
                    .bind(&e.event_type)
                    .bind(*occurred_at)
                    .bind(t.0)
                    .bind(e.person_id.as_deref().map(|p| persons[p].as_str()))
                    .bind(&payloads[*i])
                    .bind(&e.idempotency_key)
                    .bind(producer)
                    .bind(*seq);
            }
            for row in q.fetch_all(&mut *conn).await? {
                let e = from_row(&row)?;
                inserted.insert(e.id.clone(), e);
            }
        }
    }

    // Each event of the batch, in order: fresh, stored before, or the
    // first of the batch with its key.
    let mut by_fresh: HashMap<usize, Event> = HashMap::new();
    for (&i, id) in fresh.iter().zip(&ids) {
        let e = match inserted.remove(id) {
            Some(e) => e,
            // Lost a race with a concurrent append of the same key: theirs
            // stands, if a retry may have it (as for a key stored before).
            None => {
                let k = batch[i].idempotency_key.as_deref().unwrap_or_default();
                let theirs = by_idempotency_key(conn, tenant, k).await?.ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("idempotent event {k} vanished"))
                })?;
                same_origin(&theirs, &batch[i].event_type, producer, "idempotencyKey")
                    .map_err(at(i))?;
                theirs
            }
        };
        if let Some(k) = &batch[i].idempotency_key {
            stored.insert(k.clone(), e.clone());
        }
        by_fresh.insert(i, e);
    }
    let mut out = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        let event = match by_fresh.remove(&i) {
            Some(ev) => ev,
            None => {
                let k = e.idempotency_key.as_deref().unwrap_or_default();
                stored.get(k).cloned().ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("batch event {i} ({k}) vanished"))
                })?
            }
        };
        out.push(event);
    }
    tx.commit().await?;
    Ok(out)
}

/// `$first, $first+1, …` (`count` of them).
fn placeholders_from(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Any of these types (all types when empty).
    pub types: Vec<String>,
    /// Events of this person, including those recorded before a merge
    /// under persons merged into it.
    pub person_id: Option<String>,
    /// `occurred_at >= since`.
    pub since: Option<Timestamp>,
    /// `occurred_at < until`.
    pub until: Option<Timestamp>,
}

/// One page of events, oldest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub has_next_page: bool,
}

/// Reads events after position `after` (exclusive), oldest first.
pub async fn list(
    db: &Db,
    tenant: &TenantId,
    filter: &EventFilter,
    first: usize,
    after: Option<i64>,
) -> Result<EventPage> {
    if first == 0 || first > MAX_PAGE {
        return Err(Error::bad_input("first", format!("must be 1-{MAX_PAGE}")));
    }
    for (i, t) in filter.types.iter().enumerate() {
        validate_type(&format!("filter.types[{i}]"), t)?;
    }
    let mut conn = db.reader().acquire().await?;
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND tenant_seq > $2");
    let mut binds: Vec<String> = Vec::new();
    let mut n = 2;
    let placeholders = |count: usize, n: &mut usize| -> String {
        (0..count)
            .map(|_| {
                *n += 1;
                format!("${n}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !filter.types.is_empty() {
        sql += &format!(
            " AND type IN ({})",
            placeholders(filter.types.len(), &mut n)
        );
        binds.extend(filter.types.iter().cloned());
    }
    if let Some(p) = &filter.person_id {
        let ids = persons::lineage(&mut conn, tenant, p).await?;
        sql += &format!(" AND person_id IN ({})", placeholders(ids.len(), &mut n));
        binds.extend(ids);
    }
    let mut times = Vec::new();
    if let Some(s) = filter.since {
        n += 1;
        sql += &format!(" AND occurred_at >= ${n}");
        times.push(s.0);
    }
    if let Some(u) = filter.until {
        n += 1;
        sql += &format!(" AND occurred_at < ${n}");
        times.push(u.0);
    }
    n += 1;
    sql += &format!(" ORDER BY tenant_seq LIMIT ${n}");
    let mut q = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(after.unwrap_or(0));
    for b in &binds {
        q = q.bind(b);
    }
    for t in times {
        q = q.bind(t);
    }
    let rows = q.bind((first + 1) as i64).fetch_all(&mut *conn).await?;
    let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let has_next_page = events.len() > first;
    events.truncate(first);
    Ok(EventPage {
        events,
        has_next_page,
    })
}

/// One event of `tenant` by id.
pub async fn get(db: &Db, tenant: &TenantId, id: &str) -> Result<Event> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| Error::not_found("event", id))?;
    from_row(&row)
}
