//! Plugins through GraphQL: enabling, the tenant's merged schema, public
//! operations, and what bad plugins and bad enables get.

use std::path::PathBuf;
use std::sync::OnceLock;

use keel_host::Manifest;
use keel_testkit::on_both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, code, field, ok};

pub(crate) fn probe_wasm() -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        keel_host::guests::build(
            &root.join("../host/fixtures/Cargo.toml"),
            &root.join("../../target/wasm"),
        )
        .expect("building fixtures")
    });
    std::fs::read(dir.join("probe.wasm")).unwrap()
}

pub(crate) fn manifest(name: &str, version: &str, sdl: &str) -> Manifest {
    Manifest::from_toml(&format!(
        r#"
name = "{name}"
version = "{version}"
publisher = "Keel tests"
description = "the probe fixture"
wit = "0.2.0"

[[collections]]
name = "items"

[events]
emits = ["probe.touched", "probe.put"]

[events.schemas."probe.touched"]
type = "object"

[events.schemas."probe.put"]
type = "object"

[graphql]
sdl = """{sdl}"""
public = ["caller"]

[config_schema]
type = "object"
additionalProperties = false
properties = {{ refuse = {{ type = "boolean" }} }}

[capabilities]
capabilities = ["records", "events", "counters"]

[[downloads]]
name = "lines"
operation = "lines"
content_type = "text/csv; charset=utf-8"
file_name = "lines.csv"

[[downloads]]
name = "lines-for-writers"
operation = "lines"
content_type = "text/plain"
file_name = "lines.txt"
access = "write"

[pages]
operation = "page"
"#
    ))
    .unwrap()
}

pub(crate) const SDL: &str = r#"
type Touched { found: Boolean!, count: Int! }
extend type Query {
  caller: JSON
  big(bytes: Int!): String
}
extend type Mutation {
  touch(key: String!): Touched!
  put(key: String!, data: JSON!, then: String): JSON
  crash: JSON
}
"#;

const ENABLE: &str = "mutation($i: EnablePluginInput!) { enablePlugin(input: $i) { name version enabled capabilities config } }";

/// Installs the probe fixture as `name`. Event types have one producer, so
/// only the plugin named `probe` declares the probe's events.
pub(crate) async fn install(app: &TestApp, name: &str, version: &str, sdl: &str) {
    let mut m = manifest(name, version, sdl);
    if name != "probe" {
        m.events.emits.clear();
        m.events.schemas.clear();
    }
    app.plugins.install(m, &probe_wasm()).await.unwrap();
}

pub(crate) async fn enable(app: &TestApp, key: &str, name: &str, extra: Value) -> Value {
    let mut input = json!({"name": name, "capabilities": ["records", "events", "counters"]});
    if let (Value::Object(i), Value::Object(e)) = (&mut input, extra) {
        i.extend(e);
    }
    app.gql(Some(key), ENABLE, json!({"i": input})).await
}

async fn public(app: &TestApp, slug: &str, query: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url(&format!("/t/{slug}/graphql")))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

on_both_backends! {
    async fn an_enabled_plugins_operations_join_the_tenants_graphql(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        let r = enable(&app, &owner, "probe", json!({})).await;
        assert_eq!(ok(&r)["enablePlugin"]["enabled"], true);
        // A plugin mutation and kernel fields in one request.
        let r = app.gql(Some(&owner), "mutation { a: touch(key: \"k\") { count found } b: touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(ok(&r)["a"], json!({"count": 1, "found": false}));
        assert_eq!(ok(&r)["b"], json!({"count": 2}));
        let r = app.gql(Some(&owner), "{ v: viewer { tenant { slug } } caller }", json!({})).await;
        assert_eq!(ok(&r)["v"]["tenant"]["slug"], "acme");
        assert!(ok(&r)["caller"]["caller"].as_str().unwrap().starts_with("key:"));
        // The plugin's event is in the tenant's log, produced by the plugin.
        let r = app.gql(Some(&owner), "{ events(filter: {types: [\"probe.touched\"]}) { edges { node { producer payload } } } }", json!({})).await;
        let edges = ok(&r)["events"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 2);
        assert_eq!(edges[0]["node"]["producer"], "probe");
        // Introspection shows the plugin's types.
        let r = app.gql(Some(&owner), "{ __type(name: \"Touched\") { fields { name } } }", json!({})).await;
        assert_eq!(ok(&r)["__type"]["fields"].as_array().unwrap().len(), 2);
        // Another tenant has none of it.
        let (_, other) = app.tenant("globex").await;
        let r = app.gql(Some(&other), "mutation { touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
    }

    async fn an_enable_that_breaks_a_rule_is_refused_and_changes_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        let r = enable(&app, &owner, "probe", json!({"capabilities": ["records", "http"]})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert_eq!(field(&r), "grants");
        let r = enable(&app, &owner, "probe", json!({"capabilities": ["superpowers"]})).await;
        assert_eq!(field(&r), "capabilities");
        let r = enable(&app, &owner, "probe", json!({"config": {"colour": "red"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert_eq!(field(&r), "config");
        let r = enable(&app, &owner, "probe", json!({"config": {"refuse": true}})).await;
        assert_eq!(code(&r), "NOT_NOW", "the plugin's own refusal: {r}");
        let r = enable(&app, &owner, "nope", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let list = app.gql(Some(&owner), "{ plugins { name } }", json!({})).await;
        assert_eq!(ok(&list)["plugins"], json!([]));
        // A marketer may not enable plugins.
        let marketer = app.key(&owner, &["marketer"], &[]).await;
        assert_eq!(code(&enable(&app, &marketer, "probe", json!({})).await), "FORBIDDEN");
    }

    async fn two_plugins_adding_the_same_type_or_field_are_refused_at_enable_time(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        install(&app, "same-type", "0.1.0", "type Touched { count: Int } extend type Query { other: Touched }").await;
        install(&app, "same-field", "0.1.0", "extend type Mutation { touch(key: String!): JSON }").await;
        install(&app, "kernel-field", "0.1.0", "extend type Query { viewer: JSON }").await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        for (name, needle, other) in [
            ("same-type", "Touched", "the plugin probe"),
            ("same-field", "Mutation.touch", "the plugin probe"),
            ("kernel-field", "Query.viewer", "the kernel"),
        ] {
            let r = enable(&app, &owner, name, json!({})).await;
            assert_eq!(code(&r), "CONFLICT", "{name}: {r}");
            let msg = r["errors"][0]["message"].as_str().unwrap();
            assert!(msg.contains(needle) && msg.contains(other) && msg.contains(name), "{name}: {msg}");
        }
        let list = app.gql(Some(&owner), "{ plugins { name } }", json!({})).await;
        assert_eq!(ok(&list)["plugins"], json!([{"name": "probe"}]));
    }

    async fn disabling_keeps_the_data_and_upgrading_keeps_the_grants(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        install(&app, "probe", "0.2.0", SDL).await;
        ok(&enable(&app, &owner, "probe", json!({"version": "0.1.0"})).await);
        ok(&app.gql(Some(&owner), "mutation { touch(key: \"k\") { count } }", json!({})).await);
        let r = app.gql(Some(&owner), "mutation { disablePlugin(name: \"probe\") { enabled disabledAt } }", json!({})).await;
        assert_eq!(ok(&r)["disablePlugin"]["enabled"], false);
        let r = app.gql(Some(&owner), "mutation { touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "a disabled plugin's fields are gone: {r}");
        ok(&enable(&app, &owner, "probe", json!({"version": "0.1.0"})).await);
        let r = app.gql(Some(&owner), "mutation { touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(ok(&r)["touch"]["count"], 2, "the counter survived the disable");
        let r = app.gql(Some(&owner), "mutation { upgradePlugin(name: \"probe\", version: \"0.2.0\") { version capabilities } }", json!({})).await;
        assert_eq!(ok(&r)["upgradePlugin"], json!({"version": "0.2.0", "capabilities": ["records", "events", "counters"]}));
        let r = app.gql(Some(&owner), "mutation { upgradePlugin(name: \"probe\", version: \"9.9.9\") { version } }", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        // A version that needs other grants gets them with the upgrade;
        // grants it does not request, or hosts without capabilities, are
        // refused and change nothing.
        let r = app.gql(Some(&owner), "mutation { upgradePlugin(name: \"probe\", version: \"0.1.0\", capabilities: [\"records\", \"counters\"]) { version capabilities } }", json!({})).await;
        assert_eq!(ok(&r)["upgradePlugin"], json!({"version": "0.1.0", "capabilities": ["records", "counters"]}));
        let r = app.gql(Some(&owner), "mutation { upgradePlugin(name: \"probe\", version: \"0.2.0\", capabilities: [\"records\", \"org-write\"]) { version } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        let r = app.gql(Some(&owner), "mutation { upgradePlugin(name: \"probe\", version: \"0.2.0\", httpHosts: [\"example.com\"]) { version } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        let r = app.gql(Some(&owner), "{ plugins { name version capabilities } }", json!({})).await;
        assert_eq!(ok(&r)["plugins"], json!([{"name": "probe", "version": "0.1.0", "capabilities": ["records", "counters"]}]));
        let r = enable(&app, &owner, "probe", json!({})).await;
        assert_eq!(code(&r), "CONFLICT", "already enabled");
    }

    async fn public_operations_answer_without_a_key_at_the_tenants_url(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let (status, body) = public(&app, "acme", "{ caller }").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ok(&body)["caller"]["caller"], Value::Null, "a public call has no caller");
        assert_eq!(ok(&body)["caller"]["client"], "127.0.0.1");
        let (_, body) = public(&app, "acme", "mutation { touch(key: \"k\") { count } }").await;
        assert_eq!(code(&body), "UNAUTHENTICATED");
        let (_, body) = public(&app, "acme", "{ apiKeys { id } }").await;
        assert_eq!(code(&body), "UNAUTHENTICATED");
        let (status, body) = public(&app, "nobody", "{ caller }").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(code(&body), "NOT_FOUND");
    }

    async fn plugin_failures_reach_the_caller_as_codes_and_roll_back(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        install(&app, "liar", "0.1.0", "extend type Query { caller: Int }").await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let r = app.gql(Some(&owner), "mutation { crash }", json!({})).await;
        assert_eq!(code(&r), "PLUGIN_FAILED");
        assert!(!r.to_string().contains("on purpose"), "plugin internals leaked: {r}");
        let r = app.gql(Some(&owner), "mutation { put(key: \"k\", data: {a: 1}, then: \"error\") }", json!({})).await;
        assert_eq!(code(&r), "CHANGED_MY_MIND");
        let r = app.gql(Some(&owner), "{ big(bytes: 2000000) }", json!({})).await;
        assert_eq!(code(&r), "PLUGIN_OUTPUT_TOO_LARGE");
        let r = app.gql(Some(&owner), "{ events { edges { cursor } } }", json!({})).await;
        assert_eq!(ok(&r)["events"]["edges"], json!([]), "failed calls left events behind");
        let r = app.gql(Some(&owner), "mutation { disablePlugin(name: \"probe\") { enabled } }", json!({})).await;
        ok(&r);
        ok(&enable(&app, &owner, "liar", json!({})).await);
        let (r, good) = tokio::join!(
            app.gql(Some(&owner), "{ caller }", json!({})),
            app.gql(Some(&owner), "{ viewer { roles } }", json!({}))
        );
        assert_eq!(code(&r), "PLUGIN_INVALID_OUTPUT");
        ok(&good);
    }

    async fn plugin_operations_follow_roles_and_scopes(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let analyst = app.key(&owner, &["analyst"], &[]).await;
        ok(&app.gql(Some(&analyst), "{ caller }", json!({})).await);
        assert_eq!(code(&app.gql(Some(&analyst), "mutation { touch(key: \"k\") { count } }", json!({})).await), "FORBIDDEN");
        let erp = app.key(&owner, &["integration"], &["plugin.probe:read"]).await;
        ok(&app.gql(Some(&erp), "{ caller }", json!({})).await);
        assert_eq!(code(&app.gql(Some(&erp), "mutation { touch(key: \"k\") { count } }", json!({})).await), "FORBIDDEN");
    }
}

on_both_backends! {
    async fn an_appended_event_reaches_async_subscribers_through_the_outbox_and_dead_letters_replay(kind) {
        use keel_host::outbox::{Dispatcher, DispatcherConfig};
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let mut m = manifest("listener", "0.1.0", SDL);
        m.events.subscribes = vec![keel_host::manifest::Subscription { event_type: "probe.touched".into(), mode: keel_host::manifest::DeliveryMode::Async }];
        // Here `probe.touched` stands for an ERP's type, which no plugin
        // owns: a key may append it.
        m.events.emits.retain(|t| t != "probe.touched");
        m.events.schemas.remove("probe.touched");
        app.plugins.install(m, &probe_wasm()).await.unwrap();
        ok(&enable(&app, &owner, "listener", json!({})).await);
        let append = "mutation($k: String!) { appendEvent(input: {type: \"probe.touched\", payload: {key: $k}, idempotencyKey: $k}) { id } }";
        ok(&app.gql(Some(&owner), append, json!({"k": "gated-erp"})).await);
        let config = DispatcherConfig { backoff: std::time::Duration::ZERO, max_attempts: 1, ..Default::default() };
        let d = Dispatcher::new(app.db.db.clone(), app.plugins.clone(), config);
        assert_eq!(d.deliver_due().await.unwrap(), 1);
        let dead = app.gql(Some(&owner), "{ deadLetters { id subscriber eventType attempts lastError } }", json!({})).await;
        let dead = ok(&dead)["deadLetters"].as_array().unwrap().clone();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["subscriber"], "listener");
        assert!(dead[0]["lastError"].as_str().unwrap().contains("GATE_CLOSED"));
        // Open the gate, replay, deliver.
        ok(&app.gql(Some(&owner), "mutation { put(key: \"gate\", data: {}) }", json!({})).await);
        let r = app.gql(Some(&owner), "mutation($id: ID!) { replayDeadLetter(id: $id) }", json!({"id": dead[0]["id"]})).await;
        assert_eq!(ok(&r)["replayDeadLetter"], true);
        assert_eq!(d.deliver_due().await.unwrap(), 1);
        let dead = app.gql(Some(&owner), "{ deadLetters { id } }", json!({})).await;
        assert_eq!(ok(&dead)["deadLetters"], json!([]));
        let seen = keel_core::counters::get(&app.db.db, &app.db_tenant("acme").await, "listener", "seen:gated-erp").await.unwrap();
        assert_eq!(seen, 1, "the subscriber handled the event once");
    }
}

on_both_backends! {
    async fn plugin_secrets_are_kept_only_for_installed_plugins_and_sealed(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        let set = "mutation($p: String!, $n: String!, $v: String!) { setPluginSecret(plugin: $p, name: $n, value: $v) }";
        let r = app.gql(Some(&owner), set, json!({"p": "nosuch", "n": "api_key", "v": "s3cret-value"})).await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
        let r = app.gql(Some(&owner), set, json!({"p": "probe", "n": "keel.consumer_sign_in", "v": "wechat_openid"})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "the kernel's reserved names: {r}");
        let r = app.gql(Some(&owner), set, json!({"p": "probe", "n": "api_key", "v": "s3cret-value"})).await;
        assert_eq!(ok(&r)["setPluginSecret"], true);
        let rows: Vec<String> = sqlx::query_scalar("SELECT value FROM plugin_secrets")
            .fetch_all(app.db.db.reader())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "only the installed plugin's secret is stored");
        assert!(!rows[0].contains("s3cret-value") && rows[0].starts_with("keel-sealed:"), "{rows:?}");
    }
}
