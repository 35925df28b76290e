//! The CDP plugin over real HTTP, on SQLite and PostgreSQL: computed
//! traits exact after out-of-order, duplicate and replayed batches and
//! after a merge; scans taken from the codes plugin only; tags; and every
//! kind of bad input refused with its place, losing nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Utc};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::codes::{activate, code_of, setup};
use crate::rewards::scan;
use crate::support::{Brand, Kernel, code, eventually, ok};

pub const CDP_GRANTS: &[&str] = &[
    "records",
    "events",
    "counters",
    "persons-read",
    "persons-write",
];

const TRACK: &str = "mutation($b: String!, $e: [CdpEventInput!]!, $m: CdpBatchMode) { cdpTrack(batchId: $b, events: $e, mode: $m) \
    { batchId accepted duplicates rejected { index message } personIds } }";
const IDENTIFY: &str = "mutation($b: String!, $r: [CdpIdentifyInput!]!, $m: CdpBatchMode) { cdpIdentify(batchId: $b, rows: $r, mode: $m) \
    { batchId accepted duplicates rejected { index message } personIds } }";
const PROFILE: &str = "query($p: String!, $a: String, $l: Int) { cdpProfile(personId: $p, after: $a, limit: $l) { personId mergedFrom \
    identifiers { kind value } attributes tags events lastSeen traits { name value } \
    timeline { events { type source messageId occurredAt properties } next } } }";
const SET_TRAITS: &str =
    "mutation($t: JSON!) { setCdpTraits(traits: $t) { name revision definition } }";
const TAG: &str = "mutation($t: String!, $p: [String!]!) { tagPersons(tag: $t, personIds: $p) }";
const UNTAG: &str =
    "mutation($t: String!, $p: [String!]!) { untagPersons(tag: $t, personIds: $p) }";

pub(crate) async fn brand_with_cdp(k: &Kernel, slug: &str) -> Brand {
    let b = k.brand(slug, json!({})).await;
    k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
    b
}

pub(crate) async fn track(
    k: &Kernel,
    b: &Brand,
    batch: &str,
    events: &[Value],
    mode: Option<&str>,
) -> Value {
    k.gql(&b.owner, TRACK, json!({"b": batch, "e": events, "m": mode}))
        .await
}

async fn profile(k: &Kernel, b: &Brand, person: &str) -> Value {
    let r = k.gql(&b.owner, PROFILE, json!({"p": person})).await;
    ok(&r)["cdpProfile"].clone()
}

fn traits(p: &Value) -> BTreeMap<String, Value> {
    p["traits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["value"].clone()))
        .collect()
}

pub(crate) async fn person_id(k: &Kernel, b: &Brand, kind: &str, value: &str) -> String {
    let r = k
        .gql(
            &b.owner,
            "query($k: String!, $v: String!) { personByIdentifier(kind: $k, value: $v) { id } }",
            json!({"k": kind, "v": value}),
        )
        .await;
    ok(&r)["personByIdentifier"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no person {kind}:{value}: {r}"))
        .to_owned()
}

/// The traits the order tests declare.
fn order_traits() -> Value {
    json!([
        {"name": "orders", "event": "order.paid", "agg": "count"},
        {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"},
        {"name": "biggest", "event": "order.paid", "agg": "max", "property": "total"},
        {"name": "first_store", "event": "order.paid", "agg": "first", "property": "store"},
        {"name": "last_store", "event": "order.paid", "agg": "last", "property": "store"},
        {"name": "spend_7d", "event": "order.paid", "agg": "sum", "property": "total", "windowDays": 7},
    ])
}

/// One generated order event.
#[derive(Clone)]
struct Order {
    n: usize,
    bob: bool,
    paid: bool,
    cents: i64,
    store: String,
    at: chrono::DateTime<Utc>,
}

fn orders(count: usize) -> Vec<Order> {
    let now = Utc::now();
    (0..count)
        .map(|n| Order {
            n,
            bob: n.is_multiple_of(3),
            paid: n % 10 != 9,
            cents: ((n * 7919) % 50_000) as i64 + 1,
            store: format!("S{}", n % 4),
            at: now - Duration::hours(5 * n as i64) - Duration::minutes(17),
        })
        .collect()
}

fn event(o: &Order) -> Value {
    let ids = if o.bob {
        json!([{"kind": "member_no", "value": "M-7"}])
    } else {
        json!([{"kind": "phone", "value": "+8613800000001"}])
    };
    json!({
        "messageId": format!("m{}", o.n),
        "source": if o.n.is_multiple_of(2) { "tmall" } else { "crm" },
        "type": if o.paid { "order.paid" } else { "order.refunded" },
        "identifiers": ids,
        "occurredAt": o.at.to_rfc3339(),
        "properties": {"total": o.cents as f64 / 100.0, "store": o.store},
    })
}

fn money(cents: i64) -> Value {
    if cents % 100 == 0 {
        json!(cents / 100)
    } else {
        json!(cents as f64 / 100.0)
    }
}

/// The traits, computed plainly from the orders a person made.
fn expected(os: &[&Order]) -> BTreeMap<String, Value> {
    let mut paid: Vec<&&Order> = os.iter().filter(|o| o.paid).collect();
    paid.sort_by_key(|o| o.at);
    let today = Utc::now().date_naive();
    let week: i64 = paid
        .iter()
        .filter(|o| (today - o.at.date_naive()).num_days() < 7)
        .map(|o| o.cents)
        .sum();
    BTreeMap::from([
        ("orders".to_owned(), json!(paid.len())),
        (
            "spend_total".to_owned(),
            money(paid.iter().map(|o| o.cents).sum()),
        ),
        (
            "biggest".to_owned(),
            paid.iter()
                .map(|o| money(o.cents))
                .max_by(|a, b| a.as_f64().partial_cmp(&b.as_f64()).unwrap())
                .unwrap_or(Value::Null),
        ),
        (
            "first_store".to_owned(),
            paid.first().map(|o| json!(o.store)).unwrap_or(Value::Null),
        ),
        (
            "last_store".to_owned(),
            paid.last().map(|o| json!(o.store)).unwrap_or(Value::Null),
        ),
        ("spend_7d".to_owned(), money(week)),
    ])
}

on_both_backends! {
    async fn traits_stay_exact_through_shuffled_duplicate_replayed_and_merged_input(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        ok(&k.gql(&b.owner, SET_TRAITS, json!({"t": order_traits()})).await);

        // 60 orders over 12 days, sent newest and oldest mixed, in three
        // batches; the second batch is sent twice.
        let all = orders(61);
        let (sent, late) = all.split_at(60);
        let mut shuffled: Vec<&Order> = sent.iter().collect();
        shuffled.sort_by_key(|o| (o.n * 31) % 61);
        let mut reports = Vec::new();
        for (i, chunk) in shuffled.chunks(20).enumerate() {
            let events: Vec<Value> = chunk.iter().map(|o| event(o)).collect();
            let r = track(&k, &b, &format!("batch-{i}"), &events, None).await;
            let report = ok(&r)["cdpTrack"].clone();
            assert_eq!(report["accepted"], 20, "{report}");
            assert_eq!(report["rejected"], json!([]));
            reports.push((events, report));
        }
        let r = track(&k, &b, "batch-1", &reports[1].0, None).await;
        assert_eq!(ok(&r)["cdpTrack"], reports[1].1, "a retried batch gets its report back");
        // Five orders again under a new batch id, with one new: only the new one counts.
        let mut again: Vec<Value> = reports[0].0[..5].to_vec();
        again.push(event(&late[0]));
        let r = track(&k, &b, "batch-again", &again, None).await;
        assert_eq!(ok(&r)["cdpTrack"]["accepted"], 1, "{r}");
        assert_eq!(ok(&r)["cdpTrack"]["duplicates"], 5);

        let alice = person_id(&k, &b, "phone", "+8613800000001").await;
        let bob = person_id(&k, &b, "member_no", "M-7").await;
        let of = |bob: Option<bool>| -> Vec<&Order> { all.iter().filter(|o| bob.is_none_or(|b| o.bob == b)).collect() };
        assert_eq!(traits(&profile(&k, &b, &alice).await), expected(&of(Some(false))));
        assert_eq!(traits(&profile(&k, &b, &bob).await), expected(&of(Some(true))));

        // Tags: both are VIPs, only bob likes wine.
        assert_eq!(ok(&k.gql(&b.owner, TAG, json!({"t": "vip", "p": [alice, bob]})).await)["tagPersons"], 2);
        assert_eq!(ok(&k.gql(&b.owner, TAG, json!({"t": "vip", "p": [alice]})).await)["tagPersons"], 0, "already tagged");
        assert_eq!(ok(&k.gql(&b.owner, TAG, json!({"t": "红酒", "p": [bob]})).await)["tagPersons"], 1);

        // Bob turns out to be Alice: the kernel merges them and the CDP
        // folds Bob's profile into hers.
        let r = k.gql(&b.owner, "mutation($s: ID!, $m: ID!) { mergePersons(input: {survivorId: $s, mergedId: $m, reason: \"same customer\"}) { id } }",
            json!({"s": alice, "m": bob})).await;
        ok(&r);
        let merged = eventually(30, || async {
            let p = profile(&k, &b, &alice).await;
            (p["mergedFrom"] == json!([bob])).then_some(p)
        }).await.expect("the merge reaches the CDP");
        assert_eq!(traits(&merged), expected(&of(None)), "one person with every order");
        assert_eq!(merged["events"], 61);
        assert_eq!(merged["tags"], json!(["vip", "红酒"]));
        let r = k.gql(&b.owner, "{ cdpTags { tag persons } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTags"], json!([{"tag": "vip", "persons": 1}, {"tag": "红酒", "persons": 1}]));
        assert_eq!(profile(&k, &b, &bob).await["personId"], json!(alice), "Bob's id leads to Alice");

        // Bob's member number now names Alice: a new order lands on her.
        let later = Order { n: 100, bob: true, paid: true, cents: 500, store: "S9".into(), at: Utc::now() - Duration::minutes(1) };
        let r = track(&k, &b, "after-merge", &[event(&later)], Some("ALL_OR_NOTHING")).await;
        assert_eq!(ok(&r)["cdpTrack"]["personIds"], json!([alice]));
        let mut everything = of(None);
        everything.push(&later);
        let p = profile(&k, &b, &alice).await;
        assert_eq!(traits(&p), expected(&everything));
        assert_eq!(p["traits"][4]["value"], "S9", "last_store");

        // The timeline: every event of both, newest first, in pages.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let r = k.gql(&b.owner, PROFILE, json!({"p": alice, "a": after, "l": 7})).await;
            let t = &ok(&r)["cdpProfile"]["timeline"];
            let events = t["events"].as_array().unwrap();
            assert!(events.len() <= 7);
            seen.extend(events.iter().map(|e| (e["occurredAt"].as_str().unwrap().to_owned(), e["messageId"].as_str().unwrap().to_owned())));
            match t["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
        }
        let ids: BTreeSet<&str> = seen.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(ids.len(), 62, "each event once: {seen:?}");
        assert_eq!(seen.len(), 62);
        assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

        // Untagging changes the size once.
        assert_eq!(ok(&k.gql(&b.owner, UNTAG, json!({"t": "vip", "p": [alice, bob]})).await)["untagPersons"], 1);
        let r = k.gql(&b.owner, "{ cdpTags { tag persons } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTags"][0], json!({"tag": "vip", "persons": 0}));
    }

    async fn a_redefined_trait_starts_again_and_identify_sets_attributes_and_tags(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        ok(&k.gql(&b.owner, SET_TRAITS, json!({"t": order_traits()})).await);
        let rows = json!([
            {"identifiers": [{"kind": "phone", "value": "+8613800000001"}], "attributes": {"name": "Alice", "city": "深圳"}, "tags": ["vip"]},
            {"identifiers": [{"kind": "member_no", "value": "M-7"}], "tags": ["vip", "wine"]},
            {"identifiers": [{"kind": "member_no", "value": "M-8"}], "tags": ["not a tag!"]},
        ]);
        let r = k.gql(&b.owner, IDENTIFY, json!({"b": "crm-1", "r": rows})).await;
        let report = ok(&r)["cdpIdentify"].clone();
        assert_eq!(report["accepted"], 2, "{report}");
        assert_eq!(report["rejected"][0]["index"], 2);
        assert!(report["rejected"][0]["message"].as_str().unwrap().contains("not a tag!"));
        assert_eq!(report["personIds"][2], Value::Null);
        let again = k.gql(&b.owner, IDENTIFY, json!({"b": "crm-1", "r": rows})).await;
        assert_eq!(ok(&again)["cdpIdentify"], report, "the same batch again");
        let alice = report["personIds"][0].as_str().unwrap();
        let p = profile(&k, &b, alice).await;
        assert_eq!(p["attributes"], json!({"name": "Alice", "city": "深圳"}));
        assert_eq!(p["tags"], json!(["vip"]));
        assert_eq!(p["identifiers"], json!([{"kind": "phone", "value": "+8613800000001"}]));
        let r = k.gql(&b.owner, "{ cdpTags { tag persons } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTags"], json!([{"tag": "vip", "persons": 2}, {"tag": "wine", "persons": 1}]));

        let first = Order { n: 1, bob: false, paid: true, cents: 1000, store: "S1".into(), at: Utc::now() - Duration::hours(1) };
        ok(&track(&k, &b, "t-1", &[event(&first)], None).await);
        assert_eq!(traits(&profile(&k, &b, alice).await)["orders"], 1);
        // `orders` now counts only store S1's orders: a new revision, which
        // the recompute the change starts rebuilds from the timeline (the
        // order before the change counts).
        let mut defs = order_traits();
        defs[0]["filter"] = json!({"store": "S1"});
        let other = Order { n: 8, store: "S2".into(), ..first.clone() };
        ok(&track(&k, &b, "t-8", &[event(&other)], None).await);
        assert_eq!(traits(&profile(&k, &b, alice).await)["orders"], 2);
        let r = k.gql(&b.owner, SET_TRAITS, json!({"t": defs})).await;
        assert_eq!(ok(&r)["setCdpTraits"][0]["revision"], 2);
        assert_eq!(ok(&r)["setCdpTraits"][1]["revision"], 1, "unchanged traits keep theirs");
        let rebuilt = |want: i64| {
            let (k, b) = (&k, &b);
            async move {
                eventually(30, || async {
                    let t = traits(&profile(k, b, alice).await);
                    (t["orders"] == want).then_some(t)
                })
                .await
            }
        };
        let t = rebuilt(1).await.expect("rebuilt: S1's order before the change, not S2's");
        assert_eq!(t["spend_total"], 20, "kept");
        let second = Order { n: 2, ..first.clone() };
        ok(&track(&k, &b, "t-2", &[event(&second)], None).await);
        assert_eq!(traits(&profile(&k, &b, alice).await)["orders"], 2, "then kept by ingest");
        // Dropped, then declared again: a new revision, rebuilt again.
        let without: Vec<Value> = order_traits().as_array().unwrap()[1..].to_vec();
        ok(&k.gql(&b.owner, SET_TRAITS, json!({"t": without})).await);
        let r = k.gql(&b.owner, SET_TRAITS, json!({"t": order_traits()})).await;
        assert_eq!(ok(&r)["setCdpTraits"][0]["revision"], 3);
        let t = rebuilt(3).await.expect("every order, rebuilt");
        assert_eq!(t["spend_total"], 30);
    }

    async fn scans_reach_traits_only_from_the_codes_plugin(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        ok(&k.gql(&b.owner, SET_TRAITS, json!({"t": [
            {"name": "scans_30d", "event": "code.scanned", "agg": "count", "windowDays": 30},
            {"name": "last_sku", "event": "code.scanned", "agg": "last", "property": "sku"},
        ]})).await);
        let s = setup(&k, &b, 10).await;
        ok(&activate(&k, &b, &s.units).await);
        for serial in [1, 2] {
            let (c, _) = code_of(&k, &b, &s.units, serial).await;
            scan(&k, &b, &c, None, Some("o-alice")).await;
        }
        let alice = person_id(&k, &b, "wechat_openid", "o-alice").await;
        let p = eventually(30, || async {
            let p = profile(&k, &b, &alice).await;
            (p["events"] == 2).then_some(p)
        }).await.expect("both scans reach the CDP");
        assert_eq!(traits(&p), BTreeMap::from([("scans_30d".to_owned(), json!(2)), ("last_sku".to_owned(), json!("WINE-750"))]));
        assert_eq!(p["timeline"]["events"][0]["source"], "keel");

        // Another producer's `code.scanned`, and a batch naming the type,
        // count for nothing.
        let forged = k.inject_event(&b, "code.scanned", Some(&alice), json!({"sku": "FAKE"}), "cdp").await;
        k.wait_delivered(&forged, 30).await;
        let r = track(&k, &b, "forged", &[json!({"messageId": "x", "type": "code.scanned", "personId": alice, "occurredAt": Utc::now().to_rfc3339()})], None).await;
        assert!(ok(&r)["cdpTrack"]["rejected"][0]["message"].as_str().unwrap().contains("taken from its producer"));
        let p = profile(&k, &b, &alice).await;
        assert_eq!(p["events"], 2);
        assert_eq!(traits(&p)["last_sku"], "WINE-750");
    }

    async fn bad_input_is_refused_with_its_place_and_loses_nothing(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_cdp(&k, "acme").await;
        ok(&k.gql(&b.owner, SET_TRAITS, json!({"t": order_traits()})).await);

        // A bad definition names its place and changes nothing.
        let mut bad = order_traits();
        bad[1].as_object_mut().unwrap().remove("property");
        let r = k.gql(&b.owner, SET_TRAITS, json!({"t": bad})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("traits[1].property"), "{r}");
        let r = k.gql(&b.owner, "{ cdpTraits { name revision } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTraits"].as_array().unwrap().len(), 6);

        let now = Utc::now().to_rfc3339();
        let good = |id: &str| json!({"messageId": id, "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now, "properties": {"total": 1}});
        let mut items = vec![
            good("ok-1"),
            json!({"messageId": "bad id", "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now}),
            json!({"messageId": "x".repeat(101), "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now}),
            json!({"messageId": "m3", "type": "person.merged", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now}),
            json!({"messageId": "m4", "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": (Utc::now() + Duration::days(3)).to_rfc3339()}),
            json!({"messageId": "m5", "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now, "properties": {"blob": "x".repeat(5000)}}),
            json!({"messageId": "m6", "type": "order.paid", "personId": "nobody", "occurredAt": now}),
            json!({"messageId": "m7", "type": "order.paid", "occurredAt": now}),
            json!({"messageId": "m8", "type": "order.paid", "identifiers": [{"kind": "phone", "value": ""}], "occurredAt": now}),
            json!({"messageId": "m9", "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now, "properties": [1, 2]}),
            json!({"messageId": "m10", "source": "keel", "type": "order.paid", "identifiers": [{"kind": "phone", "value": "+8613800000002"}], "occurredAt": now}),
            good("ok-2"),
        ];
        // A NUL byte anywhere refuses the request at the gateway.
        let mut nul = good("nul");
        nul["properties"]["note"] = json!("a\u{0}b");
        let r = track(&k, &b, "nul", &[nul], None).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("NUL"), "{r}");
        // All or nothing: the error lists the bad items; nothing is kept.
        let r = track(&k, &b, "mixed", &items, Some("ALL_OR_NOTHING")).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let m = r["errors"][0]["message"].as_str().unwrap();
        assert!(m.contains("events[1]: messageId") && m.contains("events[10]: source"), "{m}");
        let r = k.gql(&b.owner, "{ personByIdentifier(kind: \"phone\", value: \"+8613800000002\") { id } }", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND", "nobody was created: {r}");
        // Best effort: the good ones are taken, each bad one reported.
        let r = track(&k, &b, "mixed", &items, None).await;
        let report = &ok(&r)["cdpTrack"];
        assert_eq!(report["accepted"], 2, "{report}");
        let rejected: Vec<u64> = report["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(rejected, (1..=10).collect::<Vec<u64>>(), "{report}");
        for (i, word) in [(3, "taken from its producer"), (4, "24 hours"), (5, "4096"), (6, "no person"), (7, "personId or identifiers"), (9, "object")] {
            let msg = report["rejected"][i - 1]["message"].as_str().unwrap();
            assert!(msg.contains(word), "item {i}: {msg}");
        }
        let person = report["personIds"][0].as_str().unwrap().to_owned();
        assert_eq!(report["personIds"][11], json!(person));
        assert_eq!(traits(&profile(&k, &b, &person).await)["orders"], 2);

        // The same batch id with other items is a conflict; too many items is refused.
        items.pop();
        assert_eq!(code(&track(&k, &b, "mixed", &items, None).await), "CONFLICT");
        let many: Vec<Value> = (0..1001).map(|i| good(&format!("n{i}"))).collect();
        assert_eq!(code(&track(&k, &b, "many", &many, None).await), "BAD_USER_INPUT");
        assert_eq!(code(&track(&k, &b, "bad batch id!", &[good("z")], None).await), "BAD_USER_INPUT");
        assert_eq!(traits(&profile(&k, &b, &person).await)["orders"], 2, "nothing more taken");

        // Tagging an unknown person tags nobody.
        let r = k.gql(&b.owner, TAG, json!({"t": "vip", "p": [person, "nobody"]})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        assert_eq!(profile(&k, &b, &person).await["tags"], json!([]));
        assert_eq!(code(&k.gql(&b.owner, TAG, json!({"t": "a b", "p": [person]})).await), "BAD_USER_INPUT");
        assert_eq!(ok(&k.gql(&b.owner, "{ cdpTags { tag } }", json!({})).await)["cdpTags"], json!([]));
        assert_eq!(ok(&k.gql(&b.owner, PROFILE, json!({"p": "nobody"})).await)["cdpProfile"], Value::Null);

        // Without rights: a read-only key cannot ingest, the public cannot
        // read profiles, another brand sees nothing of this one's.
        let analyst = k.key(&b, &["analyst"], &[]).await;
        assert_eq!(code(&k.gql(&analyst, TRACK, json!({"b": "x", "e": [good("a1")]})).await), "FORBIDDEN");
        assert!(k.public(&b.slug, PROFILE, json!({"p": person})).await["errors"].is_array());
        // A credential limited to an org node is refused: customer data is
        // tenant-wide and the plugin does not enforce org scopes.
        ok(&k.gql(&b.owner, "mutation { defineRegion(code: \"CN\", name: \"China\") { code } }", json!({})).await);
        let r = k.gql(&b.owner, "{ orgNode(code: \"CN\") { id } }", json!({})).await;
        let node = ok(&r)["orgNode"]["id"].as_str().unwrap().to_owned();
        let r = k.gql(&b.owner, "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({"i": {"name": "regional", "roles": ["admin"], "orgScope": node}})).await;
        let regional = ok(&r)["createApiKey"]["secret"].as_str().unwrap().to_owned();
        assert_eq!(code(&k.gql(&regional, PROFILE, json!({"p": person})).await), "FORBIDDEN");
        assert_eq!(code(&k.gql(&regional, TRACK, json!({"b": "x", "e": [good("a2")]})).await), "FORBIDDEN");
        let other = brand_with_cdp(&k, "other").await;
        assert_eq!(ok(&k.gql(&other.owner, PROFILE, json!({"p": person})).await)["cdpProfile"], Value::Null);
    }
}
