//! Described events: each emitted type's payload schema in the manifest,
//! checked at install and on every emit; the committed `docs/events.md`.

use std::path::PathBuf;
use std::sync::Arc;

use keel_core::events::{self, EventFilter};
use keel_core::records;
use keel_host::manifest::{Grants, Manifest};
use keel_host::{Activation, PluginError};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{Fixture, PROBE_MANIFEST, call, ctx, fixture};

fn allow_any(_: &[Arc<Manifest>]) -> Result<(), String> {
    Ok(())
}

/// The probe's manifest with `probe.put`'s schema replaced by `schema`.
fn probe_with_put_schema(schema: Value) -> Manifest {
    let mut m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
    m.events.schemas.insert("probe.put".into(), schema);
    m
}

/// Keys of `probe.put` must start with `k-`.
fn strict_put() -> Value {
    json!({
        "description": "The probe wrote a record.",
        "type": "object",
        "additionalProperties": false,
        "required": ["key"],
        "properties": {"key": {"type": "string", "pattern": "^k-"}},
    })
}

async fn events_of(f: &Fixture) -> Vec<events::Event> {
    events::list(&f.db.db, &f.tenant, &EventFilter::default(), 100, None)
        .await
        .unwrap()
        .events
}

fn returned(e: &PluginError) -> (&str, &str) {
    match e {
        PluginError::Returned { code, message, .. } => (code, message),
        other => panic!("expected a typed error, got {other:?}"),
    }
}

on_both_backends! {
    async fn a_payload_that_fails_its_schema_is_refused_and_nothing_is_stored(kind) {
        let f = Fixture::new(kind).await;
        let manifest = probe_with_put_schema(strict_put());
        let act = Arc::new(Activation {
            tenant: f.tenant.clone(),
            grants: Grants::all_requested(&manifest),
            manifest: Arc::new(manifest),
            component: f.host.load(&fixture("probe")).await.unwrap(),
            config: json!({}),
        });

        let err = call(&f.host, &act, "put", json!({"key": "x", "data": {"n": 1}}))
            .await
            .unwrap_err();
        let (code, message) = returned(&err);
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains("probe.put"), "names the type: {message}");
        assert!(message.contains("\"/key\""), "names the pointer: {message}");
        assert!(events_of(&f).await.is_empty(), "an event was stored");
        let mut tx = f.db.db.begin().await.unwrap();
        let at = records::Location { namespace: "probe", collection: "items", key: "x" };
        let record = records::get(&mut tx, &f.tenant, at).await.unwrap();
        assert!(record.is_none(), "the call's record was kept");
        drop(tx);

        // A payload that matches is stored as emitted.
        call(&f.host, &act, "put", json!({"key": "k-1", "data": {"n": 1}}))
            .await
            .unwrap();
        let stored = events_of(&f).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].event_type, "probe.put");
        assert_eq!(stored[0].payload, json!({"key": "k-1"}));
    }

    async fn install_refuses_a_schema_that_is_not_valid_naming_the_type(kind) {
        let f = Fixture::new(kind).await;
        let registry = f.registry();
        let cases = [
            (json!({"type": "object", "properties": {"key": {"type": "strin"}}}), "not a valid JSON Schema"),
            (json!({"type": "array", "items": {"type": "string"}}), "type = \"object\""),
            (json!({"type": "object", "properties": {"key": {"pattern": "(?<=k)-"}}}), "not a valid JSON Schema"),
            (json!({"type": "object", "$ref": "https://example.com/put.json"}), "not a valid JSON Schema"),
        ];
        for (schema, needle) in cases {
            let err = registry
                .install(probe_with_put_schema(schema.clone()), &fixture("probe"))
                .await
                .unwrap_err();
            let (code, message) = returned(&err);
            assert_eq!(code, "BAD_USER_INPUT", "{schema}: {message}");
            assert!(message.contains("events.schemas.\"probe.put\""), "{schema}: {message}");
            assert!(message.contains(needle), "{schema}: {message} lacks {needle:?}");
        }
        assert!(registry.packages().await.unwrap().is_empty(), "a package was installed");

        // The same check when the manifest is read from its file.
        let text = PROBE_MANIFEST.replace(
            "properties = { key = { type = \"string\" } }",
            "properties = { key = { type = \"text\" } }",
        );
        assert_ne!(text, PROBE_MANIFEST, "the probe's manifest changed: update this test");
        let e = Manifest::from_toml(&text).unwrap_err();
        assert!(e.contains("events.schemas.\"probe.put\": not a valid JSON Schema"), "{e}");
    }

    async fn a_0_2_0_manifest_must_describe_every_emitted_type(kind) {
        let f = Fixture::new(kind).await;
        let registry = f.registry();
        let mut m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
        assert_eq!(m.wit, "0.2.0");
        m.events.schemas.remove("probe.put");
        let err = registry.install(m, &fixture("probe")).await.unwrap_err();
        let (code, message) = returned(&err);
        assert_eq!(code, "BAD_USER_INPUT");
        assert!(message.contains("probe.put has no schema"), "{message}");
        assert!(registry.packages().await.unwrap().is_empty());

        // A schema for a type it does not emit is refused too.
        let mut m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
        m.events.schemas.insert("probe.other".into(), strict_put());
        let err = registry.install(m, &fixture("probe")).await.unwrap_err();
        assert!(err.to_string().contains("probe.other is not in events.emits"), "{err}");
    }

    async fn a_0_1_0_manifest_without_schemas_still_installs_and_emits(kind) {
        let f = Fixture::new(kind).await;
        let registry = f.registry();
        let m = Manifest::from_toml(
            r#"
name = "legacy"
version = "1.0.0"
publisher = "Keel tests"
description = "A keel:plugin@0.1.0 plugin: no event schemas."
wit = "0.1.0"

[[collections]]
name = "notes"

[events]
emits = ["legacy.noted"]

[capabilities]
capabilities = ["records", "events", "persons-read"]
"#,
        )
        .unwrap();
        assert!(m.events.schemas.is_empty());
        let grants = Grants::all_requested(&m);
        registry.install(m, &fixture("legacy")).await.unwrap();
        registry
            .enable(&f.tenant, "legacy", None, grants, json!({}), &allow_any)
            .await
            .unwrap();
        let set = registry.enabled(&f.tenant).await.unwrap();
        let act = set.get("legacy").unwrap();
        f.host
            .call_operation(act, "note", &json!({"key": "n1", "phone": "+8613800000001"}).to_string(), ctx())
            .await
            .unwrap();
        let stored = events_of(&f).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].event_type, "legacy.noted");
    }

    async fn every_tenant_shares_one_manifest_and_its_validators_per_package(kind) {
        let f = Fixture::new(kind).await;
        let other = Fixture::tenant_in(&f.db, "globex").await;
        let registry = f.registry();
        let m = probe_with_put_schema(strict_put());
        let grants = Grants::all_requested(&m);
        registry.install(m, &fixture("probe")).await.unwrap();
        for t in [&f.tenant, &other] {
            registry
                .enable(t, "probe", None, grants.clone(), json!({}), &allow_any)
                .await
                .unwrap();
        }
        let a = registry.enabled(&f.tenant).await.unwrap();
        let b = registry.enabled(&other).await.unwrap();
        assert!(Arc::ptr_eq(
            &a.get("probe").unwrap().manifest,
            &b.get("probe").unwrap().manifest
        ));
        // And the stored manifest keeps its schemas.
        let p = registry.package("probe", None).await.unwrap();
        assert_eq!(p.manifest.events.schema("probe.put"), Some(&strict_put()));
    }
}

on_both_backends! {
    async fn the_kernels_own_payloads_match_their_published_schemas(kind) {
        use keel_core::{catalog, org, persons};
        let f = Fixture::new(kind).await;
        let t = &f.tenant;
        let mut tx = f.db.db.begin().await.unwrap();
        let mut ids = Vec::new();
        for phone in ["+8613800000001", "+8613800000002"] {
            let input = persons::Identify {
                identifiers: vec![("phone".into(), phone.into())],
                ..Default::default()
            };
            ids.push(persons::identify(&mut tx, t, input, "key:test").await.unwrap().person.id);
        }
        persons::merge(&mut tx, t, &ids[0], &ids[1], "one customer", "key:test").await.unwrap();
        let cola = |name: &str, skus: Value| {
            json!([{"code": "COLA", "name": name, "unit": "bottle", "skus": skus}]).to_string()
        };
        let one = json!([{"code": "COLA-330", "name": "Cola 330 ml", "gtin": "6901234567892"}]);
        let two = json!([{"code": "COLA-330", "name": "Cola 330 ml", "gtin": "6901234567892"},
                         {"code": "COLA-500", "name": "Cola 500 ml"}]);
        catalog::upsert_products_json(&mut tx, t, &cola("Cola", one), "key:erp").await.unwrap();
        catalog::upsert_products_json(&mut tx, t, &cola("Cola Classic", two), "key:erp").await.unwrap();
        let nodes = |store: &str| {
            org::parse_nodes_json(&json!([
                {"code": "HQ", "kind": "headquarters", "name": "Acme China"},
                {"code": "S-1", "kind": "store", "name": store, "parentCode": "HQ",
                 "address": "1 Futian Rd", "location": {"lat": 22.5, "lng": 114.0}},
            ]).to_string())
            .unwrap()
        };
        let out = org::upsert_nodes(&mut tx, t, org::Scope::Tenant, &nodes("Futian"), "key:test").await.unwrap();
        org::upsert_nodes(&mut tx, t, org::Scope::Tenant, &nodes("Futian flagship"), "key:test").await.unwrap();
        let store = &out.nodes[1].node.id;
        org::add_staff(&mut tx, t, org::Scope::Tenant, store, &ids[0], "guide", "key:test").await.unwrap();
        org::remove_staff(&mut tx, t, org::Scope::Tenant, store, &ids[0], "guide", "key:test").await.unwrap();
        let gone = persons::Identify {
            identifiers: vec![("phone".into(), "+8613800000003".into())],
            ..Default::default()
        };
        let gone = persons::identify(&mut tx, t, gone, "key:test").await.unwrap().person.id;
        persons::erase(&mut tx, t, &gone, "ticket 7", "key:test").await.unwrap();
        tx.commit().await.unwrap();

        let mut seen = std::collections::BTreeSet::new();
        for e in events_of(&f).await {
            assert!(events::kernel_owns(&e.event_type), "{}", e.event_type);
            keel_host::event_catalog::check_kernel_payload(&e.event_type, &e.payload)
                .unwrap_or_else(|why| panic!("{why}\n{:#}", e.payload));
            seen.insert(e.event_type);
        }
        let all: std::collections::BTreeSet<String> = events::catalog::kernel_event_types()
            .into_iter()
            .map(|k| k.event_type.to_owned())
            .collect();
        assert_eq!(seen, all, "a kernel type was not exercised");
    }
}

/// The first-party plugins' manifests, as committed.
fn first_party_manifests() -> Vec<Manifest> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        "plugins/codes/keel-plugin.toml",
        "plugins/rewards/keel-plugin.toml",
        "plugins/cdp/keel-plugin.toml",
        "examples/loyalty/keel-plugin.toml",
    ]
    .iter()
    .map(|p| {
        let text = std::fs::read_to_string(root.join(p)).unwrap();
        Manifest::from_toml(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
    })
    .collect()
}

#[test]
fn first_party_plugins_describe_every_type_they_emit() {
    let all = first_party_manifests();
    assert!(all.iter().filter(|m| !m.events.emits.is_empty()).count() >= 3);
    for m in all {
        for t in &m.events.emits {
            let s = m
                .events
                .schema(t)
                .unwrap_or_else(|| panic!("{}: {t} has no schema", m.name));
            assert!(
                s["description"].is_string(),
                "{}: {t} is not described",
                m.name
            );
        }
    }
}

#[test]
fn committed_event_docs_are_current() {
    let actual = keel_host::event_catalog::markdown(&first_party_manifests());
    keel_testkit::assert_committed(
        "docs/events.md",
        &actual,
        "KEEL_BLESS=1 cargo test -p keel-host --test all event_docs",
    );
}
