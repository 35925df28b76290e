//! A checkout calling the rewards plugin inside its own transaction, over
//! real HTTP: the host's `caller` fixture installed as `shop`, granted
//! `rewards.spendPoints`, `rewards.creditPoints` and
//! `rewards.redeemCoupon`. Points spent (or a coupon redeemed) and the
//! shop's order commit together or not at all.

use std::path::PathBuf;
use std::sync::OnceLock;

use keel_host::Manifest;
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::codes::{activate, setup};
use crate::rewards::{CLAIM, campaign, running, scan};
use crate::support::{Brand, Kernel, code, ok};

const SHOP: &str = r#"
name = "shop"
version = "0.1.0"
publisher = "Keel tests"
description = "A checkout: its orders, with rewards' points and coupons in the same transaction."
wit = "0.2.0"

[[collections]]
name = "orders"

[[collections]]
name = "items"

[capabilities]
capabilities = ["records"]

[[calls]]
plugin = "rewards"
operation = "spendPoints"

[[calls]]
plugin = "rewards"
operation = "creditPoints"

[[calls]]
plugin = "rewards"
operation = "redeemCoupon"

[graphql]
sdl = """
extend type Mutation {
  "Writes the order, then makes each call (kernel/host/fixtures/caller)."
  order(key: String!, calls: JSON!, swallow: Boolean, then: String): JSON
}
"""
"#;

const ORDER: &str = "mutation($k: String!, $c: JSON!, $s: Boolean, $t: String) { order(key: $k, calls: $c, swallow: $s, then: $t) }";
const WALLET: &str =
    "query($p: String!) { pointsWallet(personId: $p) { balance history { points reason } } }";
const CALLS: [&str; 3] = [
    "rewards.spendPoints",
    "rewards.creditPoints",
    "rewards.redeemCoupon",
];

/// The host's fixtures, built once per test process.
fn caller_wasm() -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        keel_host::guests::build(
            &root.join("kernel/host/fixtures/Cargo.toml"),
            &root.join("target/wasm"),
        )
        .expect("building the host's fixtures")
    });
    std::fs::read(dir.join("caller.wasm")).expect("the caller fixture")
}

/// A brand with rewards and the shop enabled, the shop granted `calls`.
async fn brand_with_shop(k: &Kernel, slug: &str) -> Brand {
    let b = k.brand(slug, json!({})).await;
    k.enable_rewards(&b, json!({}), &[]).await;
    let manifest = Manifest::from_toml(SHOP).unwrap();
    k.registry.install(manifest, &caller_wasm()).await.unwrap();
    // A call the shop does not declare cannot be granted.
    let enable = "mutation($i: EnablePluginInput!) { enablePlugin(input: $i) { calls } }";
    let r = k.gql(&b.owner, enable, json!({"i": {"name": "shop", "capabilities": ["records"], "calls": ["rewards.claimReward"]}})).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let r = k
        .gql(
            &b.owner,
            enable,
            json!({"i": {"name": "shop", "capabilities": ["records"], "calls": CALLS}}),
        )
        .await;
    // Granted calls are listed in name order.
    let mut granted = CALLS.to_vec();
    granted.sort_unstable();
    assert_eq!(ok(&r)["enablePlugin"]["calls"], json!(granted));
    b
}

/// One call of the shop's order.
fn call(operation: &str, input: Value) -> Value {
    json!({"plugin": "rewards", "operation": operation, "input": input})
}

fn spend(person: &str, points: i64, key: &str) -> Value {
    call(
        "spendPoints",
        json!({"personId": person, "points": points, "reason": format!("order {key}"), "idempotencyKey": key}),
    )
}

async fn order(k: &Kernel, b: &Brand, key: &str, calls: Vec<Value>, then: Option<&str>) -> Value {
    k.gql(
        &b.owner,
        ORDER,
        json!({"k": key, "c": calls, "s": false, "t": then}),
    )
    .await
}

async fn has_order(k: &Kernel, b: &Brand, key: &str) -> bool {
    let tenant = keel_core::tenants::get_by_slug(&k.db, &b.slug)
        .await
        .unwrap()
        .id;
    let mut c = k.db.reader().acquire().await.unwrap();
    let loc = keel_core::records::Location {
        namespace: "shop",
        collection: "orders",
        key,
    };
    keel_core::records::get(&mut c, &tenant, loc)
        .await
        .unwrap()
        .is_some()
}

async fn balance(k: &Kernel, b: &Brand, person: &str) -> (i64, Vec<i64>) {
    let r = k.gql(&b.owner, WALLET, json!({"p": person})).await;
    let w = &ok(&r)["pointsWallet"];
    let history = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["points"].as_i64().unwrap())
        .collect();
    (w["balance"].as_i64().unwrap(), history)
}

on_both_backends! {
    async fn a_checkout_spends_points_with_its_order_or_not_at_all(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_shop(&k, "acme").await;
        let r = k.gql(&b.owner, "mutation { identify(input: {identifiers: [{kind: \"phone\", value: \"+8613800000001\"}]}) { person { id } } }", json!({})).await;
        let alice = ok(&r)["identify"]["person"]["id"].as_str().unwrap().to_owned();

        // Credited through the shop (creditPoints is offered to plugins
        // only: it is not on GraphQL).
        let credit = call("creditPoints", json!({"personId": alice, "points": 100, "reason": "welcome", "idempotencyKey": "welcome"}));
        ok(&order(&k, &b, "welcome", vec![credit.clone()], None).await);
        ok(&order(&k, &b, "welcome", vec![credit], None).await);
        assert_eq!(balance(&k, &b, &alice).await, (100, vec![100]), "credited once");
        let r = k.gql(&b.owner, "mutation { creditPoints(personId: \"x\", points: 1, reason: \"r\", idempotencyKey: \"k\") { balance } }", json!({})).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("creditPoints"), "{r}");

        // The order and the spend commit together; a retry spends once.
        let r = order(&k, &b, "o1", vec![spend(&alice, 30, "o1")], None).await;
        assert_eq!(ok(&r)["order"]["results"][0]["ok"]["balance"], 70, "{r}");
        ok(&order(&k, &b, "o1", vec![spend(&alice, 30, "o1")], None).await);
        assert!(has_order(&k, &b, "o1").await);
        assert_eq!(balance(&k, &b, &alice).await, (70, vec![100, -30]));

        // A refused spend leaves neither the order nor a movement.
        let r = order(&k, &b, "o2", vec![spend(&alice, 1000, "o2")], None).await;
        assert_eq!(code(&r), "INSUFFICIENT_POINTS", "{r}");
        assert!(!has_order(&k, &b, "o2").await);
        // The spend succeeds but the shop then fails: both roll back.
        let r = order(&k, &b, "o3", vec![spend(&alice, 10, "o3")], Some("error")).await;
        assert_eq!(code(&r), "ORDER_FAILED", "{r}");
        assert!(!has_order(&k, &b, "o3").await);
        assert_eq!(balance(&k, &b, &alice).await, (70, vec![100, -30]));

        // Rewards disabled: the call is not found, and nothing is written.
        ok(&k.gql(&b.owner, "mutation { disablePlugin(name: \"rewards\") { enabled } }", json!({})).await);
        let r = order(&k, &b, "o4", vec![spend(&alice, 10, "o4")], None).await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("rewards is not enabled"), "{r}");
        assert!(!has_order(&k, &b, "o4").await);
    }

    async fn a_checkout_redeems_a_coupon_its_person_holds_once(kind) {
        let k = Kernel::start(kind).await;
        let b = brand_with_shop(&k, "acme").await;
        let s = setup(&k, &b, 3).await;
        ok(&activate(&k, &b, &s.units).await);
        let (_, csv) = k.download(&b.owner, "/files/codes/print-file", json!({"batch": s.units})).await;
        let codes: Vec<String> = csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().to_owned()).collect();
        let table = json!([{"id": "mug", "name": "Mug coupon", "kind": "COUPON", "weight": 1, "stock": 2, "valid_days": 30}]);
        let id = running(&k, &b, campaign(json!({"all": []}), table, json!({}))).await;
        let add = "mutation($c: String!, $codes: [String!]!) { addCoupons(campaign: $c, prize: \"mug\", codes: $codes) }";
        ok(&k.gql(&b.owner, add, json!({"c": id, "codes": ["MUG-1", "MUG-2"]})).await);
        ok(&k.gql(&b.owner, "mutation($id: String!) { setCampaignStatus(id: $id, status: ACTIVE) { status } }", json!({"id": id})).await);
        let mut won = Vec::new();
        for (c, openid) in codes.iter().zip(["o-alice", "o-bob"]) {
            let s = scan(&k, &b, c, None, Some(openid)).await;
            let r = k.public_as(&b.slug, Some(openid), CLAIM, json!({"s": s})).await;
            let award = &ok(&r)["claimReward"]["awards"][0];
            won.push((award["personId"].as_str().unwrap().to_owned(), award["coupon"].as_str().unwrap().to_owned(), award["id"].as_str().unwrap().to_owned()));
        }
        let [(alice, mug1, _), (bob, mug2, bob_award)] = [won[0].clone(), won[1].clone()];
        let redeem = |person: &str, code: &str, key: &str| {
            call("redeemCoupon", json!({"personId": person, "code": code, "orderId": key, "idempotencyKey": key}))
        };

        // Redeemed with the order; a retry returns the same redemption.
        let r = order(&k, &b, "o1", vec![redeem(&alice, &mug1, "o1")], None).await;
        let first = ok(&r)["order"]["results"][0]["ok"].clone();
        assert_eq!((first["prize"].as_str(), first["orderId"].as_str(), first["redeemedBy"].as_str()), (Some("mug"), Some("o1"), Some("shop")), "{r}");
        let r = order(&k, &b, "o1", vec![redeem(&alice, &mug1, "o1")], None).await;
        assert_eq!(ok(&r)["order"]["results"][0]["ok"], first);
        // Used: refused under another key, and that order is not written.
        let r = order(&k, &b, "o2", vec![redeem(&alice, &mug1, "o2")], None).await;
        assert_eq!(code(&r), "COUPON_USED", "{r}");
        assert!(!has_order(&k, &b, "o2").await);
        // Not theirs: Bob cannot use Alice's code, nor name her award.
        let r = order(&k, &b, "o3", vec![redeem(&bob, &mug1, "o3")], None).await;
        assert_eq!(code(&r), "COUPON_NOT_HELD", "{r}");
        // Expired: Bob's coupon, won 31 days ago, is past its 30 days.
        let tenant = keel_core::tenants::get_by_slug(&k.db, &b.slug).await.unwrap().id;
        let backdated = (chrono::Utc::now() - chrono::Duration::days(31)).to_rfc3339();
        let data: String = sqlx::query_scalar("SELECT data FROM records WHERE tenant_id = $1 AND namespace = 'rewards' AND collection = 'awards' AND key = $2")
            .bind(tenant.as_str()).bind(&bob_award).fetch_one(k.db.reader()).await.unwrap();
        let mut data: Value = serde_json::from_str(&data).unwrap();
        data["at"] = json!(backdated);
        let mut tx = k.db.begin().await.unwrap();
        sqlx::query("UPDATE records SET data = $1 WHERE tenant_id = $2 AND namespace = 'rewards' AND collection = 'awards' AND key = $3")
            .bind(data.to_string()).bind(tenant.as_str()).bind(&bob_award).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let r = order(&k, &b, "o4", vec![redeem(&bob, &mug2, "o4")], None).await;
        assert_eq!(code(&r), "COUPON_EXPIRED", "{r}");
        assert!(!has_order(&k, &b, "o4").await);
        assert!(has_order(&k, &b, "o1").await);
    }
}
