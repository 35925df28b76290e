//! The rewards plugin reading the CDP's member facts end to end, on
//! SQLite and PostgreSQL: a campaign for gold members with the tier's
//! points multiplier and one for a segment, through the plugin-to-plugin
//! call `cdp.memberFacts`, refused while the tenant has not granted it;
//! the blocklist, by hand and by a blocking segment, refusing claims.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::{CDP_GRANTS, person_id, track};
use crate::rewards::{CREATE, campaign, claim, points, running, scan, shop};
use crate::support::{Kernel, REWARDS_GRANTS, ok};

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
        let r = k.gql(&b.owner, "{ plugins { name version } }", json!({})).await;
        let version = ok(&r)["plugins"].as_array().unwrap().iter()
            .find(|p| p["name"] == "rewards").unwrap()["version"].clone();
        let r = k.gql(&b.owner, "mutation($v: String!, $c: [String!]) { upgradePlugin(name: \"rewards\", version: $v, capabilities: $c, calls: [\"cdp.memberFacts\"]) { calls } }",
            json!({"v": version, "c": REWARDS_GRANTS})).await;
        assert_eq!(ok(&r)["upgradePlugin"]["calls"], json!(["cdp.memberFacts"]));
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
        assert_eq!(results(&c), sorted(vec![(fans, "NOT_ELIGIBLE".into(), None), (gold, "NOT_ELIGIBLE".into(), None)]));
    }
}
