use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{TestApp, code, field, ok};

const IDENTIFY: &str = "mutation($i: IdentifyInput!) { identify(input: $i) { created mergedPersonIds person { id identifiers { kind value } attributes } } }";
const MERGE: &str = "mutation($i: MergePersonsInput!) { mergePersons(input: $i) { id identifiers { kind value } attributes } }";
const PERSON: &str = "query($id: ID!) { person(id: $id) { id identifiers { kind value } attributes merges { survivorId mergedId reason actor identifiers { kind value } } } }";

on_both_backends! {
    async fn identify_resolves_or_creates_and_lookup_by_identifier_finds_the_person(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let r = app.gql(Some(&owner), IDENTIFY, json!({"i": {
            "identifiers": [{"kind": "wechat_openid", "value": "o-123"}],
            "attributes": {"tier": "silver", "tags": ["beer"]}
        }})).await;
        let first = &ok(&r)["identify"];
        assert_eq!(first["created"], true);
        let id = first["person"]["id"].clone();
        // The same human orders on the web: WeChat openid plus a phone.
        let r = app.gql(Some(&owner), IDENTIFY, json!({"i": {
            "identifiers": [{"kind": "wechat_openid", "value": "o-123"}, {"kind": "phone", "value": "+86 138-0000-0001"}],
            "attributes": {"tier": "gold"}
        }})).await;
        let second = &ok(&r)["identify"];
        assert_eq!(second["created"], false);
        assert_eq!(second["person"]["id"], id);
        assert_eq!(second["person"]["attributes"], json!({"tier": "gold", "tags": ["beer"]}));
        let found = app.gql(Some(&owner), "{ personByIdentifier(kind: \"phone\", value: \"+8613800000001\") { id } }", json!({})).await;
        assert_eq!(ok(&found)["personByIdentifier"]["id"], id);
        let missing = app.gql(Some(&owner), "{ personByIdentifier(kind: \"phone\", value: \"+8613900000000\") { id } }", json!({})).await;
        assert_eq!(code(&missing), "NOT_FOUND");
    }

    async fn junk_identifiers_are_refused_naming_the_field(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        for (k, v, f) in [
            ("phone", "", "identifiers[0].value"),
            ("email", "null", "identifiers[0].value"),
            ("wechat_openid", "anonymous", "identifiers[0].value"),
            ("member_no", "0", "identifiers[0].value"),
            ("shoe_size", "42", "identifiers[0].kind"),
        ] {
            let r = app.gql(Some(&owner), IDENTIFY, json!({"i": {"identifiers": [{"kind": k, "value": v}]}})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{k}={v}");
            assert_eq!(field(&r), f, "{k}={v}");
        }
        let r = app.gql(Some(&owner), IDENTIFY, json!({"i": {"identifiers": [{"kind": "phone", "value": "13800000001"}], "attributes": [1, 2]}})).await;
        assert_eq!(field(&r), "attributes");
        let r = app.gql(Some(&owner), "{ events { edges { cursor } } }", json!({})).await;
        assert_eq!(ok(&r)["events"]["edges"], json!([]), "nothing was written");
    }

    async fn a_merge_moves_identifiers_keeps_an_audit_trail_and_redirects_the_old_id(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let a = app.person(&owner, "phone", "13800000001").await;
        let b = app.person(&owner, "email", "ann@example.com").await;
        app.gql(Some(&owner), "mutation($id: ID!) { setPersonAttributes(input: {personId: $id, attributes: {tier: \"gold\", city: \"SZ\"}}) { id } }", json!({"id": a})).await;
        app.gql(Some(&owner), "mutation($id: ID!) { setPersonAttributes(input: {personId: $id, attributes: {tier: \"bronze\", pet: \"cat\"}}) { id } }", json!({"id": b})).await;
        let r = app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": b, "reason": "same phone at the counter"}})).await;
        let p = &ok(&r)["mergePersons"];
        assert_eq!(p["id"], a);
        assert_eq!(p["attributes"], json!({"tier": "gold", "city": "SZ", "pet": "cat"}));
        assert_eq!(p["identifiers"].as_array().unwrap().len(), 2);
        let old = app.gql(Some(&owner), PERSON, json!({"id": b})).await;
        let old = &ok(&old)["person"];
        assert_eq!(old["id"], a, "the merged id leads to the survivor");
        assert_eq!(old["merges"][0]["reason"], "same phone at the counter");
        assert_eq!(old["merges"][0]["mergedId"], b);
        assert!(old["merges"][0]["actor"].as_str().unwrap().starts_with("key:"));
        assert_eq!(old["merges"][0]["identifiers"], json!([{"kind": "email", "value": "ann@example.com"}]));
        // The merge is an event of the survivor.
        let ev = app.gql(Some(&owner), "query($id: ID!) { person(id: $id) { events { edges { node { type payload } } } } }", json!({"id": a})).await;
        let edges = ok(&ev)["person"]["events"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0]["node"]["type"], "person.merged");
        assert_eq!(edges[0]["node"]["payload"]["mergedId"], b);
    }

    async fn a_merge_that_breaks_a_guardrail_is_refused_and_changes_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let a = app.person(&owner, "member_no", "M-1").await;
        let b = app.person(&owner, "member_no", "M-2").await;
        let r = app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": b, "reason": "looks alike"}})).await;
        assert_eq!(code(&r), "CONFLICT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("member_no"));
        for (id, v) in [(&a, "M-1"), (&b, "M-2")] {
            let p = app.gql(Some(&owner), PERSON, json!({"id": id})).await;
            let p = &ok(&p)["person"];
            assert_eq!(&p["id"], id);
            assert_eq!(p["identifiers"], json!([{"kind": "member_no", "value": v}]));
            assert_eq!(p["merges"], json!([]));
        }
        let self_merge = app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": a, "reason": "x"}})).await;
        assert_eq!(code(&self_merge), "BAD_USER_INPUT");
        let no_reason = app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": b, "reason": " "}})).await;
        assert_eq!(field(&no_reason), "reason");
        let unknown = app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": "nope", "reason": "x"}})).await;
        assert_eq!(code(&unknown), "NOT_FOUND");
    }

    async fn identifiers_of_several_persons_merge_only_when_asked(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let a = app.person(&owner, "phone", "13800000001").await;
        let b = app.person(&owner, "wechat_unionid", "u-9").await;
        let both = json!([{"kind": "phone", "value": "13800000001"}, {"kind": "wechat_unionid", "value": "u-9"}]);
        let r = app.gql(Some(&owner), IDENTIFY, json!({"i": {"identifiers": both}})).await;
        assert_eq!(code(&r), "CONFLICT");
        let r = app.gql(Some(&owner), IDENTIFY, json!({"i": {"identifiers": both, "merge": true}})).await;
        let p = &ok(&r)["identify"];
        assert_eq!(p["person"]["id"], a, "the oldest person survives");
        assert_eq!(p["mergedPersonIds"], json!([b]));
    }

    async fn linking_an_identifier_of_another_person_or_past_a_limit_is_a_conflict(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let a = app.person(&owner, "member_no", "M-1").await;
        app.person(&owner, "phone", "13800000002").await;
        let link = "mutation($id: ID!, $k: String!, $v: String!) { linkIdentifier(input: {personId: $id, identifier: {kind: $k, value: $v}}) { identifiers { kind value } } }";
        let r = app.gql(Some(&owner), link, json!({"id": a, "k": "phone", "v": "13800000002"})).await;
        assert_eq!(code(&r), "CONFLICT");
        let r = app.gql(Some(&owner), link, json!({"id": a, "k": "member_no", "v": "M-2"})).await;
        assert_eq!(code(&r), "CONFLICT");
        let r = app.gql(Some(&owner), link, json!({"id": a, "k": "email", "v": "A@Example.com"})).await;
        assert_eq!(ok(&r)["linkIdentifier"]["identifiers"], json!([
            {"kind": "email", "value": "a@example.com"},
            {"kind": "member_no", "value": "M-1"},
        ]));
    }
}

on_both_backends! {
    /// `person.merged` is the kernel's event: a plugin subscribed to it
    /// (a CDP folding a duplicate's profile) gets every merge, whether by
    /// `mergePersons`, by `identify` with `merge: true` or by a batch.
    async fn every_merge_reaches_the_subscribers_of_person_merged(kind) {
        use crate::plugins::{SDL, enable, manifest, probe_wasm};
        use keel_host::manifest::{DeliveryMode, Subscription};
        use keel_host::outbox::{Dispatcher, DispatcherConfig};
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let mut m = manifest("listener", "0.1.0", SDL);
        m.events.subscribes = vec![Subscription { event_type: "person.merged".into(), mode: DeliveryMode::Async }];
        m.events.emits.clear();
        m.events.schemas.clear();
        app.plugins.install(m, &probe_wasm()).await.unwrap();
        ok(&enable(&app, &owner, "listener", json!({})).await);
        let d = Dispatcher::new(app.db.db.clone(), app.plugins.clone(), DispatcherConfig::default());
        let person = |phone: &str| {
            let i = json!({"i": {"identifiers": [{"kind": "phone", "value": phone}]}});
            let app = &app;
            let owner = owner.clone();
            async move { ok(&app.gql(Some(&owner), IDENTIFY, i).await)["identify"]["person"]["id"].clone() }
        };

        let (a, b) = (person("13800000201").await, person("13800000202").await);
        assert_eq!(d.deliver_due().await.unwrap(), 0, "no merge yet");
        ok(&app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": b, "reason": "same customer"}})).await);
        assert_eq!(d.deliver_due().await.unwrap(), 1, "mergePersons");

        let (c, _) = (person("13800000203").await, person("13800000204").await);
        let both = json!({"i": {"identifiers": [{"kind": "phone", "value": "13800000203"}, {"kind": "phone", "value": "13800000204"}], "merge": true}});
        let r = app.gql(Some(&owner), IDENTIFY, both).await;
        assert_eq!(ok(&r)["identify"]["person"]["id"], c);
        assert_eq!(d.deliver_due().await.unwrap(), 1, "identify with merge");

        let (e, _) = (person("13800000205").await, person("13800000206").await);
        let batch = json!({"b": [{"identifiers": [{"kind": "phone", "value": "13800000205"}, {"kind": "phone", "value": "13800000206"}], "merge": true}]});
        let r = app.gql(Some(&owner), "mutation($b: [IdentifyInput!]!) { identifyPersons(batch: $b) { person { id } } }", batch).await;
        assert_eq!(ok(&r)["identifyPersons"][0]["person"]["id"], e);
        assert_eq!(d.deliver_due().await.unwrap(), 1, "identifyPersons with merge");

        // A refused merge hands nothing to the subscribers.
        let r = app.gql(Some(&owner), MERGE, json!({"i": {"survivorId": a, "mergedId": a, "reason": "x"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert_eq!(d.deliver_due().await.unwrap(), 0);
    }
}
