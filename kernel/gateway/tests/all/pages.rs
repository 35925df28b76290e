//! Public pages: `GET /t/{slug}/p/{plugin}/{*path}` renders the probe's
//! page operation as HTML under a strict Content-Security-Policy, without
//! a credential, rate-limited with the tenant's public GraphQL.

use keel_gateway::GatewayConfig;
use keel_testkit::{guide, on_both_backends};
use reqwest::StatusCode;
use serde_json::json;

use crate::plugins::{SDL, enable, install, manifest, probe_wasm};
use crate::support::{TestApp, ok};

async fn acme_with_probe(app: &TestApp) -> String {
    let (_, owner) = app.tenant("acme").await;
    install(app, "probe", "0.1.0", SDL).await;
    ok(&enable(app, &owner, "probe", json!({})).await);
    owner
}

/// Status, request id and body of a page, after checking it is HTML with
/// the security headers.
async fn page(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let r = app.http.get(app.url(path)).send().await.unwrap();
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8", "{path}");
    // The headers the plugin guide promises (section 6), as it lists them.
    let promised = guide::block("page-headers");
    let names: Vec<&str> = promised
        .lines()
        .filter_map(|l| l.split(": ").next())
        .collect();
    assert_eq!(
        names,
        [
            "Content-Security-Policy",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "Cache-Control"
        ],
        "the guide lists every security header of a page"
    );
    for line in promised.lines() {
        let (name, value) = line.split_once(": ").expect("Name: value");
        assert_eq!(
            h[name.to_ascii_lowercase().as_str()],
            value,
            "{path}: {name}"
        );
    }
    let request_id = h["x-request-id"].to_str().unwrap().to_owned();
    (r.status(), request_id, r.text().await.unwrap())
}

on_both_backends! {
    async fn a_page_is_served_as_html_with_its_security_headers_and_escaped_content(kind) {
        let app = TestApp::start(kind).await;
        acme_with_probe(&app).await;
        let (status, _, body) = page(&app, "/t/acme/p/probe/cards/%3Cb%3Ebold?q=%3Cscript%3Ealert(1)%3C/script%3E&x=1").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<p>path: cards/&lt;b&gt;bold</p>"), "the path is percent-decoded, then escaped: {body}");
        assert!(body.contains("<p>q: &lt;script&gt;alert(1)&lt;/script&gt;</p>"), "{body}");
        assert!(!body.contains("<script>"), "{body}");
        for root in ["/t/acme/p/probe", "/t/acme/p/probe/"] {
            let (status, _, body) = page(&app, root).await;
            assert_eq!(status, StatusCode::OK, "{root}");
            assert!(body.contains("<p>path: </p>"), "{root}: {body}");
        }
    }

    async fn unknown_tenants_plugins_and_pages_are_html_404s(kind) {
        let app = TestApp::start(kind).await;
        let owner = acme_with_probe(&app).await;
        let mut pageless = manifest("pageless", "0.1.0", "extend type Query { nothing: JSON }");
        pageless.pages = None;
        pageless.graphql.public.clear();
        // Event types have one producer: the probe installed beside it owns them.
        pageless.events.emits.clear();
        pageless.events.schemas.clear();
        app.plugins.install(pageless, &probe_wasm()).await.unwrap();
        ok(&enable(&app, &owner, "pageless", json!({})).await);
        app.tenant("globex").await;
        for path in [
            "/t/nobody/p/probe/x",
            "/t/acme/p/nope/x",
            "/t/acme/p/pageless/x",
            "/t/globex/p/probe/x",
            "/t/acme/p/probe/missing",
        ] {
            let (status, _, body) = page(&app, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(body.contains("page not found"), "{path}: {body}");
        }
    }

    async fn a_failing_page_is_an_html_error_page_without_internals(kind) {
        let app = TestApp::start(kind).await;
        acme_with_probe(&app).await;
        let (status, _, body) = page(&app, "/t/acme/p/probe/broken").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a plugin's refusal: {body}");
        assert!(!body.contains("secret") && !body.contains("/srv/probe") && !body.contains("PAGE_BROKEN"), "{body}");
        for path in ["/t/acme/p/probe/crash", "/t/acme/p/probe/not-a-page"] {
            let (status, request_id, body) = page(&app, path).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}");
            assert!(body.contains("something went wrong"), "{path}: {body}");
            assert!(body.contains(&request_id), "a server error shows the request id: {body}");
            assert!(!body.contains("on purpose") && !body.contains("PLUGIN_"), "{path}: {body}");
        }
    }
}

#[tokio::test]
async fn pages_share_the_public_rate_limit_with_public_graphql() {
    let config = GatewayConfig {
        public_calls_per_ip_per_minute: 2,
        ..GatewayConfig::default()
    };
    let app = TestApp::start_with(keel_core::Backend::Sqlite, config).await;
    acme_with_probe(&app).await;
    for _ in 0..2 {
        assert_eq!(page(&app, "/t/acme/p/probe/x").await.0, StatusCode::OK);
    }
    let (status, _, body) = page(&app, "/t/acme/p/probe/x").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("too many requests"), "{body}");
    let r = app
        .http
        .post(app.url("/t/acme/graphql"))
        .json(&json!({"query": "{ caller }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "one budget for both"
    );
}
