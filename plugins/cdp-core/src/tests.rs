use proptest::prelude::*;
use serde_json::{Value, json};

use crate::aggregate::{SCALE, TraitState, scaled, unscaled};
use crate::traits::{Agg, Observed, TraitDef, day_of, parse_all};

const DAY: i64 = 86_400_000_000;
const TODAY: i32 = 20_000;

fn defs() -> Vec<TraitDef> {
    parse_all(&json!([
        {"name": "n", "event": "order.paid", "agg": "count"},
        {"name": "spend", "event": "order.paid", "agg": "sum", "property": "total"},
        {"name": "least", "event": "order.paid", "agg": "min", "property": "total"},
        {"name": "most", "event": "order.paid", "agg": "max", "property": "total"},
        {"name": "first_store", "event": "order.paid", "agg": "first", "property": "store.code"},
        {"name": "last_store", "event": "order.paid", "agg": "last", "property": "store.code",
         "filter": {"channel": "store"}},
        {"name": "scans_7d", "event": "code.scanned", "agg": "count", "windowDays": 7},
        {"name": "spend_3d", "event": "order.paid", "agg": "sum", "property": "total", "windowDays": 3},
        {"name": "stores", "event": "order.paid", "agg": "distinct", "property": "store.code"},
        {"name": "stores_2d", "event": "order.paid", "agg": "distinct", "property": "store.code", "windowDays": 2},
        {"name": "totals", "event": "order.paid", "agg": "distinct", "property": "total"},
    ]))
    .unwrap()
}

#[derive(Debug, Clone)]
struct Ev {
    ty: &'static str,
    id: String,
    at: i64,
    props: Value,
}

fn event() -> impl Strategy<Value = Ev> {
    (
        prop::bool::ANY,
        0i64..12,
        0i64..4,
        prop::option::of(-5000i64..5000),
        prop::sample::select(vec!["S1", "S2", "S3"]),
        prop::bool::ANY,
        0u32..1_000_000,
    )
        .prop_map(|(scan, day, hour, total, store, in_store, id)| {
            let mut props = json!({"store": {"code": store}, "channel": if in_store { "store" } else { "web" }});
            if let Some(t) = total {
                props["total"] = json!(t as f64 / 100.0);
            }
            Ev {
                ty: if scan { "code.scanned" } else { "order.paid" },
                id: format!("e{id:07}"),
                at: (TODAY as i64 - day) * DAY + hour * 3_600_000_000,
                props,
            }
        })
}

fn observed(e: &Ev) -> Observed<'_> {
    Observed {
        event_type: e.ty,
        id: &e.id,
        at_micros: e.at,
        properties: &e.props,
    }
}

/// Folds events into one state per trait, pruning as a day's writes would.
fn fold(defs: &[TraitDef], events: &[Ev], prune_at: i32) -> Vec<TraitState> {
    defs.iter()
        .map(|d| {
            let mut s = TraitState::default();
            for e in events {
                let o = observed(e);
                if let Some(p) = d.observe(&o) {
                    s.add(d, o.day(), p);
                    s.prune(d, prune_at);
                }
            }
            s
        })
        .collect()
}

/// The value a recompute from the whole log gives, computed plainly.
fn naive(d: &TraitDef, events: &[Ev]) -> Value {
    let mut taken: Vec<&Ev> = events
        .iter()
        .filter(|e| d.observe(&observed(e)).is_some())
        .filter(|e| {
            d.window_days
                .is_none_or(|w| day_of(e.at) > TODAY - w as i32 && day_of(e.at) <= TODAY)
        })
        .collect();
    taken.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    let nums: Vec<i128> = taken
        .iter()
        .filter_map(|e| scaled(crate::traits::lookup(&e.props, d.property.as_deref()?)?))
        .collect();
    let prop = |e: &&Ev| crate::traits::lookup(&e.props, d.property.as_deref().unwrap()).cloned();
    match d.agg {
        Agg::Count => json!(taken.len()),
        Agg::Sum => unscaled(nums.iter().sum()),
        Agg::Min => nums
            .iter()
            .min()
            .map(|v| unscaled(*v))
            .unwrap_or(Value::Null),
        Agg::Max => nums
            .iter()
            .max()
            .map(|v| unscaled(*v))
            .unwrap_or(Value::Null),
        Agg::First => taken.first().and_then(prop).unwrap_or(Value::Null),
        Agg::Last => taken.last().and_then(prop).unwrap_or(Value::Null),
        Agg::Distinct => {
            let seen: std::collections::BTreeSet<String> = taken
                .iter()
                .filter_map(prop)
                .map(|v| v.to_string())
                .collect();
            json!(seen.len().min(crate::aggregate::MAX_DISTINCT))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any arrival order (and pruning along the way) gives the value a
    /// recompute from the log gives.
    #[test]
    fn any_order_equals_a_recompute(mut events in prop::collection::vec(event(), 0..40), seed in any::<u64>()) {
        events.sort_by(|a, b| a.id.cmp(&b.id));
        events.dedup_by(|a, b| a.id == b.id);
        let defs = defs();
        let mut shuffled = events.clone();
        let n = shuffled.len();
        for i in 0..n {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
            shuffled.swap(i, j);
        }
        let states = fold(&defs, &shuffled, TODAY);
        for (d, s) in defs.iter().zip(&states) {
            prop_assert_eq!(s.value(d, TODAY), naive(d, &events), "trait {}", d.name);
        }
    }

    /// Two persons merged hold what one person with all the events holds.
    #[test]
    fn a_merge_equals_one_person(events in prop::collection::vec(event(), 0..40), split in 0usize..40) {
        let defs = defs();
        let split = split.min(events.len());
        let (a, b) = events.split_at(split);
        let mut left = fold(&defs, a, TODAY);
        let right = fold(&defs, b, TODAY);
        let whole = fold(&defs, &events, TODAY);
        for ((d, l), r) in defs.iter().zip(left.iter_mut()).zip(&right) {
            l.merge(d, r);
        }
        for ((d, l), w) in defs.iter().zip(&left).zip(&whole) {
            prop_assert_eq!(l.value(d, TODAY), w.value(d, TODAY), "trait {}", d.name);
        }
    }
}

#[test]
fn a_window_reads_only_its_days() {
    let defs = defs();
    let d = defs.iter().find(|d| d.name == "scans_7d").unwrap();
    let mut s = TraitState::default();
    for ago in [0, 6, 7, 30] {
        let e = Ev {
            ty: "code.scanned",
            id: format!("e{ago}"),
            at: (TODAY as i64 - ago) * DAY,
            props: json!({}),
        };
        s.add(d, observed(&e).day(), d.observe(&observed(&e)).unwrap());
    }
    assert_eq!(s.value(d, TODAY), json!(2), "today and 6 days ago");
    assert_eq!(
        s.value(d, TODAY + 1),
        json!(1),
        "the day after, 6 days ago has left"
    );
    s.prune(d, TODAY);
    assert_eq!(s.days.len(), 2, "days 7 and 30 ago are dropped: {s:?}");
}

#[test]
fn sums_are_exact_in_ten_thousandths() {
    let d = &defs()[1];
    let mut s = TraitState::default();
    for (i, t) in [0.1, 0.2, 0.30004, -0.6].iter().enumerate() {
        let id = format!("e{i}");
        let props = json!({"total": t});
        let o = Observed {
            event_type: "order.paid",
            id: &id,
            at_micros: 0,
            properties: &props,
        };
        s.add(d, 0, d.observe(&o).unwrap());
    }
    // 0.30004 is kept as 0.3000: the four sums cancel exactly.
    assert_eq!(s.value(d, 0), json!(0));
    assert_eq!(scaled(&json!(1.23456)), Some(12346));
    assert_eq!(scaled(&json!(1e16)), None, "beyond the largest number");
    assert_eq!(scaled(&json!("12")), None, "text is not a number");
    assert_eq!(unscaled(3 * SCALE), json!(3));
}

#[test]
fn a_trait_skips_what_it_cannot_read() {
    let defs = defs();
    let spend = &defs[1];
    let last_store = &defs[5];
    let cases = [
        json!({"total": "12"}),
        json!({"total": null}),
        json!({}),
        json!({"total": 1e300}),
    ];
    for props in &cases {
        let o = Observed {
            event_type: "order.paid",
            id: "e",
            at_micros: 0,
            properties: props,
        };
        assert!(spend.observe(&o).is_none(), "{props}");
    }
    let web = json!({"channel": "web", "store": {"code": "S1"}});
    let o = Observed {
        event_type: "order.paid",
        id: "e",
        at_micros: 0,
        properties: &web,
    };
    assert!(
        last_store.observe(&o).is_none(),
        "the filter wants channel=store"
    );
    let long = json!({"channel": "store", "store": {"code": "x".repeat(300)}});
    let o = Observed {
        event_type: "order.paid",
        id: "e",
        at_micros: 0,
        properties: &long,
    };
    assert!(last_store.observe(&o).is_none(), "a value too long to keep");
    let o = Observed {
        event_type: "order.refunded",
        id: "e",
        at_micros: 0,
        properties: &web,
    };
    assert!(defs[0].observe(&o).is_none(), "another event type");
}

#[test]
fn a_bad_definition_names_its_place() {
    let cases = [
        (json!({"traits": 1}), "traits"),
        (
            json!([{"name": "Spend", "event": "order.paid", "agg": "count"}]),
            "traits[0].name",
        ),
        (
            json!([{"name": "a", "event": "Order Paid", "agg": "count"}]),
            "traits[0].event",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "sum"}]),
            "traits[0].property",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "avg"}]),
            "traits[0]",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "count", "windowDays": 0}]),
            "traits[0].windowDays",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "count", "windowDays": 401}]),
            "traits[0].windowDays",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "count", "filter": {"x": [1]}}]),
            "traits[0].filter.x",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "count", "filter": {"a..b": 1}}]),
            "traits[0].filter.a..b",
        ),
        (
            json!([{"name": "a", "event": "order.paid", "agg": "count", "colour": "red"}]),
            "traits[0]",
        ),
        (
            json!([{"name": "a", "event": "e", "agg": "count"}, {"name": "a", "event": "e", "agg": "count"}]),
            "traits[1].name",
        ),
        (
            json!([{"name": "a", "event": "e", "agg": "last", "property": "a\u{0}b"}]),
            "traits[0].property",
        ),
    ];
    for (input, path) in cases {
        let e = parse_all(&input).unwrap_err();
        assert_eq!(e.path, path, "{input}: {e}");
        assert!(!e.message.is_empty());
    }
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"name": format!("t{i}"), "event": "e", "agg": "count"}))
        .collect();
    assert_eq!(parse_all(&Value::from(many)).unwrap_err().path, "traits");
    let long: Vec<Value> = (0..11)
        .map(|i| json!({"name": format!("t{i}"), "event": "e", "agg": "count", "windowDays": 400}))
        .collect();
    assert!(
        parse_all(&Value::from(long[..10].to_vec())).is_ok(),
        "4,000 day buckets"
    );
    let e = parse_all(&Value::from(long)).unwrap_err();
    assert!(e.path == "traits" && e.message.contains("4400"), "{e}");
}

#[test]
fn distinct_counts_each_value_once_up_to_its_cap() {
    let def = TraitDef::parse(
        &json!({"name": "provinces_1d", "event": "code.scanned", "agg": "distinct",
        "property": "province", "windowDays": 1}),
    )
    .unwrap();
    let at = TODAY as i64 * DAY;
    let scan = |i: usize, province: Value| Ev {
        ty: "code.scanned",
        id: format!("s{i}"),
        at,
        props: json!({"province": province}),
    };
    // The same province twice, a number and its text apart, junk skipped.
    let mut events = vec![
        scan(0, json!("CN-GD")),
        scan(1, json!("CN-GD")),
        scan(2, json!(44)),
        scan(3, json!("44")),
        scan(4, json!({"nested": 1})),
        scan(5, json!(null)),
    ];
    let mut s = TraitState::default();
    for e in &events {
        if let Some(p) = def.observe(&observed(e)) {
            s.add(&def, TODAY, p);
        }
    }
    assert_eq!(s.value(&def, TODAY), json!(3));
    assert_eq!(
        s.value(&def, TODAY + 1),
        json!(0),
        "a one-day window: tomorrow starts again"
    );

    // 150 provinces, in two halves folded as a merge, in either order: 100.
    events = (0..150)
        .map(|i| scan(i, json!(format!("P{i:03}"))))
        .collect();
    let half = |evs: &[Ev]| {
        let mut s = TraitState::default();
        for e in evs {
            s.add(&def, TODAY, def.observe(&observed(e)).unwrap());
        }
        s
    };
    let (mut a, b) = (half(&events[..70]), half(&events[70..]));
    let (mut b2, a2) = (b.clone(), a.clone());
    a.merge(&def, &b);
    b2.merge(&def, &a2);
    assert_eq!(a, b2, "the same state whichever side survives");
    assert_eq!(a.value(&def, TODAY), json!(crate::aggregate::MAX_DISTINCT));
    let err = TraitDef::parse(&json!({"name": "x", "event": "code.scanned", "agg": "distinct"}))
        .unwrap_err();
    assert_eq!(err.path, ".property");
}
