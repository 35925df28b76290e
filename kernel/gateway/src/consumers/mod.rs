//! Consumers' sign-in: WeChat web authorization (网页授权, `snsapi_base`),
//! so that public operations take the person from a verified session
//! instead of from their arguments.
//!
//! - `GET /t/{slug}/auth/wechat?next=/t/{slug}/…` answers 302 to WeChat's
//!   authorize page with a signed `state`, and sets a short-lived flow
//!   cookie (`keel_wechat_flow`, 10 minutes) that the state is bound to: a
//!   state works only in the browser that started the sign-in, for this
//!   tenant and this `next`, until it expires. `next` must be a path of the
//!   same tenant (no open redirect).
//! - `GET /t/{slug}/auth/wechat/callback?code=…&state=…` checks the state,
//!   exchanges the code with WeChat server-side for the openid, resolves or
//!   creates the person behind `wechat_openid` (One ID), sets the session
//!   cookie and answers 302 to `next`. Any failure is a small HTML page
//!   that says what the consumer can do, never why inside.
//! - `GET /t/{slug}/auth/session` says who the session cookie names (JSON),
//!   or 401; `POST /t/{slug}/auth/logout` clears it.
//!
//! The session cookie `keel_consumer` (HttpOnly, SameSite=Lax, `Path=/t/{slug}/`,
//! Secure unless configured off) holds a token signed by the kernel
//! ([`keel_core::consumers::SigningKey`], format documented there); no table
//! holds sessions, so every kernel process on the database accepts it.
//! [`session_of`] verifies it for the public GraphQL endpoint and the pages.

mod wechat;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use keel_core::consumers::{self as core, Flow, Session, SigningKey, WECHAT_OPENID};
use keel_core::persons::{self, Identify};
use keel_core::tenants::Tenant;
use keel_core::{Error, TenantId, now};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::http::request_id;
use crate::pages::{CONTENT_SECURITY_POLICY, escape};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "keel_consumer";
/// The cookie of a sign-in in progress.
pub(crate) const FLOW_COOKIE: &str = "keel_wechat_flow";
/// The longest `next` accepted.
const MAX_NEXT_LEN: usize = 1024;
/// The largest answer read from WeChat.
const MAX_WECHAT_ANSWER: usize = 64 * 1024;
/// How long the code exchange may take.
const WECHAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of consumer sign-in.
#[derive(Debug, Clone)]
pub struct ConsumerAuthConfig {
    /// The kernel's public base URL as consumers' browsers reach it, e.g.
    /// `https://keel.brand.cn`: the WeChat callback is
    /// `{public_base_url}/t/{slug}/auth/wechat/callback`. When unset, it is
    /// built from the request's `Host` header, with `https` when
    /// `secure_cookies` is on and `http` otherwise; set it behind a proxy.
    pub public_base_url: Option<String>,
    /// Where WeChat's authorize page lives (`https://open.weixin.qq.com`).
    pub wechat_authorize_base: String,
    /// Where WeChat's API lives (`https://api.weixin.qq.com`).
    pub wechat_api_base: String,
    /// How long a consumer session lasts.
    pub session_ttl: Duration,
    /// Marks the cookies `Secure` (sent over HTTPS only). Turn off only for
    /// local development over plain HTTP.
    pub secure_cookies: bool,
}

impl Default for ConsumerAuthConfig {
    fn default() -> Self {
        ConsumerAuthConfig {
            public_base_url: None,
            wechat_authorize_base: "https://open.weixin.qq.com".into(),
            wechat_api_base: "https://api.weixin.qq.com".into(),
            session_ttl: Duration::from_secs(2 * 60 * 60),
            secure_cookies: true,
        }
    }
}

impl ConsumerAuthConfig {
    /// Checks the configuration at start: the public base URL is an
    /// `http(s)://host[:port]` origin (no path), the WeChat bases are
    /// `http(s)` URLs, a session lasts between a minute and 30 days. The
    /// error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let origin = |key: &str, v: &str, path_ok: bool| -> Result<(), String> {
            let bad = || {
                format!("{key}: expected an http(s) URL such as https://keel.brand.cn, got {v:?}")
            };
            let rest = v
                .strip_prefix("https://")
                .or_else(|| v.strip_prefix("http://"))
                .ok_or_else(bad)?;
            let rest = rest.trim_end_matches('/');
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let authority: axum::http::uri::Authority = authority.parse().map_err(|_| bad())?;
            let clean = !authority.as_str().contains('@')
                && !rest.contains(['?', '#', ' '])
                && (path_ok || path.is_empty());
            if clean { Ok(()) } else { Err(bad()) }
        };
        if let Some(base) = &self.public_base_url {
            origin("public_base_url", base, false)?;
        }
        origin("wechat_authorize_base", &self.wechat_authorize_base, true)?;
        origin("wechat_api_base", &self.wechat_api_base, true)?;
        let secs = self.session_ttl.as_secs();
        if !(60..=30 * 24 * 3600).contains(&secs) {
            return Err(format!(
                "consumer_session_ttl_secs: expected 60 to 2592000 seconds, got {secs}"
            ));
        }
        Ok(())
    }
}

/// What the sign-in routes share: the configuration, an HTTP client for
/// WeChat and the signing key (loaded once from the database).
#[derive(Debug, Clone)]
pub(crate) struct ConsumerAuth {
    config: Arc<ConsumerAuthConfig>,
    http: reqwest::Client,
    key: Arc<tokio::sync::OnceCell<SigningKey>>,
}

impl ConsumerAuth {
    pub(crate) fn new(config: &ConsumerAuthConfig) -> ConsumerAuth {
        let http = reqwest::Client::builder()
            .timeout(WECHAT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "building the WeChat HTTP client; using the default");
                reqwest::Client::new()
            });
        ConsumerAuth {
            config: Arc::new(config.clone()),
            http,
            key: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    async fn key(&self, db: &keel_core::Db) -> keel_core::Result<&SigningKey> {
        self.key.get_or_try_init(|| SigningKey::load(db)).await
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.config.session_ttl.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A verified consumer: who the session cookie names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerSession {
    /// The identifier kind: `wechat_openid`.
    pub kind: String,
    /// The identifier value: the openid.
    pub value: String,
    /// The person it resolved to at sign-in.
    pub person_id: String,
    /// When the session ends, Unix seconds.
    pub expires_at: i64,
}

impl ConsumerSession {
    /// The caller of a plugin call made for this consumer:
    /// `consumer:wechat_openid:<openid>`.
    pub(crate) fn caller(&self) -> String {
        format!("consumer:{}:{}", self.kind, self.value)
    }
}

impl From<Session> for ConsumerSession {
    fn from(s: Session) -> Self {
        ConsumerSession {
            kind: s.kind,
            value: s.value,
            person_id: s.person_id,
            expires_at: s.expires_at,
        }
    }
}

/// The consumer the request's session cookie names in `tenant`, if the
/// cookie is intact (signature), unexpired and of that tenant.
pub(crate) async fn session_of(
    app: &AppState,
    headers: &HeaderMap,
    tenant: &TenantId,
) -> Option<ConsumerSession> {
    let tokens = cookies(headers, SESSION_COOKIE);
    if tokens.is_empty() {
        return None;
    }
    let key = match app.consumer_auth.key(&app.services.db).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = ?e, "loading the consumer session key");
            return None;
        }
    };
    let at = now();
    tokens
        .into_iter()
        .find_map(|t| key.verify_session(t, tenant, at))
        .map(ConsumerSession::from)
}

/// The routes of consumer sign-in.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/auth/wechat", get(wechat::start))
        .route("/t/{tenant}/auth/wechat/callback", get(wechat::callback))
        .route("/t/{tenant}/auth/session", get(session))
        .route("/t/{tenant}/auth/logout", post(logout))
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct StartQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// Why a sign-in stopped, in the consumer's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    BadRequest,
    UnknownTenant,
    NotConfigured,
    BadLink,
    Expired,
    WechatRefused,
    TooMany,
    Internal,
}

impl Failure {
    fn status(self) -> StatusCode {
        match self {
            Failure::BadRequest | Failure::BadLink | Failure::Expired => StatusCode::BAD_REQUEST,
            Failure::UnknownTenant | Failure::NotConfigured => StatusCode::NOT_FOUND,
            Failure::WechatRefused => StatusCode::BAD_GATEWAY,
            Failure::TooMany => StatusCode::TOO_MANY_REQUESTS,
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn text(self) -> (&'static str, &'static str) {
        match self {
            Failure::BadRequest => ("Sign-in failed", "This request is not valid."),
            Failure::UnknownTenant => ("Page not found", "There is no such brand here."),
            Failure::NotConfigured => (
                "WeChat sign-in is not available",
                "This brand has not set up WeChat sign-in.",
            ),
            Failure::BadLink => (
                "Sign-in failed",
                "This sign-in link is not valid. Go back and try again.",
            ),
            Failure::Expired => (
                "Sign-in expired",
                "This sign-in has expired or was started in another browser. Go back and try again.",
            ),
            Failure::WechatRefused => (
                "Sign-in failed",
                "WeChat did not confirm who you are. Go back and try again.",
            ),
            Failure::TooMany => ("Too many requests", "Please wait a minute and try again."),
            Failure::Internal => ("Something went wrong", "Please try again later."),
        }
    }
}

/// Headers every answer of these routes carries.
fn protect(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The small error page of a failed sign-in.
fn failure_page(f: Failure, request_id: &str) -> Response {
    let (title, text) = f.text();
    let detail = if f.status().is_server_error() {
        format!("<p>request id: <code>{}</code></p>", escape(request_id))
    } else {
        String::new()
    };
    let doc = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><h1>{title}</h1><p>{text}</p>{detail}</body></html>\n"
    );
    let mut res = (f.status(), doc).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    protect(&mut res);
    res
}

/// A 302 to `location`, with `cookies` set.
fn redirect(location: &str, cookies: &[String]) -> Result<Response, Failure> {
    let mut res = StatusCode::FOUND.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(location).map_err(|_| Failure::BadLink)?,
    );
    for c in cookies {
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_str(c).map_err(|_| Failure::Internal)?,
        );
    }
    protect(&mut res);
    Ok(res)
}

/// A `Set-Cookie` value.
fn cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The values of every cookie `name` the request carries.
fn cookies<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
        .collect()
}

fn session_path(slug: &str) -> String {
    format!("/t/{slug}/")
}

fn flow_path(slug: &str) -> String {
    format!("/t/{slug}/auth/wechat")
}

/// True when `next` is a path inside the tenant `slug` that no browser
/// resolves elsewhere: it starts with `/t/{slug}/`, is visible ASCII without
/// `\`, and its path has no empty, `.` or `..` segment (`%2e` included).
pub(crate) fn valid_next(slug: &str, next: &str) -> bool {
    let prefix = session_path(slug);
    if next.len() > MAX_NEXT_LEN
        || !next.starts_with(&prefix)
        || !next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    {
        return false;
    }
    let path = next.split(['?', '#']).next().unwrap_or("");
    let lowered = path.to_ascii_lowercase();
    if lowered.contains("%2e") || lowered.contains("%2f") || lowered.contains("%5c") {
        return false;
    }
    // Segments after the prefix: none may be `.`, `..` or empty (`//`),
    // except a trailing slash.
    let rest = &path[prefix.len()..];
    let segments: Vec<&str> = rest.split('/').collect();
    segments
        .iter()
        .enumerate()
        .all(|(i, s)| !matches!(*s, "." | "..") && (!s.is_empty() || i + 1 == segments.len()))
}

/// `application/x-www-form-urlencoded`-safe percent-encoding (RFC 3986
/// unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The base URL the consumer's browser reached the kernel at: the
/// configured one, else the `Host` header (HTTP/1.1) or the request's
/// authority (HTTP/2).
fn base_url(config: &ConsumerAuthConfig, headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(base) = &config.public_base_url {
        return Some(base.trim_end_matches('/').to_owned());
    }
    let authority: axum::http::uri::Authority = match headers.get(header::HOST) {
        Some(host) => host.to_str().ok()?.parse().ok()?,
        None => uri.authority()?.clone(),
    };
    if authority.as_str().contains('@') {
        return None;
    }
    let scheme = if config.secure_cookies {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", authority.as_str()))
}

/// The tenant named in the path, after the per-address limit.
async fn tenant_of(
    app: &AppState,
    addr: SocketAddr,
    headers: &HeaderMap,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
) -> Result<Tenant, Failure> {
    let Ok(Path(params)) = path else {
        return Err(Failure::BadRequest);
    };
    let slug = params.get("tenant").map(String::as_str).unwrap_or_default();
    let tenant = match keel_core::tenants::get_by_slug(&app.services.db, slug).await {
        Ok(t) => t,
        Err(Error::NotFound(_) | Error::BadInput { .. }) => return Err(Failure::UnknownTenant),
        Err(e) => {
            tracing::error!(error = ?e, "looking up a tenant by slug");
            return Err(Failure::Internal);
        }
    };
    tracing::Span::current().record("tenant", tenant.id.as_str());
    let client = app.trusted_proxies.client_ip(addr, headers);
    if !app.public_limiter.check(client, tenant.id.as_str(), 1) {
        return Err(Failure::TooMany);
    }
    Ok(tenant)
}

fn internal(what: &str) -> impl FnOnce(Error) -> Failure + '_ {
    move |e| {
        tracing::error!(error = ?e, "{what}");
        Failure::Internal
    }
}

/// `GET /t/{slug}/auth/session`: who the session names, as JSON, or 401.
async fn session(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let json_answer = |status: StatusCode, body: serde_json::Value| {
        let mut res = (status, axum::Json(body)).into_response();
        protect(&mut res);
        res
    };
    let tenant = match tenant_of(&app, addr, &headers, path).await {
        Ok(t) => t,
        Err(f) => {
            return json_answer(f.status(), json!({ "error": f.text().1 }));
        }
    };
    match session_of(&app, &headers, &tenant.id).await {
        Some(s) => json_answer(
            StatusCode::OK,
            json!({
                "kind": s.kind,
                "value": s.value,
                "personId": s.person_id,
                "expiresAt": chrono::DateTime::from_timestamp(s.expires_at, 0)
                    .map(|t| t.to_rfc3339()),
            }),
        ),
        None => json_answer(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "not signed in" }),
        ),
    }
}

/// `POST /t/{slug}/auth/logout`: forgets the session cookie in this
/// browser (a copy of the token stays valid until it expires).
async fn logout(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let tenant = match tenant_of(&app, addr, &headers, path).await {
        Ok(t) => t,
        Err(f) => return f.status().into_response(),
    };
    let mut res = StatusCode::NO_CONTENT.into_response();
    let c = cookie(
        SESSION_COOKIE,
        "",
        &session_path(&tenant.slug),
        0,
        app.consumer_auth.config.secure_cookies,
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    protect(&mut res);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_inside_the_tenant() {
        for ok in [
            "/t/acme/",
            "/t/acme/p/codes/s/ABC",
            "/t/acme/p/codes/?c=1&d=%2F#x",
            "/t/acme/p/codes/a.b/c..d",
        ] {
            assert!(valid_next("acme", ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/t/other/p/codes",
            "/t/acme",
            "/t/acmeevil/x",
            "/t/acme/../other/",
            "/t/acme/%2e%2e/other/",
            "/t/acme/%2E./other/",
            "/t/acme//evil.example",
            "/t/acme/p\\..\\..\\other",
            "/t/acme/p/%2f%2fevil",
            "/t/acme/x y",
            "/t/acme/\u{0}",
            "/t/acme/./x",
            "",
            &format!("/t/acme/{}", "a".repeat(2000)),
        ] {
            assert!(!valid_next("acme", bad), "{bad}");
        }
    }

    #[test]
    fn the_configuration_is_checked() {
        assert_eq!(ConsumerAuthConfig::default().validate(), Ok(()));
        let with = |base: &str| ConsumerAuthConfig {
            public_base_url: Some(base.into()),
            ..ConsumerAuthConfig::default()
        };
        for ok in [
            "https://keel.brand.cn",
            "https://keel.brand.cn/",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(with(ok).validate(), Ok(()), "{ok}");
        }
        for bad in [
            "keel.brand.cn",
            "https://keel.brand.cn/keel",
            "https://u@evil",
            "ftp://x",
            "https://",
        ] {
            assert!(
                with(bad)
                    .validate()
                    .unwrap_err()
                    .starts_with("public_base_url"),
                "{bad}"
            );
        }
        let short = ConsumerAuthConfig {
            session_ttl: Duration::from_secs(1),
            ..ConsumerAuthConfig::default()
        };
        assert!(short.validate().is_err());
    }

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(
            encode("https://k.example/t/a/auth?x=1"),
            "https%3A%2F%2Fk.example%2Ft%2Fa%2Fauth%3Fx%3D1"
        );
        assert_eq!(encode("aZ9-._~"), "aZ9-._~");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; keel_consumer=tok; keel_consumerx=no"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("keel_consumer=two"),
        );
        assert_eq!(cookies(&h, SESSION_COOKIE), vec!["tok", "two"]);
    }
}
