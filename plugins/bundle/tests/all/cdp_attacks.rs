//! The CDP against a caller without rights and against forged input, on
//! SQLite and PostgreSQL: events its owners never emitted (a win, a merge,
//! an erasure, under another producer's name) change nothing; a read-only
//! key changes nothing; a 10 MB request is refused whole.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::{brand_with_cdp, person_id, track};
use crate::support::{Brand, Kernel, ok};

const PROFILE: &str = "query($p: String!) { cdpProfile(personId: $p) { events mergedFrom tags traits { name value } consent { purpose } blocked } }";

async fn profile(k: &Kernel, b: &Brand, p: &str) -> Value {
    ok(&k.gql(&b.owner, PROFILE, json!({"p": p})).await)["cdpProfile"].clone()
}

fn view(id: &str, member: &str) -> Value {
    json!({"messageId": id, "type": "page.viewed", "occurredAt": "2026-11-01T00:00:00Z",
           "identifiers": [{"kind": "member_no", "value": member}]})
}

on_both_backends! {
    async fn forged_events_a_read_only_key_and_a_huge_request_change_nothing(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        ok(&k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "wins", "event": "rewards.awarded", "agg": "count"}
        ]})).await);
        ok(&track(&k, &b, "t1", &[view("v1", "P1"), view("v2", "Q1")], None).await);
        let (p, q) = (person_id(&k, &b, "member_no", "P1").await, person_id(&k, &b, "member_no", "Q1").await);
        let before = (profile(&k, &b, &p).await, profile(&k, &b, &q).await);

        // Events under a producer that does not own them: a win not from
        // rewards, a merge and an erasure not from the kernel.
        for (t, person, payload, producer) in [
            ("rewards.awarded", Some(&p), json!({"award": "A1", "campaign": "C1", "prize": "x", "kind": "POINTS", "points": 1000}), "shop"),
            ("person.merged", Some(&p), json!({"survivorId": p, "mergedId": q, "reason": "forged", "actor": "x", "identifiers": []}), "shop"),
            ("person.erased", Some(&p), json!({"personId": p, "erasedIds": [p, q]}), "shop"),
            ("cdp.erase_step", None, json!({"erasure": "anything"}), "shop"),
        ] {
            let id = k.inject_event(&b, t, person.map(String::as_str), payload, producer).await;
            k.wait_delivered(&id, 30).await;
        }
        assert_eq!((profile(&k, &b, &p).await, profile(&k, &b, &q).await), before.clone());
        assert_eq!(before.0["traits"], json!([{"name": "wins", "value": 0}]));

        // A read-only key: every mutation refused, nothing changed.
        let analyst = k.key(&b, &["analyst"], &[]).await;
        for (query, vars) in [
            ("mutation($p: [String!]!) { tagPersons(tag: \"vip\", personIds: $p) }", json!({"p": [p]})),
            ("mutation($p: [String!]!) { blockPersons(personIds: $p, reason: \"x\") }", json!({"p": [p]})),
            ("mutation { blockIdentifiers(identifiers: [{kind: \"phone\", value: \"+8613900000999\"}], reason: \"x\") }", json!({})),
            ("mutation($s: [CdpConsentInput!]!) { setCdpConsent(statements: $s) }", json!({"s": [{"personId": p, "purpose": "marketing_sms", "granted": true, "source": "crm"}]})),
            ("mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }", json!({"i": {"id": "all", "name": "All", "rule": {"all": []}}})),
            ("mutation($t: JSON) { setCdpTiers(tiers: $t) { revision } }", json!({"t": null})),
            ("mutation($b: String!, $e: [CdpEventInput!]!) { cdpTrack(batchId: $b, events: $e) { accepted } }", json!({"b": "t2", "e": [view("v3", "P1")]})),
        ] {
            let r = k.gql(&analyst, query, vars).await;
            assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{query}: {r}");
        }
        assert_eq!(profile(&k, &b, &p).await, before.0);
        assert_eq!(ok(&k.gql(&b.owner, "{ cdpSegments { id } }", json!({})).await)["cdpSegments"], json!([]));

        // 10 MB in one request: refused before any plugin runs.
        let mut huge = view("v4", "P1");
        huge["properties"] = json!({"blob": "x".repeat(10 * 1024 * 1024)});
        let res = k
            .http
            .post(k.url("/graphql"))
            .bearer_auth(&b.owner)
            .json(&json!({"query": "mutation($b: String!, $e: [CdpEventInput!]!) { cdpTrack(batchId: $b, events: $e) { accepted } }",
                          "variables": {"b": "t3", "e": [huge]}}))
            .send()
            .await;
        // 413, or the connection closed while the client was still sending.
        match res {
            Ok(r) => assert_eq!(r.status(), 413),
            Err(e) => assert!(e.is_request(), "{e}"),
        }
        assert_eq!(profile(&k, &b, &p).await, before.0);
    }
}
