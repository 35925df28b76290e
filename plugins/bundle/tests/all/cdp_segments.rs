//! CDP segments over real HTTP, on SQLite and PostgreSQL: membership kept
//! incrementally equals a plain computation and a full recompute on a
//! generated population with merges; preview and sizes agree; bad rules
//! are refused with their place; a blocking rule over a `distinct` trait.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Utc};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::CDP_GRANTS;
use crate::support::{Brand, Kernel, code, eventually, ok};

const SAVE: &str = "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id size } }";
const MEMBERS: &str = "query($id: String!, $a: String) { segmentMembers(id: $id, after: $a, limit: 37) { personIds next } }";

/// Every member of a segment, through the paged query.
pub(crate) async fn members(k: &Kernel, b: &Brand, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let r = k
            .gql(&b.owner, MEMBERS, json!({"id": id, "a": after}))
            .await;
        let page = &ok(&r)["segmentMembers"];
        for p in page["personIds"].as_array().unwrap() {
            assert!(
                out.insert(p.as_str().unwrap().to_owned()),
                "listed twice: {p}"
            );
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return out,
        }
    }
}

async fn sizes(k: &Kernel, b: &Brand) -> BTreeMap<String, i64> {
    let r = k
        .gql(&b.owner, "{ cdpSegments { id size } }", json!({}))
        .await;
    ok(&r)["cdpSegments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["size"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The tags a person's profile shows.
async fn profile_tags(k: &Kernel, b: &Brand, person: &str) -> Value {
    let r = k
        .gql(
            &b.owner,
            "query($p: String!) { cdpProfile(personId: $p) { tags } }",
            json!({"p": person}),
        )
        .await;
    ok(&r)["cdpProfile"]["tags"].clone()
}

/// Runs a recompute and waits for it to finish.
pub(crate) async fn recompute(k: &Kernel, b: &Brand) {
    let r = k
        .gql(
            &b.owner,
            "mutation { recomputeSegments { id status } }",
            json!({}),
        )
        .await;
    let id = ok(&r)["recomputeSegments"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(60, || async {
        let r = k
            .gql(
                &b.owner,
                "query($id: String!) { cdpRecomputeJob(id: $id) { status } }",
                json!({"id": id}),
            )
            .await;
        (ok(&r)["cdpRecomputeJob"]["status"] == "DONE").then_some(())
    })
    .await
    .expect("the recompute finishes");
}

/// Member `p`'s identifier: M1 and M2, merged into M0 later, are known by
/// phone (a person holds one member number).
fn ident(p: usize) -> Value {
    if p == 1 || p == 2 {
        json!([{"kind": "phone", "value": format!("+86138000000{p:02}")}])
    } else {
        json!([{"kind": "member_no", "value": format!("M{p}")}])
    }
}

const SEGMENTS: [(&str, &str); 4] = [
    (
        "big",
        r#"{"trait": {"name": "spend_total", "op": "gte", "value": 300}}"#,
    ),
    (
        "loyal",
        r#"{"any": [{"tag": "vip"}, {"trait": {"name": "orders", "op": "gte", "value": 6}}]}"#,
    ),
    (
        "shenzhen",
        r#"{"all": [{"attribute": {"path": "city", "op": "eq", "value": "深圳"}}, {"not": {"tag": "vip"}}]}"#,
    ),
    (
        "idle",
        r#"{"trait": {"name": "orders_7d", "op": "lt", "value": 1}}"#,
    ),
];

on_both_backends! {
    async fn incremental_membership_equals_a_plain_count_and_a_full_recompute(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        ok(&k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "orders", "event": "order.paid", "agg": "count"},
            {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"},
            {"name": "orders_7d", "event": "order.paid", "agg": "count", "windowDays": 7},
        ]})).await);
        for (id, rule) in SEGMENTS {
            let rule: Value = serde_json::from_str(rule).unwrap();
            let r = k.gql(&b.owner, SAVE, json!({"i": {"id": id, "name": id, "rule": rule, "emitEvents": id == "shenzhen"}})).await;
            assert_eq!(ok(&r)["saveSegment"]["size"], 0);
        }

        // 120 members from the CRM, a third in Shenzhen, every fifth a VIP.
        let rows: Vec<Value> = (0..120)
            .map(|n| {
                let mut row = json!({"identifiers": ident(n)});
                if n.is_multiple_of(3) { row["attributes"] = json!({"city": "深圳"}); }
                if n.is_multiple_of(5) { row["tags"] = json!(["vip"]); }
                row
            })
            .collect();
        let r = k.gql(&b.owner, "mutation($r: [CdpIdentifyInput!]!) { cdpIdentify(batchId: \"crm\", rows: $r) { accepted personIds } }", json!({"r": rows})).await;
        assert_eq!(ok(&r)["cdpIdentify"]["accepted"], 120);
        let ids: Vec<String> = ok(&r)["cdpIdentify"]["personIds"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();

        // 900 orders of the first 100 over 30 days, shuffled into batches.
        let now = Utc::now();
        let mut orders: Vec<(usize, i64, chrono::DateTime<Utc>)> = (0..900)
            .map(|i| ((i * 7) % 100, ((i * 131) % 97) as i64, now - Duration::hours(((i * 53) % 720) as i64)))
            .collect();
        orders.sort_by_key(|(p, c, _)| (p * 31 + *c as usize) % 101);
        for (n, chunk) in orders.chunks(300).enumerate() {
            let events: Vec<Value> = chunk.iter().enumerate().map(|(j, (p, total, at))| json!({
                "messageId": format!("o{n}-{j}"), "type": "order.paid",
                "identifiers": ident(*p),
                "occurredAt": at.to_rfc3339(), "properties": {"total": total},
            })).collect();
            let r = k.gql(&b.owner, "mutation($b: String!, $e: [CdpEventInput!]!) { cdpTrack(batchId: $b, events: $e) { accepted } }", json!({"b": format!("b{n}"), "e": events})).await;
            assert_eq!(ok(&r)["cdpTrack"]["accepted"], 300, "{r}");
        }
        // M1 and M2 turn out to be M0; M4 is tagged VIP by hand.
        for merged in [1, 2] {
            ok(&k.gql(&b.owner, "mutation($s: ID!, $m: ID!) { mergePersons(input: {survivorId: $s, mergedId: $m, reason: \"same\"}) { id } }",
                json!({"s": ids[0], "m": ids[merged]})).await);
        }
        eventually(30, || async {
            let r = k.gql(&b.owner, "query($p: String!) { cdpProfile(personId: $p) { mergedFrom } }", json!({"p": ids[0]})).await;
            (ok(&r)["cdpProfile"]["mergedFrom"].as_array().unwrap().len() == 2).then_some(())
        }).await.expect("both merges reach the CDP");
        ok(&k.gql(&b.owner, "mutation($p: [String!]!) { tagPersons(tag: \"vip\", personIds: $p) }", json!({"p": [ids[4]]})).await);

        // A plain computation of each segment, person by person.
        let owner = |p: usize| if p == 1 || p == 2 { 0 } else { p };
        let mut spend = BTreeMap::<usize, i64>::new();
        let mut count = BTreeMap::<usize, i64>::new();
        let mut week = BTreeMap::<usize, i64>::new();
        for (p, total, at) in &orders {
            *spend.entry(owner(*p)).or_default() += total;
            *count.entry(owner(*p)).or_default() += 1;
            if (now.date_naive() - at.date_naive()).num_days() < 7 {
                *week.entry(owner(*p)).or_default() += 1;
            }
        }
        let people: Vec<usize> = (0..120).filter(|p| *p != 1 && *p != 2).collect();
        // M1 and M2 bring M0 neither a VIP tag nor Shenzhen.
        let vip = |p: usize| p.is_multiple_of(5) || p == 4;
        let city = |p: usize| p.is_multiple_of(3);
        let expect: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
            ("big", people.iter().filter(|p| spend.get(p).copied().unwrap_or(0) >= 300).map(|p| ids[*p].clone()).collect()),
            ("loyal", people.iter().filter(|p| vip(**p) || count.get(p).copied().unwrap_or(0) >= 6).map(|p| ids[*p].clone()).collect()),
            ("shenzhen", people.iter().filter(|p| city(**p) && !vip(**p)).map(|p| ids[*p].clone()).collect()),
            ("idle", people.iter().filter(|p| week.get(p).copied().unwrap_or(0) < 1).map(|p| ids[*p].clone()).collect()),
        ]);
        for (id, want) in &expect {
            assert!(!want.is_empty() && want.len() < people.len(), "{id} splits the population");
            assert_eq!(&members(&k, &b, id).await, want, "{id}, kept incrementally");
        }
        let before = sizes(&k, &b).await;
        for (id, want) in &expect {
            assert_eq!(before[*id], want.len() as i64, "{id}'s size");
        }

        // A full recompute finds nothing to change.
        recompute(&k, &b).await;
        for (id, want) in &expect {
            assert_eq!(&members(&k, &b, id).await, want, "{id}, recomputed");
        }
        assert_eq!(sizes(&k, &b).await, before);

        // Entering and leaving Shenzhen's segment were events (it opted in);
        // the others emit none.
        let mut inside = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let r = k.gql(&b.owner, "query($a: String) { events(filter: {types: [\"segment.entered\", \"segment.left\"]}, first: 100, after: $a) \
                { edges { node { type personId payload } } pageInfo { hasNextPage endCursor } } }", json!({"a": after})).await;
            let page = &ok(&r)["events"];
            for e in page["edges"].as_array().unwrap() {
                let n = &e["node"];
                assert_eq!(n["payload"]["segment"], "shenzhen", "{n}");
                let p = n["personId"].as_str().unwrap().to_owned();
                if n["type"] == "segment.entered" { inside.insert(p); } else { inside.remove(&p); }
            }
            if page["pageInfo"]["hasNextPage"] != true { break; }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        assert_eq!(&inside, &expect["shenzhen"], "the events replay to the membership");

        // The preview of an unsaved rule agrees with what a save would keep.
        let r = k.gql(&b.owner, "query($r: JSON!) { previewSegment(rule: $r, sample: 5000) { scanned matched profiles estimate personIds } }",
            json!({"r": serde_json::from_str::<Value>(SEGMENTS[0].1).unwrap()})).await;
        let p = &ok(&r)["previewSegment"];
        assert_eq!(p["scanned"], people.len());
        assert_eq!(p["profiles"], people.len(), "merged persons are not counted");
        assert_eq!(p["matched"], expect["big"].len());
        assert_eq!(p["estimate"], expect["big"].len());
        assert!(p["personIds"].as_array().unwrap().iter().all(|id| expect["big"].contains(id.as_str().unwrap())));
    }

    async fn a_bad_segment_is_refused_with_its_place(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        ok(&k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"},
        ]})).await);
        let cases = [
            (json!({"id": "a", "name": "A", "rule": {"all": [{"trait": {"name": "nope", "op": "gte", "value": 1}}]}}), "rule.all[0].trait.name"),
            (json!({"id": "a", "name": "A", "rule": {"any": [{"tag": "vip"}, {"trait": {"name": "spend_total", "op": "≥", "value": 1}}]}}), "rule.any[1].trait.op"),
            (json!({"id": "a|b", "name": "A", "rule": {"tag": "vip"}}), "id"),
            (json!({"id": "a", "name": " ", "rule": {"tag": "vip"}}), "name"),
        ];
        for (input, place) in cases {
            let r = k.gql(&b.owner, SAVE, json!({"i": input})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{input}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(place), "{place}: {r}");
        }
        assert_eq!(sizes(&k, &b).await, BTreeMap::new(), "nothing saved");
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "big", "name": "Big", "rule": {"trait": {"name": "spend_total", "op": "gte", "value": 1}}}})).await;
        ok(&r);
        // A trait a segment reads cannot be dropped.
        let r = k.gql(&b.owner, "mutation { setCdpTraits(traits: []) { name } }", json!({})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("segment big"), "{r}");
        assert_eq!(code(&k.gql(&b.owner, MEMBERS, json!({"id": "nope"})).await), "NOT_FOUND");

        // Segments of segments: evaluated after the ones they read, never in
        // a cycle, and a segment another reads cannot be deleted.
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "small", "name": "Small", "rule": {"not": {"segment": "big"}}}})).await);
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "loop_a", "name": "A", "rule": {"segment": "small"}}})).await);
        for (input, place) in [
            (json!({"id": "big", "name": "Big", "rule": {"segment": "loop_a"}}), "segments in a cycle: big → loop_a → small → big"),
            (json!({"id": "me", "name": "Me", "rule": {"segment": "me"}}), "cycle"),
            (json!({"id": "x", "name": "X", "rule": {"segment": "nope"}}), "rule.segment: no segment"),
        ] {
            let r = k.gql(&b.owner, SAVE, json!({"i": input})).await;
            assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains(place), "{place}: {r}");
        }
        let r = k.gql(&b.owner, "mutation { deleteSegment(id: \"small\") { id } }", json!({})).await;
        assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains("loop_a reads small"), "{r}");
        ok(&k.gql(&b.owner, "mutation($b: String!, $e: [CdpEventInput!]!) { cdpTrack(batchId: $b, events: $e) { accepted } }", json!({"b": "t1", "e": [
            {"messageId": "o1", "type": "order.paid", "identifiers": [{"kind": "member_no", "value": "BIG"}], "occurredAt": "2026-11-01T00:00:00Z", "properties": {"total": 5}},
            {"messageId": "o2", "type": "page.viewed", "identifiers": [{"kind": "member_no", "value": "SMALL"}], "occurredAt": "2026-11-01T00:00:00Z"},
        ]})).await);
        let small = crate::cdp::person_id(&k, &b, "member_no", "SMALL").await;
        assert_eq!(members(&k, &b, "loop_a").await, BTreeSet::from([small.clone()]), "kept on the write, in order");
        let r = k.gql(&b.owner, "query($r: JSON!) { previewSegment(rule: $r) { matched personIds } }", json!({"r": {"segment": "small"}})).await;
        assert_eq!(ok(&r)["previewSegment"]["personIds"], json!([small]));

        // A forged recompute step (another producer) does nothing.
        let forged = k.inject_event(&b, "cdp.recompute_step", None, json!({"job": "x"}), "shop").await;
        k.wait_delivered(&forged, 30).await;
    }
}

on_both_backends! {
    async fn a_rule_based_tag_is_held_while_its_rule_matches(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        ok(&k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "orders", "event": "order.paid", "agg": "count"},
        ]})).await);
        // A manual tag someone holds cannot become a rule-based one.
        let r = k.gql(&b.owner, "mutation($r: [CdpIdentifyInput!]!) { cdpIdentify(batchId: \"crm\", rows: $r) { personIds } }",
            json!({"r": [{"identifiers": [{"kind": "member_no", "value": "A"}], "tags": ["vip"]}, {"identifiers": [{"kind": "member_no", "value": "B"}]}]})).await;
        let ids: Vec<String> = ok(&r)["cdpIdentify"]["personIds"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        let rule = json!({"trait": {"name": "orders", "op": "gte", "value": 2}});
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "repeat", "name": "Repeat", "rule": rule, "tag": "vip"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("manual tag 1 persons hold"), "{r}");
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "repeat", "name": "Repeat", "rule": rule, "tag": "bad tag"}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "repeat", "name": "Repeat", "rule": rule, "tag": "复购"}})).await);
        // Another segment's tag, a tag leaf reading its own segment, and
        // setting it by hand are refused.
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "other", "name": "O", "rule": {"tag": "vip"}, "tag": "复购"}})).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("already segment repeat's"), "{r}");
        let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "repeat", "name": "Repeat", "rule": {"all": [rule, {"not": {"tag": "复购"}}]}, "tag": "复购"}})).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("cycle"), "{r}");
        for op in ["tagPersons", "untagPersons"] {
            let r = k.gql(&b.owner, &format!("mutation($p: [String!]!) {{ {op}(tag: \"复购\", personIds: $p) }}"), json!({"p": [ids[1]]})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{op}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains("rule-based"), "{r}");
        }
        // A segment reading the tag reads its segment.
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "vip_repeat", "name": "VR", "rule": {"all": [{"tag": "vip"}, {"tag": "复购"}]}}})).await);

        // Held while the rule matches: B orders twice, A once.
        let order = |n: usize, who: &str| json!({"messageId": format!("o{n}"), "type": "order.paid",
            "identifiers": [{"kind": "member_no", "value": who}], "occurredAt": chrono::Utc::now().to_rfc3339()});
        ok(&crate::cdp::track(&k, &b, "t1", &[order(1, "B"), order(2, "B"), order(3, "A")], None).await);
        assert_eq!(profile_tags(&k, &b, &ids[1]).await, json!(["复购"]));
        assert_eq!(profile_tags(&k, &b, &ids[0]).await, json!(["vip"]));
        ok(&crate::cdp::track(&k, &b, "t2", &[order(4, "A")], None).await);
        assert_eq!(profile_tags(&k, &b, &ids[0]).await, json!(["vip", "复购"]));
        assert_eq!(members(&k, &b, "vip_repeat").await, BTreeSet::from([ids[0].clone()]));
        let r = k.gql(&b.owner, "{ cdpTags { tag persons segment } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTags"], json!([
            {"tag": "vip", "persons": 1, "segment": null},
            {"tag": "复购", "persons": 2, "segment": "repeat"},
        ]));
        // Read by vip_repeat, the tag cannot be renamed or dropped.
        for tag in [json!("复购2"), Value::Null] {
            let r = k.gql(&b.owner, SAVE, json!({"i": {"id": "repeat", "name": "Repeat", "rule": rule, "tag": tag}})).await;
            assert!(r["errors"][0]["message"].as_str().unwrap_or_default().contains("segment vip_repeat reads the tag 复购"), "{r}");
        }
        // The rule changes: who no longer matches loses the tag.
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "repeat", "name": "Repeat", "rule": {"trait": {"name": "orders", "op": "gte", "value": 3}}, "tag": "复购"}})).await);
        eventually(30, || async { (members(&k, &b, "repeat").await.is_empty()).then_some(()) }).await.expect("recomputed");
        assert_eq!(profile_tags(&k, &b, &ids[1]).await, json!([]));
        assert_eq!(members(&k, &b, "vip_repeat").await, BTreeSet::new());
    }
}

on_both_backends! {
    async fn a_blocking_rule_counts_the_provinces_scanned_in_today(kind) {
        // The brief's prize farmer: scans from too many provinces in a day.
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        let r = k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "provinces_1d", "event": "scan.reported", "agg": "distinct", "windowDays": 1}]})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("traits[0].property"), "{r}");
        ok(&k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "provinces_1d", "event": "scan.reported", "agg": "distinct", "property": "province", "windowDays": 1}]})).await);
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "farmers", "name": "羊毛党", "blocks": true,
            "rule": {"trait": {"name": "provinces_1d", "op": "gte", "value": 3}}}})).await);
        let now = Utc::now();
        let scan = |n: usize, who: &str, province: &str, days_ago: i64| json!({"messageId": format!("s{n}"), "type": "scan.reported",
            "identifiers": [{"kind": "member_no", "value": who}], "occurredAt": (now - Duration::days(days_ago)).to_rfc3339(),
            "properties": {"province": province}});
        // F: three provinces today. G: three scans in two provinces today,
        // a third province yesterday.
        ok(&crate::cdp::track(&k, &b, "t1", &[scan(1, "F", "CN-GD", 0), scan(2, "F", "CN-ZJ", 0), scan(3, "F", "CN-SC", 0),
            scan(4, "G", "CN-GD", 0), scan(5, "G", "CN-GD", 0), scan(6, "G", "CN-ZJ", 0), scan(7, "G", "CN-SC", 1)], None).await);
        let who = |m: &str| {
            let (k, b, m) = (&k, &b, m.to_owned());
            async move {
                let r = k.gql(&b.owner, "query($v: String!) { personByIdentifier(kind: \"member_no\", value: $v) { id } }", json!({"v": m})).await;
                let p = ok(&r)["personByIdentifier"]["id"].as_str().unwrap().to_owned();
                let r = k.gql(&b.owner, "query($p: String!) { cdpProfile(personId: $p) { blocked traits { name value } } }", json!({"p": p})).await;
                ok(&r)["cdpProfile"].clone()
            }
        };
        let f = who("F").await;
        assert_eq!(f["blocked"], "segment farmers", "{f}");
        assert_eq!(f["traits"], json!([{"name": "provinces_1d", "value": 3}]));
        let g = who("G").await;
        assert_eq!(g["blocked"], Value::Null, "{g}");
        assert_eq!(g["traits"], json!([{"name": "provinces_1d", "value": 2}]));
        // The same event again adds nothing.
        ok(&crate::cdp::track(&k, &b, "t2", &[scan(6, "G", "CN-SC", 0)], None).await);
        assert_eq!(who("G").await["traits"], json!([{"name": "provinces_1d", "value": 2}]));
    }
}
