//! Plugin packages installed on the platform and the plugins each tenant
//! enabled (the SQL; `keel-host` reads the manifests, compiles the
//! components and checks grants and configs).
//!
//! A package is one version of a plugin: its manifest, its component and
//! the component's SHA-256, stored once for the whole platform. A tenant
//! enables a package with grants and a config; disabling keeps the row
//! (and the plugin's data) with `disabled_at` set. The kernel stores the
//! manifest and the grants as the JSON text the host wrote, without
//! reading them: what they mean is the host's business.
//!
//! Every change to a tenant's set of enabled plugins bumps that tenant's
//! set version in the same transaction, so that every kernel process sees
//! the change and reloads the set (and rebuilds the tenant's schema).

use serde_json::Value;
use sqlx::Row as _;

use crate::db::Conn;
use crate::{Db, Error, Result, TenantId, Timestamp, now};

/// An installed plugin package (one version), without its component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// The manifest, as the JSON the host stored.
    pub manifest: String,
    /// SHA-256 of the component, in lowercase hex.
    pub hash: String,
    pub installed_at: Timestamp,
}

/// A package to install.
#[derive(Debug, Clone, Copy)]
pub struct NewPackage<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The manifest as JSON; handed back as is by [`packages`].
    pub manifest: &'a str,
    /// The WebAssembly component.
    pub component: &'a [u8],
    /// SHA-256 of `component`, in lowercase hex.
    pub hash: &'a str,
}

/// Stores a package inside `conn`'s transaction. Storing the same name,
/// version and component again changes nothing; other content under a
/// stored name and version is a conflict, because a published version never
/// changes.
pub async fn store_package(conn: &mut Conn, p: &NewPackage<'_>) -> Result<()> {
    let existing: Option<String> =
        sqlx::query_scalar("SELECT component_hash FROM plugins WHERE name = $1 AND version = $2")
            .bind(p.name)
            .bind(p.version)
            .fetch_optional(&mut *conn)
            .await?;
    match existing {
        Some(h) if h == p.hash => Ok(()),
        Some(_) => Err(Error::Conflict(format!(
            "{} {} is already installed with other content; publish a new version",
            p.name, p.version
        ))),
        None => {
            sqlx::query(
                "INSERT INTO plugins (name, version, manifest, component, component_hash, installed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(p.name)
            .bind(p.version)
            .bind(p.manifest)
            .bind(p.component.to_vec())
            .bind(p.hash)
            .bind(now().0)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    }
}

/// Every installed package, by name then installation time. Components
/// are left out: read one with [`component`].
pub async fn packages(db: &Db) -> Result<Vec<Package>> {
    let rows = sqlx::query(
        "SELECT name, version, manifest, component_hash, installed_at FROM plugins \
         ORDER BY name, installed_at",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Package {
                name: r.try_get("name")?,
                version: r.try_get("version")?,
                manifest: r.try_get("manifest")?,
                hash: r.try_get("component_hash")?,
                installed_at: Timestamp(r.try_get("installed_at")?),
            })
        })
        .collect()
}

/// The component of package `name` at `version`.
pub async fn component(db: &Db, name: &str, version: &str) -> Result<Vec<u8>> {
    let bytes: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT component FROM plugins WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(db.reader())
            .await?;
    bytes.ok_or_else(|| Error::NotFound(format!("plugin {name} {version} is not installed")))
}

/// True when some version of the plugin `name` is installed, as `conn`
/// sees it (inside a transaction, so that what depends on the answer
/// commits with it).
pub async fn is_installed(conn: &mut Conn, name: &str) -> Result<bool> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM plugins WHERE name = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

/// A plugin as a tenant enabled it (or once did).
#[derive(Debug, Clone, PartialEq)]
pub struct Enablement {
    pub name: String,
    /// The installed version it runs.
    pub version: String,
    /// What the tenant granted, as the JSON the host stored.
    pub grants: String,
    /// The tenant's config for it.
    pub config: Value,
    pub enabled_at: Timestamp,
    /// Set while the plugin is disabled.
    pub disabled_at: Option<Timestamp>,
}

/// A plugin to enable for a tenant.
#[derive(Debug, Clone, Copy)]
pub struct Enable<'a> {
    pub name: &'a str,
    /// An installed version of it.
    pub version: &'a str,
    /// What the tenant grants, as JSON; handed back as is by [`enablements`].
    pub grants: &'a str,
    pub config: &'a Value,
}

/// Enables a plugin for `tenant` inside `conn`'s transaction, or, when the
/// tenant enabled it before, moves it to this version, grants and config
/// and enables it again. Bumps the tenant's [`set_version`].
pub async fn enable(conn: &mut Conn, tenant: &TenantId, e: &Enable<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO tenant_plugins (tenant_id, name, version, grants, config, enabled_at, disabled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (tenant_id, name) DO UPDATE SET \
         version = excluded.version, grants = excluded.grants, config = excluded.config, \
         enabled_at = excluded.enabled_at, disabled_at = NULL",
    )
    .bind(tenant.as_str())
    .bind(e.name)
    .bind(e.version)
    .bind(e.grants)
    .bind(e.config.to_string())
    .bind(now().0)
    .execute(&mut *conn)
    .await?;
    bump(conn, tenant).await
}

/// Disables the tenant's enabled plugin `name` inside `conn`'s transaction;
/// its row, records, counters and events stay. Bumps the tenant's
/// [`set_version`]. A plugin that is not enabled is not found.
pub async fn disable(conn: &mut Conn, tenant: &TenantId, name: &str) -> Result<()> {
    let n = sqlx::query(
        "UPDATE tenant_plugins SET disabled_at = $1 \
         WHERE tenant_id = $2 AND name = $3 AND disabled_at IS NULL",
    )
    .bind(now().0)
    .bind(tenant.as_str())
    .bind(name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("{name} is not enabled")));
    }
    bump(conn, tenant).await
}

/// Every plugin the tenant ever enabled, disabled ones included, by name.
pub async fn enablements(db: &Db, tenant: &TenantId) -> Result<Vec<Enablement>> {
    let rows = sqlx::query(
        "SELECT name, version, grants, config, enabled_at, disabled_at FROM tenant_plugins \
         WHERE tenant_id = $1 ORDER BY name",
    )
    .bind(tenant.as_str())
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let config: String = r.try_get("config")?;
            Ok(Enablement {
                name: r.try_get("name")?,
                version: r.try_get("version")?,
                grants: r.try_get("grants")?,
                config: serde_json::from_str(&config)?,
                enabled_at: Timestamp(r.try_get("enabled_at")?),
                disabled_at: r.try_get::<Option<i64>, _>("disabled_at")?.map(Timestamp),
            })
        })
        .collect()
}

/// The version of the tenant's set of enabled plugins: 0 until the set
/// first changes, then one more on every change. A process that cached
/// the set compares versions to learn that another process changed it.
pub async fn set_version(db: &Db, tenant: &TenantId) -> Result<i64> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT version FROM tenant_schema_versions WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(db.reader())
            .await?;
    Ok(v.unwrap_or(0))
}

/// Counts a change to the tenant's set of enabled plugins.
async fn bump(conn: &mut Conn, tenant: &TenantId) -> Result<()> {
    sqlx::query(
        "INSERT INTO tenant_schema_versions (tenant_id, version) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_schema_versions.version + 1",
    )
    .bind(tenant.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
