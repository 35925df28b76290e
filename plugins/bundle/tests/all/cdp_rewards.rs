//! The rewards plugin reading the CDP's member facts end to end, on
//! SQLite and PostgreSQL: a campaign for gold members with the tier's
//! points multiplier and one for a segment, through the plugin-to-plugin
//! call `cdp.memberFacts`, refused while the tenant has not granted it;
//! the blocklist, by hand and by a blocking segment, refusing claims.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::{CDP_GRANTS, person_id, track};
use crate::rewards::{CREATE, STATUS, campaign, claim, points, running, scan, shop};
use crate::support::{Brand, Kernel, REWARDS_GRANTS, code, eventually, ok};

fn spent(id: &str, openid: &str, total: i64) -> Value {
    json!({"messageId": id, "source": "shop", "type": "order.paid", "occurredAt": chrono::Utc::now().to_rfc3339(),
           "identifiers": [{"kind": "wechat_openid", "value": openid}], "properties": {"total": total}})
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `(campaign, outcome, points)` of each check of a claim, by campaign.
fn results(c: &Value) -> Vec<(String, String, Option<i64>)> {
    let mut out: Vec<_> = c["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| {
            let id = ch["campaign"].as_str().unwrap().to_owned();
            let pts = c["awards"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["campaign"] == ch["campaign"])
                .and_then(|a| a["points"].as_i64());
            (id, ch["outcome"].as_str().unwrap().to_owned(), pts)
        })
        .collect();
    out.sort();
    out
}

/// The tenant grants the rewards plugin the call `cdp.memberFacts`.
async fn grant_member_facts(k: &Kernel, b: &Brand) {
    let r = k
        .gql(&b.owner, "{ plugins { name version } }", json!({}))
        .await;
    let version = ok(&r)["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "rewards")
        .unwrap()["version"]
        .clone();
    let r = k.gql(&b.owner, "mutation($v: String!, $c: [String!]) { upgradePlugin(name: \"rewards\", version: $v, capabilities: $c, calls: [\"cdp.memberFacts\"]) { calls } }",
        json!({"v": version, "c": REWARDS_GRANTS})).await;
    assert_eq!(ok(&r)["upgradePlugin"]["calls"], json!(["cdp.memberFacts"]));
}

/// Today's awards: `(person, coupon)`, sorted.
async fn coupons_given(k: &Kernel, b: &Brand) -> Vec<(String, String)> {
    let r = k
        .gql(
            &b.owner,
            "query($d: String!) { rewardAwards(day: $d) { awards { personId coupon scanId } } }",
            json!({"d": chrono::Utc::now().format("%Y-%m-%d").to_string()}),
        )
        .await;
    let mut out: Vec<(String, String)> = ok(&r)["rewardAwards"]["awards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["personId"].as_str().unwrap().to_owned(),
                a["coupon"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

on_both_backends! {
    async fn campaigns_for_a_tier_and_a_segment_pay_the_tiers_multiplier(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 10, json!({"honour_blocklist": true}), &[]).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;

        // Until the tenant grants the call, a campaign that reads member
        // facts is refused, saying what to grant.
        let gold_only = campaign(json!({"tier": ["gold"]}), points(10), json!({"name": "Gold bonus", "tierMultiplier": true}));
        let r = k.gql(&b.owner, CREATE, json!({"i": gold_only})).await;
        let m = r["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(m.contains("cdp.memberFacts"), "{m}");
        grant_member_facts(&k, &b).await;
        // Clients cannot ask it: it is offered to plugins only.
        let r = k.gql(&b.owner, "{ memberFacts(personId: \"x\") { tier } }", json!({})).await;
        assert!(r.get("errors").is_some(), "{r}");

        ok(&k.gql(&b.owner, "mutation($t: JSON) { setCdpTiers(tiers: $t) { revision } }", json!({"t": {
            "basis": {"event": "order.paid", "agg": "sum", "property": "total"},
            "period": "year",
            "levels": [{"id": "member", "name": "Member", "min": 0},
                       {"id": "gold", "name": "金卡 Gold", "min": 100, "multiplier": 1.5}]
        }})).await);
        ok(&k.gql(&b.owner, "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }",
            json!({"i": {"id": "fans", "name": "Fans", "rule": {"tag": "fan"}}})).await);
        let gold = running(&k, &b, gold_only).await;
        let fans = running(&k, &b, campaign(json!({"segment": ["fans"]}), points(7), json!({"name": "Fans", "tierMultiplier": false}))).await;

        // Alice, a member but not gold nor a fan: neither holds.
        ok(&track(&k, &b, "t1", &[spent("o1", "o-alice", 40)], None).await);
        let s = scan(&k, &b, &codes[0], None, Some("o-alice")).await;
        let c = claim(&k, &b, &s).await;
        assert_eq!(results(&c), sorted(vec![(fans.clone(), "NOT_ELIGIBLE".into(), None), (gold.clone(), "NOT_ELIGIBLE".into(), None)]));

        // Gold after 100 spent this year: 10 points × 1.5.
        ok(&track(&k, &b, "t2", &[spent("o2", "o-alice", 60)], None).await);
        let s = scan(&k, &b, &codes[1], None, Some("o-alice")).await;
        let c = claim(&k, &b, &s).await;
        assert_eq!(results(&c), sorted(vec![(fans.clone(), "NOT_ELIGIBLE".into(), None), (gold.clone(), "WON".into(), Some(15))]));

        // Tagged a fan: the segment's campaign too, without the multiplier.
        let alice = person_id(&k, &b, "wechat_openid", "o-alice").await;
        ok(&k.gql(&b.owner, "mutation($p: [String!]!) { tagPersons(tag: \"fan\", personIds: $p) }", json!({"p": [alice]})).await);
        let s = scan(&k, &b, &codes[2], None, Some("o-alice")).await;
        let c = claim(&k, &b, &s).await;
        assert_eq!(results(&c), sorted(vec![(fans.clone(), "WON".into(), Some(7)), (gold.clone(), "WON".into(), Some(15))]));
        let r = k.gql(&b.owner, "query($p: String!) { pointsWallet(personId: $p) { balance } }", json!({"p": alice})).await;
        assert_eq!(ok(&r)["pointsWallet"]["balance"], 37);

        // Blocked by hand: every campaign refuses, with its own outcome.
        let block = "mutation($p: [String!]!, $r: String!) { blockPersons(personIds: $p, reason: $r) }";
        let r = k.gql(&b.owner, block, json!({"p": [alice], "r": "prize farmer"})).await;
        assert_eq!(ok(&r)["blockPersons"], 1);
        assert_eq!(ok(&k.gql(&b.owner, block, json!({"p": [alice], "r": "again"})).await)["blockPersons"], 0);
        for (bad, why) in [(json!({"p": [alice], "r": " "}), "reason"), (json!({"p": ["P-nobody"], "r": "x"}), "personIds[0]"), (json!({"p": [], "r": "x"}), "personIds")] {
            let r = k.gql(&b.owner, block, bad).await;
            assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains(why), "{why}: {r}");
        }
        let r = k.gql(&b.owner, "{ cdpBlocklist { entries { personId reason by } next } }", json!({})).await;
        let entries = &ok(&r)["cdpBlocklist"]["entries"];
        assert_eq!(entries.as_array().unwrap().len(), 1);
        assert_eq!(entries[0]["reason"], "prize farmer");
        let s = scan(&k, &b, &codes[4], None, Some("o-alice")).await;
        let c = claim(&k, &b, &s).await;
        assert_eq!(c["outcome"], "BLOCKED", "{c}");
        assert_eq!(results(&c), sorted(vec![(fans.clone(), "BLOCKED".into(), None), (gold.clone(), "BLOCKED".into(), None)]));
        let r = k.gql(&b.owner, "mutation($p: [String!]!) { unblockPersons(personIds: $p) }", json!({"p": [alice]})).await;
        assert_eq!(ok(&r)["unblockPersons"], 1);

        // Blocked by rule while tagged a farmer, free again when untagged.
        ok(&k.gql(&b.owner, "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }",
            json!({"i": {"id": "farmers", "name": "羊毛党", "rule": {"tag": "farmer"}, "blocks": true}})).await);
        ok(&k.gql(&b.owner, "mutation($p: [String!]!) { tagPersons(tag: \"farmer\", personIds: $p) }", json!({"p": [alice]})).await);
        let r = k.gql(&b.owner, "query($p: String!) { cdpProfile(personId: $p) { blocked } }", json!({"p": alice})).await;
        assert_eq!(ok(&r)["cdpProfile"]["blocked"], "segment farmers");
        let s = scan(&k, &b, &codes[5], None, Some("o-alice")).await;
        assert_eq!(claim(&k, &b, &s).await["outcome"], "BLOCKED");
        ok(&k.gql(&b.owner, "mutation($p: [String!]!) { untagPersons(tag: \"farmer\", personIds: $p) }", json!({"p": [alice]})).await);
        let s = scan(&k, &b, &codes[6], None, Some("o-alice")).await;
        let c = claim(&k, &b, &s).await;
        assert_eq!(results(&c), sorted(vec![(fans.clone(), "WON".into(), Some(7)), (gold.clone(), "WON".into(), Some(15))]));

        // Bob, whom the CDP has never seen: no member facts, nothing held.
        let s = scan(&k, &b, &codes[3], None, Some("o-bob")).await;
        let c = claim(&k, &b, &s).await;
        assert_eq!(results(&c), sorted(vec![(fans.clone(), "NOT_ELIGIBLE".into(), None), (gold.clone(), "NOT_ELIGIBLE".into(), None)]));

        // Carol, on a farmers' list by her openid before Keel ever saw
        // her: blocked from her first scan, as the person One ID made.
        let by_ids = "mutation($i: [CdpIdentifierInput!]!, $r: String!) { blockIdentifiers(identifiers: $i, reason: $r) }";
        let r = k.gql(&b.owner, by_ids, json!({"i": [{"kind": "wechat_openid", "value": "o-carol"}, {"kind": "wechat_openid", "value": "o-bob"}], "r": "farm list 12"})).await;
        let blocked = ok(&r)["blockIdentifiers"].as_array().unwrap().clone();
        let carol = person_id(&k, &b, "wechat_openid", "o-carol").await;
        assert_eq!(blocked, [json!(carol), json!(person_id(&k, &b, "wechat_openid", "o-bob").await)]);
        let s = scan(&k, &b, &codes[7], None, Some("o-carol")).await;
        assert_eq!(claim(&k, &b, &s).await["outcome"], "BLOCKED");
        for (bad, why) in [
            (json!({"i": [{"kind": "phone", "value": "+8613900000001"}, {"kind": "shoe_size", "value": "42"}], "r": "x"}), "identifiers[1]"),
            (json!({"i": [], "r": "x"}), "identifiers: 1-1000"),
            (json!({"i": [{"kind": "phone", "value": "+8613900000001"}], "r": "\u{7}"}), "reason"),
        ] {
            let r = k.gql(&b.owner, by_ids, bad).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{why}: {r}");
            assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains(why), "{why}: {r}");
        }
        let r = k.gql(&b.owner, "{ personByIdentifier(kind: \"phone\", value: \"+8613900000001\") { id } }", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND", "a refused batch creates nobody");
    }

    async fn a_coupon_for_reaching_gold_is_given_once_on_what_the_cdp_holds(kind) {
        let k = Kernel::start(kind).await;
        let (b, _) = shop(&k, "acme", 1, json!({}), &[]).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        grant_member_facts(&k, &b).await;
        ok(&k.gql(&b.owner, "mutation($t: JSON) { setCdpTiers(tiers: $t) { revision } }", json!({"t": {
            "basis": {"event": "order.paid", "agg": "sum", "property": "total"},
            "period": "year",
            "levels": [{"id": "member", "name": "Member", "min": 0}, {"id": "silver", "name": "Silver", "min": 50},
                       {"id": "gold", "name": "金卡 Gold", "min": 100}]
        }})).await);
        let table = json!([{"id": "welcome", "name": "金卡礼券", "kind": "COUPON", "weight": 1, "stock": 3}]);
        // A TIER_UP campaign names the tiers it rewards, and is not limited to a node.
        let r = k.gql(&b.owner, CREATE, json!({"i": campaign(json!({"all": []}), table.clone(), json!({"trigger": "TIER_UP"}))})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("names the tiers"), "{r}");
        let r = k.gql(&b.owner, CREATE, json!({"i": campaign(json!({"tier": ["gold"]}), table.clone(), json!({"trigger": "TIER_UP", "limitedTo": "CN-GD"}))})).await;
        assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains("rewards members wherever they are"), "{r}");
        let id = running(&k, &b, campaign(json!({"tier": ["gold"]}), table, json!({"name": "Gold welcome", "trigger": "TIER_UP"}))).await;
        ok(&k.gql(&b.owner, "mutation($c: String!, $codes: [String!]!) { addCoupons(campaign: $c, prize: \"welcome\", codes: $codes) }",
            json!({"c": id, "codes": ["GOLD-1", "GOLD-2", "GOLD-3"]})).await);
        ok(&k.gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"})).await);
        // Paused and updated without naming the trigger: still TIER_UP.
        ok(&k.gql(&b.owner, STATUS, json!({"id": id, "s": "PAUSED"})).await);
        let again = campaign(json!({"tier": ["gold"]}), json!([{"id": "welcome", "name": "金卡礼券", "kind": "COUPON", "weight": 1, "stock": 3}]), json!({"name": "Gold welcome"}));
        ok(&k.gql(&b.owner, "mutation($id: String!, $i: CampaignInput!) { updateCampaign(id: $id, input: $i) { id } }", json!({"id": id, "i": again})).await);
        ok(&k.gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"})).await);
        let r = k.gql(&b.owner, "query($id: String!) { campaign(id: $id) { trigger } }", json!({"id": id})).await;
        assert_eq!(ok(&r)["campaign"]["trigger"], "TIER_UP");

        // Alice reaches silver: nothing. Bob reaches gold at once: a coupon.
        ok(&track(&k, &b, "t1", &[spent("o1", "o-alice", 60), spent("o2", "o-bob", 120)], None).await);
        let bob = person_id(&k, &b, "wechat_openid", "o-bob").await;
        let alice = person_id(&k, &b, "wechat_openid", "o-alice").await;
        eventually(30, || async { (!coupons_given(&k, &b).await.is_empty()).then_some(()) }).await.expect("bob's coupon");
        // Alice reaches gold later: hers.
        ok(&track(&k, &b, "t2", &[spent("o3", "o-alice", 50)], None).await);
        eventually(30, || async { (coupons_given(&k, &b).await.len() == 2).then_some(()) }).await.expect("alice's coupon");
        let given = coupons_given(&k, &b).await;
        let mut want = vec![(bob.clone(), "GOLD-1".to_owned()), (alice.clone(), "GOLD-2".to_owned())];
        want.sort();
        assert_eq!(given, want);

        // The CDP's event again for Bob (a redelivery, a replay), and one
        // saying Carol reached gold when the CDP holds her at member: the
        // tier is read from the CDP, and a person is given once.
        ok(&track(&k, &b, "t3", &[spent("o4", "o-carol", 10)], None).await);
        let carol = person_id(&k, &b, "wechat_openid", "o-carol").await;
        let up = json!({"from": "silver", "to": "gold", "direction": "up", "reason": "event"});
        for who in [&bob, &carol] {
            let e = k.inject_event(&b, "tier.changed", Some(who), up.clone(), "cdp").await;
            k.wait_delivered(&e, 30).await;
        }
        // Forged by another plugin: ignored.
        let e = k.inject_event(&b, "tier.changed", Some(&carol), up, "shop").await;
        k.wait_delivered(&e, 30).await;
        assert_eq!(coupons_given(&k, &b).await, want, "nobody given twice, nor on a payload's word");
        let r = k.gql(&b.owner, "query($d: String!) { rewardAwards(day: $d) { awards { scanId codeId } } }",
            json!({"d": chrono::Utc::now().format("%Y-%m-%d").to_string()})).await;
        for a in ok(&r)["rewardAwards"]["awards"].as_array().unwrap() {
            assert!(a["scanId"].as_str().unwrap().starts_with("tier:"), "{a}");
        }
    }
}
