use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ADMIN_TOKEN, TestApp, code};

const VIEWER: &str = "{ viewer { roles } }";

#[tokio::test]
async fn healthz_answers_while_the_process_is_up() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ok");
}

on_both_backends! {
    async fn readyz_answers_when_the_database_is_migrated_and_503_when_it_is_gone(kind) {
        let app = TestApp::start(kind).await;
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        app.db.db.close().await;
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = r.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "from-the-client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").unwrap(), "from-the-client");
}

#[tokio::test]
async fn metrics_count_requests_and_graphql_errors_by_code() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    app.gql(None, VIEWER, json!({})).await;
    app.gql(Some(ADMIN_TOKEN), VIEWER, json!({})).await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"keel_http_requests_total{route="/graphql",status="200"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"keel_graphql_errors_total{code="UNAUTHENTICATED"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("keel_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn get_runs_a_query_from_the_url() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app
        .http
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query Q($x: String!) { counter(key: $x) { key } }"),
            ("variables", r#"{"x":"k"}"#),
            ("operationName", "Q"),
        ])
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    // The platform administrator is no tenant member: the query ran and was refused.
    assert_eq!(code(&body), "FORBIDDEN");
}

#[tokio::test]
async fn get_refuses_mutations_with_405() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_browser_gets_graphiql() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().to_lowercase().contains("graphiql"));
}

#[tokio::test]
async fn post_needs_a_json_content_type_and_a_json_body() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn graphql_response_json_gets_400_for_a_request_error_and_json_gets_200() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let send = |accept: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("accept", accept)
            .json(&json!({ "query": "{ viewer { roles " }))
            .send()
    };
    let r = send("application/graphql-response+json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers()["content-type"],
        "application/graphql-response+json"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let r = send("application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = send("text/csv").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn a_field_error_is_still_200_with_graphql_response_json() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let r = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let big = "x".repeat(2 * 1024 * 1024);
    let r = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": VIEWER, "variables": { "pad": big } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_wrong_or_malformed_credential_is_401_unauthenticated() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    for auth in ["Bearer keel_ak_nope", "Basic dXNlcjpwYXNz", "Bearer "] {
        let r = app
            .http
            .post(app.url("/graphql"))
            .header("authorization", auth)
            .json(&json!({ "query": VIEWER }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(code(&body), "UNAUTHENTICATED", "{auth}");
    }
}

/// The brand's own pages, at the origins the operator lists, may call a
/// tenant's public GraphQL, never with credentials; other origins may not,
/// and the private endpoint stays same-origin.
#[tokio::test]
async fn public_graphql_answers_listed_origins_without_credentials() {
    let config = keel_gateway::GatewayConfig {
        public_origins: vec!["https://h5.brand.example".into()],
        ..keel_gateway::GatewayConfig::default()
    };
    let app = TestApp::start_with(keel_core::Backend::Sqlite, config).await;
    app.tenant("acme").await;
    let preflight_from = |path: &'static str, origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let preflight = |path: &'static str| preflight_from(path, "https://h5.brand.example");
    let r = preflight("/t/acme/graphql").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://h5.brand.example");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "never with cookies"
    );
    let r = app
        .http
        .post(app.url("/t/acme/graphql"))
        .header("origin", "https://h5.brand.example")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://h5.brand.example"
    );
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    // An origin not listed is not answered.
    let r = preflight_from("/t/acme/graphql", "https://evil.example")
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The private endpoint answers no other origin.
    let r = preflight("/graphql").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .http
        .post(app.url("/graphql"))
        .header("origin", "https://h5.brand.example")
        .json(&json!({"query": VIEWER}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
