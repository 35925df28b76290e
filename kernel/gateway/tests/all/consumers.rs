//! Consumer sign-in with WeChat web authorization, end to end over real
//! HTTP, against a fake of WeChat's two endpoints on a loopback port.

use std::time::Duration;

use axum::http::{StatusCode, header};
use keel_core::consumers::{Flow, Session, SigningKey, WECHAT_OPENID};
use keel_core::{Timestamp, now};
use keel_gateway::{ConsumerAuthConfig, GatewayConfig};
use keel_testkit::on_both_backends;
use keel_testkit::wechat::{APP_ID, FakeWechat, SECRET};
use serde_json::{Value, json};

use crate::support::{TestApp, code, field, ok};

const SET: &str =
    "mutation($i: SetWechatAppInput!) { setWechatApp(input: $i) { appId updatedAt updatedBy } }";

fn config(fake: &FakeWechat) -> GatewayConfig {
    GatewayConfig {
        consumer_auth: ConsumerAuthConfig {
            public_base_url: None,
            wechat_authorize_base: fake.url.clone(),
            wechat_api_base: fake.url.clone(),
            session_ttl: Duration::from_secs(2 * 60 * 60),
            secure_cookies: false,
        },
        ..GatewayConfig::default()
    }
}

/// A client that does not follow redirects (each hop is checked).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Set-Cookie` headers of a response.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value `name` is set to (`None` if the response does not set it).
fn cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter().find_map(|c| {
        let (pair, _) = c.split_once(';').unwrap_or((c, ""));
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| v.to_owned())
    })
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

struct Env {
    app: TestApp,
    fake: FakeWechat,
    owner: String,
}

/// A kernel with tenant `acme` whose WeChat app is set, and the fake.
async fn env(kind: keel_core::Backend) -> Env {
    let fake = FakeWechat::start().await;
    let app = TestApp::start_with(kind, config(&fake)).await;
    let (_, owner) = app.tenant("acme").await;
    let r = app
        .gql(
            Some(&owner),
            SET,
            json!({"i": {"appId": APP_ID, "appSecret": SECRET}}),
        )
        .await;
    ok(&r);
    Env { app, fake, owner }
}

/// Where a sign-in stands after WeChat sent the browser back.
struct Returned {
    /// The callback URL WeChat redirected to (with code and state).
    callback: String,
    /// The flow cookie `name=value` the start set.
    flow_cookie: String,
}

/// Starts a sign-in to `next` and follows WeChat's redirect back.
async fn to_callback(env: &Env, slug: &str, next: &str) -> Returned {
    let b = browser();
    let r = b
        .get(env.app.url(&format!("/t/{slug}/auth/wechat")))
        .query(&[("next", next)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
    let flow = cookie_value(&set_cookies(&r), "keel_wechat_flow").expect("a flow cookie");
    let to_wechat = location(&r);
    let r = b.get(&to_wechat).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    Returned {
        callback: location(&r),
        flow_cookie: format!("keel_wechat_flow={flow}"),
    }
}

/// Completes a sign-in; returns the callback's response.
async fn sign_in(env: &Env, slug: &str, next: &str) -> reqwest::Response {
    let back = to_callback(env, slug, next).await;
    browser()
        .get(&back.callback)
        .header(header::COOKIE, &back.flow_cookie)
        .send()
        .await
        .unwrap()
}

/// The session token a successful sign-in set.
async fn session_token(env: &Env, slug: &str) -> String {
    let r = sign_in(env, slug, &format!("/t/{slug}/p/codes/")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    cookie_value(&set_cookies(&r), "keel_consumer").expect("a session cookie")
}

/// `GET /t/{slug}/auth/session` with `token` as the session cookie.
async fn whoami(app: &TestApp, slug: &str, token: &str) -> (StatusCode, Value) {
    let r = browser()
        .get(app.url(&format!("/t/{slug}/auth/session")))
        .header(header::COOKIE, format!("keel_consumer={token}"))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Asserts an HTML error page with `status` that sets no session.
async fn assert_refused(r: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    assert!(
        cookie_value(&set_cookies(&r), "keel_consumer").is_none(),
        "no session on a refusal"
    );
    assert!(r.headers().get(header::LOCATION).is_none());
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = r.text().await.unwrap();
    for secret in [SECRET, "errcode", "40029", "invalid code", "ACCESS_TOKEN"] {
        assert!(!body.contains(secret), "the page leaks {secret:?}: {body}");
    }
    body
}

on_both_backends! {
    async fn the_full_flow_signs_the_consumer_in_and_returns_to_next(kind) {
        let env = env(kind).await;
        let next = "/t/acme/p/codes/s/AB12?src=qr";
        let b = browser();
        let r = b.get(env.app.url("/t/acme/auth/wechat")).query(&[("next", next)]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let flow = set_cookies(&r).into_iter().find(|c| c.starts_with("keel_wechat_flow=")).unwrap();
        assert!(flow.contains("; Path=/t/acme/auth/wechat") && flow.contains("HttpOnly") && flow.contains("SameSite=Lax"), "{flow}");
        // Parameters in WeChat's documented order, with the callback URL encoded.
        let to = location(&r);
        let callback = env.app.url("/t/acme/auth/wechat/callback");
        let encoded = callback.replace(':', "%3A").replace('/', "%2F");
        let prefix = format!(
            "{}/connect/oauth2/authorize?appid={APP_ID}&redirect_uri={encoded}&response_type=code&scope=snsapi_base&state=",
            env.fake.url
        );
        assert!(to.starts_with(&prefix), "{to}");
        let state = to[prefix.len()..].strip_suffix("#wechat_redirect").expect("#wechat_redirect");
        assert!(state.len() <= 128 && state.bytes().all(|c| c.is_ascii_alphanumeric()), "WeChat's state charset: {state}");

        let r = sign_in(&env, "acme", next).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(location(&r), next);
        let set = set_cookies(&r);
        let session = set.iter().find(|c| c.starts_with("keel_consumer=")).expect("session cookie");
        for attr in ["; Path=/t/acme/", "; Max-Age=7200", "; HttpOnly", "; SameSite=Lax"] {
            assert!(session.contains(attr), "{attr} in {session}");
        }
        assert!(!session.contains("Secure"), "secure cookies are off in this test: {session}");
        assert_eq!(cookie_value(&set, "keel_wechat_flow").as_deref(), Some(""), "the flow is cleared");

        let token = cookie_value(&set, "keel_consumer").unwrap();
        let (status, me) = whoami(&env.app, "acme", &token).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["kind"], "wechat_openid");
        assert_eq!(me["value"], "o-alice");
        let tenant = env.app.db_tenant("acme").await;
        let mut conn = env.app.db.db.reader().acquire().await.unwrap();
        let person = keel_core::persons::find_by_identifier(&mut conn, &tenant, "wechat_openid", "o-alice")
            .await.unwrap().expect("the person behind the openid");
        assert_eq!(me["personId"], person.id.as_str());

        // Signing in again names the same person; another openid another one.
        let again = session_token(&env, "acme").await;
        assert_eq!(whoami(&env.app, "acme", &again).await.1["personId"], person.id.as_str());
        env.fake.signs_in_as("o-bob");
        let bob = session_token(&env, "acme").await;
        let (_, bob) = whoami(&env.app, "acme", &bob).await;
        assert_eq!(bob["value"], "o-bob");
        assert_ne!(bob["personId"], person.id.as_str());

        // Logging out clears the cookie.
        let r = b.post(env.app.url("/t/acme/auth/logout")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let cleared = set_cookies(&r).into_iter().find(|c| c.starts_with("keel_consumer=;")).unwrap();
        assert!(cleared.contains("Max-Age=0") && cleared.contains("Path=/t/acme/"), "{cleared}");
    }

    async fn forged_altered_expired_and_foreign_sessions_are_refused(kind) {
        let env = env(kind).await;
        let (_, beta_owner) = env.app.tenant("beta").await;
        ok(&env.app.gql(Some(&beta_owner), SET, json!({"i": {"appId": APP_ID, "appSecret": SECRET}})).await);
        let token = session_token(&env, "acme").await;
        assert_eq!(whoami(&env.app, "acme", &token).await.0, StatusCode::OK);

        // Another tenant's cookie.
        assert_eq!(whoami(&env.app, "beta", &token).await.0, StatusCode::UNAUTHORIZED);

        // The payload changed (another openid), the signature kept.
        let (payload, mac) = token.strip_prefix("v1.").unwrap().split_once('.').unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        claims["val"] = json!("o-victim");
        let altered = format!("v1.{}.{mac}", b64.encode(claims.to_string()));
        assert_eq!(whoami(&env.app, "acme", &altered).await.0, StatusCode::UNAUTHORIZED);
        // A flipped signature, garbage, nothing.
        let mut flipped = token.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        for bad in [flipped.as_str(), "v1.e30.AAAA", "garbage", ""] {
            assert_eq!(whoami(&env.app, "acme", bad).await.0, StatusCode::UNAUTHORIZED, "{bad}");
        }
        let r = browser().get(env.app.url("/t/acme/auth/session")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no cookie");

        // Signed with the kernel's key: valid while fresh, refused once expired.
        let tenant = env.app.db_tenant("acme").await;
        let key = SigningKey::load(&env.app.db.db).await.unwrap();
        let fresh = Session::new(&tenant, WECHAT_OPENID, "o-carol", "p-carol", now(), 60);
        assert_eq!(whoami(&env.app, "acme", &key.sign_session(&fresh)).await.0, StatusCode::OK);
        let three_hours_ago = Timestamp(now().0 - 3 * 3600 * 1_000_000);
        let old = Session::new(&tenant, WECHAT_OPENID, "o-carol", "p-carol", three_hours_ago, 7200);
        assert_eq!(whoami(&env.app, "acme", &key.sign_session(&old)).await.0, StatusCode::UNAUTHORIZED);
        // Signed with any other key.
        let other = SigningKey::new(&[42u8; 32]);
        assert_eq!(whoami(&env.app, "acme", &other.sign_session(&fresh)).await.0, StatusCode::UNAUTHORIZED);
    }

    async fn forged_foreign_expired_and_replayed_states_are_refused(kind) {
        let env = env(kind).await;
        let (_, beta_owner) = env.app.tenant("beta").await;
        ok(&env.app.gql(Some(&beta_owner), SET, json!({"i": {"appId": APP_ID, "appSecret": SECRET}})).await);
        let b = browser();

        // A forged state.
        let back = to_callback(&env, "acme", "/t/acme/p/codes/").await;
        let (head, _) = back.callback.split_once("state=").unwrap();
        let forged = format!("{head}state={}", "a".repeat(64));
        let r = b.get(&forged).header(header::COOKIE, &back.flow_cookie).send().await.unwrap();
        let body = assert_refused(r, StatusCode::BAD_REQUEST).await;
        assert!(body.contains("try again"), "{body}");

        // The right state in another browser (no flow cookie): login CSRF.
        let r = b.get(&back.callback).send().await.unwrap();
        assert_refused(r, StatusCode::BAD_REQUEST).await;

        // The state and flow of acme at beta's callback.
        let at_beta = back.callback.replace("/t/acme/", "/t/beta/");
        let r = b.get(&at_beta).header(header::COOKIE, &back.flow_cookie).send().await.unwrap();
        assert_refused(r, StatusCode::BAD_REQUEST).await;

        // A flow cookie whose `next` was changed.
        let tampered = Flow::decode(back.flow_cookie.strip_prefix("keel_wechat_flow=").unwrap()).unwrap();
        let tampered = Flow { next: "/t/acme/elsewhere".into(), ..tampered };
        let r = b.get(&back.callback)
            .header(header::COOKIE, format!("keel_wechat_flow={}", tampered.encode()))
            .send().await.unwrap();
        assert_refused(r, StatusCode::BAD_REQUEST).await;

        // Completed once; replaying the same callback fails (WeChat's codes
        // are single-use), with no new session.
        let r = b.get(&back.callback).header(header::COOKIE, &back.flow_cookie).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let r = b.get(&back.callback).header(header::COOKIE, &back.flow_cookie).send().await.unwrap();
        assert_refused(r, StatusCode::BAD_GATEWAY).await;

        // A state signed with the kernel's own key, but eleven minutes old.
        let tenant = env.app.db_tenant("acme").await;
        let key = SigningKey::load(&env.app.db.db).await.unwrap();
        let old = Flow::new("/t/acme/p/codes/", Timestamp(now().0 - 11 * 60 * 1_000_000));
        let state = key.sign_state(&tenant, &old);
        let exchanges = env.fake.state.lock().unwrap().exchanges;
        let r = b.get(env.app.url(&format!("/t/acme/auth/wechat/callback?code=code1&state={state}")))
            .header(header::COOKIE, format!("keel_wechat_flow={}", old.encode()))
            .send().await.unwrap();
        let body = assert_refused(r, StatusCode::BAD_REQUEST).await;
        assert!(body.contains("expired"), "{body}");
        // A fresh one with the same key is accepted as far as the exchange.
        let fresh = Flow::new("/t/acme/p/codes/", now());
        let state = key.sign_state(&tenant, &fresh);
        let r = b.get(env.app.url(&format!("/t/acme/auth/wechat/callback?code=unknown&state={state}")))
            .header(header::COOKIE, format!("keel_wechat_flow={}", fresh.encode()))
            .send().await.unwrap();
        assert_refused(r, StatusCode::BAD_GATEWAY).await;
        assert_eq!(env.fake.state.lock().unwrap().exchanges, exchanges + 1, "refused states never reach WeChat");

        // Missing parameters.
        let r = b.get(env.app.url("/t/acme/auth/wechat/callback")).header(header::COOKIE, &back.flow_cookie).send().await.unwrap();
        assert_refused(r, StatusCode::BAD_REQUEST).await;
    }

    async fn next_must_be_a_path_of_the_same_tenant(kind) {
        let env = env(kind).await;
        env.app.tenant("other").await;
        for next in [
            Some("https://evil.example"),
            Some("//evil.example"),
            Some("/\\evil.example"),
            Some("/t/other/p/codes/"),
            Some("/t/acme/../other/"),
            Some("/t/acme/%2e%2e/other/"),
            Some("/t/acme//evil.example"),
            Some("javascript:alert(1)"),
            None,
        ] {
            let mut req = browser().get(env.app.url("/t/acme/auth/wechat"));
            if let Some(n) = next {
                req = req.query(&[("next", n)]);
            }
            let r = req.send().await.unwrap();
            assert!(set_cookies(&r).is_empty(), "{next:?}");
            assert_refused(r, StatusCode::BAD_REQUEST).await;
        }
        // No start, no WeChat.
        assert_eq!(env.fake.state.lock().unwrap().issued, 0);
    }

    async fn an_invalid_code_gives_the_error_page_and_no_cookie(kind) {
        let env = env(kind).await;
        let back = to_callback(&env, "acme", "/t/acme/p/codes/").await;
        let (head, tail) = back.callback.split_once("code=").unwrap();
        let (_, rest) = tail.split_once('&').unwrap();
        let bogus = format!("{head}code=bogus&{rest}");
        let r = browser().get(&bogus).header(header::COOKIE, &back.flow_cookie).send().await.unwrap();
        assert_eq!(cookie_value(&set_cookies(&r), "keel_wechat_flow").as_deref(), Some(""), "the flow is over");
        let body = assert_refused(r, StatusCode::BAD_GATEWAY).await;
        assert!(body.contains("WeChat did not confirm"), "{body}");

        // A wrong app secret is refused by WeChat the same way.
        ok(&env.app.gql(Some(&env.owner), SET, json!({"i": {"appId": APP_ID, "appSecret": "ffffffffffffffffffffffffffffffff"}})).await);
        let r = sign_in(&env, "acme", "/t/acme/p/codes/").await;
        assert_refused(r, StatusCode::BAD_GATEWAY).await;
    }

    async fn a_tenant_without_a_wechat_app_gets_a_clear_error(kind) {
        let env = env(kind).await;
        env.app.tenant("plain").await;
        let r = browser().get(env.app.url("/t/plain/auth/wechat?next=/t/plain/p/codes/")).send().await.unwrap();
        let body = assert_refused(r, StatusCode::NOT_FOUND).await;
        assert!(body.contains("has not set up WeChat sign-in"), "{body}");
        let r = browser().get(env.app.url("/t/nobody/auth/wechat?next=/t/nobody/")).send().await.unwrap();
        assert_refused(r, StatusCode::NOT_FOUND).await;

        // Removing the app stops sign-in.
        let r = env.app.gql(Some(&env.owner), "mutation { removeWechatApp }", json!({})).await;
        assert_eq!(ok(&r)["removeWechatApp"], true);
        let r = env.app.gql(Some(&env.owner), "mutation { removeWechatApp }", json!({})).await;
        assert_eq!(ok(&r)["removeWechatApp"], false);
        let r = env.app.gql(Some(&env.owner), "{ wechatApp { appId } }", json!({})).await;
        assert_eq!(ok(&r)["wechatApp"], Value::Null);
        let r = browser().get(env.app.url("/t/acme/auth/wechat?next=/t/acme/p/codes/")).send().await.unwrap();
        assert_refused(r, StatusCode::NOT_FOUND).await;
    }

    async fn only_owners_and_admins_set_the_wechat_app_and_its_secret_stays_sealed(kind) {
        let fake = FakeWechat::start().await;
        let app = TestApp::start_with(kind, config(&fake)).await;
        let (_, owner) = app.tenant("acme").await;
        let input = json!({"i": {"appId": APP_ID, "appSecret": SECRET}});
        for (role, scopes) in [("marketer", &[][..]), ("analyst", &[]), ("integration", &["consumerauth:write"])] {
            let key = app.key(&owner, &[role], scopes).await;
            let r = app.gql(Some(&key), SET, input.clone()).await;
            assert_eq!(code(&r), "FORBIDDEN", "{role}");
            let r = app.gql(Some(&key), "mutation { removeWechatApp }", json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{role}");
        }
        let r = app.gql(None, SET, input.clone()).await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
        let tenant = app.db_tenant("acme").await;
        let count = || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenant_wechat_apps")
                .fetch_one(app.db.db.reader()).await.unwrap();
            n
        };
        assert_eq!(count().await, 0);

        let r = app.gql(Some(&owner), SET, input.clone()).await;
        assert_eq!(ok(&r)["setWechatApp"]["appId"], APP_ID);
        let admin = app.key(&owner, &["admin"], &[]).await;
        let r = app.gql(Some(&admin), SET, input.clone()).await;
        assert_eq!(ok(&r)["setWechatApp"]["appId"], APP_ID, "an admin may");

        // Readable: whether it is configured, never the secret.
        let marketer = app.key(&owner, &["marketer"], &[]).await;
        let r = app.gql(Some(&marketer), "{ wechatApp { appId updatedBy } }", json!({})).await;
        assert_eq!(ok(&r)["wechatApp"]["appId"], APP_ID);
        assert!(!r.to_string().contains(SECRET));
        let analyst = app.key(&owner, &["analyst"], &[]).await;
        let r = app.gql(Some(&analyst), "{ wechatApp { appId } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = app.gql(Some(&owner), "{ wechatApp { appSecret } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "there is no such field");

        // The raw row: sealed, bound to its tenant, no plain text anywhere.
        let row: (String, String, String) = sqlx::query_as("SELECT tenant_id, app_id, app_secret FROM tenant_wechat_apps")
            .fetch_one(app.db.db.reader()).await.unwrap();
        assert_eq!(row.0, tenant.as_str());
        assert_eq!(row.1, APP_ID);
        assert!(row.2.starts_with("keel-sealed:v1:"), "{}", row.2);
        assert!(!row.2.contains(SECRET));
        let mut conn = app.db.db.reader().acquire().await.unwrap();
        let creds = keel_core::consumers::wechat_credentials(&mut conn, app.db.sealer(), &tenant).await.unwrap().unwrap();
        assert_eq!(creds.app_secret, SECRET);
        assert!(!format!("{creds:?}").contains(SECRET), "Debug redacts it");
    }

    async fn bad_wechat_app_input_is_refused_and_nothing_is_stored(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let long = "a".repeat(65);
        let cases: &[(&str, &str, &str)] = &[
            ("", SECRET, "appId"),
            ("wx0123", SECRET, "appId"),
            ("xx0123456789abcdef", SECRET, "appId"),
            ("wx0123456789abcde\0", SECRET, "appId"),
            ("wx0123456789abcdé", SECRET, "appId"),
            ("wx0123456789abcdef0", SECRET, "appId"),
            (" wx0123456789abcdef", SECRET, "appId"),
            (APP_ID, "", "appSecret"),
            (APP_ID, "short", "appSecret"),
            (APP_ID, "0123456789abcdef0123456789abcde\0", "appSecret"),
            (APP_ID, "0123456789abcdef 0123456789abcdef", "appSecret"),
            (APP_ID, "0123456789abcdef<0123456789abcdef", "appSecret"),
            (APP_ID, &long, "appSecret"),
        ];
        for (app_id, secret, bad) in cases {
            let r = app.gql(Some(&owner), SET, json!({"i": {"appId": app_id, "appSecret": secret}})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{app_id:?} {secret:?}");
            // A NUL anywhere is refused before any resolver runs.
            if !app_id.contains('\0') && !secret.contains('\0') {
                assert_eq!(field(&r), *bad, "{app_id:?} {secret:?}");
            }
            if *bad == "appSecret" && !secret.is_empty() {
                assert!(!r.to_string().contains(secret), "the message never repeats the secret: {r}");
            }
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenant_wechat_apps")
            .fetch_one(app.db.db.reader()).await.unwrap();
        assert_eq!(n, 0);

        // A bad update leaves the stored app as it was.
        ok(&app.gql(Some(&owner), SET, json!({"i": {"appId": APP_ID, "appSecret": SECRET}})).await);
        let r = app.gql(Some(&owner), SET, json!({"i": {"appId": "wx1111111111111111", "appSecret": "x"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = app.gql(Some(&owner), "{ wechatApp { appId } }", json!({})).await;
        assert_eq!(ok(&r)["wechatApp"]["appId"], APP_ID);
    }
}

#[tokio::test]
async fn the_callback_uses_the_configured_public_base_url() {
    let fake = FakeWechat::start().await;
    let mut cfg = config(&fake);
    cfg.consumer_auth.public_base_url = Some("https://keel.brand.example/".into());
    cfg.consumer_auth.secure_cookies = true;
    let app = TestApp::start_with(keel_core::Backend::Sqlite, cfg).await;
    let (_, owner) = app.tenant("acme").await;
    ok(&app
        .gql(
            Some(&owner),
            SET,
            json!({"i": {"appId": APP_ID, "appSecret": SECRET}}),
        )
        .await);
    let r = browser()
        .get(app.url("/t/acme/auth/wechat?next=/t/acme/p/codes/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        location(&r).contains(
            "&redirect_uri=https%3A%2F%2Fkeel.brand.example%2Ft%2Facme%2Fauth%2Fwechat%2Fcallback&"
        ),
        "{}",
        location(&r)
    );
    let flow = set_cookies(&r).remove(0);
    assert!(flow.ends_with("; Secure"), "{flow}");
}
