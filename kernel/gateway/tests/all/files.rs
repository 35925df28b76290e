//! Downloads: `GET /files/{plugin}/{name}` streams a file the probe builds
//! chunk by chunk, with the credential's tenant and the manifest's action.

use std::time::Duration;

use keel_gateway::GatewayConfig;
use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::plugins::{SDL, enable, install, manifest, probe_wasm};
use crate::support::{ADMIN_TOKEN, TestApp, ok};

/// A tenant `acme` with the probe enabled; returns its owner key.
async fn acme_with_probe(app: &TestApp) -> String {
    let (_, owner) = app.tenant("acme").await;
    install(app, "probe", "0.1.0", SDL).await;
    ok(&enable(app, &owner, "probe", json!({})).await);
    owner
}

async fn get(
    app: &TestApp,
    key: Option<&str>,
    path: &str,
    input: Option<&str>,
) -> reqwest::Response {
    let mut req = app.http.get(app.url(path));
    if let Some(i) = input {
        req = req.query(&[("input", i)]);
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

/// The status and the JSON error code of a refused download.
async fn refused(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "an error is JSON"
    );
    let body: Value = r.json().await.unwrap();
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {body}"))
        .to_owned();
    (status, code)
}

fn expected_lines(count: u64) -> String {
    let mut s = String::from("number\n");
    for n in 1..=count {
        s.push_str(&format!("line {n}\n"));
    }
    s
}

on_both_backends! {
    async fn a_multi_chunk_download_arrives_whole_and_in_order_with_its_headers(kind) {
        let app = TestApp::start(kind).await;
        let owner = acme_with_probe(&app).await;
        let r = get(&app, Some(&owner), "/files/probe/lines", Some(r#"{"count": 95, "per_chunk": 10}"#)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/csv; charset=utf-8");
        assert_eq!(h["content-disposition"], "attachment; filename=\"lines.csv\"");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-keel-total"], "95");
        assert!(h.get("content-length").is_none(), "streamed, not sized up front: {h:?}");
        assert_eq!(h["transfer-encoding"], "chunked");
        assert_eq!(r.text().await.unwrap(), expected_lines(95));
        // An empty file is the header line alone.
        let r = get(&app, Some(&owner), "/files/probe/lines", Some(r#"{"count": 0, "per_chunk": 10}"#)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "number\n");
    }

    async fn a_download_refuses_bad_input_unknown_names_and_missing_credentials(kind) {
        let app = TestApp::start(kind).await;
        let owner = acme_with_probe(&app).await;
        for input in ["not json", "[1, 2]", "\"text\""] {
            let r = get(&app, Some(&owner), "/files/probe/lines", Some(input)).await;
            assert_eq!(refused(r).await, (StatusCode::BAD_REQUEST, "BAD_USER_INPUT".into()), "{input}");
        }
        // No input is `{}`, which the probe refuses as bad input too.
        let r = get(&app, Some(&owner), "/files/probe/lines", None).await;
        assert_eq!(refused(r).await, (StatusCode::BAD_REQUEST, "BAD_USER_INPUT".into()));
        let r = get(&app, Some(&owner), "/files/probe/lines", Some(r#"{"count": 5, "per_chunk": 0}"#)).await;
        assert_eq!(refused(r).await, (StatusCode::BAD_REQUEST, "BAD_USER_INPUT".into()));
        for path in ["/files/probe/nothing", "/files/nobody/lines"] {
            let r = get(&app, Some(&owner), path, Some("{}")).await;
            assert_eq!(refused(r).await, (StatusCode::NOT_FOUND, "NOT_FOUND".into()), "{path}");
        }
        // Another tenant has not enabled the probe.
        let (_, other) = app.tenant("globex").await;
        let r = get(&app, Some(&other), "/files/probe/lines", Some(r#"{"count": 1, "per_chunk": 1}"#)).await;
        assert_eq!(refused(r).await, (StatusCode::NOT_FOUND, "NOT_FOUND".into()));
        let r = get(&app, None, "/files/probe/lines", Some(r#"{"count": 1, "per_chunk": 1}"#)).await;
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(refused(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into()));
        let r = get(&app, Some("keel_ak_not_a_key"), "/files/probe/lines", None).await;
        assert_eq!(refused(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED".into()));
        let r = get(&app, Some(ADMIN_TOKEN), "/files/probe/lines", None).await;
        assert_eq!(refused(r).await, (StatusCode::FORBIDDEN, "FORBIDDEN".into()), "a platform key has no tenant");
    }

    async fn a_download_needs_the_action_its_manifest_names_on_the_plugin(kind) {
        let app = TestApp::start(kind).await;
        let owner = acme_with_probe(&app).await;
        let input = Some(r#"{"count": 3, "per_chunk": 2}"#);
        let analyst = app.key(&owner, &["analyst"], &[]).await;
        let r = get(&app, Some(&analyst), "/files/probe/lines", input).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = get(&app, Some(&analyst), "/files/probe/lines-for-writers", input).await;
        assert_eq!(refused(r).await, (StatusCode::FORBIDDEN, "FORBIDDEN".into()));
        let reader = app.key(&owner, &["integration"], &["plugin.probe:read"]).await;
        let r = get(&app, Some(&reader), "/files/probe/lines", input).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = get(&app, Some(&reader), "/files/probe/lines-for-writers", input).await;
        assert_eq!(refused(r).await, (StatusCode::FORBIDDEN, "FORBIDDEN".into()));
        let writer = app.key(&owner, &["integration"], &["plugin.probe:write"]).await;
        let r = get(&app, Some(&writer), "/files/probe/lines-for-writers", input).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.text().await.unwrap(), expected_lines(3));
        let elsewhere = app.key(&owner, &["integration"], &["events:read"]).await;
        let r = get(&app, Some(&elsewhere), "/files/probe/lines", input).await;
        assert_eq!(refused(r).await, (StatusCode::FORBIDDEN, "FORBIDDEN".into()));
    }

    async fn a_first_chunk_that_fails_is_a_json_error_with_its_status(kind) {
        let app = TestApp::start(kind).await;
        let owner = acme_with_probe(&app).await;
        let r = get(&app, Some(&owner), "/files/probe/lines", Some(r#"{"count": 5, "per_chunk": 2, "fail_at": 1}"#)).await;
        assert_eq!(refused(r).await, (StatusCode::UNPROCESSABLE_ENTITY, "PROBE_BROKE".into()));
        let r = get(&app, Some(&owner), "/files/probe/lines", Some(r#"{"count": 5, "per_chunk": 2, "garbage": true}"#)).await;
        assert_eq!(refused(r).await, (StatusCode::BAD_GATEWAY, "PLUGIN_INVALID_OUTPUT".into()));
    }
}

/// A download as a client sees it: `Ok(body)` when the transfer ended
/// cleanly, `Err(what arrived)` when it failed — before the response head
/// (the server gave up before flushing anything) or part way through the
/// body.
async fn transfer(app: &TestApp, key: &str, input: &str) -> Result<String, String> {
    let req = app
        .http
        .get(app.url("/files/probe/lines"))
        .query(&[("input", input)])
        .bearer_auth(key);
    let Ok(mut r) = req.send().await else {
        return Err(String::new());
    };
    assert_eq!(r.status(), StatusCode::OK, "the first chunk was fine");
    let mut got = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return Ok(String::from_utf8(got).unwrap()),
            Err(_) => return Err(String::from_utf8(got).unwrap()),
        }
    }
}

#[tokio::test]
async fn a_failure_mid_stream_cuts_the_transfer_short_instead_of_ending_it() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    // About 1 MB arrives before the failure: more than the server buffers,
    // so the response head and part of the body are on the wire by then,
    // and the client's body read fails.
    let input = r#"{"count": 100000, "per_chunk": 5000, "fail_at": 90001}"#;
    let r = get(&app, Some(&owner), "/files/probe/lines", Some(input)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-keel-total"], "100000");
    drop(r);
    let got = transfer(&app, &owner, input)
        .await
        .expect_err("reading the body must fail, not end cleanly");
    assert!(
        got.len() > 500_000,
        "part of the file arrived: {} bytes",
        got.len()
    );
    assert!(
        expected_lines(90000).starts_with(&got),
        "what arrived is a prefix of the file"
    );
    // A failure in the second chunk can come before the server flushed
    // anything: then the request itself fails. Never a clean end.
    let early = r#"{"count": 100, "per_chunk": 10, "fail_at": 11}"#;
    let got = transfer(&app, &owner, early)
        .await
        .expect_err("not a success");
    assert!(expected_lines(10).starts_with(&got), "{got}");
}

#[tokio::test]
async fn chunks_fetched_two_at_a_time_arrive_whole_and_in_order() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    // Each chunk announces the cursor after its next (`then`): the last
    // chunk announced, the file ending on a chunk's edge or inside one.
    for (count, per_chunk) in [
        (95, 10),
        (100, 10),
        (11, 10),
        (21, 10),
        (1, 1),
        (7, 1),
        (30_000, 1_000),
    ] {
        let input = json!({"count": count, "per_chunk": per_chunk, "then": true}).to_string();
        let got = transfer(&app, &owner, &input).await;
        assert_eq!(
            got.as_deref(),
            Ok(expected_lines(count).as_str()),
            "{input}"
        );
    }
}

#[tokio::test]
async fn a_chunk_that_is_not_the_one_announced_cuts_the_transfer_short() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    // The chunk at 40,001 announces 50,002 for the chunk after 45,001; that
    // chunk says 50,001: the file would skip or repeat lines, so it stops
    // before the chunk at 45,001.
    let input = r#"{"count": 100000, "per_chunk": 5000, "then": true, "wrong_then_at": 40001}"#;
    let got = transfer(&app, &owner, input)
        .await
        .expect_err("reading the body must fail, not end cleanly");
    assert!(
        expected_lines(45000).starts_with(&got),
        "a prefix of the file up to line 45,000"
    );
    assert!(
        got.len() >= expected_lines(40000).len(),
        "the chunks before arrived: {} bytes",
        got.len()
    );
    // The second-to-last chunk announces one more after the last: the file
    // must not end as if complete.
    let input = r#"{"count": 95, "per_chunk": 10, "then": true, "then_past_end": true}"#;
    let got = transfer(&app, &owner, input)
        .await
        .expect_err("a chunk after the last was announced");
    assert!(
        expected_lines(95).starts_with(&got) && !got.ends_with("line 95\n"),
        "{got}"
    );
}

#[tokio::test]
async fn a_download_past_its_time_limit_is_cut_short() {
    let config = GatewayConfig {
        download_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let app = TestApp::start_with(keel_core::Backend::Sqlite, config).await;
    let owner = acme_with_probe(&app).await;
    let got = transfer(&app, &owner, r#"{"count": 1000000, "per_chunk": 10000}"#)
        .await
        .expect_err("the transfer was aborted");
    assert!(!got.contains("line 1000000\n"));
}

#[tokio::test]
async fn a_plugin_without_graphql_enables_and_serves_its_files_and_pages() {
    let app = TestApp::start(keel_core::Backend::Sqlite).await;
    let (_, owner) = app.tenant("acme").await;
    let mut m = manifest("files-only", "0.1.0", "");
    m.graphql.public.clear();
    app.plugins.install(m, &probe_wasm()).await.unwrap();
    ok(&enable(&app, &owner, "files-only", json!({})).await);
    let r = app
        .gql(
            Some(&owner),
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(ok(&r)["__schema"]["queryType"]["name"], "Query");
    let input = Some(r#"{"count": 2, "per_chunk": 5}"#);
    let r = get(&app, Some(&owner), "/files/files-only/lines", input).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), expected_lines(2));
    let r = app
        .http
        .get(app.url("/t/acme/p/files-only/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("path: hello"));
}
