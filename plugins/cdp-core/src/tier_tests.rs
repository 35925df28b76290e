use proptest::prelude::*;
use serde_json::{Value, json};

use crate::tiers::{Ladder, TierState, civil, days_from_civil};
use crate::traits::Observed;

fn ladder(period: &str) -> Ladder {
    Ladder::parse(&json!({
        "basis": {"event": "order.paid", "agg": "sum", "property": "total",
                  "filter": {"channel": "store"}},
        "period": period,
        "levels": [
            {"id": "member", "name": "会员 Member", "min": 0},
            {"id": "silver", "name": "银卡 Silver", "min": 1000, "multiplier": 1.2},
            {"id": "gold", "name": "金卡 Gold", "min": 5000, "multiplier": 1.5}
        ]
    }))
    .unwrap()
}

fn day(y: i32, m: u32, d: u32) -> i32 {
    days_from_civil(y, m, d)
}

/// Adds an order of `total` on `day` to `state` as intake does.
fn order(l: &Ladder, state: &mut TierState, id: &str, day: i32, total: f64) {
    let props = json!({"total": total, "channel": "store"});
    let e = Observed {
        event_type: "order.paid",
        id,
        at_micros: i64::from(day) * 86_400_000_000 + 3_600_000_000,
        properties: &props,
    };
    let part = l.observe(&e).expect("the basis takes a store order");
    state.add(l, e.day(), &part);
}

#[test]
fn the_calendar_round_trips_and_knows_leap_years() {
    assert_eq!(day(1970, 1, 1), 0);
    assert_eq!(civil(0), (1970, 1, 1));
    assert_eq!(civil(day(2024, 2, 29)), (2024, 2, 29));
    assert_eq!(day(2024, 3, 1) - day(2024, 2, 28), 2, "2024 is a leap year");
    assert_eq!(day(2100, 3, 1) - day(2100, 2, 28), 1, "2100 is not");
    for d in -800_000..800_000 {
        if d % 97 == 0 {
            let (y, m, dd) = civil(d);
            assert_eq!(day(y, m, dd), d);
        }
    }
}

#[test]
fn periods_are_calendar_months_quarters_and_years() {
    let (y, q, m) = (ladder("year"), ladder("quarter"), ladder("month"));
    let d = day(2026, 11, 15);
    assert_eq!(y.period_start(y.period_of(d)), day(2026, 1, 1));
    assert_eq!(q.period_start(q.period_of(d)), day(2026, 10, 1));
    assert_eq!(m.period_start(m.period_of(d)), day(2026, 11, 1));
    assert_eq!(q.period_start(q.period_of(d) + 1), day(2027, 1, 1));
    assert_eq!(m.period_start(m.period_of(d) + 2), day(2027, 1, 1));
    assert_eq!(
        m.period_of(day(2026, 12, 31)) + 1,
        m.period_of(day(2027, 1, 1))
    );
}

#[test]
fn upgrade_at_once_kept_a_period_downgrade_when_it_ends() {
    let l = ladder("year");
    let mut s = TierState::default();
    let rank = |s: &TierState, d: i32| s.standing(&l, d).rank;
    assert_eq!(
        rank(&s, day(2026, 3, 1)),
        Some(0),
        "min 0: everyone is a member"
    );
    order(&l, &mut s, "a", day(2026, 3, 1), 600.0);
    assert_eq!(rank(&s, day(2026, 3, 1)), Some(0));
    order(&l, &mut s, "b", day(2026, 6, 1), 4400.0);
    assert_eq!(
        rank(&s, day(2026, 6, 1)),
        Some(2),
        "5,000 in 2026: gold at once"
    );
    assert_eq!(s.standing(&l, day(2026, 6, 1)).period_ends, day(2027, 1, 1));
    // 2027: nothing spent, gold kept all year.
    assert_eq!(rank(&s, day(2027, 12, 31)), Some(2));
    order(&l, &mut s, "c", day(2027, 5, 1), 1200.0);
    assert_eq!(rank(&s, day(2027, 12, 31)), Some(2));
    // 2028: what 2027 earned — silver.
    assert_eq!(rank(&s, day(2028, 1, 1)), Some(1));
    // 2029: nothing in 2028, back to member.
    assert_eq!(rank(&s, day(2029, 1, 1)), Some(0));
    let standing = s.standing(&l, day(2027, 6, 1));
    assert_eq!(standing.this_period, json!(1200));
    assert_eq!(standing.earned, Some(1));
    s.prune(&l, day(2028, 2, 1));
    assert_eq!(s.periods.len(), 1, "2026 has left every period that counts");
    assert_eq!(rank(&s, day(2028, 2, 1)), Some(1));
}

#[test]
fn below_the_first_level_is_no_tier() {
    let l = Ladder::parse(&json!({
        "basis": {"event": "code.scanned", "agg": "count"},
        "period": "month",
        "levels": [{"id": "fan", "name": "Fan", "min": 3}]
    }))
    .unwrap();
    let mut s = TierState::default();
    let scan = |s: &mut TierState, id: &str| {
        let e = Observed {
            event_type: "code.scanned",
            id,
            at_micros: i64::from(day(2026, 12, 1)) * 86_400_000_000,
            properties: &Value::Null,
        };
        s.add(&l, e.day(), &l.observe(&e).unwrap());
    };
    scan(&mut s, "1");
    scan(&mut s, "2");
    assert_eq!(s.standing(&l, day(2026, 12, 2)).rank, None);
    scan(&mut s, "3");
    assert_eq!(s.standing(&l, day(2026, 12, 2)).rank, Some(0));
    assert_eq!(l.levels[0].multiplier_hundredths(), 100);
}

#[test]
fn a_bad_ladder_names_its_place() {
    let good = json!({
        "basis": {"event": "order.paid", "agg": "sum", "property": "total"},
        "period": "year",
        "levels": [{"id": "member", "name": "M", "min": 0}, {"id": "gold", "name": "G", "min": 10}]
    });
    Ladder::parse(&good).unwrap();
    let with = |pointer: &str, v: Value| {
        let mut l = good.clone();
        *l.pointer_mut(pointer).unwrap() = v;
        l
    };
    let cases = [
        (json!([]), "tiers"),
        (with("/period", json!("week")), "tiers"),
        (with("/basis/agg", json!("max")), "tiers.basis.agg"),
        (
            with("/basis/event", json!("Order Paid")),
            "tiers.basis.event",
        ),
        (with("/basis/property", Value::Null), "tiers.basis.property"),
        (with("/levels", json!([])), "tiers.levels"),
        (with("/levels/1/id", json!("Gold")), "tiers.levels[1].id"),
        (with("/levels/1/id", json!("member")), "tiers.levels[1].id"),
        (with("/levels/1/name", json!("")), "tiers.levels[1].name"),
        (
            with("/levels/1/name", json!("a\u{0}b")),
            "tiers.levels[1].name",
        ),
        (with("/levels/1/min", json!(0)), "tiers.levels[1].min"),
        (with("/levels/0/min", json!(-1)), "tiers.levels[0].min"),
        (with("/levels/1/min", json!("10")), "tiers.levels[1].min"),
        (
            with(
                "/levels/1",
                json!({"id": "gold", "name": "G", "min": 10, "multiplier": 0.5}),
            ),
            "tiers.levels[1].multiplier",
        ),
        (
            with(
                "/levels/1",
                json!({"id": "gold", "name": "G", "min": 10, "multiplier": 1.234}),
            ),
            "tiers.levels[1].multiplier",
        ),
        (
            with(
                "/levels/1",
                json!({"id": "gold", "name": "G", "min": 10, "colour": 1}),
            ),
            "tiers",
        ),
    ];
    for (input, path) in cases {
        let e = Ladder::parse(&input).unwrap_err();
        assert_eq!(e.path, path, "{input}: {e}");
    }
}

proptest! {
    /// Any arrival order, and any split between two persons merged later,
    /// gives the standing one person holding every order gives.
    #[test]
    fn standing_is_independent_of_order_and_merges(
        orders in prop::collection::vec((0i32..900, 1u32..3000), 0..40),
        split in prop::collection::vec(any::<bool>(), 40),
        seed in any::<u64>(),
        asof in 0i32..1000,
    ) {
        let l = ladder("quarter");
        let base = day(2025, 1, 1);
        let mut whole = TierState::default();
        for (i, (d, total)) in orders.iter().enumerate() {
            order(&l, &mut whole, &i.to_string(), base + d, f64::from(*total));
        }
        let mut shuffled: Vec<usize> = (0..orders.len()).collect();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (mut a, mut b) = (TierState::default(), TierState::default());
        for i in shuffled {
            let (d, total) = orders[i];
            let into = if split[i] { &mut a } else { &mut b };
            order(&l, into, &i.to_string(), base + d, f64::from(total));
        }
        a.merge(&b);
        let today = base + asof;
        prop_assert_eq!(a.standing(&l, today), whole.standing(&l, today));
        let before = whole.standing(&l, today);
        whole.prune(&l, today);
        prop_assert_eq!(whole.standing(&l, today), before, "pruning keeps what counts");
    }
}
