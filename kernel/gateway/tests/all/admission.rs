//! Attacks on the GraphQL endpoints, each refused before it costs
//! anything: fragment cycles and fan-out, aliases against the public
//! limits, NUL characters, deep values, cross-site bodies, requests that
//! run past the time limit, forwarded addresses and login lockouts.

use std::net::IpAddr;
use std::time::Duration;

use keel_core::Backend;
use keel_gateway::{GatewayConfig, TrustedProxies};
use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::plugins::{SDL, enable, install};
use crate::support::{TestApp, code, ok};

/// POSTs `body` to `path` with `headers`; status, headers and JSON body.
async fn post(
    app: &TestApp,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.http.post(app.url(path)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, h) = (r.status(), r.headers().clone());
    (status, h, r.json().await.unwrap_or(Value::Null))
}

async fn acme_with_probe(app: &TestApp) -> String {
    let (_, owner) = app.tenant("acme").await;
    install(app, "probe", "0.1.0", SDL).await;
    ok(&enable(app, &owner, "probe", json!({})).await);
    owner
}

fn message(r: &Value) -> &str {
    r["errors"][0]["message"].as_str().unwrap_or("")
}

const CYCLES: [&str; 2] = [
    "query{...A} fragment A on Query{...B} fragment B on Query{...A}",
    "query{...A} fragment A on Query{viewer{kind} ...A}",
];

#[tokio::test]
async fn fragment_cycles_are_refused_on_every_endpoint_before_any_work() {
    let app = TestApp::start(Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    let auth = format!("Bearer {owner}");
    for q in CYCLES {
        for (path, headers) in [
            ("/graphql", vec![]),
            ("/graphql", vec![("authorization", auth.as_str())]),
            ("/t/acme/graphql", vec![]),
        ] {
            let (status, _, r) = post(&app, path, &json!({"query": q}), &headers).await;
            assert_eq!(status, StatusCode::OK, "{path} {q}: {r}");
            assert_eq!(code(&r), "BAD_USER_INPUT", "{path} {q}: {r}");
            assert!(message(&r).contains("cycles"), "{path} {q}: {r}");
            // Under the GraphQL response type: a 400 with no `data` entry.
            let mut h = headers.clone();
            h.push(("accept", "application/graphql-response+json"));
            let (status, _, r) = post(&app, path, &json!({"query": q}), &h).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {r}");
            assert!(r.get("data").is_none(), "{path}: {r}");
        }
        let get = app
            .http
            .get(app.url("/graphql"))
            .query(&[("query", q)])
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap();
        let r: Value = get.json().await.unwrap();
        assert!(message(&r).contains("cycles"), "GET: {r}");
    }
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn exponential_fragment_fan_out_is_counted_expanded_and_refused() {
    let app = TestApp::start(Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    // 27 fragments, each spreading the next twice: 2^26 fields.
    let mut q = String::from("query{...F0}");
    for i in 0..26 {
        q.push_str(&format!(
            " fragment F{i} on Query{{...F{n} ...F{n}}}",
            n = i + 1
        ));
    }
    q.push_str(" fragment F26 on Query{__typename}");
    for path in ["/graphql", "/t/acme/graphql"] {
        let auth = format!("Bearer {owner}");
        let (_, _, r) = post(
            &app,
            path,
            &json!({"query": q}),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{path}: {r}");
        assert!(message(&r).contains("67108864 fields"), "{path}: {r}");
    }
    // A document with more spreads than the limit is refused too.
    let spreads = format!(
        "query{{{}}} fragment F on Query{{__typename}}",
        "...F ".repeat(65)
    );
    let (_, _, r) = post(&app, "/graphql", &json!({"query": spreads}), &[]).await;
    assert!(message(&r).contains("65 times"), "{r}");
    let (_, _, r) = post(&app, "/graphql", &json!({"query": "{...Missing}"}), &[]).await;
    assert!(message(&r).contains("Missing"), "{r}");
}

#[tokio::test]
async fn every_aliased_public_operation_counts_against_the_limits() {
    let config = GatewayConfig {
        public_calls_per_ip_per_minute: 20,
        public_operations_per_request: 10,
        ..GatewayConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await;
    acme_with_probe(&app).await;
    let aliases = |n: usize| {
        let fields: String = (0..n).map(|i| format!("a{i}: caller ")).collect();
        json!({"query": format!("{{ {fields} ...F }} fragment F on Query {{ viaFragment: caller }}")})
    };
    // 1,000 aliases: refused whole, nothing runs.
    let (status, _, r) = post(&app, "/t/acme/graphql", &aliases(999), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert!(message(&r).contains("this one runs 1000"), "{r}");
    // Ten operations (nine aliases and one through a fragment) run...
    let (status, _, r) = post(&app, "/t/acme/graphql", &aliases(9), &[]).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(ok(&r).as_object().unwrap().len(), 10);
    // ...and cost ten calls each time: the third request is over 20 a minute.
    let (status, _, r) = post(&app, "/t/acme/graphql", &aliases(9), &[]).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, _, r) = post(
        &app,
        "/t/acme/graphql",
        &json!({"query": "{ caller }"}),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{r}");
    assert_eq!(code(&r), "RATE_LIMITED");
}

on_both_backends! {
    async fn nul_characters_are_bad_input_at_the_edge(kind) {
        let app = TestApp::start(kind).await;
        let owner = acme_with_probe(&app).await;
        let identify = "mutation($i: IdentifyInput!) { identify(input: $i) { created } }";
        let login = "mutation($i: LoginInput!) { login(input: $i) { token } }";
        let cases = [
            (Some(owner.as_str()), identify, json!({"i": {"identifiers": [{"kind": "member_no", "value": "M\u{0}1"}]}})),
            (None, login, json!({"i": {"tenant": "acme", "email": "a\u{0}@acme.example", "password": "x"}})),
            (None, login, json!({"i": {"tenant": "acme\u{0}", "email": "a@acme.example", "password": "x"}})),
        ];
        for (key, q, vars) in cases {
            let r = app.gql(key, q, vars.clone()).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{vars}: {r}");
            assert!(message(&r).contains("NUL"), "{r}");
        }
        // Written into the document itself, and on the public endpoint.
        let r = app.gql(Some(&owner), "mutation { identify(input: {identifiers: [{kind: \"member_no\", value: \"M\\u00001\"}]}) { created } }", json!({})).await;
        assert!(message(&r).contains("NUL"), "{r}");
        let (_, _, r) = post(&app, "/t/acme/graphql", &json!({"query": "query($k: String!) { caller(note: $k) }", "variables": {"k": "a\u{0}b"}}), &[]).await;
        assert!(message(&r).contains("NUL"), "{r}");
        // Nothing was stored: the identifier names nobody.
        let r = app.gql(Some(&owner), "{ personByIdentifier(kind: \"member_no\", value: \"M1\") { id } }", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
    }
}

#[tokio::test]
async fn deeply_nested_values_and_foreign_content_types_are_bad_input() {
    let app = TestApp::start(Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    let auth = format!("Bearer {owner}");
    let append =
        "mutation($p: JSON!) { appendEvent(input: {type: \"erp.deep\", payload: $p}) { id } }";
    for depth in [100, 1000] {
        let mut payload = json!(1);
        for _ in 0..depth {
            payload = json!({ "a": payload });
        }
        let body = json!({"query": append, "variables": {"p": payload}});
        let (status, _, r) = post(&app, "/graphql", &body, &[("authorization", &auth)]).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "depth {depth}: {status} {r}");
    }
    let r = app
        .gql(
            Some(&owner),
            "{ events { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(ok(&r)["events"]["edges"], json!([]));
    // A cross-site form or text/plain post reaches neither endpoint.
    for path in ["/graphql", "/t/acme/graphql"] {
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let r = app
                .http
                .post(app.url(path))
                .header("content-type", ct)
                .body(r#"{"query":"{ caller }"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} {ct}"
            );
        }
    }
}

#[tokio::test]
async fn no_request_outlives_the_request_timeout() {
    let config = GatewayConfig {
        request_timeout: Duration::from_secs(1),
        ..GatewayConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await;
    let owner = acme_with_probe(&app).await;
    // Eight plugin calls that each spin to the plugin deadline (0.5 s),
    // one after another as mutations run: 4 s of work.
    let spins: String = (0..8)
        .map(|i| format!("s{i}: put(key: \"k{i}\", data: {{}}, then: \"loop\") "))
        .collect();
    let (status, _, body) = post(
        &app,
        "/graphql",
        &json!({"query": format!("mutation {{ {spins} }}")}),
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    // Not 408, which browsers may resend on their own; a GraphQL error a
    // client can read.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "{body}");
    // The kernel goes on serving.
    let r = app
        .gql(Some(&owner), "{ viewer { roles } }", json!({}))
        .await;
    ok(&r);
}

#[tokio::test]
async fn a_stop_waits_for_requests_only_as_long_as_the_request_timeout() {
    let db = keel_testkit::TestDb::sqlite().await;
    let cache = tempfile::tempdir().unwrap();
    let mut config = keel_gateway::KernelConfig::new(cache.path());
    config.gateway.request_timeout = Duration::from_secs(1);
    // The whole of `keel serve`'s stop: HTTP, then the background jobs,
    // then the database.
    let kernel = keel_gateway::Kernel::assemble(db.db.clone(), config)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A client that opens a connection and sends half a request, forever.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stuck, b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        kernel
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(60), serving).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the server stopped: {stopped:?}"
    );
    drop(stuck);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let limited = |proxies: TrustedProxies| GatewayConfig {
        public_calls_per_ip_per_minute: 2,
        trusted_proxies: proxies,
        ..GatewayConfig::default()
    };
    // Behind a trusted balancer, each consumer has a budget of their own.
    let app = TestApp::start_with(
        Backend::Sqlite,
        limited(TrustedProxies::parse(&["127.0.0.1"]).unwrap()),
    )
    .await;
    acme_with_probe(&app).await;
    let call = json!({"query": "{ caller }"});
    for _ in 0..2 {
        let (status, _, _) = post(
            &app,
            "/t/acme/graphql",
            &call,
            &[("x-forwarded-for", "203.0.113.1")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = post(
        &app,
        "/t/acme/graphql",
        &call,
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, r) = post(
        &app,
        "/t/acme/graphql",
        &call,
        &[("forwarded", "for=203.0.113.2")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another consumer behind the same balancer: {r}"
    );
    // The plugin is told the consumer's address, not the balancer's.
    assert_eq!(ok(&r)["caller"]["client"], "203.0.113.2", "{r}");
    // Without trust, the header is the client's own word and is ignored.
    let app = TestApp::start_with(Backend::Sqlite, limited(TrustedProxies::default())).await;
    acme_with_probe(&app).await;
    for (n, ip) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let (status, _, _) = post(&app, "/t/acme/graphql", &call, &[("x-forwarded-for", ip)]).await;
        let want = if n < 2 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "request {n}");
    }
}

/// A client whose connections come from `ip` (any 127.x address is this
/// machine's loopback).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_from(app: &TestApp, ip: &str, password: &str) -> Value {
    client_from(ip)
        .post(app.url("/graphql"))
        .json(&json!({"query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
                      "variables": {"i": {"tenant": "acme", "email": "ann@acme.example", "password": password}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn nobody_can_lock_an_operator_out_with_wrong_passwords() {
    let config = GatewayConfig {
        logins_per_account_address_per_minute: 5,
        logins_per_account_per_hour: 8,
        ..GatewayConfig::default()
    };
    let app = TestApp::start_with(Backend::Sqlite, config).await;
    let (_, owner) = app.tenant("acme").await;
    ok(&app
        .gql(
            Some(&owner),
            "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id } }",
            json!({"i": {"email": "ann@acme.example", "password": PASSWORD, "roles": ["admin"]}}),
        )
        .await);
    // Ann works from 127.0.0.1.
    ok(&login_from(&app, "127.0.0.1", PASSWORD).await);
    // An attacker at 127.0.0.2 exhausts its own budget for the account...
    for _ in 0..5 {
        assert_eq!(
            code(&login_from(&app, "127.0.0.2", "wrong password!!").await),
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(
        code(&login_from(&app, "127.0.0.2", PASSWORD).await),
        "RATE_LIMITED"
    );
    // ...which does not touch Ann's.
    ok(&login_from(&app, "127.0.0.1", PASSWORD).await);
    // Guessing from many addresses meets the slower limit of the account.
    let mut refused = false;
    for n in 3..12 {
        let r = login_from(&app, &format!("127.0.0.{n}"), "wrong password!!").await;
        refused |= code(&r) == "RATE_LIMITED";
    }
    assert!(refused, "the per-account hourly limit held guessing back");
    assert_eq!(
        code(&login_from(&app, "127.0.0.20", PASSWORD).await),
        "RATE_LIMITED",
        "a new address waits"
    );
    // Ann, from the address she logged in from before, still gets in.
    ok(&login_from(&app, "127.0.0.1", PASSWORD).await);
}
