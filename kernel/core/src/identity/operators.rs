//! Operators: the people of a brand who sign in with an e-mail and a
//! password (argon2id), and their sessions.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use sqlx::Row as _;

use super::{
    Credential, Principal, decode_list, encode_list, hash_secret, new_secret, validate_roles,
};
use crate::db::Conn;
use crate::org::{self, Scope};
use crate::{Db, Error, Result, TenantId, Timestamp, now, tenants};

/// Prefix of every session token.
pub const SESSION_PREFIX: &str = "keel_os_";
/// How long a session lasts unless it is ended first.
pub const SESSION_TTL_MICROS: i64 = 12 * 3600 * 1_000_000;
const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 1024;

/// A person who operates a tenant.
#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The org node the operator is limited to (`None`: the whole tenant).
    pub org_scope: Option<String>,
    pub created_at: Timestamp,
    pub deactivated_at: Option<Timestamp>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewOperator {
    pub email: String,
    pub password: String,
    pub roles: Vec<String>,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: Operator,
    /// The bearer token (shown once).
    pub token: String,
    pub expires_at: Timestamp,
}

const COLUMNS: &str = "id, email, roles, org_scope, created_at, deactivated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Operator> {
    Ok(Operator {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        roles: decode_list(&row.try_get::<String, _>("roles")?)?,
        org_scope: row.try_get("org_scope")?,
        created_at: Timestamp(row.try_get("created_at")?),
        deactivated_at: row
            .try_get::<Option<i64>, _>("deactivated_at")?
            .map(Timestamp),
    })
}

/// Lower-cases and checks an e-mail address.
pub fn normalize_email(field: &str, email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && !e.chars().any(char::is_whitespace)
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@'));
    if valid {
        Ok(e)
    } else {
        Err(Error::bad_input(field, "is not an e-mail address"))
    }
}

fn check_password(field: &str, password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(Error::bad_input(
            field,
            format!("must be at least {MIN_PASSWORD} characters"),
        ));
    }
    if n > MAX_PASSWORD {
        return Err(Error::bad_input(
            field,
            format!("must be at most {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

async fn verify_password(password: String, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored password hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// A hash to verify against when the e-mail is unknown, so that a login for
/// an unknown address costs as much time as one with a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(b"not a password anyone has", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Creates an operator in `tenant`. A taken e-mail is a conflict.
pub async fn create(conn: &mut Conn, tenant: &TenantId, new: NewOperator) -> Result<Operator> {
    insert(conn, tenant, new, None).await
}

/// Creates an operator for `creator`, limited to the org node `org_scope`
/// (`None`: the whole tenant). A creator limited to a node may hand out
/// only that node or one under it, never the whole tenant (`FORBIDDEN`).
pub async fn create_scoped(
    conn: &mut Conn,
    tenant: &TenantId,
    new: NewOperator,
    org_scope: Option<&str>,
    creator: &Principal,
) -> Result<Operator> {
    normalize_email("email", &new.email)?;
    check_password("password", &new.password)?;
    validate_roles("roles", &new.roles)?;
    org::check_grant(conn, tenant, creator.org_scope.as_deref(), org_scope).await?;
    insert(conn, tenant, new, org_scope).await
}

async fn insert(
    conn: &mut Conn,
    tenant: &TenantId,
    new: NewOperator,
    org_scope: Option<&str>,
) -> Result<Operator> {
    let email = normalize_email("email", &new.email)?;
    check_password("password", &new.password)?;
    let roles = validate_roles("roles", &new.roles)?;
    let exists = sqlx::query("SELECT 1 FROM operators WHERE tenant_id = $1 AND email = $2")
        .bind(tenant.as_str())
        .bind(&email)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Err(Error::Conflict(format!(
            "an operator with e-mail {email:?} already exists"
        )));
    }
    let op = Operator {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        roles,
        org_scope: org_scope.map(str::to_owned),
        created_at: now(),
        deactivated_at: None,
    };
    let hash = hash_password(new.password).await?;
    sqlx::query(
        "INSERT INTO operators (id, tenant_id, email, password_hash, roles, created_at, org_scope) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&op.id)
    .bind(tenant.as_str())
    .bind(&op.email)
    .bind(hash)
    .bind(encode_list(&op.roles))
    .bind(op.created_at.0)
    .bind(&op.org_scope)
    .execute(&mut *conn)
    .await?;
    Ok(op)
}

/// The operators of `tenant`, oldest first.
pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<Operator>> {
    list_within(db, tenant, Scope::Tenant).await
}

/// The operators of `tenant` that `scope` covers (for a node: those
/// limited to it or to a node under it), oldest first.
pub async fn list_within(db: &Db, tenant: &TenantId, scope: Scope<'_>) -> Result<Vec<Operator>> {
    let mut conn = db.reader().acquire().await?;
    let rows = match org::credential_filter(&mut conn, tenant, scope).await? {
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM operators WHERE tenant_id = $1 ORDER BY created_at, id"
            ))
            .bind(tenant.as_str())
            .fetch_all(&mut *conn)
            .await?
        }
        Some((from, to)) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM operators WHERE tenant_id = $1 AND org_scope IN \
                 (SELECT id FROM org_nodes WHERE tenant_id = $1 AND path >= $2 AND path < $3) \
                 ORDER BY created_at, id"
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

/// One operator of `tenant` that `scope` covers; `NOT_FOUND` for the others.
pub async fn get_within(
    conn: &mut Conn,
    tenant: &TenantId,
    scope: Scope<'_>,
    id: &str,
) -> Result<Operator> {
    let op = get(conn, tenant, id).await?;
    if org::covers(conn, tenant, scope, op.org_scope.as_deref()).await? {
        Ok(op)
    } else {
        Err(Error::not_found("operator", id))
    }
}

/// One operator of `tenant`.
pub async fn get(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Operator> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM operators WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("operator", id))?;
    from_row(&row)
}

fn invalid_login() -> Error {
    Error::Unauthenticated("invalid tenant, e-mail or password".into())
}

/// Checks an operator's password and opens a session. Every failure looks
/// the same to the caller, whether the tenant, the e-mail or the password
/// was wrong, or the operator is deactivated.
pub async fn login(db: &Db, tenant_slug: &str, email: &str, password: &str) -> Result<Session> {
    let email = email.trim().to_lowercase();
    let tenant = tenants::get_by_slug(db, tenant_slug).await.ok();
    let row =
        match &tenant {
            Some(t) => sqlx::query(&format!(
                "SELECT {COLUMNS}, password_hash FROM operators WHERE tenant_id = $1 AND email = $2"
            ))
            .bind(t.id.as_str())
            .bind(&email)
            .fetch_optional(db.reader())
            .await?,
            None => None,
        };
    let (operator, hash) = match &row {
        Some(r) => (Some(from_row(r)?), r.try_get::<String, _>("password_hash")?),
        None => (None, DUMMY_HASH.clone()),
    };
    let ok = verify_password(password.to_owned(), hash).await?;
    let (Some(tenant), Some(operator), true) = (tenant, operator, ok) else {
        return Err(invalid_login());
    };
    if operator.deactivated_at.is_some() {
        return Err(invalid_login());
    }
    let token = new_secret(SESSION_PREFIX);
    let created = now();
    let expires_at = Timestamp(created.0 + SESSION_TTL_MICROS);
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO operator_sessions (id, tenant_id, operator_id, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.id.as_str())
    .bind(&operator.id)
    .bind(hash_secret(&token))
    .bind(created.0)
    .bind(expires_at.0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Session {
        operator,
        token,
        expires_at,
    })
}

pub(super) async fn authenticate_session(db: &Db, token_hash: &str) -> Result<Principal> {
    let row = sqlx::query(
        "SELECT s.id AS session_id, s.tenant_id, s.expires_at, s.revoked_at, o.id AS operator_id, \
         o.roles, o.org_scope, o.deactivated_at FROM operator_sessions s JOIN operators o ON o.id = s.operator_id \
         WHERE s.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| Error::Unauthenticated("invalid session token".into()))?;
    let expires_at: i64 = row.try_get("expires_at")?;
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    let deactivated: Option<i64> = row.try_get("deactivated_at")?;
    if revoked.is_some() || deactivated.is_some() || expires_at <= now().0 {
        return Err(Error::Unauthenticated(
            "the session has ended; log in again".into(),
        ));
    }
    Ok(Principal {
        credential: Credential::Operator {
            operator_id: row.try_get("operator_id")?,
            session_id: row.try_get("session_id")?,
        },
        tenant: Some(TenantId::from_db(row.try_get("tenant_id")?)),
        roles: decode_list(&row.try_get::<String, _>("roles")?)?,
        scopes: Vec::new(),
        org_scope: row.try_get("org_scope")?,
    })
}

/// Ends one session.
pub async fn logout(conn: &mut Conn, session_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE operator_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(now().0)
    .bind(session_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn end_sessions(conn: &mut Conn, operator_id: &str, except: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE operator_sessions SET revoked_at = $1 \
         WHERE operator_id = $2 AND revoked_at IS NULL AND id <> $3",
    )
    .bind(now().0)
    .bind(operator_id)
    .bind(except.unwrap_or(""))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Changes an operator's own password after checking the current one, and
/// ends every other session of that operator.
pub async fn change_password(
    conn: &mut Conn,
    tenant: &TenantId,
    operator_id: &str,
    session_id: &str,
    current: &str,
    new: &str,
) -> Result<()> {
    check_password("newPassword", new)?;
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM operators WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(operator_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::not_found("operator", operator_id))?;
    if !verify_password(current.to_owned(), hash).await? {
        return Err(Error::bad_input(
            "currentPassword",
            "is not the current password",
        ));
    }
    let new_hash = hash_password(new.to_owned()).await?;
    sqlx::query("UPDATE operators SET password_hash = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(new_hash)
        .bind(tenant.as_str())
        .bind(operator_id)
        .execute(&mut *conn)
        .await?;
    end_sessions(conn, operator_id, Some(session_id)).await
}

/// Deactivates an operator of `tenant` and ends all its sessions. The
/// tenant's last owner credential cannot be deactivated.
pub async fn deactivate(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Operator> {
    let op = get(conn, tenant, id).await?;
    if op.deactivated_at.is_some() {
        return Err(Error::Conflict(format!(
            "operator {id:?} is already deactivated"
        )));
    }
    if op.org_scope.is_none()
        && op.roles.iter().any(|r| r == "owner")
        && super::active_owner_credentials(conn, tenant).await? <= 1
    {
        return Err(super::last_owner());
    }
    sqlx::query("UPDATE operators SET deactivated_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(now().0)
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    end_sessions(conn, id, None).await?;
    get(conn, tenant, id).await
}
