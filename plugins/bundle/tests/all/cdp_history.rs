//! CDP segments over event history, on SQLite and PostgreSQL: an `event`
//! leaf saved after the events counts them (rebuilt from the timeline),
//! then keeps up incrementally and through a merge, agrees with its
//! preview and a full recompute; bad leaves and too many counts are refused
//! with their place.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate, Utc};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::cdp::{CDP_GRANTS, track};
use crate::cdp_segments::{members, recompute};
use crate::support::{Kernel, code, eventually, ok};

const SAVE: &str = "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }";
const PREVIEW: &str =
    "query($r: JSON!) { previewSegment(rule: $r, sample: 5000) { scanned matched } }";

/// Store orders in the last 30 days, at least 2.
fn regulars() -> Value {
    json!({"event": {"type": "order.paid", "where": {"channel": "store"}, "withinDays": 30, "atLeast": 2}})
}

/// Ordered once, but not in the last 14 days (a win-back audience).
fn lapsed() -> Value {
    json!({"all": [
        {"event": {"type": "order.paid"}},
        {"event": {"type": "order.paid", "withinDays": 14, "atMost": 0}},
    ]})
}

/// One order: person, days ago, in a store.
type Order = (usize, i64, bool);

fn order_event(n: usize, (p, ago, store): Order, now: chrono::DateTime<Utc>) -> Value {
    json!({
        "messageId": format!("h{n}"), "type": "order.paid",
        "identifiers": [{"kind": "phone", "value": format!("+86139000000{p:02}")}],
        "occurredAt": (now - Duration::days(ago) - Duration::minutes(3)).to_rfc3339(),
        "properties": {"channel": if store { "store" } else { "online" }},
    })
}

/// Who each rule holds, computed plainly from the orders (`owner` maps a
/// merged person to the survivor).
fn expected(
    orders: &[Order],
    now: chrono::DateTime<Utc>,
    owner: impl Fn(usize) -> usize,
    ids: &[String],
) -> BTreeMap<&'static str, BTreeSet<String>> {
    let today = now.date_naive();
    let day =
        |ago: i64| -> NaiveDate { (now - Duration::days(ago) - Duration::minutes(3)).date_naive() };
    let mut store30 = BTreeMap::<usize, u32>::new();
    let mut all = BTreeMap::<usize, u32>::new();
    let mut recent = BTreeMap::<usize, u32>::new();
    for (p, ago, store) in orders {
        let age = (today - day(*ago)).num_days();
        *all.entry(owner(*p)).or_default() += 1;
        if age < 14 {
            *recent.entry(owner(*p)).or_default() += 1;
        }
        if *store && age < 30 {
            *store30.entry(owner(*p)).or_default() += 1;
        }
    }
    let pick = |f: &dyn Fn(usize) -> bool| -> BTreeSet<String> {
        all.keys()
            .filter(|p| f(**p))
            .map(|p| ids[*p].clone())
            .collect()
    };
    BTreeMap::from([
        (
            "regulars",
            pick(&|p| store30.get(&p).copied().unwrap_or(0) >= 2),
        ),
        ("lapsed", pick(&|p| !recent.contains_key(&p))),
    ])
}

on_both_backends! {
    async fn an_event_history_segment_counts_events_from_before_it(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        let now = Utc::now();
        // 40 persons, 0-6 orders each over the last 60 days.
        let mut orders: Vec<Order> = Vec::new();
        for p in 0..40usize {
            for i in 0..(p % 7) {
                orders.push((p, ((p * 3 + i * 11) % 60) as i64, (p + i) % 3 != 0));
            }
        }
        let mut ids = vec![String::new(); 40];
        for (n, chunk) in orders.chunks(50).enumerate() {
            let events: Vec<Value> = chunk.iter().enumerate().map(|(j, o)| order_event(n * 50 + j, *o, now)).collect();
            let r = track(&k, &b, &format!("h{n}"), &events, None).await;
            for (o, id) in chunk.iter().zip(ok(&r)["cdpTrack"]["personIds"].as_array().unwrap()) {
                ids[o.0] = id.as_str().unwrap().to_owned();
            }
        }
        let plain = expected(&orders, now, |p| p, &ids);
        for (id, want) in &plain {
            assert!(!want.is_empty() && want.len() < 34, "{id} splits the population: {}", want.len());
        }

        // The preview counts from the timeline before anything is declared.
        for (id, rule) in [("regulars", regulars()), ("lapsed", lapsed())] {
            let r = k.gql(&b.owner, PREVIEW, json!({"r": rule})).await;
            assert_eq!(ok(&r)["previewSegment"]["matched"], plain[id].len(), "{id}'s preview");
        }
        // Saved after the events, the segments hold who they counted.
        for (id, rule) in [("regulars", regulars()), ("lapsed", lapsed())] {
            ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": id, "name": id, "rule": rule, "emitEvents": true}})).await);
        }
        for (id, want) in &plain {
            eventually(60, || async { (&members(&k, &b, id).await == want).then_some(()) })
                .await
                .unwrap_or_else(|| panic!("{id}: the rebuild from the timeline reaches every member"));
        }
        // The hidden counts are not the brand's traits.
        let r = k.gql(&b.owner, "{ cdpTraits { name } }", json!({})).await;
        assert_eq!(ok(&r)["cdpTraits"], json!([]));
        let r = k.gql(&b.owner, "query($p: String!) { cdpProfile(personId: $p) { traits { name } } }", json!({"p": ids[6]})).await;
        assert_eq!(ok(&r)["cdpProfile"]["traits"], json!([]));

        // Then kept as events arrive: a store order today for each of the
        // first ten, and persons 1 and 2 turn out to be one.
        let today: Vec<Order> = (0..10).map(|p| (p, 0, true)).collect();
        let events: Vec<Value> = today.iter().enumerate().map(|(j, o)| order_event(10_000 + j, *o, now)).collect();
        assert_eq!(ok(&track(&k, &b, "today", &events, None).await)["cdpTrack"]["accepted"], 10);
        orders.extend(today);
        ok(&k.gql(&b.owner, "mutation($s: ID!, $m: ID!) { mergePersons(input: {survivorId: $s, mergedId: $m, reason: \"same\"}) { id } }",
            json!({"s": ids[1], "m": ids[2]})).await);
        let owner = |p: usize| if p == 2 { 1 } else { p };
        let after = expected(&orders, now, owner, &ids);
        assert_ne!(after, plain, "the new orders and the merge change who is in");
        for (id, want) in &after {
            eventually(30, || async { (&members(&k, &b, id).await == want).then_some(()) })
                .await
                .unwrap_or_else(|| panic!("{id}: kept incrementally and through the merge"));
        }
        // A full recompute finds nothing to change.
        recompute(&k, &b).await;
        for (id, want) in &after {
            assert_eq!(&members(&k, &b, id).await, want, "{id}, recomputed");
        }
        // The events replay to the membership.
        let mut inside: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let r = k.gql(&b.owner, "query($a: String) { events(filter: {types: [\"segment.entered\", \"segment.left\"]}, first: 100, after: $a) \
                { edges { node { type personId payload } } pageInfo { hasNextPage endCursor } } }", json!({"a": cursor})).await;
            let page = &ok(&r)["events"];
            for e in page["edges"].as_array().unwrap() {
                let n = &e["node"];
                let set = inside.entry(n["payload"]["segment"].as_str().unwrap().to_owned()).or_default();
                let p = n["personId"].as_str().unwrap().to_owned();
                if n["type"] == "segment.entered" { set.insert(p); } else { set.remove(&p); }
            }
            if page["pageInfo"]["hasNextPage"] != true { break; }
            cursor = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        // A merged person's memberships end with `person.merged` (an event
        // for them now would be the survivor's): no `segment.left`.
        for (id, want) in &after {
            let mut got = inside[*id].clone();
            got.remove(&ids[2]);
            assert_eq!(&got, want, "{id}'s events");
        }

        // Deleted, its count is retired; saved again, it is rebuilt.
        ok(&k.gql(&b.owner, "mutation { deleteSegment(id: \"regulars\") { id } }", json!({})).await);
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "regulars", "name": "again", "rule": regulars()}})).await);
        eventually(60, || async { (members(&k, &b, "regulars").await == after["regulars"]).then_some(()) })
            .await
            .expect("rebuilt again");
    }

    async fn a_bad_event_leaf_or_too_many_counts_are_refused(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        let refused = |r: &Value, place: &str| {
            assert_eq!(code(r), "BAD_USER_INPUT", "{r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(place), "{place}: {r}");
        };
        for (rule, place) in [
            (json!({"event": {"type": "order.paid", "withinDays": 0}}), "rule.event.withinDays"),
            (json!({"any": [{"event": {"type": "Order Paid"}}]}), "rule.any[0].event.type"),
            (json!({"event": {"type": "order.paid", "atLeast": 3, "atMost": 1}}), "rule.event.atMost"),
            (json!({"event": {"type": "order.paid", "where": {"total": {"gt": 1}}}}), "rule.event.where.total"),
            (json!({"event": {"type": "order.paid", "since": "2026-01-01"}}), "rule.event.since"),
        ] {
            refused(&k.gql(&b.owner, SAVE, json!({"i": {"id": "s", "name": "S", "rule": rule}})).await, place);
            refused(&k.gql(&b.owner, PREVIEW, json!({"r": rule})).await, place);
        }
        // 51 different counts over the tenant's segments.
        let many = |from: usize, to: usize| json!({"any": (from..to).map(|i| json!({"event": {"type": format!("e.t{i}")}})).collect::<Vec<_>>()});
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "a", "name": "A", "rule": many(0, 30)}})).await);
        refused(&k.gql(&b.owner, SAVE, json!({"i": {"id": "b", "name": "B", "rule": many(30, 51)}})).await, "at most 50");
        // The same counts again cost nothing more.
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "b", "name": "B", "rule": many(0, 30)}})).await);
        // Windows: 11 × 400 days are more day buckets than a tenant keeps.
        let long = json!({"all": (0..11).map(|i| json!({"event": {"type": format!("w.t{i}"), "withinDays": 400}})).collect::<Vec<_>>()});
        refused(&k.gql(&b.owner, SAVE, json!({"i": {"id": "c", "name": "C", "rule": long}})).await, "rule.event.withinDays: windows too long together");
        // Nor may the brand's traits take the room the segments' counts use.
        let nine = json!({"all": (0..9).map(|i| json!({"event": {"type": format!("w.t{i}"), "withinDays": 400}})).collect::<Vec<_>>()});
        ok(&k.gql(&b.owner, SAVE, json!({"i": {"id": "c", "name": "C", "rule": nine}})).await);
        let r = k.gql(&b.owner, "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }", json!({"t": [
            {"name": "scans_year", "event": "code.scanned", "agg": "count", "windowDays": 400},
            {"name": "orders_year", "event": "order.paid", "agg": "count", "windowDays": 400},
        ]})).await;
        refused(&r, "with the segments' event leaves");
        let r = k.gql(&b.owner, "{ cdpSegments { id } cdpTraits { name } }", json!({})).await;
        assert_eq!(ok(&r)["cdpSegments"], json!([{"id": "a"}, {"id": "b"}, {"id": "c"}]), "nothing else saved");
        assert_eq!(ok(&r)["cdpTraits"], json!([]));
    }
}
