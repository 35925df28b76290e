//! The event catalogue (`eventTypes`) over real HTTP, and `/readyz` around
//! the plugins' start-up warm-up.

use keel_host::Manifest;
use keel_host::manifest::{DeliveryMode, Subscription};
use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::plugins::{enable, probe_wasm};
use crate::support::{TestApp, code, ok};

const CATALOGUE: &str = "{ eventTypes { type producer producerVersion description schema subscribers { plugin mode } } }";

fn put_schema() -> Value {
    json!({
        "description": "The probe wrote a record.",
        "type": "object",
        "required": ["key"],
        "properties": {"key": {"type": "string"}},
    })
}

/// The probe fixture as `name`: emitting `emits` (each with a schema) and
/// subscribing to `subscribes`, with no GraphQL.
fn manifest(name: &str, emits: &[&str], subscribes: &[(&str, DeliveryMode)]) -> Manifest {
    let mut m = Manifest::from_toml(&format!(
        r#"
name = "{name}"
version = "1.0.0"
publisher = "Keel tests"
description = "the probe fixture"
wit = "0.2.0"

[[collections]]
name = "items"

[capabilities]
capabilities = ["records", "events", "counters"]
"#
    ))
    .unwrap();
    for t in emits {
        m.events.emits.push((*t).to_owned());
        let schema = if *t == "probe.put" {
            put_schema()
        } else {
            json!({"type": "object"})
        };
        m.events.schemas.insert((*t).to_owned(), schema);
    }
    m.events.subscribes = subscribes
        .iter()
        .map(|(t, mode)| Subscription {
            event_type: (*t).to_owned(),
            mode: *mode,
        })
        .collect();
    m
}

/// The catalogue as `key` sees it, by type.
async fn catalogue(app: &TestApp, key: &str) -> serde_json::Map<String, Value> {
    let r = app.gql(Some(key), CATALOGUE, json!({})).await;
    ok(&r)["eventTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type"].as_str().unwrap().to_owned(), t.clone()))
        .collect()
}

on_both_backends! {
    async fn the_catalogue_lists_the_kernels_and_the_enabled_plugins_types(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner_a) = app.tenant("acme").await;
        let (_, owner_b) = app.tenant("globex").await;
        let wasm = probe_wasm();
        app.plugins
            .install(
                manifest("probe", &["probe.put", "probe.touched"], &[("code.scanned", DeliveryMode::Async)]),
                &wasm,
            )
            .await
            .unwrap();
        app.plugins
            .install(
                manifest(
                    "watcher",
                    &[],
                    &[("probe.put", DeliveryMode::Sync), ("person.merged", DeliveryMode::Async)],
                ),
                &wasm,
            )
            .await
            .unwrap();
        app.plugins
            .install(manifest("other", &["other.done"], &[]), &wasm)
            .await
            .unwrap();
        for name in ["probe", "watcher"] {
            ok(&enable(&app, &owner_a, name, json!({})).await);
        }
        ok(&enable(&app, &owner_b, "other", json!({})).await);

        // Readable by whoever may read events: an analyst.
        let analyst = app.key(&owner_a, &["analyst"], &[]).await;
        let a = catalogue(&app, &analyst).await;
        let merged = &a["person.merged"];
        assert_eq!(merged["producer"], "kernel");
        assert_eq!(merged["producerVersion"], Value::Null);
        assert_eq!(merged["schema"]["type"], "object");
        assert!(merged["description"].as_str().unwrap().contains("survivor"));
        assert_eq!(merged["subscribers"], json!([{"plugin": "watcher", "mode": "ASYNC"}]));
        for kernel in ["product.created", "product.updated", "org.node_created", "org.staff_added"] {
            assert_eq!(a[kernel]["producer"], "kernel", "{kernel}");
        }
        let put = &a["probe.put"];
        assert_eq!(put["producer"], "probe");
        assert_eq!(put["producerVersion"], "1.0.0");
        assert_eq!(put["description"], "The probe wrote a record.");
        assert_eq!(put["schema"], put_schema());
        assert_eq!(put["subscribers"], json!([{"plugin": "watcher", "mode": "SYNC"}]));
        assert_eq!(a["probe.touched"]["subscribers"], json!([]));
        assert_eq!(a["probe.touched"]["description"], Value::Null);
        // Subscribed to, produced by no one the tenant enabled.
        let scanned = &a["code.scanned"];
        assert_eq!(scanned["producer"], Value::Null);
        assert_eq!(scanned["schema"], Value::Null);
        assert_eq!(scanned["subscribers"], json!([{"plugin": "probe", "mode": "ASYNC"}]));
        assert!(!a.contains_key("other.done"), "another tenant's plugin's type is listed");
        let r = app.gql(Some(&analyst), "{ eventTypes { type } }", json!({})).await;
        let types: Vec<&str> = ok(&r)["eventTypes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        let mut sorted = types.clone();
        sorted.sort_unstable();
        assert_eq!(types, sorted, "listed by type");

        // Another tenant sees the kernel's types and its own plugins' only.
        let b = catalogue(&app, &owner_b).await;
        assert!(!b.contains_key("probe.put") && !b.contains_key("probe.touched"), "{b:?}");
        assert!(!b.contains_key("code.scanned"), "{b:?}");
        assert_eq!(b["person.merged"]["subscribers"], json!([]));
        assert_eq!(b["other.done"]["producer"], "other");

        // Disabling the producer takes its types out of the catalogue.
        let r = app
            .gql(Some(&owner_a), "mutation { disablePlugin(name: \"probe\") { enabled } }", json!({}))
            .await;
        ok(&r);
        let a = catalogue(&app, &analyst).await;
        assert!(!a.contains_key("probe.touched"), "{a:?}");
        assert_eq!(a["probe.put"]["producer"], Value::Null, "still subscribed to by watcher");
    }

    async fn the_catalogue_needs_the_right_to_read_events(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let persons_only = app.key(&owner, &["integration"], &["persons:read"]).await;
        let r = app.gql(Some(&persons_only), CATALOGUE, json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        let r = app.gql(None, CATALOGUE, json!({})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
        let reader = app.key(&owner, &["integration"], &["events:read"]).await;
        assert!(catalogue(&app, &reader).await.contains_key("person.merged"));
    }

    async fn readyz_answers_503_while_the_plugins_warm_up(kind) {
        let app = TestApp::start(kind).await;
        app.plugins
            .install(manifest("probe", &["probe.put"], &[]), &probe_wasm())
            .await
            .unwrap();
        let readyz = || async { app.http.get(app.url("/readyz")).send().await.unwrap().status() };
        assert_eq!(readyz().await, StatusCode::OK);
        let warm_up = app.plugins.warm_up();
        assert_eq!(readyz().await, StatusCode::SERVICE_UNAVAILABLE);
        let report = warm_up.run().await;
        assert_eq!(report.packages, 1, "{report:?}");
        assert_eq!(readyz().await, StatusCode::OK);
    }
}
