//! The organisation tree over GraphQL: batch upserts, lookups, listings,
//! regions at a point, staff, and what bad input and other tenants get.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{TestApp, code, field, ok};

pub(crate) const UPSERT: &str = "mutation($n: [OrgNodeInput!]!) { upsertOrgNodes(nodes: $n) { changed created updated unchanged nodes { change node { id code } } } }";
const NODE: &str = "query($id: ID, $code: String, $x: ExternalIdInput) { orgNode(id: $id, code: $code, externalId: $x) { id code kind depth parentId parent { code } status address location { lat lng } boundary attributes externalIds { system id } } }";
const NODES: &str = "query($p: ID, $u: ID, $k: OrgNodeKind, $f: Int, $a: String) { orgNodes(parent: $p, under: $u, kind: $k, first: $f, after: $a) { edges { cursor node { code } } pageInfo { hasNextPage endCursor } } }";
const STAFF_ADD: &str = "mutation($i: OrgStaffInput!) { addOrgStaff(input: $i) { personId nodeId role node { code } } }";
const STAFF_REMOVE: &str = "mutation($i: OrgStaffInput!) { removeOrgStaff(input: $i) }";

/// A brand's tree (see keel-core's org tests): HQ; Guangdong (with a
/// boundary) > Shenzhen > a distributor > a store; Beijing > a store.
pub(crate) fn tree() -> Value {
    json!([
        {"code": "HQ", "kind": "HEADQUARTERS", "name": "Acme China"},
        {"code": "CN-GD", "kind": "REGION", "name": "Guangdong", "parentCode": "HQ",
         "boundary": {"type": "Polygon", "coordinates": [[[110, 20], [117, 20], [117, 25], [110, 25], [110, 20]]]}},
        {"code": "CN-GD-SZ", "kind": "REGION", "name": "Shenzhen", "parentCode": "CN-GD",
         "boundary": {"type": "Polygon", "coordinates": [[[113.5, 22], [114.5, 22], [114.5, 23], [113.5, 23], [113.5, 22]]]}},
        {"code": "D-SZ-1", "kind": "DISTRIBUTOR", "name": "Shenzhen Trading", "parentCode": "CN-GD-SZ",
         "externalIds": [{"system": "kingdee", "id": "C-0001"}]},
        {"code": "S-SZ-1", "kind": "STORE", "name": "Futian store", "parentCode": "D-SZ-1",
         "address": "1 Futian Rd", "location": {"lat": 22.54, "lng": 114.05}, "attributes": {"tier": "A"}},
        {"code": "CN-BJ", "kind": "REGION", "name": "Beijing", "parentCode": "HQ"},
        {"code": "S-BJ-1", "kind": "STORE", "name": "Chaoyang store", "parentCode": "CN-BJ"}
    ])
}

/// The node `code` as `key` sees it (null when it cannot).
pub(crate) async fn node(app: &TestApp, key: &str, code: &str) -> Value {
    let r = app.gql(Some(key), NODE, json!({"code": code})).await;
    ok(&r)["orgNode"].clone()
}

pub(crate) async fn id_of(app: &TestApp, key: &str, code: &str) -> String {
    node(app, key, code).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn codes(r: &Value) -> Vec<String> {
    ok(r)["orgNodes"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["code"].as_str().unwrap().to_owned())
        .collect()
}

on_both_backends! {
    async fn an_erp_builds_the_tree_in_one_batch_and_a_retry_changes_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let erp = app.key(&owner, &["integration"], &["org:write", "org:read", "events:read"]).await;
        let r = app.gql(Some(&erp), UPSERT, json!({"n": tree()})).await;
        let p = &ok(&r)["upsertOrgNodes"];
        assert_eq!((p["changed"].as_i64(), p["created"].as_i64()), (Some(7), Some(7)));
        assert_eq!(p["nodes"][4]["change"], "CREATED");
        let r = app.gql(Some(&erp), UPSERT, json!({"n": tree()})).await;
        let p = &ok(&r)["upsertOrgNodes"];
        assert_eq!((p["changed"].as_i64(), p["unchanged"].as_i64()), (Some(0), Some(7)));
        // Seven events, each a kernel event, none for the retry.
        let r = app.gql(Some(&erp), "{ events(filter: {types: [\"org.node_created\", \"org.node_updated\"]}) { edges { node { type producer payload } } } }", json!({})).await;
        let edges = ok(&r)["events"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 7);
        assert_eq!(edges[0]["node"]["producer"], "kernel");
        assert_eq!(edges[4]["node"]["payload"]["node"]["code"], "S-SZ-1");
        // Lookups by code, id and external id.
        let store = node(&app, &erp, "S-SZ-1").await;
        assert_eq!(store["kind"], "STORE");
        assert_eq!(store["depth"], 4);
        assert_eq!(store["parent"]["code"], "D-SZ-1");
        assert_eq!(store["location"], json!({"lat": 22.54, "lng": 114.05}));
        assert_eq!(store["attributes"], json!({"tier": "A"}));
        let r = app.gql(Some(&erp), NODE, json!({"id": store["id"]})).await;
        assert_eq!(ok(&r)["orgNode"]["code"], "S-SZ-1");
        let r = app.gql(Some(&erp), NODE, json!({"x": {"system": "kingdee", "id": "C-0001"}})).await;
        assert_eq!(ok(&r)["orgNode"]["code"], "D-SZ-1");
        assert_eq!(node(&app, &erp, "NOPE").await, Value::Null);
        // Listings: roots, children, everything under a node by kind, pages.
        let r = app.gql(Some(&erp), NODES, json!({})).await;
        assert_eq!(codes(&r), ["HQ"]);
        let hq = id_of(&app, &erp, "HQ").await;
        let r = app.gql(Some(&erp), NODES, json!({"p": hq, "f": 1})).await;
        assert_eq!(codes(&r), ["CN-BJ"]);
        assert_eq!(ok(&r)["orgNodes"]["pageInfo"], json!({"hasNextPage": true, "endCursor": "CN-BJ"}));
        let r = app.gql(Some(&erp), NODES, json!({"p": hq, "a": "CN-BJ"})).await;
        assert_eq!(codes(&r), ["CN-GD"]);
        let r = app.gql(Some(&erp), NODES, json!({"u": hq, "k": "STORE"})).await;
        assert_eq!(codes(&r), ["S-BJ-1", "S-SZ-1"]);
        let r = app.gql(Some(&erp), "query($id: ID!) { orgAncestors(id: $id) { code } }", json!({"id": store["id"]})).await;
        assert_eq!(ok(&r)["orgAncestors"], json!([{"code": "HQ"}, {"code": "CN-GD"}, {"code": "CN-GD-SZ"}, {"code": "D-SZ-1"}]));
        let r = app.gql(Some(&erp), "{ regionsAt(lat: 22.54, lng: 114.05) { code } }", json!({})).await;
        assert_eq!(ok(&r)["regionsAt"], json!([{"code": "CN-GD-SZ"}, {"code": "CN-GD"}]));
    }

    async fn a_bad_batch_is_refused_naming_the_item_and_writes_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let good = json!({"code": "S-NEW", "kind": "STORE", "name": "New", "parentCode": "CN-GD"});
        for (bad, at) in [
            (json!({"code": "X", "kind": "STORE", "name": "x", "parentCode": "NOPE"}), "nodes[1].parentCode"),
            (json!({"code": "CN-GD", "kind": "REGION", "name": "GD", "parentCode": "S-SZ-1"}), "nodes[1].parentCode"),
            (json!({"code": "R", "kind": "REGION", "name": "r", "parentCode": "S-BJ-1"}), "nodes[1].parentCode"),
            (json!({"code": "X", "kind": "STORE", "name": "bell\u{7}"}), "nodes[1].name"),
            (json!({"code": "X", "kind": "STORE", "name": "x".repeat(1_000_000)}), "nodes[1].name"),
            (json!({"code": "X", "kind": "STORE", "name": "x", "boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}), "nodes[1].boundary"),
            (json!({"code": "X", "kind": "REGION", "name": "x", "boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}), "nodes[1].boundary.coordinates[0]"),
            (json!({"code": "X", "kind": "STORE", "name": "x", "location": {"lat": 0, "lng": 200}}), "nodes[1].location.lng"),
            (json!({"code": "X", "kind": "STORE", "name": "x", "attributes": "red"}), "nodes[1].attributes"),
            (json!({"code": "S-NEW", "kind": "STORE", "name": "twice"}), "nodes[1].code"),
        ] {
            let r = app.gql(Some(&owner), UPSERT, json!({"n": [good, bad]})).await;
            assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", at), "{r}");
        }
        let r = app.gql(Some(&owner), UPSERT, json!({"n": [good, {"code": "X", "kind": "STORE", "name": "x",
            "externalIds": [{"system": "kingdee", "id": "C-0001"}]}]})).await;
        assert_eq!(code(&r), "CONFLICT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("nodes[1]"), "{r}");
        // NUL characters never get past admission.
        let r = app.gql(Some(&owner), UPSERT, json!({"n": [good, {"code": "X", "kind": "STORE", "name": "nul\u{0}"}]})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let many: Vec<Value> = (0..1001).map(|i| json!({"code": format!("S{i}"), "kind": "STORE", "name": "s"})).collect();
        let r = app.gql(Some(&owner), UPSERT, json!({"n": many})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "nodes"));
        assert_eq!(node(&app, &owner, "S-NEW").await, Value::Null, "nothing of a refused batch");
        // A lookup takes exactly one key; `parent` and `under` exclude each other.
        let r = app.gql(Some(&owner), "{ orgNode(code: \"HQ\", id: \"x\") { id } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = app.gql(Some(&owner), "{ orgNodes(parent: \"a\", under: \"b\") { edges { cursor } } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = app.gql(Some(&owner), "{ orgNodes(first: 201) { edges { cursor } } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
    }

    async fn staff_join_and_leave_nodes_once(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let store = id_of(&app, &owner, "S-SZ-1").await;
        let ann = app.person(&owner, "phone", "+8613800000001").await;
        let input = json!({"i": {"nodeId": store, "personId": ann, "role": "guide"}});
        let r = app.gql(Some(&owner), STAFF_ADD, input.clone()).await;
        assert_eq!(ok(&r)["addOrgStaff"]["node"]["code"], "S-SZ-1");
        ok(&app.gql(Some(&owner), STAFF_ADD, input.clone()).await);
        let r = app.gql(Some(&owner), "query($n: ID) { orgStaff(nodeId: $n) { role person { id } } }", json!({"n": store})).await;
        assert_eq!(ok(&r)["orgStaff"], json!([{"role": "guide", "person": {"id": ann}}]));
        let r = app.gql(Some(&owner), "query($p: ID) { orgStaff(personId: $p) { node { code } } }", json!({"p": ann})).await;
        assert_eq!(ok(&r)["orgStaff"], json!([{"node": {"code": "S-SZ-1"}}]));
        let r = app.gql(Some(&owner), "query($c: String) { orgNode(code: $c) { staff { role } } }", json!({"c": "S-SZ-1"})).await;
        assert_eq!(ok(&r)["orgNode"]["staff"], json!([{"role": "guide"}]));
        assert_eq!(ok(&app.gql(Some(&owner), STAFF_REMOVE, input.clone()).await)["removeOrgStaff"], true);
        assert_eq!(ok(&app.gql(Some(&owner), STAFF_REMOVE, input.clone()).await)["removeOrgStaff"], false);
        let r = app.gql(Some(&owner), "{ events(filter: {types: [\"org.staff_added\", \"org.staff_removed\"]}) { edges { node { type personId } } } }", json!({})).await;
        let types: Vec<&str> = ok(&r)["events"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["org.staff_added", "org.staff_removed"]);
        // Bad role, unknown person, unknown node, both or neither key.
        let r = app.gql(Some(&owner), STAFF_ADD, json!({"i": {"nodeId": store, "personId": ann, "role": "Chief Guide"}})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "role"));
        let r = app.gql(Some(&owner), STAFF_ADD, json!({"i": {"nodeId": store, "personId": "nobody", "role": "guide"}})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = app.gql(Some(&owner), STAFF_ADD, json!({"i": {"nodeId": "org_nope", "personId": ann, "role": "guide"}})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = app.gql(Some(&owner), "{ orgStaff { role } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
    }

    async fn roles_and_tenants_bound_the_tree(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"n": tree()})).await);
        let store = id_of(&app, &owner, "S-SZ-1").await;
        // An analyst and a marketer read; neither writes.
        for role in ["analyst", "marketer"] {
            let k = app.key(&owner, &[role], &[]).await;
            assert_eq!(node(&app, &k, "S-SZ-1").await["code"], "S-SZ-1");
            let r = app.gql(Some(&k), UPSERT, json!({"n": [{"code": "X", "kind": "STORE", "name": "x"}]})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{role}");
        }
        // An integration key needs an org scope.
        let erp = app.key(&owner, &["integration"], &["events:read"]).await;
        assert_eq!(code(&app.gql(Some(&erp), NODES, json!({})).await), "FORBIDDEN");
        // Another tenant: the same ids do not exist there.
        let (_, other) = app.tenant("globex").await;
        let r = app.gql(Some(&other), NODE, json!({"id": store})).await;
        assert_eq!(ok(&r)["orgNode"], Value::Null);
        let r = app.gql(Some(&other), "query($id: ID!) { orgAncestors(id: $id) { code } }", json!({"id": store})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = app.gql(Some(&other), NODES, json!({"u": store})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let p = app.person(&other, "phone", "+8613800000009").await;
        let r = app.gql(Some(&other), STAFF_ADD, json!({"i": {"nodeId": store, "personId": p, "role": "guide"}})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = app.gql(Some(&other), UPSERT, json!({"n": tree()})).await;
        assert_eq!(ok(&r)["upsertOrgNodes"]["created"], 7);
    }
}
