//! Identity: who is calling. API keys for integrations, operators (people
//! with a password) and their sessions, and the [`Principal`] a credential
//! resolves to.
//!
//! **Invariant:** a request's tenant is the tenant of its credential. No
//! argument of any operation can choose it.

pub mod api_keys;
pub mod operators;
mod secrets;

use sqlx::Row as _;

use crate::{Db, Error, Result, TenantId, now};
pub use secrets::{hash_secret, new_secret};

/// The built-in roles of a tenant, in decreasing power.
pub const TENANT_ROLES: &[&str] = &["owner", "admin", "marketer", "analyst", "integration"];
/// The role of platform administrators (no tenant).
pub const PLATFORM_ROLE: &str = "platform";

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A tenant's API key (an integration, a script, an ERP).
    ApiKey { key_id: String },
    /// A platform administrator's API key.
    PlatformKey { key_id: String },
    /// An operator's login session.
    Operator {
        operator_id: String,
        session_id: String,
    },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    /// The tenant the caller acts in; `None` for platform administrators.
    pub tenant: Option<TenantId>,
    pub roles: Vec<String>,
    /// When non-empty, the caller may do only what these `object:action`
    /// scopes cover, whatever its roles allow.
    pub scopes: Vec<String>,
    /// The org node (id) the caller is limited to: it acts only at or
    /// under that node ("HQ sets the rules, regions spend"); `None` for the
    /// whole tenant. See [`crate::authz::SCOPED_KERNEL_ACCESS`].
    pub org_scope: Option<String>,
}

impl Principal {
    /// A short stable label for logs and audit trails: `key:…`, `operator:…`.
    pub fn label(&self) -> String {
        match &self.credential {
            Credential::ApiKey { key_id } => format!("key:{key_id}"),
            Credential::PlatformKey { key_id } => format!("platform-key:{key_id}"),
            Credential::Operator { operator_id, .. } => format!("operator:{operator_id}"),
        }
    }

    /// True when the principal is a platform administrator.
    pub fn is_platform(&self) -> bool {
        matches!(self.credential, Credential::PlatformKey { .. })
    }
}

/// Refreshing `last_used_at` on every request would turn reads into writes;
/// once a minute is precise enough to tell a live key from a dead one.
const LAST_USED_GRANULARITY_MICROS: i64 = 60_000_000;

/// Resolves a bearer token to its principal, or `UNAUTHENTICATED`.
pub async fn authenticate(db: &Db, token: &str) -> Result<Principal> {
    let hash = hash_secret(token);
    if token.starts_with(operators::SESSION_PREFIX) {
        return operators::authenticate_session(db, &hash).await;
    }
    let row = sqlx::query(
        "SELECT id, tenant_id, roles, scopes, org_scope, last_used_at, revoked_at \
         FROM api_keys WHERE secret_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| Error::Unauthenticated("invalid API key".into()))?;
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    if revoked.is_some() {
        return Err(Error::Unauthenticated("the API key was revoked".into()));
    }
    let key_id: String = row.try_get("id")?;
    let last_used: Option<i64> = row.try_get("last_used_at")?;
    let t = now();
    if last_used.is_none_or(|u| t.0 - u > LAST_USED_GRANULARITY_MICROS) {
        let mut conn = db.begin().await?;
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(t.0)
            .bind(&key_id)
            .execute(&mut *conn)
            .await?;
        conn.commit().await?;
    }
    let tenant: Option<String> = row.try_get("tenant_id")?;
    let roles = decode_list(&row.try_get::<String, _>("roles")?)?;
    let scopes = decode_list(&row.try_get::<String, _>("scopes")?)?;
    let org_scope: Option<String> = row.try_get("org_scope")?;
    Ok(match tenant {
        Some(t) => Principal {
            credential: Credential::ApiKey { key_id },
            tenant: Some(TenantId::from_db(t)),
            roles,
            scopes,
            org_scope,
        },
        None => Principal {
            credential: Credential::PlatformKey { key_id },
            tenant: None,
            roles,
            scopes,
            org_scope: None,
        },
    })
}

pub(crate) fn decode_list(s: &str) -> Result<Vec<String>> {
    Ok(serde_json::from_str(s)?)
}

pub(crate) fn encode_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// How many active credentials (API keys and operators) of `tenant` hold
/// the owner role for the whole tenant (not limited to an org node). The
/// last one must not go: nobody else could manage the tenant, not even a
/// platform administrator.
pub(crate) async fn active_owner_credentials(
    conn: &mut crate::Conn,
    tenant: &TenantId,
) -> Result<usize> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT roles FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL AND org_scope IS NULL \
         UNION ALL SELECT roles FROM operators WHERE tenant_id = $1 AND deactivated_at IS NULL \
         AND org_scope IS NULL",
    )
    .bind(tenant.as_str())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .filter(|r| decode_list(r).is_ok_and(|l| l.iter().any(|x| x == "owner")))
        .count())
}

pub(crate) fn last_owner() -> Error {
    Error::Conflict(
        "this is the tenant's last owner credential; create another owner key or operator first"
            .into(),
    )
}

/// Checks a list of tenant roles: known names, at least one, no repeats.
pub(crate) fn validate_roles(field: &str, roles: &[String]) -> Result<Vec<String>> {
    if roles.is_empty() {
        return Err(Error::bad_input(field, "give at least one role"));
    }
    let mut out: Vec<String> = Vec::with_capacity(roles.len());
    for r in roles {
        if !TENANT_ROLES.contains(&r.as_str()) {
            return Err(Error::bad_input(
                field,
                format!("unknown role {r:?}; roles are {}", TENANT_ROLES.join(", ")),
            ));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    Ok(out)
}
