//! The plugin's own tests, in the mini-kernel of `keel-plugin-test`.

use keel_plugin_test::MiniKernel;
use serde_json::json;

async fn kernel(config: serde_json::Value) -> (MiniKernel, keel_plugin_test::Plugin) {
    let kernel = MiniKernel::start().await.unwrap();
    let plugin = kernel
        .plugin(env!("CARGO_MANIFEST_DIR"), config)
        .await
        .unwrap();
    (kernel, plugin)
}

#[tokio::test]
async fn every_third_stamp_earns_a_reward() {
    let (k, p) = kernel(json!({"stamps_per_reward": 3, "daily_limit": 10})).await;
    for _ in 0..2 {
        k.call(
            &p,
            "stamp",
            json!({"member": "m-1", "store": "s-9", "day": "2026-11-24"}),
        )
        .await
        .unwrap();
    }
    let card = k
        .call(
            &p,
            "stamp",
            json!({"member": "m-1", "store": "s-9", "day": "2026-11-24"}),
        )
        .await
        .unwrap();
    assert_eq!(
        card,
        json!({"member": "m-1", "stamps": 0, "rewards": 1, "lastStore": "s-9"})
    );
    assert_eq!(k.events("loyalty.stamped").await.len(), 3);
    assert_eq!(k.events("loyalty.rewarded").await.len(), 1);
    let read = k.call(&p, "card", json!({"member": "m-1"})).await.unwrap();
    assert_eq!(read["rewards"], 1);
    assert_eq!(
        k.call(&p, "card", json!({"member": "nobody"}))
            .await
            .unwrap(),
        json!(null)
    );
}

#[tokio::test]
async fn the_daily_limit_refuses_and_leaves_the_card_alone() {
    let (k, p) = kernel(json!({"stamps_per_reward": 10, "daily_limit": 2})).await;
    let stamp = |day: &'static str| json!({"member": "m-1", "store": "s-1", "day": day});
    k.call(&p, "stamp", stamp("2026-11-24")).await.unwrap();
    k.call(&p, "stamp", stamp("2026-11-24")).await.unwrap();
    let err = k.call(&p, "stamp", stamp("2026-11-24")).await.unwrap_err();
    assert_eq!(err.code(), "DAILY_LIMIT");
    assert_eq!(k.record(&p, "cards", "m-1").await.unwrap()["stamps"], 2);
    k.call(&p, "stamp", stamp("2026-11-25")).await.unwrap();
    assert_eq!(k.counter(&p, "daily:m-1:2026-11-24").await, 2);
}

#[tokio::test]
async fn bad_input_and_bad_config_are_refused() {
    let (k, p) = kernel(json!({"stamps_per_reward": 3})).await;
    let err = k
        .call(
            &p,
            "stamp",
            json!({"member": " ", "store": "s", "day": "d"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let err = k
        .call(&p, "stamp", json!({"member": "m"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    let fresh = MiniKernel::start().await.unwrap();
    let err = fresh
        .plugin(env!("CARGO_MANIFEST_DIR"), json!({"stamps_per_reward": 0}))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("config"), "{err:#}");
    let err = fresh
        .plugin(
            env!("CARGO_MANIFEST_DIR"),
            json!({"stamps_per_reward": 3, "daily_limit": 500}),
        )
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("LIMIT_TOO_HIGH")
            || format!("{err:#}").contains("loyalty program"),
        "{err:#}"
    );
}
