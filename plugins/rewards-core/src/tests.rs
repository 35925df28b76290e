use serde_json::{Value, json};

use crate::prizes::{self, Prize, PrizeKind, simulate};
use crate::rules::{Facts, Member, Rule, micros};

/// 2026-11-10T12:30:00Z, a Tuesday: 20:30 in China.
fn scan() -> Facts {
    Facts {
        sku: "WINE-750".into(),
        lot: "L2611".into(),
        batch: "B1".into(),
        serial: 500,
        region: Some("CN-GD-SZ".into()),
        location: Some((22.54, 114.06)),
        at_micros: micros("2026-11-10T12:30:00Z").unwrap(),
        first_scan: true,
        person_scan_n: Some(3),
        profile: Some(
            json!({"tier": "gold", "tags": ["koc", "wine"], "age": 35, "loyalty": {"level": 4}}),
        ),
        member: None,
    }
}

#[test]
fn tier_and_segment_read_the_member_facts() {
    let member = |tier: Option<&str>, segments: &[&str]| Facts {
        member: Some(Member {
            tier: tier.map(str::to_owned),
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
        }),
        ..scan()
    };
    let rule = |v: Value| Rule::parse(&v).unwrap();
    let gold = rule(json!({"tier": ["gold", "platinum"]}));
    assert!(gold.eval(&member(Some("gold"), &[])));
    assert!(!gold.eval(&member(Some("silver"), &["vip"])));
    assert!(!gold.eval(&member(None, &[])));
    assert!(!gold.eval(&scan()), "no member facts: not gold");
    let vip = rule(json!({"segment": ["vip", "lapsed"]}));
    assert!(vip.eval(&member(None, &["x", "lapsed"])));
    assert!(!vip.eval(&member(Some("gold"), &["x"])));
    let mut named = Vec::new();
    let both = rule(
        json!({"all": [{"not": {"segment": ["vip"]}}, {"any": [{"tier": ["gold"]}, {"segment": ["vip", "new"]}]}]}),
    );
    assert!(both.member_needs(&mut named));
    assert_eq!(named, ["vip", "new"]);
    let mut none = Vec::new();
    assert!(
        !rule(json!({"all": [{"region": ["CN"]}, {"first_scan": true}]})).member_needs(&mut none)
    );
    assert!(none.is_empty());
    for (bad, place) in [
        (json!({"tier": []}), "rule.tier"),
        (json!({"all": [{"segment": [" "]}]}), "rule.all[0].segment"),
    ] {
        let e = Rule::parse(&bad).unwrap_err();
        assert!(e.starts_with(place), "{bad}: {e}");
    }
}

fn square(lon0: f64, lat0: f64, lon1: f64, lat1: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]})
}

#[test]
fn the_rule_table() {
    let anonymous = Facts {
        person_scan_n: None,
        profile: None,
        location: None,
        region: None,
        ..scan()
    };
    // (rule, holds for scan(), holds for the anonymous scan without place)
    let rows: Vec<(Value, bool, bool)> = vec![
        (json!({"product": ["WINE-750", "BEER"]}), true, true),
        (json!({"product": ["BEER"]}), false, false),
        (json!({"lot": ["L2611"]}), true, true),
        (json!({"lot": ["L1"]}), false, false),
        (json!({"batch": ["B1"]}), true, true),
        (json!({"batch": ["B2"]}), false, false),
        (
            json!({"serials": {"batch": "B1", "from": 1, "to": 500}}),
            true,
            true,
        ),
        (
            json!({"serials": {"batch": "B1", "from": 501, "to": 900}}),
            false,
            false,
        ),
        (
            json!({"serials": {"batch": "B2", "from": 1, "to": 900}}),
            false,
            false,
        ),
        (json!({"region": ["CN-GD"]}), true, false),
        (json!({"region": ["CN-GD-SZ"]}), true, false),
        (json!({"region": ["CN-G"]}), false, false),
        (json!({"region": ["CN-SH", "CN-GD"]}), true, false),
        (
            json!({"within": square(113.7, 22.4, 114.6, 22.9)}),
            true,
            false,
        ),
        (
            json!({"within": square(120.8, 30.6, 122.2, 31.9)}),
            false,
            false,
        ),
        (
            json!({"between": {"from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}}),
            true,
            true,
        ),
        (
            json!({"between": {"from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}}),
            false,
            false,
        ),
        (
            json!({"hours": {"from": "20:00", "to": "22:00"}}),
            true,
            true,
        ),
        (
            json!({"hours": {"from": "09:00", "to": "18:00"}}),
            false,
            false,
        ),
        (
            json!({"hours": {"from": "12:00", "to": "13:00", "utc_offset_minutes": 0}}),
            true,
            true,
        ),
        (
            json!({"hours": {"from": "21:00", "to": "20:00"}}),
            false,
            false,
        ),
        (
            json!({"hours": {"from": "20:00", "to": "02:00"}}),
            true,
            true,
        ),
        (json!({"first_scan": true}), true, true),
        (json!({"first_scan": false}), false, false),
        (json!({"nth_scan": {"min": 3}}), true, false),
        (json!({"nth_scan": {"max": 2}}), false, false),
        (json!({"nth_scan": {"min": 1, "max": 3}}), true, false),
        (
            json!({"profile": {"path": "tier", "equals": "gold"}}),
            true,
            false,
        ),
        (
            json!({"profile": {"path": "tier", "one_of": ["silver", "gold"]}}),
            true,
            false,
        ),
        (
            json!({"profile": {"path": "tags", "contains": "koc"}}),
            true,
            false,
        ),
        (
            json!({"profile": {"path": "tags", "contains": "vip"}}),
            false,
            false,
        ),
        (json!({"profile": {"path": "age", "gte": 18}}), true, false),
        (json!({"profile": {"path": "age", "lte": 18}}), false, false),
        (
            json!({"profile": {"path": "loyalty.level", "gte": 4}}),
            true,
            false,
        ),
        (
            json!({"profile": {"path": "phone", "exists": false}}),
            true,
            true,
        ),
        (
            json!({"profile": {"path": "tier", "exists": true}}),
            true,
            false,
        ),
        // Combinations.
        (json!({"all": []}), true, true),
        (
            json!({"all": [{"product": ["WINE-750"]}, {"region": ["CN-GD"]}]}),
            true,
            false,
        ),
        (
            json!({"any": [{"product": ["BEER"]}, {"first_scan": true}]}),
            true,
            true,
        ),
        (
            json!({"any": [{"product": ["BEER"]}, {"lot": ["L1"]}]}),
            false,
            false,
        ),
        (json!({"not": {"region": ["CN-SH"]}}), true, true),
        (
            json!({"not": {"profile": {"path": "tags", "contains": "koc"}}}),
            false,
            true,
        ),
        (
            json!({"all": [{"first_scan": true}, {"any": [{"region": ["CN-SH"]}, {"not": {"nth_scan": {"min": 5}}}]}]}),
            true,
            true,
        ),
    ];
    for (rule, full, bare) in rows {
        let r = Rule::parse(&rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(r.eval(&scan()), full, "{rule} on a full scan");
        assert_eq!(r.eval(&anonymous), bare, "{rule} on an anonymous scan");
    }
}

#[test]
fn invalid_rules_are_refused_with_the_place_of_the_mistake() {
    let deep = (0..20).fold(json!({"first_scan": true}), |r, _| json!({"not": r}));
    for (rule, says) in [
        (json!({"colour": ["red"]}), "unknown variant"),
        (json!({"product": []}), "rule.product"),
        (
            json!({"all": [{"first_scan": true}, {"region": [""]}]}),
            "rule.all[1].region",
        ),
        (json!({"any": []}), "rule.any"),
        (
            json!({"serials": {"batch": "B1", "from": 10, "to": 5}}),
            "rule.serials",
        ),
        (
            json!({"within": {"type": "Point", "coordinates": [1, 2]}}),
            "rule.within",
        ),
        (
            json!({"within": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}),
            "rule.within: ring coordinates[0] (the outer ring): the ring crosses itself",
        ),
        (
            json!({"between": {"from": "2026-12-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}}),
            "before",
        ),
        (
            json!({"between": {"from": "yesterday", "to": "2026-11-01T00:00:00Z"}}),
            "RFC 3339",
        ),
        (json!({"hours": {"from": "9:00", "to": "18:00"}}), "HH:MM"),
        (json!({"hours": {"from": "09:00", "to": "09:00"}}), "empty"),
        (json!({"nth_scan": {}}), "min or max"),
        (json!({"nth_scan": {"min": 5, "max": 2}}), "min above max"),
        (json!({"profile": {"path": "a..b", "equals": 1}}), "path"),
        (json!({"profile": {"path": "tier", "one_of": []}}), "one_of"),
        (json!({"profile": {"path": "tier"}}), "rule"),
        (deep, "deeper"),
    ] {
        let e = Rule::parse(&rule).unwrap_err();
        assert!(e.contains(says), "{rule}: {e:?} should say {says:?}");
    }
}

#[test]
fn a_saved_rule_is_read_again_without_checking_its_geofence_again() {
    // A bow-tie stored before rings were checked keeps its old meaning.
    let bow_tie = json!({"within": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}});
    assert!(Rule::parse(&bow_tie).is_err());
    let r = Rule::parse_stored(&bow_tie).unwrap();
    let mut f = scan();
    f.location = Some((0.5, 0.2));
    assert!(r.eval(&f), "inside the western lobe");
    // Everything else is still checked.
    assert!(Rule::parse_stored(&json!({"region": []})).is_err());
}

fn prize(id: &str, kind: PrizeKind, weight: u32, stock: Option<i64>) -> Prize {
    Prize {
        id: id.into(),
        name: id.into(),
        kind,
        weight,
        stock,
        valid_days: None,
    }
}

fn packet(min: i64, max: i64) -> PrizeKind {
    PrizeKind::RedPacket {
        min_cents: min,
        max_cents: max,
    }
}

#[test]
fn prize_tables_that_make_no_sense_are_refused() {
    let thanks = prize("thanks", PrizeKind::Thanks, 9, None);
    for (table, budget, says) in [
        (vec![], Some(100), "1-50"),
        (vec![prize("a", PrizeKind::Thanks, 0, None)], None, "weight"),
        (vec![prize("A!", PrizeKind::Thanks, 1, None)], None, ".id"),
        (vec![thanks.clone(), thanks.clone()], None, "twice"),
        (
            vec![prize("rp", packet(500, 100), 1, None)],
            Some(10_000),
            "min_cents <= max_cents",
        ),
        (
            vec![prize("rp", packet(0, 100), 1, None)],
            Some(10_000),
            "1 <= min_cents",
        ),
        (
            vec![prize("rp", packet(100, 500), 1, None)],
            None,
            "needs a campaign budget",
        ),
        (
            vec![prize("rp", packet(100, 500), 1, None)],
            Some(99),
            "lower than one rp",
        ),
        (
            vec![prize("c", PrizeKind::Coupon, 1, None)],
            None,
            "pool size",
        ),
        (
            vec![prize("p", PrizeKind::Points { points: 0 }, 1, None)],
            None,
            "points",
        ),
        (
            vec![prize("p", PrizeKind::Thanks, 1, Some(0))],
            None,
            "stock",
        ),
        (
            vec![Prize {
                valid_days: Some(30),
                ..prize("p", PrizeKind::Points { points: 5 }, 1, None)
            }],
            None,
            "only a coupon prize expires",
        ),
        (
            vec![Prize {
                valid_days: Some(0),
                ..prize("c", PrizeKind::Coupon, 1, Some(5))
            }],
            None,
            "valid_days: 1..=3650",
        ),
    ] {
        let e = prizes::validate(&table, budget).unwrap_err();
        assert!(e.contains(says), "{table:?}: {e:?} should say {says:?}");
    }
    let coupon = Prize {
        valid_days: Some(30),
        ..prize("c", PrizeKind::Coupon, 1, Some(5))
    };
    prizes::validate(
        &[prize("rp", packet(100, 500), 1, Some(10)), coupon, thanks],
        Some(100),
    )
    .unwrap();
}

#[test]
fn draws_follow_the_weights() {
    let table = [
        prize("a", PrizeKind::Thanks, 1, None),
        prize("b", PrizeKind::Thanks, 3, None),
    ];
    let mut rng = prizes::SplitMix(7);
    let mut counts = [0u32; 2];
    for _ in 0..40_000 {
        counts[prizes::draw(&table, rng.next_u64())] += 1;
    }
    assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
    assert_eq!(prizes::draw(&table, 0), 0);
    assert_eq!(prizes::draw(&table, u64::MAX), 1);
    assert_eq!(prizes::amount(100, 500, 0), 100);
    assert_eq!(prizes::amount(100, 500, u64::MAX), 500);
    assert_eq!(prizes::amount(300, 300, 12345), 300);
}

#[test]
fn a_simulation_never_spends_past_the_budget_or_the_stock() {
    let table = [
        prize("rp", packet(100, 500), 1, None),
        prize("mug", PrizeKind::Coupon, 1, Some(30)),
        prize("thanks", PrizeKind::Thanks, 8, None),
    ];
    let s = simulate(&table, Some(1_000_000), 100_000, 42);
    assert!(
        s.cash_cents <= 1_000_000 && s.cash_cents > 1_000_000 - 100,
        "{s:?}"
    );
    assert_eq!(s.by_prize[1].wins, 30);
    assert!(s.budget_exhausted_after.is_some_and(|n| n < 100_000));
    assert_eq!(s.wins, s.by_prize.iter().map(|p| p.wins).sum::<u64>());
    assert_eq!(
        simulate(&table, Some(1_000_000), 100_000, 42),
        s,
        "a seed repeats a simulation"
    );
}
