//! `keel_gateway::Kernel`, the one assembly of a kernel process: `keel
//! serve`, `TestApp`, the bundled plugins' harness, `keel plugin harness` and the
//! benches all build their kernel with it. Here: serving runs the
//! background jobs `keel serve` runs and stops as it stops, and a kernel
//! enabled and called without HTTP (as `keel plugin harness` does) applies the
//! gateway's SDL-merge and output checks.

use std::time::Duration;

use keel_core::identity::api_keys;
use keel_core::{Backend, tenants};
use keel_gateway::{Kernel, KernelConfig};
use keel_host::manifest::{DeliveryMode, Grants, Subscription};
use keel_host::outbox::DispatcherConfig;
use keel_host::{CallContext, PluginError};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::json;

use crate::plugins::{SDL, enable, manifest, probe_wasm};
use crate::support::{TestApp, code, ok};

on_both_backends! {
    async fn a_served_kernel_delivers_events_in_the_background_and_stops_as_keel_serve_stops(kind) {
        let Some(db) = TestDb::of(kind).await else { return };
        let cache = tempfile::tempdir().unwrap();
        let mut config = KernelConfig::new(cache.path());
        config.dispatcher = DispatcherConfig { poll: Duration::from_millis(20), ..DispatcherConfig::default() };
        assert!(config.background_jobs, "keel serve runs the dispatcher and the scheduler");
        let kernel = Kernel::assemble(db.db.clone(), config).await.unwrap();
        let mut m = manifest("listener", "0.1.0", SDL);
        m.events.subscribes = vec![Subscription { event_type: "probe.touched".into(), mode: DeliveryMode::Async }];
        m.events.emits.retain(|t| t != "probe.touched");
        m.events.schemas.remove("probe.touched");
        kernel.registry().install(m.clone(), &probe_wasm()).await.unwrap();
        let mut tx = db.db.begin().await.unwrap();
        let tenant = tenants::create(&mut tx, "acme", "Acme").await.unwrap().id;
        let (_, owner) = api_keys::create_owner_key(&mut tx, &tenant, "owner", "test").await.unwrap();
        tx.commit().await.unwrap();
        kernel.enable(&tenant, "listener", None, Grants::all_requested(&m), json!({})).await.unwrap();

        let running = kernel.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        running.warmed_up().await;
        let append = "mutation { appendEvent(input: {type: \"probe.touched\", payload: {key: \"k\"}, idempotencyKey: \"k\"}) { id } }";
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{}/graphql", running.addr()))
            .bearer_auth(&owner)
            .json(&json!({"query": append}))
            .send().await.unwrap().json().await.unwrap();
        ok(&r);
        // No test drives the dispatcher: the kernel's own delivers.
        let mut seen = 0;
        for _ in 0..200 {
            seen = keel_core::counters::get(&db.db, &tenant, "listener", "seen:k").await.unwrap();
            if seen > 0 { break }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen, 1, "the background dispatcher delivered the event once");

        running.stop().await.unwrap();
        assert!(db.db.reader().is_closed(), "a stop closes the database last");
    }

    async fn enabling_and_calling_without_http_applies_the_gateways_checks(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let tenant = app.db_tenant("acme").await;
        let kernel = app.kernel.kernel();
        // `caller` answers an object where this SDL says Int.
        let wrong = SDL.replace("caller: JSON", "caller: Int");
        let m = manifest("probe", "0.1.0", &wrong);
        app.plugins.install(m.clone(), &probe_wasm()).await.unwrap();
        kernel.enable(&tenant, "probe", None, Grants::all_requested(&m), json!({})).await.unwrap();
        let ctx = || CallContext { caller: Some("key:test".into()), ..CallContext::default() };
        let err = kernel.call(&tenant, "probe", "caller", json!({}), ctx()).await.unwrap_err();
        assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
        let r = app.gql(Some(&owner), "{ caller }", json!({})).await;
        assert_eq!(code(&r), "PLUGIN_INVALID_OUTPUT", "the same check as over GraphQL: {r}");
        // An answer that matches its type passes whole; an operation its SDL
        // does not declare (one for other plugins, schedules or events) need
        // only answer JSON.
        let touched = kernel.call(&tenant, "probe", "touch", json!({"key": "k"}), ctx()).await.unwrap();
        assert_eq!(touched, json!({"found": false, "count": 1}));
        let context = kernel.call(&tenant, "probe", "context", json!({}), ctx()).await.unwrap();
        assert_eq!(context["caller"], "key:test", "{context}");
        let err = kernel.call(&tenant, "nosuch", "caller", json!({}), ctx()).await.unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "{err}");

        // A plugin whose GraphQL clashes with the tenant's is refused as
        // `enablePlugin` refuses it.
        let mut clash = manifest("clash", "0.1.0", "extend type Query { caller: JSON }");
        clash.graphql.public.clear();
        clash.events.emits.clear();
        clash.events.schemas.clear();
        app.plugins.install(clash.clone(), &probe_wasm()).await.unwrap();
        let err: PluginError = kernel
            .enable(&tenant, "clash", None, Grants::all_requested(&clash), json!({}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Query.caller is defined by both"), "{err}");
        let r = enable(&app, &owner, "clash", json!({})).await;
        assert_eq!(r["errors"][0]["message"].as_str(), Some(err.to_string().as_str()), "{r}");
    }
}

/// Without HTTP, an operation's input is coerced as its GraphQL arguments
/// are: what GraphQL refuses is refused with `BAD_USER_INPUT` before the
/// plugin runs, and a default the SDL declares is filled in.
#[tokio::test]
async fn calling_without_http_coerces_the_arguments_as_graphql_does() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (_, owner) = app.tenant("acme").await;
    let tenant = app.db_tenant("acme").await;
    let kernel = app.kernel.kernel();
    let sdl = SDL.replace(
        "touch(key: String!)",
        "touch(key: String = \"dflt\", times: Int)",
    );
    let m = manifest("probe", "0.1.0", &sdl);
    app.plugins.install(m.clone(), &probe_wasm()).await.unwrap();
    kernel
        .enable(&tenant, "probe", None, Grants::all_requested(&m), json!({}))
        .await
        .unwrap();
    let ctx = || CallContext {
        caller: Some("key:test".into()),
        ..CallContext::default()
    };
    let call = |op: &'static str, input: serde_json::Value| {
        kernel.call(&tenant, "probe", op, input, ctx())
    };

    let refused = [
        ("touch", json!({"key": 5}), "String"),
        ("touch", json!({"key": "k", "times": "2"}), "Int"),
        (
            "touch",
            json!({"key": "k", "nope": 1}),
            "Unknown argument \"nope\"",
        ),
        ("touch", json!(["k"]), "must be a JSON object"),
        ("big", json!({}), "bytes"),
        ("big", json!({"bytes": null}), "bytes"),
    ];
    for (op, input, says) in refused {
        let Err(err) = call(op, input.clone()).await else {
            panic!("{op} {input} was not refused");
        };
        assert_eq!(err.code(), "BAD_USER_INPUT", "{op} {input}: {err}");
        assert!(err.to_string().contains(says), "{op} {input}: {err}");
    }
    assert_eq!(
        keel_core::counters::get(app.kernel.kernel().db(), &tenant, "probe", "touch:k")
            .await
            .unwrap(),
        0,
        "no refused call reached the plugin"
    );
    // GraphQL refuses the same inputs, with the same code.
    let r = app
        .gql(
            Some(&owner),
            "mutation { touch(key: 5) { count } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");

    // The SDL's default reaches the plugin: `{}` touches "dflt".
    assert_eq!(
        call("touch", json!({})).await.unwrap(),
        json!({"found": false, "count": 1})
    );
    assert_eq!(
        call("touch", json!({"key": "dflt"})).await.unwrap(),
        json!({"found": false, "count": 2})
    );
}

#[tokio::test]
async fn a_test_app_is_the_assembled_kernel_serving() {
    let app = TestApp::start(Backend::Sqlite).await;
    assert_eq!(app.kernel.addr(), app.addr);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "warmed up before the harness returns");
}
