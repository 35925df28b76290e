//! Tenants: the brands that use Keel. Every other row belongs to exactly one.

use serde::Serialize;
use sqlx::Row as _;

use crate::db::Conn;
use crate::error::is_unique_violation;
use crate::{Db, Error, Result, Timestamp, now};

/// The id of a tenant.
///
/// Only the kernel mints one, from a stored tenant row (or a credential that
/// points at one): nothing a client or plugin sends can become a `TenantId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TenantId(String);

impl TenantId {
    /// A tenant id read back from a kernel table (`tenants`, or one that
    /// references it). The only way to mint one, and private to this crate.
    pub(crate) fn from_db(id: String) -> Self {
        TenantId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A brand using Keel.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    /// Short unique name used in URLs and logins, e.g. `acme-beer`.
    pub slug: String,
    pub name: String,
    pub created_at: Timestamp,
    /// The IANA time zone its schedules and plugins' calendars follow,
    /// e.g. `Asia/Shanghai` (the default).
    pub time_zone: String,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_db(row.try_get("id")?),
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        created_at: Timestamp(row.try_get("created_at")?),
        time_zone: row.try_get("time_zone")?,
    })
}

/// The time zone a tenant gets until its owner picks another.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// Checks an IANA time zone name (`Asia/Shanghai`, `Europe/Berlin`, `UTC`)
/// against the tz database compiled into the kernel.
pub fn parse_time_zone(name: &str) -> Result<chrono_tz::Tz> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        Error::bad_input(
            "timeZone",
            format!("{name:?} is not an IANA time zone such as Asia/Shanghai or Europe/Berlin"),
        )
    })
}

/// The tenant's IANA time zone, through `conn` (a pool, or a transaction
/// as `&mut *tx`).
pub async fn time_zone<'c, E>(conn: E, id: &TenantId) -> Result<String>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let tz: Option<String> = sqlx::query_scalar("SELECT time_zone FROM tenants WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    tz.ok_or_else(|| Error::not_found("tenant", id.as_str()))
}

/// Sets the tenant's time zone inside `conn`'s transaction; refuses a name
/// that is not in the tz database, naming it.
pub async fn set_time_zone(conn: &mut Conn, id: &TenantId, name: &str) -> Result<Tenant> {
    let tz = parse_time_zone(name.trim())?;
    let row = sqlx::query(&format!(
        "UPDATE tenants SET time_zone = $1 WHERE id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tz.name())
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("tenant", id.as_str()))?;
    from_row(&row)
}

/// The columns [`from_row`] reads.
const COLUMNS: &str = "id, slug, name, created_at, time_zone";

/// Checks a slug: 2–63 characters of `a-z`, `0-9` and inner `-`.
pub fn validate_slug(slug: &str) -> Result<()> {
    let ok_len = (2..=63).contains(&slug.len());
    let ok_chars = slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !slug.starts_with('-') && !slug.ends_with('-');
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(Error::bad_input(
            "slug",
            "must be 2-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        ))
    }
}

fn validate_name(name: &str) -> Result<()> {
    let n = name.trim().chars().count();
    if n == 0 || n > 200 {
        return Err(Error::bad_input("name", "must be 1-200 characters"));
    }
    Ok(())
}

/// Creates a tenant inside `conn`'s transaction. A taken slug is a conflict.
pub async fn create(conn: &mut Conn, slug: &str, name: &str) -> Result<Tenant> {
    validate_slug(slug)?;
    validate_name(name)?;
    let tenant = Tenant {
        id: TenantId::from_db(uuid::Uuid::now_v7().to_string()),
        slug: slug.to_owned(),
        name: name.trim().to_owned(),
        created_at: now(),
        time_zone: DEFAULT_TIME_ZONE.to_owned(),
    };
    let res =
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.as_str())
            .bind(&tenant.slug)
            .bind(&tenant.name)
            .bind(tenant.created_at.0)
            .execute(&mut *conn)
            .await;
    match res {
        Ok(_) => Ok(tenant),
        Err(e) if is_unique_violation(&e) => Err(Error::Conflict(format!(
            "a tenant with slug {slug:?} already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The tenant with this id.
pub async fn get(db: &Db, id: &TenantId) -> Result<Tenant> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(db.reader())
        .await?
        .ok_or_else(|| Error::not_found("tenant", id.as_str()))?;
    from_row(&row)
}

/// The tenant with this slug.
pub async fn get_by_slug(db: &Db, slug: &str) -> Result<Tenant> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE slug = $1"))
        .bind(slug)
        .fetch_optional(db.reader())
        .await?
        .ok_or_else(|| Error::not_found("tenant", slug))?;
    from_row(&row)
}

/// Every tenant, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Tenant>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tenants ORDER BY created_at, id"
    ))
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(from_row).collect()
}
