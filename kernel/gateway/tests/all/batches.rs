//! Batch writes for ingest over real HTTP: `appendEvents` and
//! `identifyPersons` — in order, idempotent per item, all or nothing,
//! with the same ownership rules and permissions as their single forms.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{TestApp, code, field, ok};

const APPEND: &str = "mutation($e: [AppendEventInput!]!) { appendEvents(events: $e) { id type personId payload idempotencyKey producer } }";
const IDENTIFY: &str = "mutation($b: [IdentifyInput!]!) { identifyPersons(batch: $b) { person { id identifiers { kind value } attributes } created mergedPersonIds } }";
const COUNT: &str = "{ events(first: 100) { edges { node { id } } } }";

async fn event_count(app: &TestApp, key: &str) -> usize {
    let r = app.gql(Some(key), COUNT, json!({})).await;
    ok(&r)["events"]["edges"].as_array().unwrap().len()
}

fn ids(r: &Value, root: &str) -> Vec<String> {
    ok(r)[root]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = if root == "appendEvents" {
                &e["id"]
            } else {
                &e["person"]["id"]
            };
            id.as_str().unwrap().to_owned()
        })
        .collect()
}

on_both_backends! {
    async fn a_retried_event_batch_returns_the_same_events_and_stores_nothing_twice(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let erp = app.key(&owner, &["integration"], &["events:write"]).await;
        let person = app.person(&owner, "phone", "13800000001").await;
        let batch: Vec<Value> = (0..50).map(|i| json!({
            "type": "order.paid", "personId": if i % 2 == 0 { Value::String(person.clone()) } else { Value::Null },
            "payload": {"n": i}, "idempotencyKey": format!("order-{i}"),
        })).collect();
        let first = app.gql(Some(&erp), APPEND, json!({"e": batch})).await;
        let events = ok(&first)["appendEvents"].as_array().unwrap().clone();
        assert_eq!(events.len(), 50);
        assert_eq!(events[7]["payload"], json!({"n": 7}));
        assert_eq!(events[8]["personId"], json!(person));
        assert!(events[0]["producer"].as_str().unwrap().starts_with("key:"));
        let retry = app.gql(Some(&erp), APPEND, json!({"e": batch})).await;
        assert_eq!(ids(&retry, "appendEvents"), ids(&first, "appendEvents"));
        assert_eq!(event_count(&app, &owner).await, 50);
        // A batch mixing stored keys and new ones stores only the new.
        let mixed = json!([batch[3], {"type": "order.paid", "payload": {}, "idempotencyKey": "order-new"}]);
        let r = app.gql(Some(&erp), APPEND, json!({"e": mixed})).await;
        assert_eq!(ok(&r)["appendEvents"][0]["id"], events[3]["id"]);
        assert_eq!(event_count(&app, &owner).await, 51);
    }

    async fn a_bad_event_refuses_the_batch_naming_its_index(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let fine = json!({"type": "order.paid", "payload": {}});
        let cases = [
            (json!([fine, fine, {"type": "Order Paid", "payload": {}}]), "BAD_USER_INPUT", Some("events[2].type")),
            (json!([fine, {"type": "order.paid", "payload": [1]}]), "BAD_USER_INPUT", Some("events[1].payload")),
            (json!([fine, {"type": "order.paid", "payload": {}, "personId": "nobody"}]), "BAD_USER_INPUT", Some("events[1].personId")),
            (json!([fine, {"type": "order.paid", "payload": {}, "idempotencyKey": ""}]), "BAD_USER_INPUT", Some("events[1].idempotencyKey")),
            (json!([fine, {"type": "person.merged", "payload": {}}]), "FORBIDDEN", None),
            (json!([fine, {"type": "product.created", "payload": {}}]), "FORBIDDEN", None),
        ];
        for (batch, want, f) in cases {
            let r = app.gql(Some(&owner), APPEND, json!({"e": batch})).await;
            assert_eq!(code(&r), want, "{batch}: {r}");
            if let Some(f) = f {
                assert_eq!(field(&r), f, "{r}");
            } else {
                assert!(r["errors"][0]["message"].as_str().unwrap().starts_with("events[1]: "), "{r}");
            }
        }
        let many: Vec<Value> = (0..1001).map(|_| fine.clone()).collect();
        let r = app.gql(Some(&owner), APPEND, json!({"e": many})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "events"), "{r}");
        assert_eq!(event_count(&app, &owner).await, 0, "nothing was written");
        // The same permissions as appendEvent.
        let analyst = app.key(&owner, &["analyst"], &[]).await;
        let reader = app.key(&owner, &["integration"], &["events:read"]).await;
        for key in [&analyst, &reader] {
            let r = app.gql(Some(key), APPEND, json!({"e": [fine]})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{r}");
        }
        let r = app.gql(None, APPEND, json!({"e": [fine]})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
        assert_eq!(event_count(&app, &owner).await, 0);
        // Another tenant's person is nobody here.
        let (_, other) = app.tenant("bravo").await;
        let theirs = app.person(&other, "phone", "13800000009").await;
        let r = app.gql(Some(&owner), APPEND, json!({"e": [{"type": "order.paid", "payload": {}, "personId": theirs}]})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "events[0].personId"), "{r}");
    }

    async fn identify_persons_resolves_each_item_in_order(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let crm = app.key(&owner, &["integration"], &["persons:write"]).await;
        let batch = json!([
            {"identifiers": [{"kind": "phone", "value": "13800000001"}]},
            {"identifiers": [{"kind": "phone", "value": "138-0000-0001"}, {"kind": "email", "value": "a@example.com"}], "attributes": {"tier": "gold"}},
            {"identifiers": [{"kind": "member_no", "value": "M-2"}]},
        ]);
        let first = app.gql(Some(&crm), IDENTIFY, json!({"b": batch})).await;
        let out = ok(&first)["identifyPersons"].as_array().unwrap().clone();
        assert_eq!(out.iter().map(|o| o["created"].as_bool().unwrap()).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(out[0]["person"]["id"], out[1]["person"]["id"]);
        assert_eq!(out[1]["person"]["attributes"], json!({"tier": "gold"}));
        let retry = app.gql(Some(&crm), IDENTIFY, json!({"b": batch})).await;
        assert_eq!(ids(&retry, "identifyPersons"), ids(&first, "identifyPersons"));
        assert!(ok(&retry)["identifyPersons"].as_array().unwrap().iter().all(|o| o["created"] == false));
    }

    async fn a_refused_identify_item_refuses_the_batch(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let phone = |p: &str| json!({"identifiers": [{"kind": "phone", "value": p}]});
        let cases = [
            (json!([phone("13800000001"), {"identifiers": [{"kind": "fax", "value": "1"}]}]), "batch[1].identifiers[0].kind"),
            (json!([phone("13800000001"), {"identifiers": []}]), "batch[1].identifiers"),
            (json!([phone("13800000001"), {"identifiers": [{"kind": "phone", "value": "1"}], "attributes": [1]}]), "batch[1].attributes"),
        ];
        for (batch, f) in cases {
            let r = app.gql(Some(&owner), IDENTIFY, json!({"b": batch})).await;
            assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", f), "{r}");
        }
        // Item 2 joins two persons items 0 and 1 created: without merge it
        // is a conflict, and the whole batch is gone with it.
        let joined = json!({"identifiers": [{"kind": "phone", "value": "13800000001"}, {"kind": "phone", "value": "13800000002"}]});
        let r = app.gql(Some(&owner), IDENTIFY, json!({"b": [phone("13800000001"), phone("13800000002"), joined]})).await;
        assert_eq!(code(&r), "CONFLICT", "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().starts_with("batch[2]: "), "{r}");
        let r = app.gql(Some(&owner), "{ personByIdentifier(kind: \"phone\", value: \"13800000001\") { id } }", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
        // With merge, the same batch ends with one person.
        let mut merged = joined.clone();
        merged["merge"] = json!(true);
        let r = app.gql(Some(&owner), IDENTIFY, json!({"b": [phone("13800000001"), phone("13800000002"), merged]})).await;
        let out = ok(&r)["identifyPersons"].as_array().unwrap().clone();
        assert_eq!(out[2]["mergedPersonIds"], json!([out[1]["person"]["id"]]));

        let many: Vec<Value> = (0..1001).map(|i| phone(&format!("1390000{i:04}"))).collect();
        let r = app.gql(Some(&owner), IDENTIFY, json!({"b": many})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "batch"), "{r}");
        let analyst = app.key(&owner, &["analyst"], &[]).await;
        let r = app.gql(Some(&analyst), IDENTIFY, json!({"b": [phone("13800000003")]})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
    }
}
