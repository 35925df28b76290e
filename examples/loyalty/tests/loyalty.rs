//! The plugin's own tests, against `keel plugin harness` (run them with
//! `keel plugin test`, or `cargo test` with `keel` on PATH).

use keel_plugin_test::{Harness, Plugin};
use serde_json::json;

fn kernel(config: serde_json::Value) -> (Harness, Plugin) {
    let kernel = Harness::start().unwrap();
    let plugin = kernel.plugin(env!("CARGO_MANIFEST_DIR"), config).unwrap();
    (kernel, plugin)
}

#[test]
fn every_third_stamp_earns_a_reward() {
    let (k, p) = kernel(json!({"stamps_per_reward": 3, "daily_limit": 10}));
    let stamp = json!({"member": "m-1", "store": "s-9", "day": "2026-11-24"});
    for _ in 0..2 {
        k.call(&p, "stamp", stamp.clone()).unwrap();
    }
    let card = k.call(&p, "stamp", stamp).unwrap();
    assert_eq!(
        card,
        json!({"member": "m-1", "stamps": 0, "rewards": 1, "lastStore": "s-9"})
    );
    assert_eq!(k.events("loyalty.stamped").len(), 3);
    assert_eq!(k.events("loyalty.rewarded").len(), 1);
    let read = k.call(&p, "card", json!({"member": "m-1"})).unwrap();
    assert_eq!(read["rewards"], 1);
    assert_eq!(
        k.call(&p, "card", json!({"member": "nobody"})).unwrap(),
        json!(null)
    );
}

#[test]
fn the_daily_limit_refuses_and_leaves_the_card_alone() {
    let (k, p) = kernel(json!({"stamps_per_reward": 10, "daily_limit": 2}));
    let stamp = |day: &'static str| json!({"member": "m-1", "store": "s-1", "day": day});
    k.call(&p, "stamp", stamp("2026-11-24")).unwrap();
    k.call(&p, "stamp", stamp("2026-11-24")).unwrap();
    let err = k.call(&p, "stamp", stamp("2026-11-24")).unwrap_err();
    assert_eq!(err.code(), "DAILY_LIMIT");
    assert_eq!(k.record(&p, "cards", "m-1").unwrap()["stamps"], 2);
    k.call(&p, "stamp", stamp("2026-11-25")).unwrap();
    assert_eq!(k.counter(&p, "daily:m-1:2026-11-24"), 2);
}

#[test]
fn bad_input_and_bad_config_are_refused() {
    let (k, p) = kernel(json!({"stamps_per_reward": 3}));
    let err = k
        .call(
            &p,
            "stamp",
            json!({"member": " ", "store": "s", "day": "d"}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let err = k.call(&p, "stamp", json!({"member": "m"})).unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let fresh = Harness::start().unwrap();
    let err = fresh
        .plugin(env!("CARGO_MANIFEST_DIR"), json!({"stamps_per_reward": 0}))
        .unwrap_err();
    assert!(err.to_string().contains("config"), "{err}");
    let err = fresh
        .plugin(
            env!("CARGO_MANIFEST_DIR"),
            json!({"stamps_per_reward": 3, "daily_limit": 500}),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("LIMIT_TOO_HIGH") || err.to_string().contains("loyalty program"),
        "{err}"
    );
}
