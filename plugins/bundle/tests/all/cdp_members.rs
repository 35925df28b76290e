//! CDP member tiers and consent over real HTTP, on SQLite and PostgreSQL:
//! upgrades at once and downgrades only when a period ends (the plugins'
//! clock moved across year ends), tier history and `tier.changed`, tier
//! segments; consent per purpose with its log, opt-outs leaving consent
//! segments (and so their exports) at once, the consumer's own say, and
//! bad statements refused whole with their place.

use std::collections::BTreeSet;
use std::time::SystemTime;

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::{brand_with_cdp, person_id, track};
use crate::cdp_segments::{members, recompute};
use crate::support::{Brand, Kernel, code, ok};

const SET_TIERS: &str = "mutation($t: JSON) { setCdpTiers(tiers: $t) { revision definition } }";
const SAVE: &str = "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id purpose } }";
const MEMBER: &str = "query($p: String!) { cdpProfile(personId: $p) { personId \
    tier { id name multiplier since thisPeriod periodEnds next { id min } } \
    tierHistory { from to direction reason } \
    consent { purpose granted source at } \
    consentLog { purpose granted source at by taken } } }";
const CONSENT: &str = "mutation($s: [CdpConsentInput!]!) { setCdpConsent(statements: $s) }";

fn at(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .into()
}

fn ladder() -> Value {
    json!({
        "basis": {"event": "order.paid", "agg": "sum", "property": "total"},
        "period": "year",
        "levels": [
            {"id": "member", "name": "会员 Member", "min": 0},
            {"id": "silver", "name": "银卡 Silver", "min": 1000, "multiplier": 1.2},
            {"id": "gold", "name": "金卡 Gold", "min": 5000, "multiplier": 1.5}
        ]
    })
}

fn order(id: &str, total: i64, when: &str) -> Value {
    json!({"messageId": id, "source": "shop", "type": "order.paid",
           "identifiers": [{"kind": "member_no", "value": "M1"}],
           "occurredAt": when, "properties": {"total": total}})
}

async fn member(k: &Kernel, b: &Brand, person: &str) -> Value {
    ok(&k.gql(&b.owner, MEMBER, json!({"p": person})).await)["cdpProfile"].clone()
}

/// `(from, to, direction)` of each `tier.changed` of `person`, oldest first.
async fn tier_events(k: &Kernel, b: &Brand, person: &str) -> Vec<(Value, Value, String)> {
    let r = k
        .gql(
            &b.owner,
            "{ events(filter: {types: [\"tier.changed\"]}, first: 100) { edges { node { personId payload } } } }",
            json!({}),
        )
        .await;
    ok(&r)["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["personId"] == person)
        .map(|n| {
            let p = &n["payload"];
            (
                p["from"].clone(),
                p["to"].clone(),
                p["direction"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The message of the first error.
fn message(r: &Value) -> &str {
    r["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {r:#}"))
}

on_both_backends! {
    async fn a_tier_is_earned_at_once_and_lost_only_when_a_period_ends(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        k.clock.set(Some(at("2026-06-01T08:00:00Z"))).unwrap();

        // A ladder that cannot work is refused with its place.
        let mut bad = ladder();
        bad["levels"][2]["min"] = json!(900);
        let r = k.gql(&b.owner, SET_TIERS, json!({"t": bad})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(message(&r).contains("tiers.levels[2].min"), "{r}");
        assert_eq!(ok(&k.gql(&b.owner, "{ cdpTiers { revision } }", json!({})).await)["cdpTiers"], Value::Null);
        let r = k.gql(&b.owner, SET_TIERS, json!({"t": ladder()})).await;
        assert_eq!(ok(&r)["setCdpTiers"]["revision"], 1);

        ok(&track(&k, &b, "b1", &[order("o1", 600, "2026-06-01T07:00:00Z")], None).await);
        let m1 = person_id(&k, &b, "member_no", "M1").await;
        let p = member(&k, &b, &m1).await;
        assert_eq!(p["tier"]["id"], "member");
        assert_eq!(p["tier"]["thisPeriod"], 600);
        assert_eq!(p["tier"]["next"], json!({"id": "silver", "min": 1000}));
        assert_eq!(p["tier"]["periodEnds"], "2027-01-01");

        // 5,000 within 2026: gold with the order that reaches it.
        ok(&track(&k, &b, "b2", &[order("o2", 4400, "2026-06-01T07:30:00Z")], None).await);
        let p = member(&k, &b, &m1).await;
        assert_eq!(p["tier"]["id"], "gold");
        assert_eq!(p["tier"]["multiplier"], 1.5);
        assert_eq!(p["tier"]["next"], Value::Null);

        // A segment of gold members, and a ladder that would drop gold is
        // refused while the segment reads it.
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "gold", "name": "Gold", "rule": {"tier": {"atLeast": "gold"}}}})).await);
        recompute(&k, &b).await;
        assert_eq!(members(&k, &b, "gold").await, BTreeSet::from([m1.clone()]));
        let mut without_gold = ladder();
        without_gold["levels"].as_array_mut().unwrap().pop();
        let r = k.gql(&b.owner, SET_TIERS, json!({"t": without_gold})).await;
        assert!(message(&r).contains("read by segment gold"), "{r}");

        // All through 2027 gold is kept, though 2027 earns only silver.
        k.clock.set(Some(at("2027-03-01T08:00:00Z"))).unwrap();
        ok(&track(&k, &b, "b3", &[order("o3", 1200, "2027-02-20T10:00:00Z")], None).await);
        recompute(&k, &b).await;
        let p = member(&k, &b, &m1).await;
        assert_eq!(p["tier"]["id"], "gold");
        assert_eq!(p["tier"]["thisPeriod"], 1200);

        // 2028: what 2027 earned. The profile says so at once; the recompute
        // writes the downgrade, once, and the segment follows.
        k.clock.set(Some(at("2028-01-02T08:00:00Z"))).unwrap();
        assert_eq!(member(&k, &b, &m1).await["tier"]["id"], "silver");
        recompute(&k, &b).await;
        recompute(&k, &b).await;
        let p = member(&k, &b, &m1).await;
        assert_eq!(p["tier"]["id"], "silver");
        assert_eq!(p["tierHistory"], json!([
            {"from": "gold", "to": "silver", "direction": "down", "reason": "recompute"},
            {"from": "member", "to": "gold", "direction": "up", "reason": "event"},
            {"from": null, "to": "member", "direction": "up", "reason": "event"},
        ]));
        assert_eq!(tier_events(&k, &b, &m1).await, vec![
            (Value::Null, json!("member"), "up".to_owned()),
            (json!("member"), json!("gold"), "up".to_owned()),
            (json!("gold"), json!("silver"), "down".to_owned()),
        ]);
        assert!(members(&k, &b, "gold").await.is_empty());

        // A new basis starts the totals again (revision 2); levels alone
        // keep them.
        let mut relabelled = ladder();
        relabelled["levels"][1]["name"] = json!("Silver");
        let r = k.gql(&b.owner, SET_TIERS, json!({"t": relabelled})).await;
        assert_eq!(ok(&r)["setCdpTiers"]["revision"], 1);
        let mut by_count = ladder();
        by_count["basis"] = json!({"event": "order.paid", "agg": "count"});
        by_count["levels"][1]["min"] = json!(3);
        by_count["levels"][2]["min"] = json!(10);
        let r = k.gql(&b.owner, SET_TIERS, json!({"t": by_count})).await;
        assert_eq!(ok(&r)["setCdpTiers"]["revision"], 2);
        recompute(&k, &b).await;
        assert_eq!(member(&k, &b, &m1).await["tier"]["id"], "member");
    }

    async fn consent_per_purpose_is_logged_and_opt_outs_leave_audiences_at_once(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        let ev = |id: &str, who: &str| json!({"messageId": id, "type": "page.viewed",
            "identifiers": [{"kind": "member_no", "value": who}], "occurredAt": "2026-11-01T00:00:00Z"});
        ok(&track(&k, &b, "b1", &[ev("e1", "C1"), ev("e2", "C2")], None).await);
        let (c1, c2) = (person_id(&k, &b, "member_no", "C1").await, person_id(&k, &b, "member_no", "C2").await);
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "sms", "name": "SMS audience", "rule": {"all": []}, "purpose": "marketing_sms"}})).await;
        assert_eq!(ok(&r)["saveSegment"]["purpose"], "marketing_sms");
        recompute(&k, &b).await;
        assert!(members(&k, &b, "sms").await.is_empty(), "nobody has granted it yet");

        let say = |person: &str, granted: bool, at: &str| json!({"personId": person, "purpose": "marketing_sms", "granted": granted, "source": "crm", "at": at});
        let r = k.gql(&b.owner, CONSENT, json!({"s": [say(&c1, true, "2026-11-02T00:00:00Z"), say(&c2, true, "2026-11-02T00:00:00Z")]})).await;
        assert_eq!(ok(&r)["setCdpConsent"], 2);
        assert_eq!(members(&k, &b, "sms").await, BTreeSet::from([c1.clone(), c2.clone()]));

        // C2 withdraws: out of the audience in the same call. A statement
        // older than the one held is logged, not taken.
        let r = k.gql(&b.owner, CONSENT, json!({"s": [say(&c2, false, "2026-11-03T00:00:00Z")]})).await;
        assert_eq!(ok(&r)["setCdpConsent"], 1);
        assert_eq!(members(&k, &b, "sms").await, BTreeSet::from([c1.clone()]));
        let r = k.gql(&b.owner, CONSENT, json!({"s": [say(&c2, true, "2026-11-02T12:00:00Z")]})).await;
        assert_eq!(ok(&r)["setCdpConsent"], 0);
        assert_eq!(members(&k, &b, "sms").await, BTreeSet::from([c1.clone()]));
        let p = member(&k, &b, &c2).await;
        assert_eq!(p["consent"], json!([{"purpose": "marketing_sms", "granted": false, "source": "crm", "at": "2026-11-03T00:00:00.000000Z"}]));
        let log: Vec<(bool, bool)> = p["consentLog"].as_array().unwrap().iter()
            .map(|l| (l["granted"].as_bool().unwrap(), l["taken"].as_bool().unwrap())).collect();
        assert_eq!(log, vec![(true, false), (false, true), (true, true)], "newest first");
        assert!(p["consentLog"][0]["by"].as_str().unwrap().starts_with("key:"), "{p}");

        // The audience file honours the opt-out too.
        let (status, csv) = k.download(&b.owner, "/files/cdp/audience", json!({"segment": "sms"})).await;
        assert_eq!(status, 200, "{csv}");
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows, ["person_id,phone,email,wechat_openid,member_no,tier", &format!("{c1},,,,C1,")]);
        let (status, _) = k.download(&b.owner, "/files/cdp/audience", json!({"segment": "nope"})).await;
        assert_eq!(status, 404);

        // A withdrawal at the same instant as a grant wins the tie.
        ok(&k.gql(&b.owner, CONSENT, json!({"s": [say(&c1, false, "2026-11-02T00:00:00Z")]})).await);
        assert!(members(&k, &b, "sms").await.is_empty());

        // cdp.consent_changed for each change of an answer, none for the
        // statement not taken.
        let r = k.gql(&b.owner, "{ events(filter: {types: [\"cdp.consent_changed\"]}, first: 100) { edges { node { personId payload } } } }", json!({})).await;
        let changes: Vec<(String, bool)> = ok(&r)["events"]["edges"].as_array().unwrap().iter()
            .map(|e| (e["node"]["personId"].as_str().unwrap().to_owned(), e["node"]["payload"]["granted"].as_bool().unwrap())).collect();
        assert_eq!(changes, vec![(c1.clone(), true), (c2.clone(), true), (c2.clone(), false), (c1.clone(), false)]);

        // The consumer's own say, signed in; never anonymously.
        let mine = "mutation { setMyCdpConsent(purpose: \"marketing_sms\", granted: true) { purpose granted source } }";
        let r = k.public_as(&b.slug, Some("o-c3"), mine, json!({})).await;
        assert_eq!(ok(&r)["setMyCdpConsent"], json!([{"purpose": "marketing_sms", "granted": true, "source": "consumer"}]));
        let r = k.public_as(&b.slug, Some("o-c3"), "{ myCdpConsent { purpose granted } }", json!({})).await;
        assert_eq!(ok(&r)["myCdpConsent"], json!([{"purpose": "marketing_sms", "granted": true}]));
        let c3 = person_id(&k, &b, "wechat_openid", "o-c3").await;
        assert_eq!(members(&k, &b, "sms").await, BTreeSet::from([c3.clone()]));
        let r = k.public_as(&b.slug, None, mine, json!({})).await;
        assert!(r.get("errors").is_some(), "anonymous: {r}");
        let r = k.public_as(&b.slug, Some("o-c3"), &mine.replace("marketing_sms", "anything_else"), json!({})).await;
        assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains("not one a consumer states"), "{r}");
        let r = k.public_as(&b.slug, None, &mine.replace("marketing_sms", "x\\u0000"), json!({})).await;
        assert!(r.get("errors").is_some(), "{r}");

        // Bad statements are refused whole, with their place; nothing changes.
        let before = member(&k, &b, &c2).await;
        let cases = [
            (json!([say(&c2, true, "2026-11-04T00:00:00Z"), {"personId": c2, "purpose": "Marketing SMS", "granted": true, "source": "crm"}]), "statements[1].purpose"),
            (json!([say(&c2, true, "2099-01-01T00:00:00Z")]), "statements[0].at"),
            (json!([say(&c2, true, "1999-12-31T00:00:00Z")]), "statements[0].at"),
            (json!([{"personId": c2, "purpose": "marketing_sms", "granted": true, "source": "c r m"}]), "statements[0].source"),
            (json!([say("P-nobody", true, "2026-11-04T00:00:00Z")]), "statements[0].personId"),
            (json!([]), "statements"),
            (Value::from(vec![say(&c2, true, "2026-11-04T00:00:00Z"); 1001]), "statements"),
        ];
        for (statements, place) in cases {
            let r = k.gql(&b.owner, CONSENT, json!({"s": statements})).await;
            assert!(message(&r).contains(place), "{place}: {r}");
        }
        let after = member(&k, &b, &c2).await;
        assert_eq!(after["consent"], before["consent"]);
        assert_eq!(after["consentLog"], before["consentLog"]);
        // Deleting the segment takes everyone out of it.
        let del = "mutation($id: String!) { deleteSegment(id: $id) { id } }";
        let r = k.gql(&b.owner, del, json!({"id": "sms"})).await;
        let job = ok(&r)["deleteSegment"]["id"].as_str().unwrap().to_owned();
        crate::support::eventually(60, || async {
            let r = k.gql(&b.owner, "query($id: String!) { cdpRecomputeJob(id: $id) { status } }", json!({"id": job})).await;
            (ok(&r)["cdpRecomputeJob"]["status"] == "DONE").then_some(())
        }).await.expect("the recompute after a delete finishes");
        let r = k.gql(&b.owner, "query($p: String!) { cdpProfile(personId: $p) { segments } }", json!({"p": c3})).await;
        assert_eq!(ok(&r)["cdpProfile"]["segments"], json!([]));
        assert_eq!(ok(&k.gql(&b.owner, "{ cdpSegments { id } }", json!({})).await)["cdpSegments"], json!([]));
        assert_eq!(code(&k.gql(&b.owner, "{ segmentMembers(id: \"sms\") { personIds } }", json!({})).await), "NOT_FOUND");
        assert_eq!(code(&k.gql(&b.owner, del, json!({"id": "sms"})).await), "NOT_FOUND");

        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "x", "name": "X", "rule": {"consent": "SMS!"}}})).await;
        assert!(message(&r).contains("rule.consent"), "{r}");
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "x", "name": "X", "rule": {"all": []}, "purpose": "SMS!"}})).await;
        assert!(message(&r).contains("purpose"), "{r}");
    }
}
