//! The rewards plugin over real HTTP: campaigns refused or saved, claims
//! with every outcome, idempotent retries, limits exact under concurrency
//! (two kernel processes on one database), points and payouts.

use std::sync::Arc;

use keel_gateway::GatewayConfig;
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::codes::{SHANGHAI, SHENZHEN, activate, chrono_today, setup};
use crate::support::{Brand, Kernel, code, ok};

pub const CLAIM: &str = "mutation($s: String!, $i: [RewardIdentifierInput!]) { claimReward(scanId: $s, identifiers: $i) { \
    outcome message scanId dryRun awards { id campaign prize kind points amountCents coupon codeId personId payoutStatus } \
    checks { campaign outcome } } }";
pub const CREATE: &str =
    "mutation($i: CampaignInput!) { createCampaign(input: $i) { id status budgetCents } }";
pub const STATUS: &str = "mutation($id: String!, $s: CampaignStatus!) { setCampaignStatus(id: $id, status: $s) { status } }";
const SCAN: &str = "mutation($c: String!, $l: ScanLocationInput, $i: [ScanIdentifierInput!]) { scan(code: $c, location: $l, identifiers: $i) { verdict scanId } }";

/// A campaign input running now; `extra` overrides fields.
pub fn campaign(rule: Value, prizes: Value, extra: Value) -> Value {
    let mut c = json!({
        "name": "November scan-to-win",
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2036-01-01T00:00:00Z",
        "rule": rule,
        "prizes": prizes,
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

/// Creates and activates a campaign; its id.
pub async fn running(k: &Kernel, b: &Brand, input: Value) -> String {
    let r = k.gql(&b.owner, CREATE, json!({"i": input})).await;
    let id = ok(&r)["createCampaign"]["id"].as_str().unwrap().to_owned();
    if input.to_string().contains("\"COUPON\"") {
        return id;
    }
    let r = k
        .gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"}))
        .await;
    assert_eq!(ok(&r)["setCampaignStatus"]["status"], "ACTIVE");
    id
}

/// A scan by a consumer (an openid) at a place; the scan id.
pub async fn scan(
    k: &Kernel,
    b: &Brand,
    code: &str,
    at: Option<(f64, f64)>,
    openid: Option<&str>,
) -> String {
    let l = at.map(|(lat, lon)| json!({"lat": lat, "lon": lon}));
    let r = k
        .public_as(&b.slug, openid, SCAN, json!({"c": code, "l": l}))
        .await;
    ok(&r)["scan"]["scanId"]
        .as_str()
        .unwrap_or_else(|| panic!("no scan id: {r}"))
        .to_owned()
}

pub async fn claim(k: &Kernel, b: &Brand, scan_id: &str) -> Value {
    let r = k.public(&b.slug, CLAIM, json!({"s": scan_id})).await;
    ok(&r)["claimReward"].clone()
}

/// A brand with codes and rewards, `n` activated unit codes and regions.
pub(crate) async fn shop(
    k: &Kernel,
    slug: &str,
    n: u32,
    rewards_config: Value,
    hosts: &[String],
) -> (Brand, Vec<String>) {
    let b = k.brand(slug, json!({})).await;
    k.enable_rewards(&b, rewards_config, hosts).await;
    let s = setup(k, &b, n).await;
    ok(&activate(k, &b, &s.units).await);
    let (_, csv) = k
        .download(
            &b.owner,
            "/files/codes/print-file",
            json!({"batch": s.units}),
        )
        .await;
    let codes = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect();
    (b, codes)
}

pub fn points(n: i64) -> Value {
    json!([{"id": "pts", "name": format!("{n} points"), "kind": "POINTS", "points": n, "weight": 1}])
}

on_both_backends! {
    async fn claims_get_every_outcome_once(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 20, json!({}), &[]).await;
        let c1 = running(&k, &b, campaign(
            json!({"all": [{"region": ["CN-GD"]}, {"first_scan": true}]}),
            points(10),
            json!({"limits": {"perPersonPerDay": 2}}),
        )).await;

        // Won, and a retry is the same award.
        let s1 = scan(&k, &b, &codes[0], Some(SHENZHEN), Some("o-alice")).await;
        let first = claim(&k, &b, &s1).await;
        assert_eq!(first["outcome"], "WON", "{first:#}");
        assert_eq!(first["awards"][0]["points"], 10);
        assert_eq!(claim(&k, &b, &s1).await, first);
        let alice = first["awards"][0]["personId"].as_str().unwrap().to_owned();
        let wallet = "query($p: String!) { pointsWallet(personId: $p) { balance history { points reason } } }";
        let r = k.gql(&b.owner, wallet, json!({"p": alice})).await;
        assert_eq!(ok(&r)["pointsWallet"]["balance"], 10);

        // The same code scanned again is no first scan: not eligible.
        let again = scan(&k, &b, &codes[0], Some(SHENZHEN), Some("o-bob")).await;
        assert_eq!(claim(&k, &b, &again).await["outcome"], "NOT_ELIGIBLE");
        // Outside the region: not eligible. Without a person: person required.
        let sh = scan(&k, &b, &codes[1], Some(SHANGHAI), Some("o-alice")).await;
        assert_eq!(claim(&k, &b, &sh).await["outcome"], "NOT_ELIGIBLE");
        let anon = scan(&k, &b, &codes[2], Some(SHENZHEN), None).await;
        assert_eq!(claim(&k, &b, &anon).await["outcome"], "PERSON_REQUIRED");
        // A public claim cannot name its person (prize farmers invent them)...
        let anon2 = scan(&k, &b, &codes[3], Some(SHENZHEN), None).await;
        let r = k.public(&b.slug, CLAIM, json!({"s": anon2, "i": [{"kind": "wechat_openid", "value": "o-carol"}]})).await;
        assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{r}");
        // ...but a consumer who signs in at claim time is the person.
        let r = k.public_as(&b.slug, Some("o-carol"), CLAIM, json!({"s": anon2})).await;
        assert_eq!(ok(&r)["claimReward"]["outcome"], "WON");
        // Alice's second win today is allowed, the third is not.
        let s = scan(&k, &b, &codes[4], Some(SHENZHEN), Some("o-alice")).await;
        assert_eq!(claim(&k, &b, &s).await["outcome"], "WON");
        let s = scan(&k, &b, &codes[5], Some(SHENZHEN), Some("o-alice")).await;
        let limited = claim(&k, &b, &s).await;
        assert_eq!(limited["outcome"], "PERSON_LIMIT");
        assert!(limited["awards"].as_array().unwrap().is_empty(), "no partial award");
        // Unknown scans, a voided code, a paused campaign.
        assert_eq!(claim(&k, &b, "no-such-scan").await["outcome"], "SCAN_NOT_FOUND");
        let r = k.public(&b.slug, CLAIM, json!({"s": ""})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = k.gql(&b.owner, "mutation { voidCodes(batch: \"B1\", from: 20, to: 20, reason: \"recall\") { id } }", json!({})).await;
        ok(&r);
        let voided = scan(&k, &b, &codes[19], Some(SHENZHEN), Some("o-dan")).await;
        assert_eq!(claim(&k, &b, &voided).await["outcome"], "NOT_GENUINE");
        let r = k.gql(&b.owner, STATUS, json!({"id": c1, "s": "PAUSED"})).await;
        ok(&r);
        let s = scan(&k, &b, &codes[6], Some(SHENZHEN), Some("o-erin")).await;
        assert_eq!(claim(&k, &b, &s).await["outcome"], "NO_CAMPAIGN");

        // A dry run writes nothing.
        let r = k.gql(&b.owner, STATUS, json!({"id": c1, "s": "ACTIVE"})).await;
        ok(&r);
        let s = scan(&k, &b, &codes[7], Some(SHENZHEN), Some("o-frank")).await;
        let r = k.gql(&b.owner, "query($s: String!) { previewClaim(scanId: $s) { outcome dryRun awards { points } } }", json!({"s": s})).await;
        assert_eq!(ok(&r)["previewClaim"], json!({"outcome": "WON", "dryRun": true, "awards": [{"points": 10}]}));
        assert_eq!(claim(&k, &b, &s).await["outcome"], "WON", "the preview took nothing");

        // Spending points: refused beyond the balance, once per key.
        let spend = "mutation($p: String!, $n: Int!, $k: String!) { spendPoints(personId: $p, points: $n, reason: \"mug\", idempotencyKey: $k) { balance } }";
        let r = k.gql(&b.owner, spend, json!({"p": alice, "n": 15, "k": "order-1"})).await;
        assert_eq!(ok(&r)["spendPoints"]["balance"], 5);
        let r = k.gql(&b.owner, spend, json!({"p": alice, "n": 15, "k": "order-1"})).await;
        assert_eq!(ok(&r)["spendPoints"]["balance"], 5, "a retried spend spends once");
        let r = k.gql(&b.owner, spend, json!({"p": alice, "n": 6, "k": "order-2"})).await;
        assert_eq!(code(&r), "INSUFFICIENT_POINTS");

        // The report counts what happened.
        let today = chrono_today();
        let r = k.gql(&b.owner, "query($c: String!, $d: String!) { campaignReport(id: $c, from: $d, to: $d) { claims wins byPrize { prize wins } rows { region claims wins } } }",
            json!({"c": c1, "d": today})).await;
        let report = &ok(&r)["campaignReport"];
        assert_eq!(report["wins"], 4);
        assert_eq!(report["byPrize"], json!([{"prize": "pts", "wins": 4}]));
        assert!(report["rows"].as_array().unwrap().iter().any(|r| r["region"] == "CN-SH" && r["wins"] == 0));
    }

    async fn invalid_campaigns_are_refused_when_saved(kind) {
        let k = Kernel::start(kind).await;
        let (b, _) = shop(&k, "acme", 1, json!({}), &[]).await;
        let packet = |min: i64, max: i64| json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": min, "max_cents": max, "weight": 1}]);
        for (input, says) in [
            (campaign(json!({"colour": "red"}), points(1), json!({})), "rule"),
            (campaign(json!({"region": []}), points(1), json!({})), "rule.region"),
            (campaign(json!({"all": []}), json!([{"id": "a", "name": "A", "kind": "THANKS", "weight": 0}]), json!({})), "weight"),
            (campaign(json!({"all": []}), packet(100, 500), json!({"budgetCents": 99})), "lower than one rp"),
            (campaign(json!({"all": []}), packet(500, 100), json!({"budgetCents": 10000})), "min_cents <= max_cents"),
            (campaign(json!({"all": []}), packet(100, 500), json!({})), "budget"),
            (campaign(json!({"all": []}), json!([{"id": "c", "name": "Coupon", "kind": "COUPON", "weight": 1}]), json!({})), "stock"),
            (campaign(json!({"all": []}), points(1), json!({"endsAt": "2025-01-01T00:00:00Z"})), "endsAt"),
            (campaign(json!({"all": []}), points(1), json!({"windows": [{"from": "9", "to": "18:00"}]})), "windows[0]"),
            (campaign(json!({"all": []}), json!("not a table"), json!({})), "prizes"),
        ] {
            let r = k.gql(&b.owner, CREATE, json!({"i": input})).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{input}: {r}");
            let m = r["errors"][0]["message"].as_str().unwrap();
            assert!(m.contains(says), "{m:?} should say {says:?}");
        }
        let r = k.gql(&b.owner, "{ campaigns { id } }", json!({})).await;
        assert_eq!(ok(&r)["campaigns"], json!([]), "nothing was saved");
        // Status changes follow the life cycle.
        let id = running(&k, &b, campaign(json!({"all": []}), points(1), json!({}))).await;
        let r = k.gql(&b.owner, STATUS, json!({"id": id, "s": "ENDED"})).await;
        ok(&r);
        let r = k.gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"})).await;
        assert_eq!(code(&r), "INVALID_TRANSITION");
        let r = k.gql(&b.owner, "mutation($id: String!, $i: CampaignInput!) { updateCampaign(id: $id, input: $i) { id } }",
            json!({"id": id, "i": campaign(json!({"all": []}), points(2), json!({}))})).await;
        assert_eq!(code(&r), "CAMPAIGN_LOCKED");
    }

    async fn exclusive_campaigns_award_once_by_priority(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 5, json!({}), &[]).await;
        let low = running(&k, &b, campaign(json!({"all": []}), points(1), json!({"group": "nov", "priority": 1}))).await;
        let high = running(&k, &b, campaign(json!({"all": []}), points(50), json!({"group": "nov", "priority": 9}))).await;
        let free = running(&k, &b, campaign(json!({"product": ["WINE-750"]}), points(5), json!({}))).await;
        let s = scan(&k, &b, &codes[0], None, Some("o-1")).await;
        let r = claim(&k, &b, &s).await;
        let won: Vec<&str> = r["awards"].as_array().unwrap().iter().map(|a| a["campaign"].as_str().unwrap()).collect();
        assert_eq!(won, [high.as_str(), free.as_str()], "{r:#}");
        assert!(!won.contains(&low.as_str()));
    }

    async fn coupons_run_out_and_simulations_predict_the_cost(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 6, json!({}), &[]).await;
        let table = json!([{"id": "mug", "name": "Mug coupon", "kind": "COUPON", "weight": 1, "stock": 2}]);
        let id = running(&k, &b, campaign(json!({"all": []}), table, json!({}))).await;
        let r = k.gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"})).await;
        assert_eq!(code(&r), "EMPTY_COUPON_POOL");
        let add = "mutation($c: String!, $p: String!, $codes: [String!]!) { addCoupons(campaign: $c, prize: $p, codes: $codes) }";
        let r = k.gql(&b.owner, add, json!({"c": id, "p": "mug", "codes": ["MUG-1", "MUG-2", "MUG-3"]})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "more coupons than the stock");
        let r = k.gql(&b.owner, add, json!({"c": id, "p": "mug", "codes": ["MUG-1", "MUG-2"]})).await;
        assert_eq!(ok(&r)["addCoupons"], 2);
        ok(&k.gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"})).await);
        let mut got = Vec::new();
        for c in &codes[..3] {
            let s = scan(&k, &b, c, None, None).await;
            let r = claim(&k, &b, &s).await;
            got.push((r["outcome"].as_str().unwrap().to_owned(), r["awards"][0]["coupon"].as_str().map(str::to_owned)));
        }
        assert_eq!(got, [
            ("WON".to_owned(), Some("MUG-1".to_owned())),
            ("WON".to_owned(), Some("MUG-2".to_owned())),
            ("SOLD_OUT".to_owned(), None),
        ]);
        // A code has one draw per campaign, whoever scans it again.
        let again = scan(&k, &b, &codes[0], None, Some("o-other")).await;
        assert_eq!(claim(&k, &b, &again).await["outcome"], "CODE_ALREADY_WON");
        // Another brand's scan id is no scan here.
        let (other, _) = shop(&k, "other", 1, json!({}), &[]).await;
        let r = claim(&k, &other, &again).await;
        assert_eq!((r["outcome"].as_str(), r["awards"].as_array().map(Vec::len)), (Some("SCAN_NOT_FOUND"), Some(0)));
        let rp = json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 100, "max_cents": 500, "weight": 1},
                        {"id": "thanks", "name": "Thanks", "kind": "THANKS", "weight": 3}]);
        let r = k.gql(&b.owner, CREATE, json!({"i": campaign(json!({"all": []}), rp, json!({"budgetCents": 100000}))})).await;
        let sim_id = ok(&r)["createCampaign"]["id"].clone();
        let r = k.gql(&b.owner, "query($id: String!) { simulateCampaign(id: $id, claims: 10000, seed: 7) { claims wins cashCents budgetExhaustedAfter byPrize { prize wins } } }", json!({"id": sim_id})).await;
        let sim = &ok(&r)["simulateCampaign"];
        assert!(sim["cashCents"].as_i64().unwrap() <= 100_000);
        assert!(sim["budgetExhaustedAfter"].as_i64().is_some_and(|n| n < 10_000), "{sim}");
        let r = k.gql(&b.owner, "query($id: String!) { simulateCampaign(id: $id, claims: 0) { claims } }", json!({"id": sim_id})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
    }

    async fn random_red_packets_never_overspend_the_budget(kind) {
        let k = Kernel::start_with(kind, fast()).await;
        let (b, codes) = shop(&k, "acme", 120, json!({}), &[]).await;
        let rp = json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 100, "max_cents": 500, "weight": 1}]);
        let id = running(&k, &b, campaign(json!({"all": []}), rp, json!({"budgetCents": 10000}))).await;
        let k = Arc::new(k);
        let mut scans = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            scans.push(scan(&k, &b, c, None, Some(&format!("o-{i}"))).await);
        }
        let slug = b.slug.clone();
        let outcomes = futures::future::join_all(scans.into_iter().map(|s| {
            let (k, slug) = (k.clone(), slug.clone());
            tokio::spawn(async move {
                let r = k.public(&slug, CLAIM, json!({"s": s})).await;
                ok(&r)["claimReward"].clone()
            })
        })).await;
        let mut paid = 0i64;
        let mut exhausted = 0;
        for o in outcomes {
            let o = o.unwrap();
            match o["outcome"].as_str().unwrap() {
                "WON" => paid += o["awards"][0]["amountCents"].as_i64().unwrap(),
                "BUDGET_EXHAUSTED" => exhausted += 1,
                other => panic!("unexpected {other}: {o}"),
            }
        }
        assert!(paid <= 10_000, "spent {paid}");
        assert!(10_000 - paid < 100, "what is left ({}) is less than the smallest prize: no award is possible", 10_000 - paid);
        assert!(exhausted > 0);
        let r = k.gql(&b.owner, "query($c: String!) { campaign(id: $c) { spentCents } }", json!({"c": id})).await;
        assert_eq!(ok(&r)["campaign"]["spentCents"], paid);
    }
}

/// A gateway that lets one address make many public calls.
pub fn fast() -> GatewayConfig {
    GatewayConfig {
        public_calls_per_ip_per_minute: 1_000_000,
        ..GatewayConfig::default()
    }
}

/// The two races (one per backend) take turns: each alone keeps both cores
/// busy, and side by side on CI's two cores neither gets enough of them.
static RACE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 10,000 claims from 10,000 first scans race for 100 coupons across two
/// kernel processes: exactly 100 win.
async fn ten_thousand_claims_race_for_a_hundred_prizes(kind: keel_core::Backend) {
    let _turn = RACE.lock().await;
    // This test is about exactness under contention, not latency (the
    // benches measure that): on two busy cores with two SQLite processes
    // fighting over the one file lock, a claim may wait well past the
    // default 30 s request timeout, and must then still count.
    let config = || GatewayConfig {
        request_timeout: std::time::Duration::from_secs(600),
        ..fast()
    };
    let a = Kernel::start_with(kind, config()).await;
    let replica = Arc::new(a.replica(config()).await);
    let a = Arc::new(a);
    let b = a.brand("acme", json!({})).await;
    a.enable_rewards(&b, json!({}), &[]).await;
    let s = setup(&a, &b, 10_000).await;
    ok(&activate(&a, &b, &s.units).await);
    let table = json!([{"id": "mug", "name": "Mug", "kind": "COUPON", "weight": 1, "stock": 100}]);
    let id = running(&a, &b, campaign(json!({"all": []}), table, json!({}))).await;
    let pool: Vec<String> = (1..=100).map(|n| format!("MUG-{n:03}")).collect();
    let r = a.gql(&b.owner, "mutation($c: String!, $codes: [String!]!) { addCoupons(campaign: $c, prize: \"mug\", codes: $codes) }", json!({"c": id, "codes": pool})).await;
    assert_eq!(ok(&r)["addCoupons"], 100);
    ok(&a
        .gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"}))
        .await);
    let (_, csv) = a
        .download(
            &b.owner,
            "/files/codes/print-file",
            json!({"batch": s.units}),
        )
        .await;
    let codes: Arc<Vec<String>> = Arc::new(
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_owned())
            .collect(),
    );
    let kernels = vec![a.clone(), replica.clone()];
    let slug = b.slug.clone();
    let started = std::time::Instant::now();
    // The scans are the setting (one process); the claims are the race (two).
    let scans = fan_out(&kernels[..1], codes.len(), move |k, i| {
        let (codes, slug) = (codes.clone(), slug.clone());
        async move {
            k.public(
                &slug,
                "mutation($c: String!) { scan(code: $c) { scanId } }",
                json!({"c": codes[i]}),
            )
            .await
        }
    })
    .await;
    let ids: Arc<Vec<String>> = Arc::new(
        scans
            .iter()
            .map(|r| ok(r)["scan"]["scanId"].as_str().unwrap().to_owned())
            .collect(),
    );
    eprintln!("10,000 scans in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let slug = b.slug.clone();
    let claims = fan_out(&kernels, ids.len(), move |k, i| {
        let (ids, slug) = (ids.clone(), slug.clone());
        async move { k.public(&slug, CLAIM, json!({"s": ids[i]})).await }
    })
    .await;
    eprintln!("10,000 claims in {:?}", started.elapsed());
    assert_eq!(claims.len(), 10_000);
    let mut won = 0;
    let mut coupons = std::collections::HashSet::new();
    for r in &claims {
        let c = &ok(r)["claimReward"];
        match c["outcome"].as_str().unwrap() {
            "WON" => {
                won += 1;
                assert!(
                    coupons.insert(c["awards"][0]["coupon"].as_str().unwrap().to_owned()),
                    "a coupon given twice"
                );
            }
            "SOLD_OUT" => {}
            other => panic!("unexpected {other}: {c}"),
        }
    }
    assert_eq!(won, 100);
    let today = chrono_today();
    let r = a.gql(&b.owner, "query($c: String!, $d: String!) { campaignReport(id: $c, from: $d, to: $d) { claims wins byPrize { wins } } }", json!({"c": id, "d": today})).await;
    assert_eq!(ok(&r)["campaignReport"]["wins"], 100);
    assert_eq!(ok(&r)["campaignReport"]["claims"], 10_000);
    assert_eq!(ok(&r)["campaignReport"]["byPrize"][0]["wins"], 100);
}

/// Runs `f(kernel, i)` for i in 0..n from 16 concurrent clients, spread
/// over the kernels; the results in order of i.
async fn fan_out<F, Fut>(kernels: &[Arc<Kernel>], n: usize, f: F) -> Vec<Value>
where
    F: Fn(Arc<Kernel>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Value> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (k, f, next) = (kernels[t % kernels.len()].clone(), f.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.push((i, f(k.clone(), i).await));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, v)| v).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_claims_on_two_sqlite_processes_win_exactly_the_stock() {
    ten_thousand_claims_race_for_a_hundred_prizes(keel_core::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_claims_on_two_postgres_processes_win_exactly_the_stock() {
    if keel_testkit::postgres_url().is_none() {
        return;
    }
    ten_thousand_claims_race_for_a_hundred_prizes(keel_core::Backend::Postgres).await;
}

on_both_backends! {
    async fn red_packets_are_paid_once_through_a_flaky_provider(kind) {
        let provider = crate::support::Provider::start(2).await;
        let k = Kernel::start_with(kind, fast()).await;
        let config = json!({"payout_url": provider.url("/pay"), "payout_retry_seconds": 0, "payout_max_attempts": 4});
        let (b, codes) = shop(&k, "acme", 6, config, &[provider.host()]).await;
        let rp = json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 188, "max_cents": 188, "weight": 1}]);
        running(&k, &b, campaign(json!({"all": []}), rp, json!({"budgetCents": 100000}))).await;
        let mut awards = Vec::new();
        for (i, c) in codes[..3].iter().enumerate() {
            let s = scan(&k, &b, c, None, Some(&format!("o-{i}"))).await;
            let r = claim(&k, &b, &s).await;
            assert_eq!(r["awards"][0]["payoutStatus"], "PENDING");
            awards.push(r["awards"][0]["id"].as_str().unwrap().to_owned());
            // A retried claim requests no second payout.
            assert_eq!(claim(&k, &b, &s).await["awards"][0]["id"], r["awards"][0]["id"]);
        }
        let q = "{ rewardPayouts(status: \"PAID\") { awardId status attempts providerRef amountCents } }";
        let paid = crate::support::eventually(60, || async {
            let r = k.gql(&b.owner, q, json!({})).await;
            let list = ok(&r)["rewardPayouts"].as_array().unwrap().clone();
            (list.len() == 3).then_some(list)
        })
        .await
        .expect("every payout is paid");
        for p in &paid {
            assert_eq!(p["attempts"], 3, "two failures, then paid: {p}");
            assert_eq!(p["amountCents"], 188);
        }
        let calls = provider.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        for a in &awards {
            assert_eq!(calls[a], (3, Some(188)), "the provider paid {a} once, on the third call");
        }
        let r = k.gql(&b.owner, "query($d: String!) { rewardAwards(day: $d) { awards { id payoutStatus } } }", json!({"d": chrono_today()})).await;
        assert!(ok(&r)["rewardAwards"]["awards"].as_array().unwrap().iter().all(|a| a["payoutStatus"] == "PAID"));

        // A provider that is down: marked failed after the attempts allowed.
        let (b2, codes2) = shop(&k, "down", 2,
            json!({"payout_url": provider.url("/always-fail"), "payout_retry_seconds": 0, "payout_max_attempts": 3}),
            &[provider.host()]).await;
        let rp = json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 100, "max_cents": 100, "weight": 1}]);
        running(&k, &b2, campaign(json!({"all": []}), rp, json!({"budgetCents": 1000}))).await;
        let s = scan(&k, &b2, &codes2[0], None, Some("o-x")).await;
        assert_eq!(claim(&k, &b2, &s).await["outcome"], "WON");
        let failed = crate::support::eventually(60, || async {
            let r = k.gql(&b2.owner, "{ rewardPayouts(status: \"FAILED\") { attempts lastError } }", json!({})).await;
            ok(&r)["rewardPayouts"].as_array().unwrap().first().cloned()
        })
        .await
        .expect("the payout is marked failed");
        assert_eq!(failed["attempts"], 3);
        assert!(failed["lastError"].as_str().unwrap().contains("500"));
    }
}

/// A forged `rewards.payout_requested` (`attempt` of `award`, asking for
/// far more than any prize).
fn forged_request(award: &str, attempt: i64) -> Value {
    json!({"awardId": award, "personId": "P-mallory", "amountCents": 1_000_000,
           "attempt": attempt, "notBefore": 0})
}

on_both_backends! {
    async fn forged_payout_requests_pay_only_what_the_record_says(kind) {
        let provider = crate::support::Provider::start(0).await;
        let k = Kernel::start_with(kind, fast()).await;
        let config = json!({"payout_url": provider.url("/pay"), "payout_retry_seconds": 0, "payout_max_attempts": 3});
        let (b, codes) = shop(&k, "acme", 2, config, &[provider.host()]).await;
        let rp = json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 188, "max_cents": 188, "weight": 1}]);
        running(&k, &b, campaign(json!({"all": []}), rp, json!({"budgetCents": 100000}))).await;
        let t = "rewards.payout_requested";

        // Requests for an award that does not exist, from the plugin's own
        // name or another, and one that is no request at all: the
        // provider hears nothing, and each is delivered (not retried).
        let mut forged = vec![
            k.inject_event(&b, t, None, forged_request("A-no-such-award", 1), "rewards").await,
            k.inject_event(&b, t, None, forged_request("A-no-such-award", 1), "key:intruder").await,
            k.inject_event(&b, t, None, json!({"amountCents": 1_000_000}), "rewards").await,
        ];
        for id in &forged {
            k.wait_delivered(id, 30).await;
        }
        let seen = provider.seen.lock().unwrap().clone();
        assert!(seen.is_empty(), "no payout without a record: {seen:?}");

        // A real award, and forged requests for it (as its first attempt,
        // as later ones, from another producer), racing the real request.
        let s = scan(&k, &b, &codes[0], None, Some("o-alice")).await;
        let won = claim(&k, &b, &s).await;
        let award = won["awards"][0]["id"].as_str().unwrap().to_owned();
        let alice = won["awards"][0]["personId"].clone();
        for (attempt, producer) in [(1, "rewards"), (2, "rewards"), (7, "rewards"), (1, "key:intruder")] {
            forged.push(k.inject_event(&b, t, None, forged_request(&award, attempt), producer).await);
        }
        let q = "{ rewardPayouts(status: \"PAID\") { awardId attempts amountCents } }";
        let paid = crate::support::eventually(30, || async {
            let r = k.gql(&b.owner, q, json!({})).await;
            ok(&r)["rewardPayouts"].as_array().unwrap().first().cloned()
        })
        .await
        .expect("the real payout is paid");
        assert_eq!(paid, json!({"awardId": award, "attempts": 1, "amountCents": 188}));
        // Replays once it is paid.
        for attempt in [1, 2] {
            forged.push(k.inject_event(&b, t, None, forged_request(&award, attempt), "rewards").await);
        }
        for id in &forged {
            k.wait_delivered(id, 30).await;
        }
        let seen = provider.seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        for (key, body) in &seen {
            assert_eq!(key, &award, "{seen:?}");
            assert_eq!(body["amountCents"], 188, "the record's amount: {seen:?}");
            assert_eq!(body["personId"], alice, "the award's person: {seen:?}");
            assert_eq!(body["idempotencyKey"], award.as_str());
        }
        assert_eq!(provider.calls.lock().unwrap()[&award], (seen.len() as u32, Some(188)));
        let r = k.gql(&b.owner, "{ rewardPayouts { awardId status attempts amountCents } }", json!({})).await;
        assert_eq!(ok(&r)["rewardPayouts"], json!([{"awardId": award, "status": "PAID", "attempts": 1, "amountCents": 188}]));
    }

    async fn a_won_coupon_is_shown_again_only_to_its_winner(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 3, json!({}), &[]).await;
        let table = json!([{"id": "mug", "name": "Mug coupon", "kind": "COUPON", "weight": 1, "stock": 2}]);
        let id = running(&k, &b, campaign(json!({"all": []}), table, json!({}))).await;
        let add = "mutation($c: String!, $codes: [String!]!) { addCoupons(campaign: $c, prize: \"mug\", codes: $codes) }";
        ok(&k.gql(&b.owner, add, json!({"c": id, "codes": ["MUG-1", "MUG-2"]})).await);
        ok(&k.gql(&b.owner, STATUS, json!({"id": id, "s": "ACTIVE"})).await);
        let claim_as = |scan: String, openid: Option<&'static str>| {
            let k = &k;
            let slug = b.slug.clone();
            async move {
                let r = k.public_as(&slug, openid, CLAIM, json!({"s": scan})).await;
                ok(&r)["claimReward"].clone()
            }
        };
        let hidden = |mut r: Value| {
            r["awards"][0]["coupon"] = Value::Null;
            r
        };

        // Scanned by Alice (the scan names her), claimed without identifiers.
        let s = scan(&k, &b, &codes[0], None, Some("o-alice")).await;
        let first = claim_as(s.clone(), None).await;
        assert_eq!((first["outcome"].as_str(), first["awards"][0]["coupon"].as_str()), (Some("WON"), Some("MUG-1")));
        assert_eq!(claim_as(s.clone(), Some("o-alice")).await, first, "Alice sees her code again");
        let mallory = claim_as(s.clone(), Some("o-mallory")).await;
        assert_eq!(mallory, hidden(first.clone()), "another person holding the scan id: the outcome, not the code");
        assert_eq!(claim_as(s.clone(), None).await, hidden(first.clone()), "no person: no code");

        // Scanned anonymously, claimed by Carol signed in: she is the winner.
        let s = scan(&k, &b, &codes[1], None, None).await;
        let first = claim_as(s.clone(), Some("o-carol")).await;
        assert_eq!(first["awards"][0]["coupon"], "MUG-2");
        assert_eq!(claim_as(s.clone(), Some("o-carol")).await, first);
        assert_eq!(claim_as(s.clone(), Some("o-alice")).await, hidden(first.clone()));
        assert_eq!(claim_as(s.clone(), None).await, hidden(first.clone()));
    }

    async fn scan_ids_are_unguessable_and_a_guess_claims_nothing(kind) {
        let k = Kernel::start_with(kind, fast()).await;
        let (b, codes) = shop(&k, "acme", 10, json!({}), &[]).await;
        running(&k, &b, campaign(json!({"all": []}), points(10), json!({}))).await;
        let mut ids = Vec::new();
        for c in &codes {
            ids.push(scan(&k, &b, c, None, Some("o-alice")).await);
        }
        for id in &ids {
            // 16 hex digits of time, then 128 random bits.
            assert_eq!(id.len(), 48, "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{id}");
        }
        let randoms: std::collections::HashSet<&str> = ids.iter().map(|id| &id[16..]).collect();
        assert_eq!(randoms.len(), ids.len(), "distinct random parts");
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "ids still sort in the order of the scans");

        // Guesses near a real id: one digit changed, its time with other
        // random bits (or another scan's), the old 24-digit shape.
        let real = &ids[0];
        let last = if real.ends_with('0') { "1" } else { "0" };
        for guess in [
            format!("{}{last}", &real[..47]),
            format!("{}{}", &real[..16], "0".repeat(32)),
            format!("{}{}", &real[..16], &ids[1][16..]),
            real[..24].to_owned(),
            real[..47].to_owned(),
        ] {
            let r = claim(&k, &b, &guess).await;
            assert_eq!((r["outcome"].as_str(), r["awards"].as_array().map(Vec::len)), (Some("SCAN_NOT_FOUND"), Some(0)), "{guess}");
        }
        assert_eq!(claim(&k, &b, real).await["outcome"], "WON", "the real scan id still claims");
    }
}

on_both_backends! {
    async fn a_consumer_is_who_the_kernel_signed_in_never_whom_the_arguments_name(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 4, json!({}), &[]).await;
        let id = running(&k, &b, campaign(json!({"all": []}), points(10), json!({"limits": {"perPersonPerDay": 1}}))).await;
        assert!(!id.is_empty());
        // A public scan or claim naming a person is refused, and records nothing.
        let named = json!([{"kind": "wechat_openid", "value": "o-victim"}]);
        let r = k.public(&b.slug, SCAN, json!({"c": codes[0], "i": named})).await;
        assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{r}");
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("identifiers"), "{r}");
        let r = k.gql(&b.owner, "{ personByIdentifier(kind: \"wechat_openid\", value: \"o-victim\") { id } }", json!({})).await;
        assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND", "no person was made up: {r}");
        // Invented openids cannot get around the per-person limit: one
        // signed-in consumer wins once a day, however the claim is dressed.
        let s1 = scan(&k, &b, &codes[1], None, Some("o-farmer")).await;
        assert_eq!(claim(&k, &b, &s1).await["outcome"], "WON");
        let s2 = scan(&k, &b, &codes[2], None, Some("o-farmer")).await;
        let r = k.public_as(&b.slug, Some("o-farmer"), CLAIM, json!({"s": s2, "i": [{"kind": "wechat_openid", "value": "o-fake-1"}]})).await;
        assert_eq!(ok(&r)["claimReward"]["outcome"], "PERSON_LIMIT", "the scan's person, not the invented one: {r}");
        let r = k.gql(&b.owner, "{ personByIdentifier(kind: \"wechat_openid\", value: \"o-fake-1\") { id } }", json!({})).await;
        assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND", "{r}");
        // A trusted caller (a store's till with an API key) may name the person.
        let r = k.gql(&b.owner, SCAN, json!({"c": codes[3], "i": [{"kind": "wechat_openid", "value": "o-till"}]})).await;
        assert_eq!(ok(&r)["scan"]["verdict"], "GENUINE");
    }

    async fn without_consumer_sign_in_per_person_campaigns_are_refused_at_save(kind) {
        let k = Kernel::start(kind).await;
        let (b, _) = shop(&k, "acme", 2, json!({}), &[]).await;
        ok(&k.gql(&b.owner, "mutation { removeWechatApp }", json!({})).await);
        for (prizes, extra) in [
            (points(10), json!({})),
            (json!([{"id": "rp", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 100, "max_cents": 100, "weight": 1}]), json!({"budgetCents": 1000})),
            (json!([{"id": "mug", "name": "Mug coupon", "kind": "COUPON", "weight": 1, "stock": 2}]), json!({"limits": {"perPersonTotal": 1}})),
        ] {
            let r = k.gql(&b.owner, CREATE, json!({"i": campaign(json!({"all": []}), prizes, extra)})).await;
            assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{r}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains("sign-in"), "{r}");
        }
        let r = k.gql(&b.owner, "{ campaigns { id } }", json!({})).await;
        assert_eq!(ok(&r)["campaigns"], json!([]), "nothing was saved");
        // Anonymous prizes without per-person limits are fine.
        let r = k.gql(&b.owner, CREATE, json!({"i": campaign(json!({"all": []}), json!([{"id": "mug", "name": "Mug coupon", "kind": "COUPON", "weight": 1, "stock": 2}]), json!({}))})).await;
        ok(&r);
    }
}

/// Claims that win different sets of campaigns take the same rows in the
/// same order: a claim in Guangdong wins both campaigns, one in Shanghai
/// only the second. Were an award's event emitted at once, a Guangdong
/// claim would hold the tenant's event head while it waits for the second
/// campaign's row, which a Shanghai claim holds while it waits for the
/// head — a deadlock PostgreSQL breaks by failing one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_winning_different_sets_of_campaigns_never_deadlock() {
    if keel_testkit::postgres_url().is_none() {
        return;
    }
    let k = Arc::new(Kernel::start_with(keel_core::Backend::Postgres, fast()).await);
    let (b, codes) = shop(&k, "acme", 200, json!({}), &[]).await;
    running(
        &k,
        &b,
        campaign(
            json!({"region": ["CN-GD"]}),
            points(1),
            json!({"name": "Guangdong"}),
        ),
    )
    .await;
    running(
        &k,
        &b,
        campaign(json!({"all": []}), points(2), json!({"name": "Everywhere"})),
    )
    .await;
    let codes = Arc::new(codes);
    let slug = b.slug.clone();
    let scans = fan_out(std::slice::from_ref(&k), codes.len(), move |k, i| {
        let (codes, slug) = (codes.clone(), slug.clone());
        async move {
            let at = if i % 2 == 0 { SHENZHEN } else { SHANGHAI };
            let l = json!({"lat": at.0, "lon": at.1});
            let q = "mutation($c: String!, $l: ScanLocationInput) { scan(code: $c, location: $l) { scanId } }";
            k.public_as(&slug, Some(&format!("o-{i}")), q, json!({"c": codes[i], "l": l})).await
        }
    })
    .await;
    let ids: Arc<Vec<String>> = Arc::new(
        scans
            .iter()
            .map(|r| ok(r)["scan"]["scanId"].as_str().unwrap().to_owned())
            .collect(),
    );
    let slug = b.slug.clone();
    let claims = fan_out(std::slice::from_ref(&k), ids.len(), move |k, i| {
        let (ids, slug) = (ids.clone(), slug.clone());
        async move { k.public(&slug, CLAIM, json!({"s": ids[i]})).await }
    })
    .await;
    for (i, r) in claims.iter().enumerate() {
        let c = &ok(r)["claimReward"];
        assert_eq!(c["outcome"], "WON", "claim {i}: {c}");
        let awards = c["awards"].as_array().unwrap().len();
        assert_eq!(awards, if i % 2 == 0 { 2 } else { 1 }, "claim {i}: {c}");
    }
}
