//! "HQ sets the rules, regions spend": keys and operators limited to an org
//! node, over real HTTP — refused outside their node on kernel operations,
//! allowed inside, never handing out a wider credential, and calling plugin
//! operations with their scope.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::org::{UPSERT, id_of, node, tree};
use crate::plugins::{enable, install, manifest, probe_wasm};
use crate::support::{TestApp, code, ok};

const CREATE_KEY: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id orgScope } secret } }";
const CREATE_OPERATOR: &str =
    "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id orgScope } }";
const PASSWORD: &str = "correct horse battery";

/// The probe fixture's operations this file calls (`caller` is public in
/// its manifest): `context` answers the whole call context it was given
/// (contract 0.2).
const PROBE_SDL: &str = r#"
type Touched { found: Boolean!, count: Int! }
extend type Query { caller: JSON, context: JSON }
extend type Mutation { touch(key: String!): Touched! }
"#;

/// Creates a key with `roles` limited to the node `scope` (an id; none for
/// the whole tenant) as `creator`; the response.
async fn create_key(app: &TestApp, creator: &str, roles: &[&str], scope: Option<&str>) -> Value {
    let i = json!({"name": "regional", "roles": roles, "orgScope": scope});
    app.gql(Some(creator), CREATE_KEY, json!({"i": i})).await
}

fn secret(r: &Value) -> String {
    ok(r)["createApiKey"]["secret"].as_str().unwrap().to_owned()
}

/// The message of the response's first error.
fn message(r: &Value) -> &str {
    r["errors"][0]["message"].as_str().unwrap_or_default()
}

on_both_backends! {
    async fn a_scoped_key_reads_and_writes_only_under_its_node(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let gd = id_of(&app, &owner, "CN-GD").await;
        let bj_store = id_of(&app, &owner, "S-BJ-1").await;
        let r = create_key(&app, &owner, &["admin"], Some(&gd)).await;
        assert_eq!(ok(&r)["createApiKey"]["apiKey"]["orgScope"], json!(gd));
        let gd_key = secret(&r);
        let v = app.gql(Some(&gd_key), "{ viewer { orgScope } }", json!({})).await;
        assert_eq!(ok(&v)["viewer"]["orgScope"], json!(gd));
        // Reads: its subtree exists, the rest does not.
        assert_eq!(node(&app, &gd_key, "S-SZ-1").await["code"], "S-SZ-1");
        assert_eq!(node(&app, &gd_key, "S-BJ-1").await, Value::Null);
        assert_eq!(node(&app, &gd_key, "HQ").await, Value::Null);
        assert_eq!(node(&app, &gd_key, "CN-GD").await["parent"], Value::Null, "HQ is above the scope");
        let r = app.gql(Some(&gd_key), "{ orgNodes { edges { node { code } } } }", json!({})).await;
        assert_eq!(ok(&r)["orgNodes"]["edges"], json!([{"node": {"code": "CN-GD"}}]));
        let r = app.gql(Some(&gd_key), "query($id: ID!) { orgAncestors(id: $id) { code } }", json!({"id": bj_store})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = app.gql(Some(&gd_key), "query($n: ID) { orgStaff(nodeId: $n) { role } }", json!({"n": bj_store})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        // Writes: inside fine; under another region FORBIDDEN, naming it.
        let inside = json!([{"code": "S-GZ-1", "kind": "STORE", "name": "Tianhe", "parentCode": "CN-GD"}]);
        assert_eq!(ok(&app.gql(Some(&gd_key), UPSERT, json!({"n": inside})).await)["upsertOrgNodes"]["created"], 1);
        let outside = json!([{"code": "S-BJ-2", "kind": "STORE", "name": "Haidian", "parentCode": "CN-BJ"}]);
        let r = app.gql(Some(&gd_key), UPSERT, json!({"n": outside})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        assert!(message(&r).contains("nodes[0]") && message(&r).contains("CN-BJ") && message(&r).contains("CN-GD"), "{r}");
        let r = app.gql(Some(&gd_key), UPSERT, json!({"n": [{"code": "S-BJ-1", "kind": "STORE", "name": "mine now"}]})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let p = app.person(&owner, "phone", "+8613800000001").await;
        let r = app.gql(Some(&gd_key), "mutation($i: OrgStaffInput!) { addOrgStaff(input: $i) { role } }",
            json!({"i": {"nodeId": bj_store, "personId": p, "role": "guide"}})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        assert!(message(&r).contains("S-BJ-1"), "{r}");
        assert_eq!(node(&app, &owner, "S-BJ-2").await, Value::Null);
    }

    async fn a_scoped_principal_is_refused_tenant_wide_kernel_operations(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let gd = id_of(&app, &owner, "CN-GD").await;
        let gd_key = secret(&create_key(&app, &owner, &["admin"], Some(&gd)).await);
        for q in [
            "{ person(id: \"x\") { id } }",
            "{ events { edges { cursor } } }",
            "mutation { appendEvent(input: {type: \"a.b\", payload: {}}) { id } }",
            "mutation { identify(input: {identifiers: [{kind: \"phone\", value: \"+8613800000001\"}]}) { created } }",
            "{ counter(key: \"k\") { value } }",
            "{ plugins { name } }",
            "mutation { upsertProducts(products: [{code: \"P\", name: \"p\", unit: \"bottle\"}]) { changed } }",
        ] {
            let r = app.gql(Some(&gd_key), q, json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{q}: {r}");
            assert!(message(&r).contains("limited to org node") && message(&r).contains("tenant-wide"), "{q}: {r}");
        }
        // The catalogue is brand-wide master data: readable.
        let r = app.gql(Some(&gd_key), "{ products { edges { cursor } } }", json!({})).await;
        assert_eq!(ok(&r)["products"]["edges"], json!([]));
    }

    async fn a_scoped_principal_hands_out_only_its_node_or_below(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let (gd, sz, bj) = (id_of(&app, &owner, "CN-GD").await, id_of(&app, &owner, "CN-GD-SZ").await, id_of(&app, &owner, "CN-BJ").await);
        let gd_key = secret(&create_key(&app, &owner, &["admin"], Some(&gd)).await);
        // Unscoped, another region, or owner rights: FORBIDDEN.
        for (scope, roles) in [(None, vec!["marketer"]), (Some(bj.as_str()), vec!["marketer"]), (Some(sz.as_str()), vec!["owner"])] {
            let r = create_key(&app, &gd_key, &roles, scope).await;
            assert_eq!(code(&r), "FORBIDDEN", "{scope:?} {roles:?}: {r}");
        }
        let r = create_key(&app, &gd_key, &["marketer"], Some("org_nope")).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let sz_key = create_key(&app, &gd_key, &["marketer"], Some(&sz)).await;
        let sz_key_id = ok(&sz_key)["createApiKey"]["apiKey"]["id"].clone();
        // Its key list is its subtree's keys; HQ's keys do not exist for it.
        let r = app.gql(Some(&gd_key), "{ apiKeys { id orgScope } }", json!({})).await;
        let scopes: Vec<&Value> = ok(&r)["apiKeys"].as_array().unwrap().iter().map(|k| &k["orgScope"]).collect();
        assert_eq!(scopes, [&json!(sz), &json!(gd)]);
        let owner_key_id = ok(&app.gql(Some(&owner), "{ apiKeys { id orgScope } }", json!({})).await)["apiKeys"]
            .as_array().unwrap().iter().find(|k| k["orgScope"].is_null()).unwrap()["id"].clone();
        let r = app.gql(Some(&gd_key), "mutation($id: ID!) { revokeApiKey(id: $id) { id } }", json!({"id": owner_key_id})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = app.gql(Some(&gd_key), "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", json!({"id": sz_key_id})).await;
        assert!(ok(&r)["revokeApiKey"]["revokedAt"].is_string());
        // Operators: a scoped operator, created by the scoped key, logs in
        // and is limited like its creator.
        let op = |scope: Option<&str>| json!({"i": {"email": "gd@acme.example", "password": PASSWORD, "roles": ["admin"], "orgScope": scope}});
        assert_eq!(code(&app.gql(Some(&gd_key), CREATE_OPERATOR, op(None)).await), "FORBIDDEN");
        assert_eq!(code(&app.gql(Some(&gd_key), CREATE_OPERATOR, op(Some(&bj))).await), "FORBIDDEN");
        let r = app.gql(Some(&gd_key), CREATE_OPERATOR, op(Some(&gd))).await;
        assert_eq!(ok(&r)["createOperator"]["orgScope"], json!(gd));
        let r = app.gql(None, "mutation($i: LoginInput!) { login(input: $i) { token } }",
            json!({"i": {"tenant": "acme", "email": "gd@acme.example", "password": PASSWORD}})).await;
        let session = ok(&r)["login"]["token"].as_str().unwrap().to_owned();
        assert_eq!(node(&app, &session, "S-BJ-1").await, Value::Null);
        assert_eq!(node(&app, &session, "S-SZ-1").await["code"], "S-SZ-1");
        let r = app.gql(Some(&session), UPSERT, json!({"n": [{"code": "S-X", "kind": "STORE", "name": "x", "parentCode": "CN-BJ"}]})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = app.gql(Some(&session), "{ persons: person(id: \"x\") { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = app.gql(Some(&session), "{ operators { email orgScope } }", json!({})).await;
        assert_eq!(ok(&r)["operators"], json!([{"email": "gd@acme.example", "orgScope": gd}]));
    }

    async fn a_scoped_principal_calls_plugin_operations_with_its_scope(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let mut m = manifest("probe", "0.1.0", PROBE_SDL);
        m.enforces_org_scope = true;
        app.plugins.install(m, &probe_wasm()).await.unwrap();
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let gd = id_of(&app, &owner, "CN-GD").await;
        let gd_key = secret(&create_key(&app, &owner, &["marketer"], Some(&gd)).await);
        // Plugin operations stay open to a scoped principal: the plugin gets
        // the scope in its call context and enforces it on its own data.
        let r = app.gql(Some(&gd_key), "mutation { touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(ok(&r)["touch"]["count"], 1);
        let r = app.gql(Some(&gd_key), "{ context }", json!({})).await;
        let context = &ok(&r)["context"];
        assert!(context["caller"].as_str().unwrap().starts_with("key:"), "{context}");
        assert_eq!(context["scope"], json!(gd), "the call context carries the caller's org node");
        // The whole tenant's caller has no scope.
        let r = app.gql(Some(&owner), "{ context }", json!({})).await;
        assert_eq!(ok(&r)["context"]["scope"], Value::Null);
        // Plugin administration stays tenant-wide.
        let r = enable(&app, &gd_key, "probe", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
    }

    async fn a_scoped_principal_cannot_call_a_plugin_that_does_not_enforce_scopes(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        // The probe's manifest does not say `enforces_org_scope`: it would
        // touch the whole tenant's data for a caller limited to CN-GD.
        install(&app, "probe", "0.1.0", PROBE_SDL).await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let gd = id_of(&app, &owner, "CN-GD").await;
        let gd_key = secret(&create_key(&app, &owner, &["admin"], Some(&gd)).await);
        let r = app.gql(Some(&gd_key), "mutation { touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        assert!(message(&r).contains("does not enforce org scopes"), "{r}");
        // Nothing ran: the owner's first touch is the first.
        let r = app.gql(Some(&owner), "mutation { touch(key: \"k\") { count } }", json!({})).await;
        assert_eq!(ok(&r)["touch"]["count"], 1);
        // Its downloads are refused the same way.
        let res = app
            .http
            .get(app.url("/files/probe/lines?input=%7B%7D"))
            .bearer_auth(&gd_key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
    }
}
