//! The rewards plugin's claim path for one hot campaign, measured in one
//! run on SQLite and (with KEEL_TEST_POSTGRES_URL) PostgreSQL:
//!
//! - claims over HTTP (the public GraphQL endpoint, `CLIENTS` clients, 48
//!   unless set);
//! - the same claims through the plugin host directly (no HTTP);
//! - claims over HTTP to two kernels on the same database, half the
//!   clients each;
//! - the same claim logic written natively against keel-core — same
//!   reads, counters, records, event and commit — in the same process;
//!
//! - the database's own limit for a transaction of a claim's shape (three
//!   inserts and one conditional update of a hot row, first or last), plain
//!   sqlx on the same pools;
//!
//! and the ratios plugin / native and plugin / database. `cargo bench -p keel-plugins --bench rewards`.

#[path = "../tests/all/support.rs"]
#[allow(dead_code, reason = "the tests' support module, shared")]
mod support;
#[path = "timing/mod.rs"]
mod timing;

use std::sync::Arc;

use keel_core::counters::{self, Add, Outcome};
use keel_core::events::{self, NewEvent};
use keel_core::records::{self, Expect, Location};
use keel_core::{Backend, Db, TenantId};
use keel_gateway::GatewayConfig;
use keel_host::CallContext;
use keel_rewards_core::prizes::{self, Prize, PrizeKind};
use keel_rewards_core::rules::{Facts, Rule};
use serde_json::{Value, json};
use support::{Kernel, ok};
use timing::limit::{self, Hot};
use timing::{Stats, clients, measure};

const NS: &str = "rewards";
const CLAIM: &str = "mutation($s: String!) { claimReward(scanId: $s) { outcome } }";

fn loc<'a>(collection: &'a str, key: &'a str) -> Location<'a> {
    Location {
        namespace: NS,
        collection,
        key,
    }
}

fn add<'a>(key: &'a str, delta: i64, max: i64) -> Add<'a> {
    Add {
        namespace: NS,
        key,
        delta,
        min: -counters::BOUND,
        max,
        idempotency_key: None,
    }
}

/// The claim path of the plugin, natively: the same records, counters and
/// event, in one transaction.
async fn native_claim(
    db: &Db,
    tenant: &TenantId,
    scan_id: &str,
) -> keel_core::Result<&'static str> {
    let mut tx = db.begin().await?;
    if let Some(c) = records::get(&mut tx, tenant, loc("claims", scan_id)).await?
        && !c.data["result"].is_null()
    {
        return Ok("REPEAT");
    }
    let Some(scan) = records::get(&mut tx, tenant, loc("scans", scan_id)).await? else {
        return Ok("SCAN_NOT_FOUND");
    };
    records::put(
        &mut tx,
        tenant,
        loc("claims", scan_id),
        &json!({"result": null}),
        Expect::Absent,
    )
    .await?;
    let s = &scan.data;
    let person = s["person"].as_str().unwrap_or_default().to_owned();
    let (campaigns, _) = records::list(&mut tx, tenant, NS, "campaigns", None, 1000).await?;
    let now = chrono::Utc::now();
    let facts = Facts {
        sku: s["sku"].as_str().unwrap_or_default().into(),
        lot: s["lot"].as_str().unwrap_or_default().into(),
        batch: s["batch"].as_str().unwrap_or_default().into(),
        serial: s["serial"].as_u64().unwrap_or(0) as u32,
        region: s["region"].as_str().map(str::to_owned),
        first_scan: s["first_scan"].as_bool().unwrap_or(false),
        at_micros: now.timestamp_micros(),
        ..Facts::default()
    };
    let mut outcome = "NOT_ELIGIBLE";
    for c in campaigns {
        let id = c.key.clone();
        let rule = Rule::parse(&c.data["rule"])
            .map_err(|e| keel_core::Error::Internal(anyhow::anyhow!(e)))?;
        if c.data["status"] != "ACTIVE" || !rule.eval(&facts) {
            continue;
        }
        let table: Vec<Prize> = serde_json::from_value(c.data["prizes"].clone())
            .map_err(|e| keel_core::Error::Internal(e.into()))?;
        let code_key = format!("c:{id}:code:{}", s["code_id"].as_str().unwrap_or_default());
        if let Outcome::LimitReached(_) =
            counters::add(&mut tx, tenant, add(&code_key, 1, 1)).await?
        {
            outcome = "CODE_ALREADY_WON";
            continue;
        }
        let prize = &table[prizes::draw(&table, rand::random())];
        let PrizeKind::Points { points } = prize.kind else {
            continue;
        };
        let day = now.format("%Y-%m-%d").to_string();
        let per_day = format!("c:{id}:pd:{person}:{day}");
        let max = c.data["limits"]["perPersonPerDay"]
            .as_i64()
            .unwrap_or(counters::BOUND);
        if let Outcome::LimitReached(_) =
            counters::add(&mut tx, tenant, add(&per_day, 1, max)).await?
        {
            counters::add(&mut tx, tenant, add(&code_key, -1, counters::BOUND)).await?;
            outcome = "PERSON_LIMIT";
            continue;
        }
        counters::add(
            &mut tx,
            tenant,
            add(&format!("c:{id}:won:{}", prize.id), 1, counters::BOUND),
        )
        .await?;
        let award_id = format!("N{}{:08x}", now.timestamp_micros(), rand::random::<u32>());
        let award = json!({"id": award_id, "campaign": id, "prize": prize.id, "kind": "POINTS", "points": points,
            "scanId": scan_id, "personId": person, "person": person, "day": day, "at": now.to_rfc3339()});
        let indexed = ["day".to_owned(), "person".to_owned(), "campaign".to_owned()];
        records::put_indexed(
            &mut tx,
            tenant,
            loc("awards", &award_id),
            &award,
            Expect::Absent,
            &indexed,
        )
        .await?;
        let wallet = format!("wallet:{person}");
        counters::add(
            &mut tx,
            tenant,
            Add {
                idempotency_key: Some(&award_id),
                ..add(&wallet, points, counters::BOUND)
            },
        )
        .await?;
        let movement = json!({"id": award_id, "personId": person, "person": person, "points": points, "reason": "won", "at": now.to_rfc3339()});
        records::put_indexed(
            &mut tx,
            tenant,
            loc("points", &award_id),
            &movement,
            Expect::Absent,
            &["person".to_owned()],
        )
        .await?;
        let group = format!("{id}|{day}|-");
        counters::add(
            &mut tx,
            tenant,
            add(&format!("r:{group}:claims"), 1, counters::BOUND),
        )
        .await?;
        counters::add(
            &mut tx,
            tenant,
            add(&format!("r:{group}:wins"), 1, counters::BOUND),
        )
        .await?;
        let event = NewEvent {
            event_type: "rewards.awarded".into(),
            person_id: Some(person.clone()),
            payload: json!({"award": award_id, "campaign": id, "points": points}),
            idempotency_key: Some(format!("award:{award_id}")),
            occurred_at: None,
        };
        events::append(&mut tx, tenant, event, "rewards").await?;
        outcome = "WON";
    }
    let stored = records::get(&mut tx, tenant, loc("claims", scan_id))
        .await?
        .map(|r| r.version)
        .unwrap_or(1);
    records::put(
        &mut tx,
        tenant,
        loc("claims", scan_id),
        &json!({"result": {"outcome": outcome}}),
        Expect::Version(stored),
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}

fn row(name: &str, s: &Stats) {
    println!(
        "{name:<44} {:>8.0}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        s.per_sec,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

async fn run(kind: Backend, per_path: usize) {
    let config = GatewayConfig {
        public_calls_per_ip_per_minute: 100_000_000,
        ..GatewayConfig::default()
    };
    let k = Arc::new(Kernel::start_with(kind, config.clone()).await);
    let b = k.brand("acme", json!({})).await;
    k.enable_rewards(&b, json!({}), &[]).await;
    ok(&k
        .gql(
            &b.owner,
            "mutation { createCodeProduct(sku: \"S\", name: \"Bench\") { sku } }",
            json!({}),
        )
        .await);
    let total = per_path * 4;
    let r = k.gql(&b.owner, "mutation($q: Int!) { issueCodeBatch(product: \"S\", lot: \"L\", quantity: $q) { id } }", json!({"q": total})).await;
    let batch = ok(&r)["issueCodeBatch"]["id"].as_str().unwrap().to_owned();
    ok(&k
        .gql(
            &b.owner,
            "mutation($b: String!) { activateCodes(batch: $b) { id } }",
            json!({"b": batch}),
        )
        .await);
    let prizes =
        json!([{"id": "pts", "name": "10 points", "kind": "POINTS", "points": 10, "weight": 1}]);
    let input = json!({"name": "Hot", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2036-01-01T00:00:00Z",
        "rule": {"first_scan": true}, "prizes": prizes, "limits": {"perPersonPerDay": 1000}});
    let r = k
        .gql(
            &b.owner,
            "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
            json!({"i": input}),
        )
        .await;
    let id = ok(&r)["createCampaign"]["id"].as_str().unwrap().to_owned();
    ok(&k
        .gql(
            &b.owner,
            "mutation($id: String!) { setCampaignStatus(id: $id, status: ACTIVE) { id } }",
            json!({"id": id}),
        )
        .await);
    let (_, csv) = k
        .download(&b.owner, "/files/codes/print-file", json!({"batch": batch}))
        .await;
    let codes: Arc<Vec<String>> = Arc::new(
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_owned())
            .collect(),
    );
    let slug = b.slug.clone();
    let scan_ids = Arc::new(std::sync::Mutex::new(vec![String::new(); total]));
    let scans = {
        let (k, codes, slug, ids) = (k.clone(), codes.clone(), slug.clone(), scan_ids.clone());
        measure(total, clients(), move |i| {
            let (k, codes, slug, ids) = (k.clone(), codes.clone(), slug.clone(), ids.clone());
            async move {
                // 200 consumers, signed in.
                let openid = format!("o-{}", i % 200);
                let r = k
                    .public_as(
                        &slug,
                        Some(&openid),
                        "mutation($c: String!) { scan(code: $c) { scanId } }",
                        json!({"c": codes[i]}),
                    )
                    .await;
                ids.lock().unwrap()[i] = ok(&r)["scan"]["scanId"].as_str().unwrap().to_owned();
            }
        })
        .await
    };
    let ids: Arc<Vec<String>> = Arc::new(scan_ids.lock().unwrap().clone());
    println!(
        "\n== {kind:?}: one hot campaign, {per_path} claims per path, {} clients ==",
        clients()
    );

    let http = {
        let (k, ids, slug) = (k.clone(), ids.clone(), slug.clone());
        measure(per_path, clients(), move |i| {
            let (k, ids, slug) = (k.clone(), ids.clone(), slug.clone());
            async move {
                let r = k.public(&slug, CLAIM, json!({"s": ids[i]})).await;
                assert_eq!(ok(&r)["claimReward"]["outcome"], "WON", "{r}");
            }
        })
        .await
    };
    let tenant = keel_core::tenants::get_by_slug(&k.db, &slug)
        .await
        .unwrap()
        .id;
    let set = k.registry.enabled(&tenant).await.unwrap();
    let host = {
        let (k, ids, set) = (k.clone(), ids.clone(), set.clone());
        measure(per_path, clients(), move |i| {
            let (k, ids, set) = (k.clone(), ids.clone(), set.clone());
            async move {
                let act = set.get("rewards").unwrap().clone();
                let ctx = CallContext {
                    request_id: format!("bench-{i}"),
                    plugins: Some(set.clone()),
                    ..CallContext::default()
                };
                let input = json!({"scanId": ids[per_path + i]}).to_string();
                let out = k
                    .registry
                    .host()
                    .call_operation(&act, "claimReward", &input, ctx)
                    .await
                    .unwrap();
                let out: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(out["outcome"], "WON", "{out}");
            }
        })
        .await
    };
    let native = {
        let (db, ids, tenant) = (k.db.clone(), ids.clone(), tenant.clone());
        measure(per_path, clients(), move |i| {
            let (db, ids, tenant) = (db.clone(), ids.clone(), tenant.clone());
            async move {
                let outcome = native_claim(&db, &tenant, &ids[2 * per_path + i])
                    .await
                    .unwrap();
                assert_eq!(outcome, "WON");
            }
        })
        .await
    };
    let hot_last = limit::transactions(&k.db, per_path, clients(), Hot::Last, "last").await;
    let hot_first = limit::transactions(&k.db, per_path, clients(), Hot::First, "first").await;
    // A second kernel on the same database (its own pools, host and
    // caches, in this process), half the clients on each.
    let replica = Arc::new(k.replica(config).await);
    let two = {
        let (k, replica, ids, slug) = (k.clone(), replica.clone(), ids.clone(), slug.clone());
        measure(per_path, clients(), move |i| {
            let (k, replica, ids, slug) = (k.clone(), replica.clone(), ids.clone(), slug.clone());
            async move {
                let kernel = if i % 2 == 0 { &k } else { &replica };
                let r = kernel
                    .public(&slug, CLAIM, json!({"s": ids[3 * per_path + i]}))
                    .await;
                assert_eq!(ok(&r)["claimReward"]["outcome"], "WON", "{r}");
            }
        })
        .await
    };
    row("first scans over HTTP (with rewards' sync copy)", &scans);
    row("claims over HTTP (plugin)", &http);
    row("claims over HTTP, two kernels", &two);
    row("claims through the host (plugin, no HTTP)", &host);
    row("claims natively (keel-core, no HTTP)", &native);
    println!(
        "plugin / native: {:.2}x throughput, {:.2}x p50 (host path); HTTP adds {:.2}x over the host path",
        native.per_sec / host.per_sec,
        host.p50.as_secs_f64() / native.p50.as_secs_f64(),
        host.per_sec / http.per_sec
    );
    row("database: 3 inserts, hot row last (sqlx)", &hot_last);
    row("database: hot row first (sqlx)", &hot_first);
    println!(
        "claims over HTTP / database's hot-row-last rate: {:.1}%",
        100.0 * http.per_sec / hot_last.per_sec
    );
    println!(
        "two kernels / one kernel over HTTP: {:.2}x",
        two.per_sec / http.per_sec
    );
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let r = k
        .gql(
            &b.owner,
            "query($c: String!, $d: String!) { campaignReport(id: $c, from: $d, to: $d) { wins } }",
            json!({"c": id, "d": today}),
        )
        .await;
    assert_eq!(
        ok(&r)["campaignReport"]["wins"],
        (per_path * 4) as i64,
        "every claim of every path won once"
    );
}

fn main() {
    let n: usize = std::env::var("CLAIMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(Backend::Sqlite, n).await;
        if keel_testkit::postgres_url().is_some() {
            run(Backend::Postgres, n).await;
        }
    });
}
