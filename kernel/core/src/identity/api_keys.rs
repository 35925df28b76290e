//! API keys: long-lived credentials for integrations such as an ERP.
//!
//! The secret is shown once, at creation; only its hash is stored.

use sqlx::Row as _;

use super::{
    PLATFORM_ROLE, Principal, decode_list, encode_list, hash_secret, new_secret, validate_roles,
};
use crate::db::Conn;
use crate::org::{self, Scope};
use crate::{Db, Error, Result, TenantId, Timestamp, now};

/// Prefix of every API key secret, so that leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "keel_ak_";

/// An API key, without its secret.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// The org node the key is limited to (`None`: the whole tenant).
    pub org_scope: Option<String>,
    /// The first characters of the secret, to recognise a key in a list.
    pub secret_prefix: String,
    pub created_at: Timestamp,
    pub created_by: Option<String>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

const COLUMNS: &str = "id, name, roles, scopes, org_scope, secret_prefix, created_at, created_by, \
                       last_used_at, revoked_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        roles: decode_list(&row.try_get::<String, _>("roles")?)?,
        scopes: decode_list(&row.try_get::<String, _>("scopes")?)?,
        org_scope: row.try_get("org_scope")?,
        secret_prefix: row.try_get("secret_prefix")?,
        created_at: Timestamp(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(Timestamp),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

/// Checks scopes: `object:action`, where action is `read`, `write` or `*`.
pub fn validate_scopes(scopes: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        let ok = match s.split_once(':') {
            Some((obj, act)) => {
                !obj.is_empty()
                    && obj.len() <= 64
                    && obj.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b)
                    })
                    && matches!(act, "read" | "write" | "*")
            }
            None => false,
        };
        if !ok {
            return Err(Error::bad_input(
                "scopes",
                format!("{s:?} is not a scope; write object:action, e.g. events:read"),
            ));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// Creates a key in `tenant` and returns it with its secret (shown once).
pub async fn create(
    conn: &mut Conn,
    tenant: &TenantId,
    new: NewApiKey,
    created_by: Option<&str>,
) -> Result<(ApiKey, String)> {
    let (name, roles, scopes) = check_new(&new)?;
    insert(conn, Some(tenant), &name, &roles, &scopes, None, created_by).await
}

/// Creates a key for `creator` limited to the org node `org_scope` (`None`:
/// the whole tenant). A creator limited to a node may hand out only that
/// node or one under it, never the whole tenant (`FORBIDDEN`); an unknown
/// node is a bad `orgScope`.
pub async fn create_scoped(
    conn: &mut Conn,
    tenant: &TenantId,
    new: NewApiKey,
    org_scope: Option<&str>,
    creator: &Principal,
) -> Result<(ApiKey, String)> {
    let (name, roles, scopes) = check_new(&new)?;
    org::check_grant(conn, tenant, creator.org_scope.as_deref(), org_scope).await?;
    let label = creator.label();
    insert(
        conn,
        Some(tenant),
        &name,
        &roles,
        &scopes,
        org_scope,
        Some(&label),
    )
    .await
}

fn check_new(new: &NewApiKey) -> Result<(String, Vec<String>, Vec<String>)> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::bad_input("name", "must be 1-200 characters"));
    }
    let roles = validate_roles("roles", &new.roles)?;
    let scopes = validate_scopes(&new.scopes)?;
    if roles.iter().any(|r| r == "integration") && scopes.is_empty() {
        return Err(Error::bad_input(
            "scopes",
            "an integration key needs at least one scope, e.g. events:read",
        ));
    }
    Ok((name.to_owned(), roles, scopes))
}

async fn insert(
    conn: &mut Conn,
    tenant: Option<&TenantId>,
    name: &str,
    roles: &[String],
    scopes: &[String],
    org_scope: Option<&str>,
    created_by: Option<&str>,
) -> Result<(ApiKey, String)> {
    let secret = new_secret(KEY_PREFIX);
    let key = ApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        roles: roles.to_vec(),
        scopes: scopes.to_vec(),
        org_scope: org_scope.map(str::to_owned),
        secret_prefix: secret[..KEY_PREFIX.len() + 6].to_owned(),
        created_at: now(),
        created_by: created_by.map(str::to_owned),
        last_used_at: None,
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, roles, scopes, secret_hash, secret_prefix, \
         created_at, created_by, org_scope) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&key.id)
    .bind(tenant.map(TenantId::as_str))
    .bind(&key.name)
    .bind(encode_list(&key.roles))
    .bind(encode_list(&key.scopes))
    .bind(hash_secret(&secret))
    .bind(&key.secret_prefix)
    .bind(key.created_at.0)
    .bind(&key.created_by)
    .bind(&key.org_scope)
    .execute(&mut *conn)
    .await?;
    Ok((key, secret))
}

/// Creates an unscoped `owner` key for `tenant` (a new tenant's first key).
pub async fn create_owner_key(
    conn: &mut Conn,
    tenant: &TenantId,
    name: &str,
    created_by: &str,
) -> Result<(ApiKey, String)> {
    let owner = NewApiKey {
        name: name.to_owned(),
        roles: vec!["owner".into()],
        scopes: vec![],
    };
    create(conn, tenant, owner, Some(created_by)).await
}

/// The fixed id of the bootstrap platform key that `KEEL_ADMIN_TOKEN` sets.
pub const BOOTSTRAP_KEY_ID: &str = "platform-bootstrap";

/// Makes `secret` the platform administrator's bootstrap key, replacing
/// any earlier bootstrap secret. The secret must be at least 16 characters.
pub async fn set_bootstrap_platform_key(db: &Db, secret: &str) -> Result<()> {
    if secret.chars().count() < 16 {
        return Err(Error::bad_input(
            "KEEL_ADMIN_TOKEN",
            "must be at least 16 characters",
        ));
    }
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, roles, scopes, secret_hash, secret_prefix, created_at) \
         VALUES ($1, NULL, 'bootstrap platform admin (KEEL_ADMIN_TOKEN)', $2, '[]', $3, '', $4) \
         ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, revoked_at = NULL",
    )
    .bind(BOOTSTRAP_KEY_ID)
    .bind(encode_list(&[PLATFORM_ROLE.to_owned()]))
    .bind(hash_secret(secret))
    .bind(now().0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates a new platform administrator key (from the shell).
pub async fn create_platform_key(conn: &mut Conn, name: &str) -> Result<(ApiKey, String)> {
    insert(
        conn,
        None,
        name,
        &[PLATFORM_ROLE.to_owned()],
        &[],
        None,
        Some("cli"),
    )
    .await
}

/// The keys of `tenant`, newest first, revoked ones included.
pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<ApiKey>> {
    list_within(db, tenant, Scope::Tenant).await
}

/// The keys of `tenant` that `scope` covers (for a node: the keys limited
/// to it or to a node under it), newest first, revoked ones included.
pub async fn list_within(db: &Db, tenant: &TenantId, scope: Scope<'_>) -> Result<Vec<ApiKey>> {
    let mut conn = db.reader().acquire().await?;
    let rows = match org::credential_filter(&mut conn, tenant, scope).await? {
        None => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await?,
        Some((from, to)) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND org_scope IN \
                 (SELECT id FROM org_nodes WHERE tenant_id = $1 AND path >= $2 AND path < $3) \
                 ORDER BY created_at DESC, id DESC"
            ))
            .bind(tenant.as_str())
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// One key of `tenant`.
pub async fn get(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<ApiKey> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("API key", id))?;
    from_row(&row)
}

/// One key of `tenant` that `scope` covers; `NOT_FOUND` for the others.
pub async fn get_within(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    id: &str,
) -> Result<ApiKey> {
    let key = get(conn, tenant, id).await?;
    if org::covers(conn, tenant, scope, key.org_scope.as_deref()).await? {
        Ok(key)
    } else {
        Err(Error::not_found("API key", id))
    }
}

/// Revokes a key of `tenant`. Revoking a revoked key changes nothing; the
/// tenant's last owner credential cannot be revoked.
pub async fn revoke(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<ApiKey> {
    let key = get(conn, tenant, id).await?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    if key.org_scope.is_none()
        && key.roles.iter().any(|r| r == "owner")
        && super::active_owner_credentials(conn, tenant).await? <= 1
    {
        return Err(super::last_owner());
    }
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(now().0)
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    get(conn, tenant, id).await
}
