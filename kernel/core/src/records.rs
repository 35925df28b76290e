//! One Data: tenant-scoped records with optimistic versions.
//!
//! A record lives in a namespace (the plugin that owns it) and a collection,
//! under a key. Every write names what it expects to find — nothing, a
//! given version, or anything — so that two writers cannot silently
//! overwrite each other. The plugin runtime exposes this store to plugins,
//! each confined to its own namespace.

use serde_json::Value;
use sqlx::Row as _;

use crate::db::Conn;
use crate::{Error, Result, TenantId, Timestamp, now};

/// The largest record, serialised.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The most records one page returns.
pub const MAX_PAGE: usize = 1000;

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub collection: String,
    pub key: String,
    /// 1 on creation, +1 on every write.
    pub version: i64,
    pub data: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Create or overwrite.
    Any,
    /// Create only: the key must be free.
    Absent,
    /// Update only: the record must be at this version.
    Version(i64),
}

/// Where a record lives: its namespace, collection and key.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub namespace: &'a str,
    pub collection: &'a str,
    pub key: &'a str,
}

fn validate(loc: &Location<'_>) -> Result<()> {
    let c = loc.collection;
    let ok = (1..=63).contains(&c.len())
        && c.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(Error::bad_input(
            "collection",
            "must be 1-63 characters of a-z, 0-9 and _, starting with a letter",
        ));
    }
    if loc.key.is_empty() || loc.key.len() > 256 {
        return Err(Error::bad_input("key", "must be 1-256 bytes"));
    }
    Ok(())
}

const COLUMNS: &str = "collection, key, version, data, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Record> {
    Ok(Record {
        collection: row.try_get("collection")?,
        key: row.try_get("key")?,
        version: row.try_get("version")?,
        data: serde_json::from_str(&row.try_get::<String, _>("data")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

/// The record at `loc`, if any.
pub async fn get(conn: &mut Conn, tenant: &TenantId, loc: Location<'_>) -> Result<Option<Record>> {
    validate(&loc)?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM records WHERE tenant_id = $1 AND namespace = $2 AND collection = $3 AND key = $4"
    ))
    .bind(tenant.as_str())
    .bind(loc.namespace)
    .bind(loc.collection)
    .bind(loc.key)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Writes `data` at `loc` if the stored state matches `expect`; a mismatch
/// is a conflict that changes nothing.
pub async fn put(
    conn: &mut Conn,
    tenant: &TenantId,
    loc: Location<'_>,
    data: &Value,
    expect: Expect,
) -> Result<Record> {
    validate(&loc)?;
    if !data.is_object() {
        return Err(Error::bad_input("data", "must be a JSON object"));
    }
    let text = serde_json::to_string(data)?;
    if text.len() > MAX_RECORD_BYTES {
        return Err(Error::bad_input(
            "data",
            format!("is {} bytes; the limit is {MAX_RECORD_BYTES}", text.len()),
        ));
    }
    let t = now().0;
    let sql = match expect {
        Expect::Absent => format!(
            "INSERT INTO records (tenant_id, namespace, collection, key, version, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5, $6, $6) ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        ),
        Expect::Any => format!(
            "INSERT INTO records (tenant_id, namespace, collection, key, version, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5, $6, $6) ON CONFLICT (tenant_id, namespace, collection, key) \
             DO UPDATE SET data = excluded.data, version = records.version + 1, updated_at = excluded.updated_at \
             RETURNING {COLUMNS}"
        ),
        Expect::Version(_) => format!(
            "UPDATE records SET data = $5, updated_at = $6, version = version + 1 \
             WHERE tenant_id = $1 AND namespace = $2 AND collection = $3 AND key = $4 AND version = $7 \
             RETURNING {COLUMNS}"
        ),
    };
    let mut q = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(loc.namespace)
        .bind(loc.collection)
        .bind(loc.key)
        .bind(&text)
        .bind(t);
    if let Expect::Version(v) = expect {
        q = q.bind(v);
    }
    match q.fetch_optional(&mut *conn).await? {
        Some(row) => from_row(&row),
        None => {
            let found = get(conn, tenant, loc).await?.map(|r| r.version);
            Err(Error::Conflict(match (expect, found) {
                (Expect::Absent, Some(v)) => format!(
                    "{}/{} already exists (version {v})",
                    loc.collection, loc.key
                ),
                (_, Some(v)) => format!(
                    "{}/{} is at version {v}, not the one expected",
                    loc.collection, loc.key
                ),
                (_, None) => format!("{}/{} does not exist", loc.collection, loc.key),
            }))
        }
    }
}

/// The text an indexed field's value is stored and compared as: strings as
/// they are, numbers and booleans as JSON; other values are not indexed.
pub fn index_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// Drops the index entries of the record at `loc`.
async fn unindex(conn: &mut Conn, tenant: &TenantId, loc: Location<'_>) -> Result<()> {
    sqlx::query("DELETE FROM record_index WHERE tenant_id = $1 AND namespace = $2 AND collection = $3 AND key = $4")
        .bind(tenant.as_str())
        .bind(loc.namespace)
        .bind(loc.collection)
        .bind(loc.key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn reindex(
    conn: &mut Conn,
    tenant: &TenantId,
    loc: Location<'_>,
    data: &Value,
    indexed: &[String],
    fresh: bool,
) -> Result<()> {
    // A record just created has no entries yet (deleting one drops them).
    if !fresh {
        unindex(conn, tenant, loc).await?;
    }
    let entries: Vec<(&str, &str, String)> = indexed
        .iter()
        .filter_map(|f| {
            data.get(f)
                .and_then(index_text)
                .map(|v| (loc.key, f.as_str(), v))
        })
        .collect();
    insert_index(conn, tenant, loc.namespace, loc.collection, &entries).await
}

/// Index entries `(key, field, value)` of one collection, a few rows per
/// statement.
async fn insert_index(
    conn: &mut Conn,
    tenant: &TenantId,
    namespace: &str,
    collection: &str,
    entries: &[(&str, &str, String)],
) -> Result<()> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "($1, $2, $3, ${}, ${}, ${})",
                    4 + 3 * i,
                    5 + 3 * i,
                    6 + 3 * i
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO record_index (tenant_id, namespace, collection, field, value, key) \
             VALUES {} ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(namespace)
            .bind(collection);
        for (key, field, value) in chunk {
            q = q.bind(*field).bind(value.as_str()).bind(*key);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`put`], keeping the index of the `indexed` top-level fields current.
pub async fn put_indexed(
    conn: &mut Conn,
    tenant: &TenantId,
    loc: Location<'_>,
    data: &Value,
    expect: Expect,
    indexed: &[String],
) -> Result<Record> {
    let r = put(conn, tenant, loc, data, expect).await?;
    if !indexed.is_empty() {
        reindex(conn, tenant, loc, data, indexed, expect == Expect::Absent).await?;
    }
    Ok(r)
}

/// Rows per statement of [`insert_many`]: well under SQLite's and
/// PostgreSQL's limits on bound parameters.
const ROWS_PER_STATEMENT: usize = 250;

/// A batch of new records for one collection, checked by [`check_many`]
/// and ready for [`insert_many`].
#[derive(Debug)]
pub struct NewRecords<'a> {
    namespace: &'a str,
    collection: &'a str,
    /// `(index in the caller's list, key, data, data as text)`, in key
    /// order: concurrent batches on PostgreSQL take their row locks in
    /// one order.
    rows: Vec<(usize, String, Value, String)>,
}

/// Checks a batch of `(key, data)` for [`insert_many`] without touching
/// the database: keys, objects, sizes, and no key given twice; a refusal
/// names the item (`items[3].key`).
pub fn check_many<'a>(
    namespace: &'a str,
    collection: &'a str,
    items: Vec<(String, Value)>,
) -> Result<NewRecords<'a>> {
    let mut rows = Vec::with_capacity(items.len());
    for (i, (key, data)) in items.into_iter().enumerate() {
        let at = |e: Error| e.at(&format!("items[{i}]"));
        validate(&Location {
            namespace,
            collection,
            key: &key,
        })
        .map_err(at)?;
        if !data.is_object() {
            return Err(at(Error::bad_input("data", "must be a JSON object")));
        }
        let text = serde_json::to_string(&data)?;
        if text.len() > MAX_RECORD_BYTES {
            return Err(at(Error::bad_input(
                "data",
                format!("is {} bytes; the limit is {MAX_RECORD_BYTES}", text.len()),
            )));
        }
        rows.push((i, key, data, text));
    }
    rows.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    if let Some(w) = rows.windows(2).find(|w| w[0].1 == w[1].1) {
        return Err(Error::Conflict(format!(
            "{collection}/{} is given twice in the batch",
            w[1].1
        ))
        .at(&format!("items[{}]", w[1].0)));
    }
    Ok(NewRecords {
        namespace,
        collection,
        rows,
    })
}

/// Creates every record of a checked batch, each key required to be free,
/// with the index of the `indexed` fields: a few multi-row statements
/// instead of two per record. A key already taken is a conflict naming
/// its item; rows of the statements before it may stand, so run this
/// behind a savepoint and roll back on error. Returns the count.
pub async fn insert_many(
    conn: &mut Conn,
    tenant: &TenantId,
    batch: &NewRecords<'_>,
    indexed: &[String],
) -> Result<u32> {
    let (namespace, collection) = (batch.namespace, batch.collection);
    let t = now().0;
    for chunk in batch.rows.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, $2, $3, ${}, 1, ${}, $4, $4)", 5 + 2 * i, 6 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO records (tenant_id, namespace, collection, key, version, data, created_at, updated_at) \
             VALUES {} ON CONFLICT DO NOTHING RETURNING key",
            rows.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql)
            .bind(tenant.as_str())
            .bind(namespace)
            .bind(collection)
            .bind(t);
        for (_, key, _, text) in chunk {
            q = q.bind(key.as_str()).bind(text.as_str());
        }
        let written = q.fetch_all(&mut *conn).await?;
        if written.len() < chunk.len() {
            let written: std::collections::HashSet<&str> =
                written.iter().map(String::as_str).collect();
            let taken = chunk
                .iter()
                .filter(|(_, k, _, _)| !written.contains(k.as_str()))
                .min_by_key(|(i, _, _, _)| *i)
                .unwrap_or(&chunk[0]);
            return Err(
                Error::Conflict(format!("{collection}/{} already exists", taken.1))
                    .at(&format!("items[{}]", taken.0)),
            );
        }
    }
    let entries: Vec<(&str, &str, String)> = batch
        .rows
        .iter()
        .flat_map(|(_, key, data, _)| {
            indexed.iter().filter_map(move |f| {
                data.get(f)
                    .and_then(index_text)
                    .map(|v| (key.as_str(), f.as_str(), v))
            })
        })
        .collect();
    insert_index(conn, tenant, namespace, collection, &entries).await?;
    Ok(batch.rows.len() as u32)
}

fn check_page(namespace: &str, collection: &str, limit: usize) -> Result<()> {
    validate(&Location {
        namespace,
        collection,
        key: "-",
    })?;
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad_input("limit", format!("must be 1-{MAX_PAGE}")));
    }
    Ok(())
}

/// A page from `limit + 1` fetched rows: the first `limit`, and whether
/// more follow.
fn page(rows: &[sqlx::any::AnyRow], limit: usize) -> Result<(Vec<Record>, bool)> {
    let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// Records whose indexed `field` has the index text `value`, in key order
/// after `after_key`. Returns the page and whether more follow.
#[allow(
    clippy::too_many_arguments,
    reason = "one query's parameters, each named"
)]
pub async fn query_indexed(
    conn: &mut Conn,
    tenant: &TenantId,
    namespace: &str,
    collection: &str,
    field: &str,
    value: &str,
    after_key: Option<&str>,
    limit: usize,
) -> Result<(Vec<Record>, bool)> {
    check_page(namespace, collection, limit)?;
    let rows = sqlx::query(
        "SELECT r.collection, r.key, r.version, r.data, r.created_at, r.updated_at \
         FROM record_index i JOIN records r ON r.tenant_id = i.tenant_id AND r.namespace = i.namespace \
         AND r.collection = i.collection AND r.key = i.key \
         WHERE i.tenant_id = $1 AND i.namespace = $2 AND i.collection = $3 AND i.field = $4 AND i.value = $5 \
         AND i.key > $6 ORDER BY i.key LIMIT $7",
    )
    .bind(tenant.as_str())
    .bind(namespace)
    .bind(collection)
    .bind(field)
    .bind(value)
    .bind(after_key.unwrap_or(""))
    .bind((limit + 1) as i64)
    .fetch_all(&mut *conn)
    .await?;
    page(&rows, limit)
}

/// Deletes the record at `loc` (only at version `expect_version` when
/// given). Returns whether a record was deleted.
pub async fn delete(
    conn: &mut Conn,
    tenant: &TenantId,
    loc: Location<'_>,
    expect_version: Option<i64>,
) -> Result<bool> {
    validate(&loc)?;
    let res = sqlx::query(
        "DELETE FROM records WHERE tenant_id = $1 AND namespace = $2 AND collection = $3 AND key = $4 \
         AND ($5 < 0 OR version = $5)",
    )
    .bind(tenant.as_str())
    .bind(loc.namespace)
    .bind(loc.collection)
    .bind(loc.key)
    .bind(expect_version.unwrap_or(-1))
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() > 0 {
        unindex(conn, tenant, loc).await?;
    }
    if res.rows_affected() == 0 {
        if let (Some(v), Some(found)) = (expect_version, get(conn, tenant, loc).await?) {
            return Err(Error::Conflict(format!(
                "{}/{} is at version {}, not {v}",
                loc.collection, loc.key, found.version
            )));
        }
        return Ok(false);
    }
    Ok(true)
}

/// Records of a collection in key order, after `after_key` (exclusive).
/// Returns the page and whether more follow.
pub async fn list(
    conn: &mut Conn,
    tenant: &TenantId,
    namespace: &str,
    collection: &str,
    after_key: Option<&str>,
    limit: usize,
) -> Result<(Vec<Record>, bool)> {
    check_page(namespace, collection, limit)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM records WHERE tenant_id = $1 AND namespace = $2 AND collection = $3 \
         AND key > $4 ORDER BY key LIMIT $5"
    ))
    .bind(tenant.as_str())
    .bind(namespace)
    .bind(collection)
    .bind(after_key.unwrap_or(""))
    .bind((limit + 1) as i64)
    .fetch_all(&mut *conn)
    .await?;
    page(&rows, limit)
}
