//! Two contract versions side by side: a component built for
//! `keel:plugin@0.1.0` (the `legacy` fixture, written with wit-bindgen
//! against the frozen WIT) runs unchanged next to 0.2.0 plugins (the probe,
//! built with the SDK); 0.2's additions — the call context's new fields,
//! the batch imports, `config.consumer-sign-in` — and the capabilities a
//! 0.1.0 manifest cannot ask for.

use std::sync::Arc;
use std::time::Duration;

use keel_core::{counters, persons};
use keel_host::manifest::{Capability, DeliveryMode, Grants, Manifest, Subscription};
use keel_host::outbox::{Dispatcher, DispatcherConfig};
use keel_host::{CallContext, Registry, TenantPlugins};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{Fixture, PROBE_MANIFEST, call, ctx, fixture};

const LEGACY_MANIFEST: &str = r#"
name = "legacy"
version = "1.0.0"
publisher = "Keel tests"
description = "A plugin built for keel:plugin@0.1.0 with wit-bindgen directly."
wit = "0.1.0"

[[collections]]
name = "notes"

[events]
emits = ["legacy.noted"]
subscribes = [{ type = "probe.touched", mode = "async" }]

[capabilities]
capabilities = ["records", "events", "persons-read", "counters"]
"#;

/// What a 0.2.0 manifest of the legacy plugin adds: its event's schema.
const LEGACY_SCHEMAS: &str = r#"
[events.schemas."legacy.noted"]
type = "object"
properties = { key = { type = "string" } }
"#;

fn allow_any(_: &[Arc<Manifest>]) -> Result<(), String> {
    Ok(())
}

/// The probe (0.2.0) as it goes with the legacy plugin: it hears
/// `legacy.noted` inside the emitter's transaction.
fn probe_manifest() -> Manifest {
    let mut m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
    m.events.subscribes = vec![Subscription {
        event_type: "legacy.noted".into(),
        mode: DeliveryMode::Sync,
    }];
    m
}

/// Installs `manifest` with the `component` fixture and enables it with
/// everything it asks for.
async fn install_and_enable(
    f: &Fixture,
    registry: &Registry,
    manifest: Manifest,
    component: &str,
    config: Value,
) {
    let name = manifest.name.clone();
    let grants = Grants::all_requested(&manifest);
    registry
        .install(manifest, &fixture(component))
        .await
        .unwrap();
    registry
        .enable(&f.tenant, &name, None, grants, config, &allow_any)
        .await
        .unwrap();
}

fn with_plugins(plugins: &Arc<TenantPlugins>) -> CallContext {
    CallContext {
        plugins: Some(plugins.clone()),
        ..ctx()
    }
}

async fn call_in(
    f: &Fixture,
    plugins: &Arc<TenantPlugins>,
    plugin: &str,
    op: &str,
    input: Value,
) -> keel_host::Result<Value> {
    let act = plugins.get(plugin).unwrap();
    let out = f
        .host
        .call_operation(act, op, &input.to_string(), with_plugins(plugins))
        .await?;
    Ok(serde_json::from_str(&out).unwrap())
}

async fn count_events(f: &Fixture, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND type = $2")
        .bind(f.tenant.as_str())
        .bind(event_type)
        .fetch_one(f.db.db.reader())
        .await
        .unwrap()
}

async fn person_with_phone(f: &Fixture, phone: &str) -> Option<String> {
    let mut conn = f.db.db.reader().acquire().await.unwrap();
    persons::find_by_identifier(&mut conn, &f.tenant, "phone", phone)
        .await
        .unwrap()
        .map(|p| p.id)
}

on_both_backends! {
    async fn a_0_1_component_installs_enables_and_runs_unchanged(kind) {
        let f = Fixture::new(kind).await;
        let registry = f.registry();
        let manifest = Manifest::from_toml(LEGACY_MANIFEST).unwrap();
        let package = registry.install(manifest.clone(), &fixture("legacy")).await.unwrap();
        assert_eq!(package.manifest.wit, "0.1.0");
        assert_eq!(f.host.load(&fixture("legacy")).await.unwrap().wit_version, "0.1.0");

        // Its on-enable runs (and refuses a config it does not like).
        let grants = Grants::all_requested(&manifest);
        let err = registry
            .enable(&f.tenant, "legacy", None, grants.clone(), json!({"greeting": 5}), &allow_any)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");
        assert!(err.to_string().contains("greeting"), "{err}");
        registry
            .enable(&f.tenant, "legacy", None, grants, json!({"greeting": "hi"}), &allow_any)
            .await
            .unwrap();
        let plugins = registry.enabled(&f.tenant).await.unwrap();

        // Writes a record, reads its config, resolves a person, emits.
        let out = call_in(&f, &plugins, "legacy", "note", json!({"key": "n1", "phone": "+8613800000001"}))
            .await
            .unwrap();
        let person = person_with_phone(&f, "+8613800000001").await.expect("resolved");
        assert_eq!(out["version"], 1);
        assert_eq!(out["person"], json!(person));
        assert_eq!(out["greeting"], "hi");
        assert!(out["event"].as_str().is_some_and(|id| !id.is_empty()), "{out}");
        assert_eq!(count_events(&f, "legacy.noted").await, 1);
        let read = call_in(&f, &plugins, "legacy", "read", json!({"key": "n1"})).await.unwrap();
        assert_eq!(read, json!({"version": 1, "data": {"person": person, "greeting": "hi"}}));

        // A refusal after writing rolls the call back, as always.
        let err = call_in(&f, &plugins, "legacy", "note", json!({"key": "n2", "phone": "+8613800000002", "then": "refuse"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "LEGACY_REFUSED");
        assert_eq!(call_in(&f, &plugins, "legacy", "read", json!({"key": "n2"})).await.unwrap(), Value::Null);
        assert_eq!(person_with_phone(&f, "+8613800000002").await, None);
        assert_eq!(count_events(&f, "legacy.noted").await, 1);

        // The 0.1 call context: the fields 0.1.0 knows.
        let scoped = CallContext { scope: Some("org_gd".into()), schedule: Some("nightly".into()), ..with_plugins(&plugins) };
        let out = f.host.call_operation(plugins.get("legacy").unwrap(), "context", "{}", scoped).await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"caller": "key:test", "client": null, "request": "test-request"})
        );

        // 0.1's reserved secret still says how consumers sign in, without
        // the `secrets` grant; real secrets still need it.
        let sign_in = call_in(&f, &plugins, "legacy", "secret", json!({"name": "keel.consumer_sign_in"})).await.unwrap();
        assert_eq!(sign_in, Value::Null, "the tenant has no WeChat app");
        let err = call_in(&f, &plugins, "legacy", "secret", json!({"name": "token"})).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{err}");
    }

    async fn a_0_1_and_a_0_2_plugin_deliver_events_to_each_other(kind) {
        let f = Fixture::new(kind).await;
        let registry = f.registry();
        install_and_enable(&f, &registry, probe_manifest(), "probe", json!({})).await;
        let legacy = Manifest::from_toml(LEGACY_MANIFEST).unwrap();
        install_and_enable(&f, &registry, legacy, "legacy", json!({})).await;
        let plugins = registry.enabled(&f.tenant).await.unwrap();
        assert_eq!(plugins.get("probe").unwrap().component.wit_version, "0.2.0");
        assert_eq!(plugins.get("legacy").unwrap().component.wit_version, "0.1.0");

        // 0.1 emits; the 0.2 probe hears it inside the emitter's transaction.
        call_in(&f, &plugins, "legacy", "note", json!({"key": "n1", "phone": "+8613800000003"})).await.unwrap();
        let heard = counters::get(&f.db.db, &f.tenant, "probe", "heard:legacy.noted").await.unwrap();
        assert_eq!(heard, 1, "the 0.2 plugin heard the 0.1 plugin's event");

        // 0.2 emits; the outbox delivers it to the 0.1 plugin's handler.
        call_in(&f, &plugins, "probe", "touch", json!({"key": "k"})).await.unwrap();
        let heard = || call_in(&f, &plugins, "legacy", "heard", json!({"type": "probe.touched"}));
        assert_eq!(heard().await.unwrap(), json!(0), "async: not before the dispatcher runs");
        let config = DispatcherConfig { backoff: Duration::ZERO, ..Default::default() };
        let dispatcher = Dispatcher::new(f.db.db.clone(), registry.clone(), config);
        assert_eq!(dispatcher.deliver_due().await.unwrap(), 1);
        assert_eq!(heard().await.unwrap(), json!(1), "the 0.1 plugin heard the 0.2 plugin's event");
    }

    async fn a_0_2_plugin_sees_scope_schedule_and_calling_plugin(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        let context = CallContext {
            scope: Some("org_gd".into()),
            schedule: Some("nightly".into()),
            calling_plugin: Some("shop".into()),
            ..ctx()
        };
        let out = f.host.call_operation(&probe, "context", "{}", context).await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"caller": "key:test", "request": "test-request", "scope": "org_gd", "calling_plugin": "shop", "schedule": "nightly"})
        );
        let out = call(&f.host, &probe, "context", json!({})).await.unwrap();
        assert_eq!(out["scope"], Value::Null, "the whole tenant");
        assert_eq!(out["schedule"], Value::Null);
    }

    async fn resolve_batch_resolves_all_or_nothing(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        let phones = ["+8613800000011", "+8613800000012", "+8613800000011"];
        let batch: Vec<Value> = phones.iter().map(|p| json!([["phone", p]])).collect();
        let out = call(&f.host, &probe, "resolve_batch", json!({"batch": batch})).await.unwrap();
        let ids = out["ok"].as_array().unwrap();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], json!(person_with_phone(&f, phones[0]).await.unwrap()));
        assert_eq!(ids[1], json!(person_with_phone(&f, phones[1]).await.unwrap()));
        assert_eq!(ids[0], ids[2], "the same identifiers, the same person");
        assert_eq!(call(&f.host, &probe, "resolve_batch", json!({"batch": []})).await.unwrap(), json!({"ok": []}));

        // One invalid item: named by index, and nobody is created — even
        // though the plugin carries on and its call commits.
        let bad = json!([[["phone", "+8613800000021"]], [["phone", "+8613800000022"]], [["nonsense", "x"]]]);
        let out = call(&f.host, &probe, "resolve_batch", json!({"batch": bad, "swallow": true})).await.unwrap();
        let error = out["error"].as_str().unwrap();
        assert!(error.contains("batch[2]") && error.contains("unknown identifier kind"), "{error}");
        assert_eq!(person_with_phone(&f, "+8613800000021").await, None, "rolled back");
        assert_eq!(person_with_phone(&f, "+8613800000022").await, None, "rolled back");
        let err = call(&f.host, &probe, "resolve_batch", json!({"batch": bad})).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");

        // Over the limit: refused before anything is resolved.
        let over: Vec<Value> = (0..1001).map(|i| json!([["phone", format!("+86139{i:08}")]])).collect();
        let err = call(&f.host, &probe, "resolve_batch", json!({"batch": over})).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(err.to_string().contains("at most 1000"), "{err}");
        assert_eq!(person_with_phone(&f, "+8613900000000").await, None);

        // The batch needs what `resolve` needs.
        let act = f.activation(&f.tenant, "probe", Some(crate::support::grants_without(Capability::PersonsRead))).await;
        let err = call(&f.host, &act, "resolve_batch", json!({"batch": [[["phone", "+8613800000031"]]]})).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN");
    }

    async fn resolve_batch_finds_known_persons_and_resolves_the_rest_in_order(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        let t = &f.tenant;
        let mut tx = f.db.db.begin().await.unwrap();
        let mut ids = Vec::new();
        for set in [vec![("phone", "+8613800000101")], vec![("phone", "+8613800000102"), ("wechat_openid", "o-102")],
                    vec![("phone", "+8613800000103")], vec![("phone", "+8613800000104")]] {
            let input = persons::Identify {
                identifiers: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            };
            ids.push(persons::identify(&mut tx, t, input, "key:test").await.unwrap().person.id);
        }
        // The fourth is merged into the third: its phone answers the third.
        persons::merge(&mut tx, t, &ids[2], &ids[3], "one customer", "key:test").await.unwrap();
        tx.commit().await.unwrap();

        let batch = json!([
            [["phone", "+8613800000101"]],
            [["phone", "+8613800000105"]],
            [["wechat_openid", "o-102"], ["phone", "+8613800000102"]],
            [["phone", "+8613800000104"]],
            [["phone", "+8613800000101"], ["email", "a@example.com"]],
            [["phone", "+8613800000105"]],
            [["email", "b@example.com"], ["phone", "+8613800000107"]],
            [["phone", "+8613800000108"]],
        ]);
        let out = call(&f.host, &probe, "resolve_batch", json!({"batch": batch})).await.unwrap();
        let got: Vec<String> = serde_json::from_value(out["ok"].clone()).unwrap();
        let created = person_with_phone(&f, "+8613800000105").await.expect("created");
        let (new_1, new_2) = (person_with_phone(&f, "+8613800000107").await.unwrap(), person_with_phone(&f, "+8613800000108").await.unwrap());
        for p in [&created, &new_1, &new_2] {
            assert!(!ids.contains(p));
        }
        assert!(created != new_1 && new_1 != new_2 && created != new_2);
        let got: Vec<&String> = got.iter().collect();
        assert_eq!(got, [&ids[0], &created, &ids[1], &ids[2], &ids[0], &created, &new_1, &new_2]);
        let mut conn = f.db.db.reader().acquire().await.unwrap();
        let p = persons::get(&mut conn, t, &new_1).await.unwrap();
        let held: Vec<(&str, &str)> = p.identifiers.iter().map(|i| (i.kind.as_str(), i.value.as_str())).collect();
        assert_eq!(held, [("email", "b@example.com"), ("phone", "+8613800000107")]);
        drop(conn);
        // Again: every one known now, the same answers.
        let again = call(&f.host, &probe, "resolve_batch", json!({"batch": batch})).await.unwrap();
        assert_eq!(again, out);
        let mut conn = f.db.db.reader().acquire().await.unwrap();
        let by_email = persons::find_by_identifier(&mut conn, t, "email", "a@example.com").await.unwrap();
        assert_eq!(by_email.map(|p| p.id), Some(ids[0].clone()), "the free identifier was attached");

        // A known person that an earlier item of the batch changes is
        // answered as changed; a new person's identifiers in One ID's order.
        let batch = json!([
            [["phone", "+8613800000101"], ["email", "c@example.com"]],
            [["phone", "+8613800000101"]],
            [["phone", "+8613800000109"], ["email", "z@example.com"], ["email", "d@example.com"]],
        ]);
        let out = call(&f.host, &probe, "resolve_batch", json!({"batch": batch, "identifiers": true})).await.unwrap();
        let ok = out["ok"].as_array().unwrap();
        assert_eq!(ok[0]["id"], json!(ids[0]));
        assert_eq!(ok[1], ok[0], "{out}");
        assert!(ok[1]["identifiers"].as_array().unwrap().contains(&json!(["email", "c@example.com"])), "{out}");
        let new_3 = person_with_phone(&f, "+8613800000109").await.unwrap();
        let mut conn = f.db.db.reader().acquire().await.unwrap();
        let read: Vec<Value> = persons::get(&mut conn, t, &new_3).await.unwrap().identifiers.iter()
            .map(|i| json!([i.kind, i.value])).collect();
        drop(conn);
        assert_eq!(ok[2]["identifiers"], json!(read), "as One ID reads them");
        assert_eq!(read, [json!(["email", "z@example.com"]), json!(["email", "d@example.com"]), json!(["phone", "+8613800000109"])]);

        // Identifiers of two persons: that item is refused, by index, and
        // the items before it are undone though they were already known.
        let two = json!([[["phone", "+8613800000106"]], [["phone", "+8613800000101"], ["wechat_openid", "o-102"]]]);
        let out = call(&f.host, &probe, "resolve_batch", json!({"batch": two, "swallow": true})).await.unwrap();
        let error = out["error"].as_str().unwrap();
        assert!(error.contains("batch[1]") && error.contains("2 different persons"), "{error}");
        assert_eq!(person_with_phone(&f, "+8613800000106").await, None, "rolled back");
    }

    async fn insert_batch_writes_all_or_nothing(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        let keys = |f: &Fixture| {
            let f_db = f.db.db.reader().clone();
            let tenant = f.tenant.as_str().to_owned();
            async move {
                let rows: Vec<String> = sqlx::query_scalar(
                    "SELECT key FROM records WHERE tenant_id = $1 AND namespace = 'probe' AND collection = 'items' ORDER BY key",
                )
                .bind(&tenant)
                .fetch_all(&f_db)
                .await
                .unwrap();
                let indexed: Vec<String> = sqlx::query_scalar(
                    "SELECT key || '=' || value FROM record_index WHERE tenant_id = $1 AND namespace = 'probe' \
                     AND collection = 'items' AND field = 'color' ORDER BY key",
                )
                .bind(&tenant)
                .fetch_all(&f_db)
                .await
                .unwrap();
                (rows, indexed)
            }
        };
        // More rows than one statement holds, each indexed by its colour.
        let items: Vec<Value> = (0..600).map(|i| json!([format!("k{i:04}"), {"color": format!("c{}", i % 3), "n": i}])).collect();
        let out = call(&f.host, &probe, "insert_batch", json!({"items": items})).await.unwrap();
        assert_eq!(out, json!({"ok": 600}));
        let (rows, indexed) = keys(&f).await;
        assert_eq!(rows.len(), 600);
        assert_eq!(indexed.len(), 600);
        assert_eq!(indexed[7], "k0007=c1");
        let out = call(&f.host, &probe, "put", json!({"key": "k0007", "data": {"color": "red"}})).await.unwrap();
        assert_eq!(out["version"], json!(2), "{out}");
        let before = keys(&f).await;
        assert_eq!(before.1[7], "k0007=red");

        // A key already taken, or given twice, or bad data, after 400 good
        // items: named by index, and nothing of the batch stands though
        // the call commits.
        for (bad, at, needle) in [
            (json!([["n1", {"color": "x"}], ["n2", {}], ["k0300", {}]]), "items[402]", "already exists"),
            (json!([["n1", {"color": "x"}], ["n2", {}], ["n1", {}]]), "items[402]", "twice"),
            (json!([["n1", {"color": "x"}], ["n2", 5]]), "items[401].data", "JSON object"),
            (json!([["n1", {}], ["", {}]]), "items[401].key", "1-256 bytes"),
        ] {
            let mut big: Vec<Value> = (0..400).map(|i| json!([format!("m{i:04}"), {"color": "m"}])).collect();
            big.extend(bad.as_array().unwrap().iter().cloned());
            let out = call(&f.host, &probe, "insert_batch", json!({"items": big, "swallow": true})).await.unwrap();
            let error = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
            assert!(error.contains(at) && error.contains(needle), "{error} (wanted {at}, {needle})");
            assert_eq!(keys(&f).await, before, "nothing of the batch stands");
        }
        let over: Vec<Value> = (0..1001).map(|i| json!([format!("o{i}"), {}])).collect();
        let err = call(&f.host, &probe, "insert_batch", json!({"items": over})).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");
    }

    async fn emit_batch_emits_all_or_nothing(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        let events = json!([
            {"type": "probe.put", "payload": {"key": "a"}, "key": "a"},
            {"type": "probe.put", "payload": {"key": "b"}},
        ]);
        let out = call(&f.host, &probe, "emit_batch", json!({"events": events})).await.unwrap();
        let ids = out["ok"].as_array().unwrap();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(count_events(&f, "probe.put").await, 2);
        // A repeated idempotency key gives the first event's id.
        let again = call(&f.host, &probe, "emit_batch", json!({"events": [{"type": "probe.put", "key": "a"}]})).await.unwrap();
        assert_eq!(again["ok"][0], ids[0]);
        assert_eq!(count_events(&f, "probe.put").await, 2);

        // One invalid event — a payload that fails its type's schema, a
        // type the manifest does not declare — is named by its index, and
        // none of the batch is emitted, though the call goes on to commit.
        for (bad_one, code, needle) in [
            (json!({"type": "probe.put", "payload": {"key": 5}}), "BAD_USER_INPUT", "probe.put"),
            (json!({"type": "someone.else"}), "FORBIDDEN", "someone.else"),
        ] {
            let bad = json!([
                {"type": "probe.put", "payload": {"key": "b"}},
                {"type": "probe.touched", "payload": {"key": "t", "count": 0}},
                bad_one,
            ]);
            let out = call(&f.host, &probe, "emit_batch", json!({"events": bad, "swallow": true})).await.unwrap();
            let error = out["error"].as_str().unwrap();
            assert!(error.contains("events[2]") && error.contains(needle), "{error}");
            assert_eq!(count_events(&f, "probe.put").await, 2, "rolled back");
            assert_eq!(count_events(&f, "probe.touched").await, 0, "rolled back");
            let err = call(&f.host, &probe, "emit_batch", json!({"events": bad})).await.unwrap_err();
            assert_eq!(err.code(), code, "{err}");
        }

        // Over the limit.
        let over: Vec<Value> = (0..1001).map(|_| json!({"type": "probe.put"})).collect();
        let err = call(&f.host, &probe, "emit_batch", json!({"events": over})).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(err.to_string().contains("at most 1000"), "{err}");
        assert_eq!(count_events(&f, "probe.put").await, 2);
    }

    async fn a_0_2_plugin_asks_how_consumers_sign_in(kind) {
        let f = Fixture::new(kind).await;
        // Without the `secrets` grant: it is a fact of the kernel.
        let act = f.activation(&f.tenant, "probe", Some(crate::support::grants_without(Capability::Secrets))).await;
        let out = call(&f.host, &act, "call", json!({"capability": "sign-in"})).await.unwrap();
        assert_eq!(out, Value::Null, "the tenant has no WeChat app");
        // 0.1's reserved secret name is not a 0.2 secret.
        let probe = f.probe().await;
        let err = call(&f.host, &probe, "call", json!({"capability": "secret", "arg": "keel.consumer_sign_in"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(err.to_string().contains("consumer-sign-in"), "{err}");
    }
}

#[test]
fn a_0_1_manifest_cannot_ask_for_capabilities_added_in_0_2() {
    for capability in ["catalog-read", "catalog-write", "org-read", "org-write"] {
        let asking = LEGACY_MANIFEST.replace(
            "capabilities = [\"records\"",
            &format!("capabilities = [\"{capability}\", \"records\""),
        );
        let err = Manifest::from_toml(&asking).unwrap_err();
        assert!(
            err.contains(&format!("{capability} does not exist in keel:plugin@0.1.0"))
                && err.contains("keel:plugin@0.2.0"),
            "{err}"
        );
        let newer = asking.replace("wit = \"0.1.0\"", "wit = \"0.2.0\"") + LEGACY_SCHEMAS;
        let m = Manifest::from_toml(&newer).unwrap();
        assert!(
            m.capabilities
                .capabilities
                .iter()
                .any(|c| c.as_str() == capability)
        );
    }
}

#[tokio::test]
async fn installing_a_0_1_plugin_that_asks_for_catalog_read_is_refused() {
    let f = Fixture::new(keel_core::Backend::Sqlite).await;
    let registry = f.registry();
    let mut manifest = Manifest::from_toml(LEGACY_MANIFEST).unwrap();
    manifest
        .capabilities
        .capabilities
        .insert(Capability::CatalogRead);
    let err = registry
        .install(manifest, &fixture("legacy"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");
    assert!(
        err.to_string()
            .contains("catalog-read does not exist in keel:plugin@0.1.0"),
        "{err}"
    );
    assert!(registry.packages().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_manifest_must_name_the_version_its_component_is_built_for() {
    let f = Fixture::new(keel_core::Backend::Sqlite).await;
    let registry = f.registry();
    let newer = LEGACY_MANIFEST.replace("wit = \"0.1.0\"", "wit = \"0.2.0\"") + LEGACY_SCHEMAS;
    let manifest = Manifest::from_toml(&newer).unwrap();
    let err = registry
        .install(manifest, &fixture("legacy"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");
    assert!(
        err.to_string()
            .contains("the component is built for keel:plugin@0.1.0"),
        "{err}"
    );
}
