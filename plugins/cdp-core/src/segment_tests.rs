use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::segments::{Known, Person, Rule, order};

fn names() -> Known {
    Known {
        traits: ["spend_total", "last_store"].map(String::from).into(),
        tiers: ["member", "silver", "gold"].map(String::from).into(),
        segments: ["buyers"].map(String::from).into(),
        rule_tags: BTreeMap::from([("big_spender".to_owned(), "buyers".to_owned())]),
    }
}

static NO_CONSENT: BTreeSet<String> = BTreeSet::new();

fn person<'a>(
    traits: &'a BTreeMap<String, Value>,
    tags: &'a BTreeSet<String>,
    attributes: &'a Map<String, Value>,
) -> Person<'a> {
    Person {
        traits,
        tags,
        attributes,
        tier: None,
        consent: &NO_CONSENT,
        segments: &NO_CONSENT,
    }
}

#[test]
fn a_rule_reads_traits_tags_and_attributes() {
    let rule = Rule::parse(
        &json!({"all": [
            {"trait": {"name": "spend_total", "op": "gte", "value": 100}},
            {"any": [{"tag": "vip"}, {"attribute": {"path": "home.city", "op": "eq", "value": "深圳"}}]},
            {"not": {"tag": "blocked"}}
        ]}),
        &names(),
    )
    .unwrap();
    let traits = BTreeMap::from([("spend_total".to_owned(), json!(120.5))]);
    let vip: BTreeSet<String> = ["vip".to_owned()].into();
    let none = BTreeSet::new();
    let shenzhen = json!({"home": {"city": "深圳"}})
        .as_object()
        .unwrap()
        .clone();
    let empty = Map::new();
    assert!(rule.eval(&person(&traits, &vip, &empty)));
    assert!(rule.eval(&person(&traits, &none, &shenzhen)));
    assert!(
        !rule.eval(&person(&traits, &none, &empty)),
        "neither vip nor in Shenzhen"
    );
    let blocked: BTreeSet<String> = ["vip".to_owned(), "blocked".to_owned()].into();
    assert!(!rule.eval(&person(&traits, &blocked, &empty)));
    let poor = BTreeMap::from([("spend_total".to_owned(), json!(99.99))]);
    assert!(!rule.eval(&person(&poor, &vip, &empty)));
    assert!(rule.reads_attributes());
    let mut read = BTreeSet::new();
    rule.traits(&mut read);
    assert_eq!(read, ["spend_total".to_owned()].into());
}

#[test]
fn comparisons_with_a_missing_value() {
    let traits = BTreeMap::from([("last_store".to_owned(), Value::Null)]);
    let (tags, attrs) = (BTreeSet::new(), Map::new());
    let p = person(&traits, &tags, &attrs);
    let check = |rule: Value| Rule::parse(&rule, &names()).unwrap().eval(&p);
    assert!(!check(
        json!({"trait": {"name": "last_store", "op": "exists"}})
    ));
    assert!(check(
        json!({"trait": {"name": "last_store", "op": "ne", "value": "S1"}})
    ));
    assert!(!check(
        json!({"trait": {"name": "last_store", "op": "eq", "value": "S1"}})
    ));
    assert!(!check(
        json!({"trait": {"name": "spend_total", "op": "lt", "value": 1}})
    ));
    assert!(check(json!({"all": []})), "an empty all holds");
    assert!(!check(json!({"any": []})), "an empty any does not");
}

#[test]
fn a_bad_rule_names_its_place() {
    let deep = (0..10).fold(json!({"tag": "x"}), |r, _| json!({"not": r}));
    let wide: Vec<Value> = (0..101).map(|_| json!({"tag": "x"})).collect();
    let cases = [
        (json!([]), "rule"),
        (json!({"all": [{"tag": "a"}], "any": []}), "rule"),
        (json!({"all": {"tag": "a"}}), "rule.all"),
        (json!({"all": [{"tag": ""}]}), "rule.all[0].tag"),
        (
            json!({"all": [{"trait": {"name": "nope", "op": "eq", "value": 1}}]}),
            "rule.all[0].trait.name",
        ),
        (
            json!({"any": [{"tag": "a"}, {"trait": {"name": "spend_total", "op": "about", "value": 1}}]}),
            "rule.any[1].trait.op",
        ),
        (
            json!({"trait": {"name": "spend_total", "op": "eq", "value": [1]}}),
            "rule.trait.value",
        ),
        (
            json!({"trait": {"name": "spend_total", "op": "exists", "value": 1}}),
            "rule.trait.value",
        ),
        (
            json!({"trait": {"name": "spend_total", "op": "eq", "value": 1, "colour": 2}}),
            "rule.trait.colour",
        ),
        (
            json!({"attribute": {"path": "a..b", "op": "eq", "value": 1}}),
            "rule.attribute.path",
        ),
        (json!({"segment": "x"}), "rule.segment"),
        (json!({"segment": 1}), "rule.segment"),
        (json!({"colour": "x"}), "rule.colour"),
        (json!({"tier": {"atLeast": "bronze"}}), "rule.tier.atLeast"),
        (json!({"tier": {"above": "gold"}}), "rule.tier.above"),
        (json!({"tier": "gold"}), "rule.tier"),
        (json!({"consent": "Marketing SMS"}), "rule.consent"),
        (deep, "rule.not.not.not.not.not.not.not.not.not"),
        (json!({"any": wide}), "rule"),
    ];
    for (input, path) in cases {
        let e = Rule::parse(&input, &names()).unwrap_err();
        assert_eq!(e.path, path, "{input}: {e}");
    }
}

#[test]
fn tier_and_consent_leaves() {
    let (traits, tags, attrs) = (BTreeMap::new(), BTreeSet::new(), Map::new());
    let sms: BTreeSet<String> = ["marketing_sms".to_owned()].into();
    let at = |tier: Option<usize>, consent: &BTreeSet<String>, rule: Value| {
        let p = Person {
            tier,
            consent,
            ..person(&traits, &tags, &attrs)
        };
        Rule::parse(&rule, &names()).unwrap().eval(&p)
    };
    let gold_up = json!({"tier": {"atLeast": "silver"}});
    assert!(
        !at(None, &sms, gold_up.clone()),
        "no tier is below every level"
    );
    assert!(!at(Some(0), &sms, gold_up.clone()));
    assert!(at(Some(1), &sms, gold_up.clone()));
    assert!(at(Some(2), &sms, gold_up));
    assert!(!at(Some(2), &sms, json!({"tier": {"is": "silver"}})));
    assert!(at(Some(1), &sms, json!({"tier": {"is": "silver"}})));
    assert!(at(None, &sms, json!({"consent": "marketing_sms"})));
    assert!(!at(None, &NO_CONSENT, json!({"consent": "marketing_sms"})));
    let mut named = BTreeSet::new();
    Rule::parse(
        &json!({"any": [{"tier": {"is": "gold"}}, {"not": {"tier": {"atLeast": "silver"}}}]}),
        &names(),
    )
    .unwrap()
    .tiers(&mut named);
    assert_eq!(named, ["gold".to_owned(), "silver".to_owned()].into());
}

#[test]
fn a_segment_may_read_others_evaluated_first_never_in_a_cycle() {
    let (traits, tags, attrs) = (BTreeMap::new(), BTreeSet::new(), Map::new());
    let buyers: BTreeSet<String> = ["buyers".to_owned()].into();
    let p = Person {
        segments: &buyers,
        ..person(&traits, &tags, &attrs)
    };
    let rule = Rule::parse(&json!({"not": {"segment": "buyers"}}), &names()).unwrap();
    assert!(!rule.eval(&p));
    assert!(rule.eval(&person(&traits, &tags, &attrs)));
    let mut named = BTreeSet::new();
    rule.segments(&mut named);
    assert_eq!(named, buyers);

    let dep = |id: &str, on: &[&str]| {
        (
            id.to_owned(),
            on.iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<String>>(),
        )
    };
    let deps = vec![
        dep("c", &["b"]),
        dep("b", &["a"]),
        dep("a", &[]),
        dep("d", &["zzz"]),
    ];
    let o = order(&deps).unwrap();
    let pos = |id: &str| o.iter().position(|i| deps[*i].0 == id).unwrap();
    assert!(pos("a") < pos("b") && pos("b") < pos("c"), "{o:?}");
    assert_eq!(o.len(), 4);
    let cyclic = vec![dep("a", &["b"]), dep("b", &["c"]), dep("c", &["a"])];
    assert_eq!(
        order(&cyclic).unwrap_err(),
        "segments in a cycle: a → b → c → a"
    );
    assert!(order(&[dep("self", &["self"])]).is_err());
}

#[test]
fn an_event_leaf_counts_through_a_hidden_trait_shared_by_equal_leaves() {
    let leaf = |extra: Value| {
        let mut body = json!({"type": "code.scanned", "where": {"province": "广东", "ok": true}, "withinDays": 30});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Rule::parse(&json!({"event": body}), &names()).unwrap()
    };
    let three = leaf(json!({"atLeast": 3}));
    let quiet = leaf(json!({"atMost": 0}));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    three.history(&mut a);
    Rule::All(vec![quiet.clone(), three.clone()]).history(&mut b);
    assert_eq!(a.len(), 1);
    assert_eq!(a, b, "equal counts are one hidden trait");
    let count = &a[0];
    assert!(count.name.starts_with(crate::segments::HIDDEN));
    assert_eq!(count.window_days, Some(30));
    assert_eq!(count.filter.len(), 2);
    // The name depends on what is counted, not on how the JSON was written.
    let reordered = Rule::parse(
        &json!({"event": {"withinDays": 30, "atLeast": 1, "where": {"ok": true, "province": "广东"}, "type": "code.scanned"}}),
        &names(),
    )
    .unwrap();
    let mut c = Vec::new();
    reordered.history(&mut c);
    assert_eq!(c[0].name, count.name);
    let mut other = Vec::new();
    leaf(json!({"withinDays": 31})).history(&mut other);
    assert_ne!(other[0].name, count.name, "another window, another count");

    let (tags, attrs) = (BTreeSet::new(), Map::new());
    let with = |n: u64| BTreeMap::from([(count.name.clone(), json!(n))]);
    let none = BTreeMap::new();
    assert!(!three.eval(&person(&with(2), &tags, &attrs)));
    assert!(three.eval(&person(&with(3), &tags, &attrs)));
    assert!(quiet.eval(&person(&none, &tags, &attrs)), "no count is 0");
    assert!(quiet.eval(&person(&with(0), &tags, &attrs)));
    assert!(!quiet.eval(&person(&with(1), &tags, &attrs)));
    let between = leaf(json!({"atLeast": 2, "atMost": 4}));
    assert!(!between.eval(&person(&with(1), &tags, &attrs)));
    assert!(between.eval(&person(&with(4), &tags, &attrs)));
    assert!(!between.eval(&person(&with(5), &tags, &attrs)));
}

#[test]
fn a_bad_event_leaf_names_its_place() {
    let cases = [
        (json!({"event": "code.scanned"}), "rule.event"),
        (
            json!({"event": {"type": "Code Scanned"}}),
            "rule.event.type",
        ),
        (json!({"event": {}}), "rule.event.type"),
        (
            json!({"all": [{"event": {"type": "a.b", "when": 1}}]}),
            "rule.all[0].event.when",
        ),
        (
            json!({"event": {"type": "a.b", "where": [1]}}),
            "rule.event.where",
        ),
        (
            json!({"event": {"type": "a.b", "where": {"x": {"y": 1}}}}),
            "rule.event.where.x",
        ),
        (
            json!({"event": {"type": "a.b", "where": {"a..b": 1}}}),
            "rule.event.where.a..b",
        ),
        (
            json!({"event": {"type": "a.b", "withinDays": 0}}),
            "rule.event.withinDays",
        ),
        (
            json!({"event": {"type": "a.b", "withinDays": 401}}),
            "rule.event.withinDays",
        ),
        (
            json!({"event": {"type": "a.b", "atLeast": -1}}),
            "rule.event.atLeast",
        ),
        (
            json!({"event": {"type": "a.b", "atLeast": 1.5}}),
            "rule.event.atLeast",
        ),
        (
            json!({"event": {"type": "a.b", "atMost": 2_000_000_000u64}}),
            "rule.event.atMost",
        ),
        (
            json!({"event": {"type": "a.b", "atLeast": 3, "atMost": 2}}),
            "rule.event.atMost",
        ),
    ];
    for (rule, place) in cases {
        let err = Rule::parse(&rule, &names()).expect_err(&rule.to_string());
        assert_eq!(err.path, place, "{rule}: {err}");
    }
    let many: Map<String, Value> = (0..11).map(|i| (format!("p{i}"), json!(i))).collect();
    let err = Rule::parse(&json!({"event": {"type": "a.b", "where": many}}), &names()).unwrap_err();
    assert_eq!(err.path, "rule.event.where");
}

#[test]
fn a_rule_based_tag_reads_its_segment() {
    let rule = Rule::parse(
        &json!({"any": [{"tag": "big_spender"}, {"tag": "vip"}]}),
        &names(),
    )
    .unwrap();
    assert_eq!(
        rule,
        Rule::Any(vec![
            Rule::Segment("buyers".into()),
            Rule::Tag("vip".into())
        ])
    );
    let mut named = BTreeSet::new();
    rule.segments(&mut named);
    assert_eq!(
        named,
        BTreeSet::from(["buyers".to_owned()]),
        "ordered after it"
    );
}
