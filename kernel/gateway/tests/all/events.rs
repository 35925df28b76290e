use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{TestApp, code, field, ok};

const APPEND: &str = "mutation($i: AppendEventInput!) { appendEvent(input: $i) { id type personId payload idempotencyKey producer occurredAt } }";
const LIST: &str = "query($f: EventFilter, $first: Int, $after: String) { events(filter: $f, first: $first, after: $after) { edges { cursor node { id type payload } } pageInfo { hasNextPage endCursor } } }";

on_both_backends! {
    async fn events_page_oldest_first_with_cursors(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        for n in 0..5 {
            let t = if n % 2 == 0 { "order.paid" } else { "code.scanned" };
            ok(&app.gql(Some(&owner), APPEND, json!({"i": {"type": t, "payload": {"n": n}}})).await);
        }
        let p1 = app.gql(Some(&owner), LIST, json!({"first": 2})).await;
        let c1 = &ok(&p1)["events"];
        assert_eq!(c1["edges"].as_array().unwrap().iter().map(|e| e["node"]["payload"]["n"].as_i64().unwrap()).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(c1["pageInfo"]["hasNextPage"], true);
        let p2 = app.gql(Some(&owner), LIST, json!({"first": 10, "after": c1["pageInfo"]["endCursor"]})).await;
        let c2 = &ok(&p2)["events"];
        assert_eq!(c2["edges"].as_array().unwrap().len(), 3);
        assert_eq!(c2["pageInfo"]["hasNextPage"], false);
        let paid = app.gql(Some(&owner), LIST, json!({"f": {"types": ["order.paid"]}})).await;
        assert_eq!(ok(&paid)["events"]["edges"].as_array().unwrap().len(), 3);
    }

    async fn an_append_retried_with_its_idempotency_key_is_stored_once(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let person = app.person(&owner, "phone", "13800000001").await;
        let input = json!({"i": {"type": "order.paid", "personId": person, "payload": {"total": 100}, "idempotencyKey": "order-42"}});
        let a = app.gql(Some(&owner), APPEND, input.clone()).await;
        let b = app.gql(Some(&owner), APPEND, input).await;
        assert_eq!(ok(&a)["appendEvent"], ok(&b)["appendEvent"]);
        assert!(ok(&a)["appendEvent"]["producer"].as_str().unwrap().starts_with("key:"));
        let all = app.gql(Some(&owner), LIST, json!({})).await;
        assert_eq!(ok(&all)["events"]["edges"].as_array().unwrap().len(), 1);
    }

    async fn time_windows_filter_on_when_events_happened(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        for (n, at) in [(1, "2026-11-01T10:00:00Z"), (2, "2026-11-02T10:00:00Z"), (3, "2026-11-03T10:00:00Z")] {
            ok(&app.gql(Some(&owner), APPEND, json!({"i": {"type": "code.scanned", "payload": {"n": n}, "occurredAt": at}})).await);
        }
        let r = app.gql(Some(&owner), LIST, json!({"f": {"since": "2026-11-02T00:00:00Z", "until": "2026-11-03T00:00:00Z"}})).await;
        let edges = ok(&r)["events"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0]["node"]["payload"]["n"], 2);
    }

    async fn bad_event_input_is_refused_naming_the_field(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        for (input, f) in [
            (json!({"type": "Order Paid", "payload": {}}), "type"),
            (json!({"type": "order", "payload": {}}), "type"),
            (json!({"type": "order.paid", "payload": [1]}), "payload"),
            (json!({"type": "order.paid", "payload": {}, "personId": "nobody"}), "personId"),
            (json!({"type": "order.paid", "payload": {}, "idempotencyKey": ""}), "idempotencyKey"),
        ] {
            let r = app.gql(Some(&owner), APPEND, json!({"i": input})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{input}");
            assert_eq!(field(&r), f, "{input}");
        }
        for (vars, f) in [
            (json!({"first": 0}), "first"),
            (json!({"first": 101}), "first"),
            (json!({"after": "not-a-cursor"}), "after"),
            (json!({"f": {"types": ["NOPE"]}}), "filter.types[0]"),
        ] {
            let r = app.gql(Some(&owner), LIST, vars.clone()).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{vars}");
            assert_eq!(field(&r), f, "{vars}");
        }
        let all = app.gql(Some(&owner), LIST, json!({})).await;
        assert_eq!(ok(&all)["events"]["edges"], json!([]));
    }
}

on_both_backends! {
    async fn event_types_of_the_kernel_and_of_plugins_are_emitted_only_by_their_producer(kind) {
        use crate::plugins::{SDL, enable, install};
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        install(&app, "probe", "0.1.0", SDL).await;
        ok(&enable(&app, &owner, "probe", json!({})).await);
        // A key with every right on events, as the attacker had.
        let writer = app.key(&owner, &["integration"], &["events:write", "events:read"]).await;
        for (t, whose) in [("probe.touched", "plugin probe"), ("person.merged", "kernel")] {
            for key in [&owner, &writer] {
                let r = app.gql(Some(key), APPEND, json!({"i": {"type": t, "payload": {"amountCents": 88888800}}})).await;
                assert_eq!(code(&r), "FORBIDDEN", "{t}: {r}");
                assert!(r["errors"][0]["message"].as_str().unwrap().contains(whose), "{r}");
            }
        }
        let all = app.gql(Some(&owner), LIST, json!({})).await;
        assert_eq!(ok(&all)["events"]["edges"], json!([]), "a refused append stored nothing");
        // A type nobody owns (an ERP's own) is still the integrator's to append.
        ok(&app.gql(Some(&writer), APPEND, json!({"i": {"type": "erp.order_synced", "payload": {}}})).await);
    }

    async fn a_plugin_cannot_claim_an_event_type_of_the_kernel_or_of_another_plugin(kind) {
        use crate::plugins::{SDL, install, manifest, probe_wasm};
        let app = TestApp::start(kind).await;
        install(&app, "probe", "0.1.0", SDL).await;
        let impostor = manifest("impostor", "0.1.0", SDL);
        let err = app.plugins.install(impostor, &probe_wasm()).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        assert!(err.to_string().contains("probe.touched"), "{err}");
        let mut kernelish = manifest("kernelish", "0.1.0", SDL);
        kernelish.events.emits = vec!["person.merged".into()];
        kernelish.events.schemas = [("person.merged".to_owned(), json!({"type": "object"}))].into();
        let err = app.plugins.install(kernelish, &probe_wasm()).await.unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{err}");
        let names: Vec<String> = app.plugins.packages().await.unwrap().into_iter().map(|p| p.manifest.name.clone()).collect();
        assert_eq!(names, vec!["probe".to_owned()], "nothing else was installed");
        // The owner itself installs a new version of its own types.
        install(&app, "probe", "0.2.0", SDL).await;
    }
}
