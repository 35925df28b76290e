//! The plugin's tests, against `keel plugin harness`: a person with a
//! tier, an award injected as the rewards plugin would emit it, a fixed
//! clock, a scripted CRM on the harness's HTTP endpoint and a stubbed call
//! to the rewards plugin.

use keel_plugin_test::{Harness, Plugin};
use serde_json::{Value, json};

fn start(config: Value) -> (Harness, Plugin) {
    let keel = Harness::start().unwrap();
    let plugin = keel.plugin(env!("CARGO_MANIFEST_DIR"), config).unwrap();
    (keel, plugin)
}

fn award(keel: &Harness, producer: &str, person: &str, id: &str) {
    keel.emit(
        producer,
        "rewards.awarded",
        Some(person),
        json!({
            "award": id, "campaign": "c1", "prize": "p1", "kind": "POINTS", "points": 10,
            "amountCents": null, "scanId": "s1", "codeId": "B1/1", "region": "CN-31",
        }),
    );
}

#[test]
fn an_award_counts_under_the_winners_tier_once_and_reaches_the_crm() {
    let keel = Harness::start().unwrap();
    let crm = format!("{}/crm", keel.http_url());
    let plugin = keel
        .plugin(env!("CARGO_MANIFEST_DIR"), json!({"crm_url": crm}))
        .unwrap();
    keel.respond("POST", "/crm/awards", 202, json!({"ok": true}));
    keel.set_clock("2026-12-31T23:59:00+08:00");
    let ann = keel.person(&[("phone", "+8613800000001")], json!({"tier": "gold"}));

    award(&keel, "rewards", &ann, "A1");
    assert_eq!(keel.deliver_events(), 1);
    let q = |tier: &str| {
        keel.call(&plugin, "awardsByTier", json!({"tier": tier}))
            .unwrap()
    };
    assert_eq!(q("gold"), json!(1));
    assert_eq!(q("none"), json!(0));
    let last = keel
        .call(&plugin, "lastAward", json!({"person": ann}))
        .unwrap();
    assert_eq!(
        last,
        json!({"award": "A1", "tier": "gold", "seenAt": "2026-12-31T15:59:00.000000Z"})
    );
    let sent = keel.http_requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["path"], "/crm/awards");
    assert_eq!(sent[0]["headers"]["idempotency-key"], "A1");
    let body: Value = serde_json::from_str(sent[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"person": ann, "tier": "gold", "award": "A1"}));

    // The same award delivered again is not counted twice.
    award(&keel, "rewards", &ann, "A1");
    keel.deliver_events();
    assert_eq!(q("gold"), json!(1));
    assert!(keel.dead_letters().is_empty());
}

#[test]
fn an_award_not_from_the_rewards_plugin_is_ignored() {
    let (keel, plugin) = start(json!({}));
    let bob = keel.person(&[("phone", "+8613800000002")], json!({"tier": "gold"}));
    // A client's own `rewards.*` event cannot be appended through GraphQL
    // (the namespace is the rewards plugin's); the handler checks anyway.
    award(&keel, "key:someone", &bob, "A9");
    assert_eq!(
        keel.deliver_events(),
        1,
        "delivered, and ignored by the handler"
    );
    assert!(keel.dead_letters().is_empty());
    let n = keel
        .call(&plugin, "awardsByTier", json!({"tier": "gold"}))
        .unwrap();
    assert_eq!(n, json!(0));
}

#[test]
fn a_crm_that_fails_leaves_a_dead_letter_with_its_answer() {
    let keel = Harness::start().unwrap();
    let crm = format!("{}/crm", keel.http_url());
    keel.plugin(env!("CARGO_MANIFEST_DIR"), json!({"crm_url": crm}))
        .unwrap();
    keel.respond("POST", "/crm/awards", 503, json!("down"));
    let cy = keel.person(&[("phone", "+8613800000003")], Value::Null);
    award(&keel, "rewards", &cy, "A2");
    keel.deliver_events();
    let dead = keel.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["subscriber"], "tier-awards");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("503"), "{error}");
}

#[test]
fn bad_input_and_bad_config_are_refused() {
    let (keel, plugin) = start(json!({}));
    let err = keel
        .call(&plugin, "awardsByTier", json!({"tier": ""}))
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let err = keel
        .call(&plugin, "awardsByTier", json!({"tier": "x".repeat(65)}))
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let unknown = keel
        .call(&plugin, "lastAward", json!({"person": "P-nobody"}))
        .unwrap();
    assert_eq!(unknown, Value::Null);
    // The counts are public; a person's last award is not.
    let public = keel
        .call_public(&plugin, "awardsByTier", json!({"tier": "gold"}))
        .unwrap();
    assert_eq!(public, json!(0));
    let err = keel
        .call_public(&plugin, "lastAward", json!({"person": "P-nobody"}))
        .unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN");
    let fresh = Harness::start().unwrap();
    let err = fresh
        .plugin(env!("CARGO_MANIFEST_DIR"), json!({"crm_url": "ftp://x"}))
        .unwrap_err();
    assert!(err.to_string().contains("crm_url"), "{err}");
}

#[test]
fn a_gold_member_earns_bonus_points_through_the_rewards_plugin() {
    let (keel, plugin) = start(json!({"gold_bonus_points": 5}));
    // The rewards plugin is not enabled here: its operation is stubbed.
    keel.stub_call("rewards", "creditPoints", json!({"balance": 5}));
    let ann = keel.person(&[("phone", "+8613800000004")], json!({"tier": "gold"}));
    let bob = keel.person(&[("phone", "+8613800000005")], json!({"tier": "silver"}));
    award(&keel, "rewards", &ann, "A4");
    award(&keel, "rewards", &bob, "A5");
    assert_eq!(keel.deliver_events(), 2);
    let calls = keel.stubbed_calls();
    assert_eq!(calls.len(), 1, "only the gold member: {calls:?}");
    assert_eq!(calls[0]["operation"], "creditPoints");
    assert_eq!(calls[0]["caller"], "tier-awards");
    assert_eq!(
        calls[0]["input"],
        json!({"personId": ann, "points": 5, "reason": "gold bonus", "idempotencyKey": "gold-bonus:A4"})
    );

    // A refused credit fails the delivery, and its count goes with it.
    keel.stub_error(
        "rewards",
        "creditPoints",
        "NOT_FOUND",
        "personId: no person",
    );
    award(&keel, "rewards", &ann, "A6");
    keel.deliver_events();
    let dead = keel.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("no person"),
        "{dead:?}"
    );
    let gold = keel
        .call(&plugin, "awardsByTier", json!({"tier": "gold"}))
        .unwrap();
    assert_eq!(gold, json!(1), "A4 only");
}
