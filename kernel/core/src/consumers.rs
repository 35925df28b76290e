//! Consumers' identity: how a person on a tenant's public pages proves who
//! they are, instead of naming themselves in arguments.
//!
//! Two parts, both without HTTP:
//!
//! - **A tenant's WeChat official-account app** (`tenant_wechat_apps`): the
//!   app id in the clear and the app secret sealed under the master key
//!   ([`crate::sealing`]). [`wechat_app`] never returns the secret;
//!   [`wechat_credentials`] does, for the code exchange only.
//! - **Signed tokens** ([`SigningKey`]), keyed by the kernel secret
//!   [`SESSION_KEY_SETTING`] (shared by every kernel process, so no table
//!   holds sessions):
//!   - a *consumer session*, `v1.<payload>.<mac>`: `payload` is base64url
//!     (no padding) of the JSON `{"sid", "ten", "knd", "val", "pid", "iat",
//!     "exp"}` — a random session id, the tenant id, the identifier kind
//!     and value, the person id at sign-in, issued-at and expiry in Unix
//!     seconds; `mac` is base64url of HMAC-SHA256 under the session key of
//!     the tenant id and the payload. A token of one tenant never verifies
//!     for another: the tenant is both in the MAC input and in the payload.
//!   - an *OAuth state*: 64 hex digits (WeChat accepts `[a-zA-Z0-9]{0,128}`),
//!     HMAC-SHA256 under the state key of the tenant, the `next` path, a
//!     random nonce and an expiry. The nonce, `next` and expiry travel in
//!     a short-lived cookie of the browser that started the sign-in
//!     ([`Flow`]), so a state is good only in that browser (no login CSRF)
//!     and only until it expires.
//!
//!   Verification recomputes the MAC and compares in constant time; any
//!   malformed, altered, expired or foreign token is simply not valid.

use std::fmt;

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::Row as _;

use crate::sealing::{Binding, Sealer};
use crate::{Conn, Db, Error, Result, TenantId, Timestamp, now};

/// The casbin object guarding a tenant's consumer sign-in configuration.
pub const OBJECT: &str = "consumerauth";
/// The kernel setting ([`crate::settings::secret`]) the token keys derive from.
pub const SESSION_KEY_SETTING: &str = "consumer-session-key";
/// The identifier kind of a WeChat official-account openid.
pub const WECHAT_OPENID: &str = "wechat_openid";
/// How long an OAuth state (and its flow cookie) is good for, in seconds.
pub const STATE_TTL_SECS: i64 = 10 * 60;
/// The longest token [`SigningKey::verify_session`] looks at.
pub const MAX_TOKEN_LEN: usize = 2048;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

// ---------------------------------------------------------------------------
// The tenant's WeChat app
// ---------------------------------------------------------------------------

/// A tenant's WeChat official-account app, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatApp {
    pub app_id: String,
    pub updated_at: Timestamp,
    /// Who set it (a principal label).
    pub updated_by: String,
}

/// The app id and the opened app secret, for the code exchange. Its `Debug`
/// never shows the secret.
#[derive(Clone)]
pub struct WechatCredentials {
    pub app_id: String,
    pub app_secret: String,
}

impl fmt::Debug for WechatCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatCredentials")
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .finish()
    }
}

/// The sealed secret's row. `sealing` knows `plugin_secrets` and
/// `kernel_settings` only; a setting name of this shape belongs to no real
/// setting, and binds the value to its tenant: a secret copied to another
/// tenant's row does not open.
fn binding_name(tenant: &TenantId) -> String {
    format!("tenant_wechat_apps/{}/app_secret", tenant.as_str())
}

/// Checks a WeChat app id: `wx` and 16 letters or digits (as WeChat issues them).
pub fn validate_app_id(field: &str, app_id: &str) -> Result<()> {
    let ok = app_id.len() == 18
        && app_id.starts_with("wx")
        && app_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(
            field,
            "a WeChat app id is `wx` followed by 16 letters or digits",
        ))
    }
}

/// Checks a WeChat app secret: 16 to 64 letters or digits (WeChat issues
/// 32 hex digits). The message never repeats the value.
pub fn validate_app_secret(field: &str, secret: &str) -> Result<()> {
    let ok = (16..=64).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(
            field,
            "a WeChat app secret is 16 to 64 letters or digits (usually 32)",
        ))
    }
}

/// Sets (or replaces) the tenant's WeChat app; the secret is stored sealed.
pub async fn set_wechat_app(
    conn: &mut Conn,
    sealer: &Sealer,
    tenant: &TenantId,
    app_id: &str,
    app_secret: &str,
    actor: &str,
) -> Result<WechatApp> {
    validate_app_id("appId", app_id)?;
    validate_app_secret("appSecret", app_secret)?;
    let name = binding_name(tenant);
    let sealed = sealer.seal(Binding::Setting(&name), app_secret);
    let at = now();
    sqlx::query(
        "INSERT INTO tenant_wechat_apps (tenant_id, app_id, app_secret, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id) DO UPDATE SET app_id = excluded.app_id, \
         app_secret = excluded.app_secret, updated_at = excluded.updated_at, \
         updated_by = excluded.updated_by",
    )
    .bind(tenant.as_str())
    .bind(app_id)
    .bind(&sealed)
    .bind(at.0)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(WechatApp {
        app_id: app_id.to_owned(),
        updated_at: at,
        updated_by: actor.to_owned(),
    })
}

/// Removes the tenant's WeChat app; false when there was none. Sessions
/// already issued stay valid until they expire.
pub async fn remove_wechat_app(conn: &mut Conn, tenant: &TenantId) -> Result<bool> {
    let done = sqlx::query("DELETE FROM tenant_wechat_apps WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The tenant's WeChat app, without its secret; `None` if not configured.
pub async fn wechat_app(conn: &mut Conn, tenant: &TenantId) -> Result<Option<WechatApp>> {
    let row = sqlx::query(
        "SELECT app_id, updated_at, updated_by FROM tenant_wechat_apps WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(WechatApp {
            app_id: r.try_get("app_id")?,
            updated_at: Timestamp(r.try_get("updated_at")?),
            updated_by: r.try_get("updated_by")?,
        })
    })
    .transpose()
}

/// The tenant's app id and opened secret; `None` if not configured. A
/// secret that does not open is an [`Error::Internal`] (never shown).
pub async fn wechat_credentials(
    conn: &mut Conn,
    sealer: &Sealer,
    tenant: &TenantId,
) -> Result<Option<WechatCredentials>> {
    let row = sqlx::query("SELECT app_id, app_secret FROM tenant_wechat_apps WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let app_id: String = row.try_get("app_id")?;
    let sealed: String = row.try_get("app_secret")?;
    let name = binding_name(tenant);
    let app_secret = sealer.open(Binding::Setting(&name), &sealed)?;
    Ok(Some(WechatCredentials { app_id, app_secret }))
}

/// Re-seals every WeChat app secret not sealed under the current master key,
/// in one transaction, and returns how many it re-sealed. Run it with the
/// previous key still given, like [`crate::sealing::rotate`] (which does not
/// know this table).
pub async fn reseal_wechat_apps(db: &Db) -> Result<u64> {
    let sealer = db.sealer()?;
    let current = sealer.current().id().to_owned();
    let mut tx = db.begin().await?;
    let rows = sqlx::query("SELECT tenant_id, app_secret FROM tenant_wechat_apps")
        .fetch_all(&mut *tx)
        .await?;
    let mut n = 0;
    for row in rows {
        let tenant = TenantId::from_db(row.try_get("tenant_id")?);
        let old: String = row.try_get("app_secret")?;
        if crate::sealing::key_id_of(&old) == Some(current.as_str()) {
            continue;
        }
        let name = binding_name(&tenant);
        let plain = sealer.open(Binding::Setting(&name), &old)?;
        let done = sqlx::query(
            "UPDATE tenant_wechat_apps SET app_secret = $1 WHERE tenant_id = $2 AND app_secret = $3",
        )
        .bind(sealer.seal(Binding::Setting(&name), &plain))
        .bind(tenant.as_str())
        .bind(&old)
        .execute(&mut *tx)
        .await?;
        n += done.rows_affected();
    }
    tx.commit().await?;
    Ok(n)
}

// ---------------------------------------------------------------------------
// Signed tokens
// ---------------------------------------------------------------------------

/// HMAC-SHA256 over the length-prefixed `parts` (so that no two lists of
/// parts frame the same bytes).
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes a key of any length")
    };
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex(&b)
}

fn secs(t: Timestamp) -> i64 {
    t.0.div_euclid(1_000_000)
}

/// The keys that sign consumer sessions and OAuth states, derived from one
/// kernel secret. Its `Debug` shows nothing of them.
#[derive(Clone)]
pub struct SigningKey {
    session: [u8; 32],
    state: [u8; 32],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A verified consumer session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// A random id of this session.
    #[serde(rename = "sid")]
    pub id: String,
    /// The tenant it belongs to.
    #[serde(rename = "ten")]
    pub tenant: String,
    /// The identifier kind, e.g. [`WECHAT_OPENID`].
    #[serde(rename = "knd")]
    pub kind: String,
    /// The identifier value, e.g. the openid.
    #[serde(rename = "val")]
    pub value: String,
    /// The person the identifier resolved to at sign-in (it may have been
    /// merged into another since; persons follow merges).
    #[serde(rename = "pid")]
    pub person_id: String,
    /// Issued at, Unix seconds.
    #[serde(rename = "iat")]
    pub issued_at: i64,
    /// Expires at, Unix seconds.
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

impl Session {
    /// A new session for `kind`/`value` in `tenant`, issued at `at` and good
    /// for `ttl_secs`.
    pub fn new(
        tenant: &TenantId,
        kind: &str,
        value: &str,
        person_id: &str,
        at: Timestamp,
        ttl_secs: i64,
    ) -> Session {
        let issued_at = secs(at);
        Session {
            id: random_hex(),
            tenant: tenant.as_str().to_owned(),
            kind: kind.to_owned(),
            value: value.to_owned(),
            person_id: person_id.to_owned(),
            issued_at,
            expires_at: issued_at.saturating_add(ttl_secs.max(0)),
        }
    }
}

/// The browser half of an OAuth sign-in: kept in a short-lived cookie,
/// covered by the state's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Where to send the consumer after signing in.
    pub next: String,
    /// A random nonce.
    pub nonce: String,
    /// Expires at, Unix seconds.
    pub expires_at: i64,
}

impl Flow {
    /// A new flow to `next`, starting at `at`, good for [`STATE_TTL_SECS`].
    pub fn new(next: &str, at: Timestamp) -> Flow {
        Flow {
            next: next.to_owned(),
            nonce: random_hex(),
            expires_at: secs(at).saturating_add(STATE_TTL_SECS),
        }
    }

    /// As a cookie value: `v1.<expiry>.<nonce>.<base64url(next)>`.
    pub fn encode(&self) -> String {
        format!(
            "v1.{}.{}.{}",
            self.expires_at,
            self.nonce,
            B64.encode(self.next.as_bytes())
        )
    }

    /// Reads a cookie value written by [`Flow::encode`].
    pub fn decode(value: &str) -> Option<Flow> {
        if value.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = value.split('.');
        let (Some("v1"), Some(exp), Some(nonce), Some(next), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires_at = exp.parse().ok()?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let next = String::from_utf8(B64.decode(next).ok()?).ok()?;
        Some(Flow {
            next,
            nonce: nonce.to_owned(),
            expires_at,
        })
    }
}

impl SigningKey {
    /// The keys derived from `secret` (at least 32 random bytes).
    pub fn new(secret: &[u8]) -> SigningKey {
        SigningKey {
            session: hmac(secret, &[b"keel consumer session key v1"]),
            state: hmac(secret, &[b"keel consumer oauth state key v1"]),
        }
    }

    /// The keys of this database: every kernel process on it gets the same.
    pub async fn load(db: &Db) -> Result<SigningKey> {
        let secret = crate::settings::secret(db, SESSION_KEY_SETTING).await?;
        Ok(SigningKey::new(&secret))
    }

    fn session_mac(&self, tenant: &str, payload: &str) -> [u8; 32] {
        hmac(
            &self.session,
            &[b"session", tenant.as_bytes(), payload.as_bytes()],
        )
    }

    /// The session as a token (see the module documentation).
    pub fn sign_session(&self, session: &Session) -> String {
        let json = serde_json::to_vec(session).unwrap_or_default();
        let payload = B64.encode(json);
        let mac = self.session_mac(&session.tenant, &payload);
        format!("v1.{payload}.{}", B64.encode(mac))
    }

    /// The session in `token` if it is intact, of `tenant`, and not expired
    /// at `at`; `None` otherwise, whatever the reason.
    pub fn verify_session(&self, token: &str, tenant: &TenantId, at: Timestamp) -> Option<Session> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let rest = token.strip_prefix("v1.")?;
        let (payload, mac) = rest.split_once('.')?;
        let mac = B64.decode(mac).ok()?;
        let expected = self.session_mac(tenant.as_str(), payload);
        if !constant_time_eq(&mac, &expected) {
            return None;
        }
        let session: Session = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        let fresh = session.issued_at <= secs(at) + 60 && secs(at) < session.expires_at;
        (session.tenant == tenant.as_str() && fresh).then_some(session)
    }

    fn state_mac(&self, tenant: &TenantId, flow: &Flow) -> String {
        hex(&hmac(
            &self.state,
            &[
                b"oauth-state",
                tenant.as_str().as_bytes(),
                flow.next.as_bytes(),
                flow.nonce.as_bytes(),
                flow.expires_at.to_string().as_bytes(),
            ],
        ))
    }

    /// The OAuth `state` for `flow` in `tenant`: 64 hex digits.
    pub fn sign_state(&self, tenant: &TenantId, flow: &Flow) -> String {
        self.state_mac(tenant, flow)
    }

    /// True when `state` was signed for this `flow` in `tenant` and the flow
    /// has not expired at `at`.
    pub fn verify_state(&self, tenant: &TenantId, flow: &Flow, state: &str, at: Timestamp) -> bool {
        let expected = self.state_mac(tenant, flow);
        let intact = constant_time_eq(state.as_bytes(), expected.as_bytes());
        intact && secs(at) < flow.expires_at && flow.expires_at <= secs(at) + STATE_TTL_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain HMAC (one part, no length prefix) for the RFC 4231 vectors.
    fn plain_hmac(key: &[u8], msg: &[u8]) -> String {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(msg);
        hex(&mac.finalize().into_bytes())
    }

    #[test]
    fn the_hmac_construction_matches_rfc_4231() {
        assert_eq!(
            plain_hmac(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            plain_hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            plain_hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // The framed variant is the same construction over framed parts.
        let framed: Vec<u8> = [8u64.to_be_bytes().as_slice(), b"Hi There"].concat();
        assert_eq!(
            hex(&hmac(&[0x0b; 20], &[b"Hi There"])),
            plain_hmac(&[0x0b; 20], &framed)
        );
    }

    #[tokio::test]
    async fn app_secrets_are_sealed_per_tenant_and_reseal_under_a_new_key() {
        use crate::sealing::{MasterKey, Sealer};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keel.db").display());
        let db = &crate::Db::connect(&url, &Default::default())
            .await
            .unwrap()
            .with_sealer(Sealer::random());
        db.migrate().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let a = crate::tenants::create(&mut tx, "acme", "Acme")
            .await
            .unwrap()
            .id;
        let b = crate::tenants::create(&mut tx, "beta", "Beta")
            .await
            .unwrap()
            .id;
        let sealer = db.sealer().unwrap();
        let secret = "0123456789abcdef0123456789abcdef";
        set_wechat_app(&mut tx, sealer, &a, "wx0123456789abcdef", secret, "t")
            .await
            .unwrap();
        set_wechat_app(
            &mut tx,
            sealer,
            &b,
            "wx0123456789abcdee",
            "f".repeat(32).as_str(),
            "t",
        )
        .await
        .unwrap();
        // Tenant a's sealed secret copied into b's row does not open.
        sqlx::query(
            "UPDATE tenant_wechat_apps SET app_secret = \
             (SELECT app_secret FROM tenant_wechat_apps WHERE tenant_id = $1) WHERE tenant_id = $2",
        )
        .bind(a.as_str())
        .bind(b.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
        assert!(matches!(
            wechat_credentials(&mut tx, sealer, &b).await,
            Err(Error::Internal(_))
        ));
        remove_wechat_app(&mut tx, &b).await.unwrap();
        tx.commit().await.unwrap();

        // Rotate: the new key current, the old one previous.
        let old = sealer.current().clone();
        let new = MasterKey::generate();
        let rotating = db.clone().with_sealer(Sealer::new(new.clone(), [old]));
        assert_eq!(reseal_wechat_apps(&rotating).await.unwrap(), 1);
        assert_eq!(reseal_wechat_apps(&rotating).await.unwrap(), 0);
        let only_new = db.clone().with_sealer(Sealer::new(new, []));
        let mut conn = only_new.reader().acquire().await.unwrap();
        let creds = wechat_credentials(&mut conn, only_new.sealer().unwrap(), &a)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(creds.app_secret, secret);
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::from_db(id.into())
    }

    #[test]
    fn a_session_verifies_only_intact_fresh_and_in_its_tenant() {
        let key = SigningKey::new(&[7u8; 32]);
        let t = tenant("t1");
        let at = Timestamp(1_800_000_000_000_000);
        let s = Session::new(&t, WECHAT_OPENID, "o-abc", "p1", at, 7200);
        let token = key.sign_session(&s);
        assert_eq!(key.verify_session(&token, &t, at), Some(s.clone()));
        assert_eq!(key.verify_session(&token, &tenant("t2"), at), None);
        let later = Timestamp(at.0 + 7200 * 1_000_000);
        assert_eq!(key.verify_session(&token, &t, later), None);
        assert_eq!(
            SigningKey::new(&[8u8; 32]).verify_session(&token, &t, at),
            None
        );
        // Another payload under the original MAC.
        let forged = Session {
            value: "o-victim".into(),
            ..s
        };
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let mac = token.rsplit('.').next().unwrap();
        assert_eq!(
            key.verify_session(&format!("v1.{forged_payload}.{mac}"), &t, at),
            None
        );
        for junk in ["", "v1.", "v1..", "v2.a.b", "v1.a.b.c", &"x".repeat(5000)] {
            assert_eq!(key.verify_session(junk, &t, at), None);
        }
    }

    #[test]
    fn a_state_verifies_only_for_its_flow_tenant_and_time() {
        let key = SigningKey::new(&[7u8; 32]);
        let t = tenant("t1");
        let at = Timestamp(1_800_000_000_000_000);
        let flow = Flow::new("/t/acme/p/codes/x", at);
        let state = key.sign_state(&t, &flow);
        assert_eq!(state.len(), 64);
        assert!(state.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Flow::decode(&flow.encode()), Some(flow.clone()));
        assert!(key.verify_state(&t, &flow, &state, at));
        assert!(!key.verify_state(&tenant("t2"), &flow, &state, at));
        let other = Flow {
            next: "/t/acme/elsewhere".into(),
            ..flow.clone()
        };
        assert!(!key.verify_state(&t, &other, &state, at));
        let expired = Timestamp(at.0 + STATE_TTL_SECS * 1_000_000);
        assert!(!key.verify_state(&t, &flow, &state, expired));
        assert!(Flow::decode("v1.1.zz.AA").is_none());
    }
}
