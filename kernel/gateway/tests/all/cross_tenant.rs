//! Tenant isolation: with tenant A's owner key, anything that names one of
//! tenant B's objects is NOT_FOUND — never FORBIDDEN (which would confirm it
//! exists), never B's data, never a message about B — and changes nothing
//! in either tenant.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{TestApp, code, field, ok};

const PHONE_A: &str = "+8613700000001";
const PHONE_B: &str = "+8613700000002";
const PASSWORD: &str = "correct horse battery staple";

/// Two tenants, each with a person, an event, a second key and an operator.
struct Two {
    app: TestApp,
    a: String,
    b: String,
    b_id: String,
    a_person: String,
    b_person: String,
    b_event: String,
    /// Every key id of B (its owner key and a marketer key).
    b_keys: Vec<String>,
    b_operator: String,
}

async fn operator(app: &TestApp, key: &str, email: &str) -> String {
    let r = app
        .gql(
            Some(key),
            "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id } }",
            json!({ "i": { "email": email, "password": PASSWORD, "roles": ["marketer"] } }),
        )
        .await;
    ok(&r)["createOperator"]["id"].as_str().unwrap().to_owned()
}

async fn append(app: &TestApp, key: &str, person: &str) -> String {
    let r = app
        .gql(
            Some(key),
            "mutation($i: AppendEventInput!) { appendEvent(input: $i) { id } }",
            json!({ "i": { "type": "order.paid", "personId": person, "payload": { "total": 10 } } }),
        )
        .await;
    ok(&r)["appendEvent"]["id"].as_str().unwrap().to_owned()
}

impl Two {
    async fn new(app: TestApp) -> Two {
        let (_, a) = app.tenant("alpha").await;
        let (b_id, b) = app.tenant("bravo").await;
        let a_person = app.person(&a, "phone", PHONE_A).await;
        let b_person = app.person(&b, "phone", PHONE_B).await;
        let r = app
            .gql(
                Some(&b),
                "mutation($i: SetPersonAttributesInput!) { setPersonAttributes(input: $i) { id } }",
                json!({ "i": { "personId": b_person, "attributes": { "tier": "gold" } } }),
            )
            .await;
        ok(&r);
        append(&app, &a, &a_person).await;
        let b_event = append(&app, &b, &b_person).await;
        app.key(&b, &["marketer"], &[]).await;
        operator(&app, &a, "ops@alpha.example").await;
        let b_operator = operator(&app, &b, "ops@bravo.example").await;
        let r = app.gql(Some(&b), "{ apiKeys { id } }", json!({})).await;
        let b_keys: Vec<String> = ok(&r)["apiKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(b_keys.len(), 2);
        Two {
            app,
            a,
            b,
            b_id,
            a_person,
            b_person,
            b_event,
            b_keys,
            b_operator,
        }
    }

    /// Everything a tenant's owner can see of its tenant, as `key` sees it.
    async fn state(&self, key: &str) -> Value {
        let r = self
            .app
            .gql(
                Some(key),
                "{ apiKeys { id roles revokedAt }
                   operators { id email active }
                   events(first: 100) { edges { node { id type personId payload } } pageInfo { hasNextPage } }
                   counter(key: \"stock\") { value } }",
                json!({}),
            )
            .await;
        let mut s = ok(&r).clone();
        for p in [&self.a_person, &self.b_person] {
            let r = self
                .app
                .gql(
                    Some(key),
                    "query($id: ID!) { person(id: $id) { id identifiers { kind value } attributes updatedAt merges { id } } }",
                    json!({ "id": p }),
                )
                .await;
            // Only one of the two persons is this tenant's.
            if r.get("errors").is_none() {
                s["person"] = r["data"]["person"].clone();
            }
        }
        assert!(
            s.get("person").is_some(),
            "the tenant's own person is readable"
        );
        s
    }

    async fn both(&self) -> (Value, Value) {
        (self.state(&self.a).await, self.state(&self.b).await)
    }

    /// Runs `query` with A's key and asserts NOT_FOUND without a trace of B.
    async fn not_found_in_a(&self, query: &str, vars: Value) -> Value {
        let r = self.app.gql(Some(&self.a), query, vars.clone()).await;
        let what = format!("{query} with {vars}: {r:#}");
        assert_eq!(code(&r), "NOT_FOUND", "{what}");
        assert_eq!(r["errors"].as_array().unwrap().len(), 1, "{what}");
        assert!(r["data"].is_null(), "no data: {what}");
        let message = r["errors"][0]["message"].as_str().unwrap();
        for secret in [self.b_id.as_str(), "bravo", "tenant"] {
            assert!(
                !message.to_lowercase().contains(secret),
                "the message mentions {secret:?}: {what}"
            );
        }
        r
    }

    /// A write with A's key that names B's objects: NOT_FOUND, and neither
    /// tenant changed.
    async fn refused_write(&self, query: &str, vars: Value) {
        let before = self.both().await;
        self.not_found_in_a(query, vars.clone()).await;
        let after = self.both().await;
        assert_eq!(after.0, before.0, "A changed after {query} with {vars}");
        assert_eq!(after.1, before.1, "B changed after {query} with {vars}");
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect()
}

on_both_backends! {
    async fn another_tenants_objects_are_not_found_for_reads_and_writes(kind) {
        let t = Two::new(TestApp::start(kind).await).await;

        // Reads.
        t.not_found_in_a(
            "query($id: ID!) { person(id: $id) { id attributes } }",
            json!({ "id": t.b_person }),
        )
        .await;
        t.not_found_in_a(
            "query($id: ID!) { events(filter: { personId: $id }) { edges { node { id } } } }",
            json!({ "id": t.b_person }),
        )
        .await;
        t.not_found_in_a(
            "query($id: ID!) { event(id: $id) { id payload } }",
            json!({ "id": t.b_event }),
        )
        .await;
        t.not_found_in_a(
            "query($v: String!) { personByIdentifier(kind: \"phone\", value: $v) { id } }",
            json!({ "v": PHONE_B }),
        )
        .await;

        // Writes.
        t.refused_write(
            "mutation($i: SetPersonAttributesInput!) { setPersonAttributes(input: $i) { id attributes } }",
            json!({ "i": { "personId": t.b_person, "attributes": { "tier": "stolen" } } }),
        )
        .await;
        t.refused_write(
            "mutation($i: LinkIdentifierInput!) { linkIdentifier(input: $i) { id identifiers { value } } }",
            json!({ "i": { "personId": t.b_person, "identifier": { "kind": "email", "value": "thief@alpha.example" } } }),
        )
        .await;
        t.not_found_in_a(
            "query { personByIdentifier(kind: \"email\", value: \"thief@alpha.example\") { id } }",
            json!({}),
        )
        .await;
        let merge = "mutation($i: MergePersonsInput!) { mergePersons(input: $i) { id identifiers { value } } }";
        t.refused_write(
            merge,
            json!({ "i": { "survivorId": t.a_person, "mergedId": t.b_person, "reason": "steal" } }),
        )
        .await;
        t.refused_write(
            merge,
            json!({ "i": { "survivorId": t.b_person, "mergedId": t.a_person, "reason": "plant" } }),
        )
        .await;
        for key in &t.b_keys {
            t.refused_write(
                "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }",
                json!({ "id": key }),
            )
            .await;
        }
        t.refused_write(
            "mutation($id: ID!) { deactivateOperator(id: $id) { id active } }",
            json!({ "id": t.b_operator }),
        )
        .await;
        // B's keys and operator still work as before.
        let r = t.app.gql(Some(&t.b), "{ viewer { roles } }", json!({})).await;
        assert_eq!(ok(&r)["viewer"]["roles"], json!(["owner"]));
        let r = t
            .app
            .gql(
                None,
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                json!({ "i": { "tenant": "bravo", "email": "ops@bravo.example", "password": PASSWORD } }),
            )
            .await;
        ok(&r);

        // An event for B's person: the person is unknown in A, a bad input.
        let before = t.both().await;
        let r = t
            .app
            .gql(
                Some(&t.a),
                "mutation($i: AppendEventInput!) { appendEvent(input: $i) { id } }",
                json!({ "i": { "type": "order.paid", "personId": t.b_person, "payload": { "total": 1 } } }),
            )
            .await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r:#}");
        assert_eq!(field(&r), "personId", "{r:#}");
        assert!(r["data"].is_null(), "{r:#}");
        let message = r["errors"][0]["message"].as_str().unwrap().to_lowercase();
        assert!(!message.contains("bravo") && !message.contains(&t.b_id), "{r:#}");
        assert_eq!(t.both().await, before, "appendEvent wrote something");
    }

    async fn the_same_identifiers_keys_and_names_are_independent_per_tenant(kind) {
        let t = Two::new(TestApp::start(kind).await).await;

        // One phone, two tenants, two persons.
        let shared = "+8613700000099";
        let in_a = t.app.person(&t.a, "phone", shared).await;
        let in_b = t.app.person(&t.b, "phone", shared).await;
        assert_ne!(in_a, in_b);
        let find = "query($v: String!) { personByIdentifier(kind: \"phone\", value: $v) { id } }";
        let r = t.app.gql(Some(&t.a), find, json!({ "v": shared })).await;
        assert_eq!(ok(&r)["personByIdentifier"]["id"], in_a);
        let r = t.app.gql(Some(&t.b), find, json!({ "v": shared })).await;
        assert_eq!(ok(&r)["personByIdentifier"]["id"], in_b);

        // Counters with one key.
        let add = "mutation($d: Int!, $k: String) { addToCounter(input: { key: \"stock\", delta: $d, idempotencyKey: $k }) { applied value } }";
        let r = t.app.gql(Some(&t.a), add, json!({ "d": 5, "k": "same-key" })).await;
        assert_eq!(ok(&r)["addToCounter"], json!({ "applied": true, "value": 5 }));
        // The same idempotency key in B is B's own, not a retry of A's call.
        let r = t.app.gql(Some(&t.b), add, json!({ "d": 7, "k": "same-key" })).await;
        assert_eq!(ok(&r)["addToCounter"], json!({ "applied": true, "value": 7 }));
        let r = t.app.gql(Some(&t.a), add, json!({ "d": 1, "k": null })).await;
        assert_eq!(ok(&r)["addToCounter"]["value"], 6);
        let counter = "{ counter(key: \"stock\") { value } }";
        let r = t.app.gql(Some(&t.a), counter, json!({})).await;
        assert_eq!(ok(&r)["counter"]["value"], 6);
        let r = t.app.gql(Some(&t.b), counter, json!({})).await;
        assert_eq!(ok(&r)["counter"]["value"], 7);

        // Events with one idempotency key.
        let append = "mutation($p: ID!) { appendEvent(input: { type: \"order.paid\", personId: $p, payload: {}, idempotencyKey: \"order-1\" }) { id personId } }";
        let r = t.app.gql(Some(&t.a), append, json!({ "p": in_a })).await;
        let a_event = ok(&r)["appendEvent"].clone();
        let r = t.app.gql(Some(&t.b), append, json!({ "p": in_b })).await;
        let b_event = ok(&r)["appendEvent"].clone();
        assert_ne!(a_event["id"], b_event["id"]);
        assert_eq!(b_event["personId"], in_b);

        // A's lists hold none of B's items, and all of A's.
        let lists = "{ events(first: 100) { edges { node { id personId } } } apiKeys { id } operators { id email } }";
        let ra = t.app.gql(Some(&t.a), lists, json!({})).await;
        let rb = t.app.gql(Some(&t.b), lists, json!({})).await;
        let (la, lb) = (ok(&ra), ok(&rb));
        let events = |l: &Value| -> Vec<Value> {
            l["events"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone())
                .collect()
        };
        let (ea, eb) = (events(la), events(lb));
        assert!(!ea.is_empty() && !eb.is_empty());
        for e in &ea {
            assert!(!eb.contains(e), "B's event {e} is listed in A");
            assert_ne!(e["personId"], json!(t.b_person));
            assert_ne!(e["personId"], json!(in_b));
        }
        assert!(ea.iter().all(|e| e["id"] != json!(t.b_event)));
        assert!(ea.iter().any(|e| e["id"] == a_event["id"]));
        let (ka, kb) = (ids(&la["apiKeys"]), ids(&lb["apiKeys"]));
        assert_eq!(ka.len(), 1);
        assert!(ka.iter().all(|k| !kb.contains(k) && !t.b_keys.iter().any(|b| b == k)));
        let (oa, ob) = (ids(&la["operators"]), ids(&lb["operators"]));
        assert_eq!(oa.len(), 1);
        assert!(!oa.contains(&t.b_operator.as_str()));
        assert!(oa.iter().all(|o| !ob.contains(o)));
        assert_eq!(la["operators"][0]["email"], "ops@alpha.example");
    }
}
