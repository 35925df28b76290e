//! Ingest benchmarks over real HTTP GraphQL on loopback, side by side in
//! one run, on SQLite (and PostgreSQL when `KEEL_TEST_POSTGRES_URL` is set):
//!
//! - `upsertProducts`: an ERP's first sync of 100,000 SKUs in batches of
//!   1,000 (200 products × 5 SKUs), then the same sync again (nothing
//!   changes, nothing is written): SKU rows per second;
//! - `appendEvents` batches of 1,000 against single `appendEvent` calls,
//!   each event with its own idempotency key: events per second and the
//!   ratio.
//!
//! `cargo bench -p keel-gateway --bench ingest`. `KEEL_BENCH_SKUS`
//! (default 100000) and `KEEL_BENCH_EVENTS` (default 50000 batched, a tenth
//! of it single) resize the runs.

use std::time::{Duration, Instant};

use keel_core::identity::api_keys::{self, NewApiKey};
use keel_core::{Backend, tenants};
use keel_gateway::{Kernel, KernelConfig, RunningKernel};
use keel_testkit::TestDb;
use serde_json::{Value, json};

const UPSERT: &str =
    "mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { changed skusCreated } }";
const APPEND_ONE: &str = "mutation($i: AppendEventInput!) { appendEvent(input: $i) { id } }";
const APPEND_MANY: &str = "mutation($e: [AppendEventInput!]!) { appendEvents(events: $e) { id } }";
const SKUS_PER_PRODUCT: usize = 5;
const PRODUCTS_PER_BATCH: usize = 200;
const EVENTS_PER_BATCH: usize = 1000;
/// Concurrent clients of the second single-append measurement.
const CLIENTS: usize = 16;

/// A kernel on an ephemeral port over a fresh database, and an owner key.
struct Server {
    url: String,
    key: String,
    client: reqwest::Client,
    /// Stopped when the server drops.
    _kernel: RunningKernel,
    _db: TestDb,
    _cache: tempfile::TempDir,
}

impl Server {
    async fn start(kind: Backend) -> Option<Server> {
        let db = TestDb::of(kind).await?;
        let mut tx = db.db.begin().await.unwrap();
        let tenant = tenants::create(&mut tx, "bench", "Bench").await.unwrap();
        let new_key = NewApiKey {
            name: "erp".into(),
            roles: vec!["owner".into()],
            scopes: vec![],
        };
        let (_, key) = api_keys::create(&mut tx, &tenant.id, new_key, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let cache = tempfile::tempdir().unwrap();
        // The production defaults, body limit (1 MiB) included.
        let kernel = Kernel::assemble(db.db.clone(), KernelConfig::new(cache.path()))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kernel = kernel.spawn(listener).unwrap();
        let url = format!("http://{}/graphql", kernel.addr());
        Some(Server {
            url,
            key,
            client: reqwest::Client::new(),
            _kernel: kernel,
            _db: db,
            _cache: cache,
        })
    }

    async fn call(&self, query: &str, variables: Value) -> Value {
        call(&self.client, &self.url, &self.key, query, variables).await
    }
}

async fn call(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &str,
    variables: Value,
) -> Value {
    let r = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v: Value = r.json().await.unwrap();
    assert!(v.get("errors").is_none(), "{v}");
    v
}

/// Batch `b` of the catalogue: products `P{b}-{i}`, each with 5 SKUs.
fn catalogue_batch(b: usize) -> Value {
    (0..PRODUCTS_PER_BATCH)
        .map(|i| {
            let code = format!("P{b:04}-{i:03}");
            let skus: Vec<Value> = (0..SKUS_PER_PRODUCT)
                .map(|s| {
                    json!({
                        "code": format!("{code}-{s}"),
                        "name": format!("Product {b}/{i}, size {s}"),
                        "gtin": gtin((b * PRODUCTS_PER_BATCH + i) * SKUS_PER_PRODUCT + s),
                        "attributes": {"size": s, "pack": "bottle"},
                        "externalIds": [{"system": "kingdee", "id": format!("MAT-{code}-{s}")}],
                    })
                })
                .collect();
            json!({
                "code": code, "name": format!("Product {b}/{i}"), "category": "drinks", "unit": "bottle",
                "attributes": {"line": b % 7}, "externalIds": [{"system": "kingdee", "id": format!("SPU-{code}")}],
                "skus": skus,
            })
        })
        .collect()
}

/// A valid GTIN-13 for `n` (prefix 690, 9 digits of `n`, check digit).
fn gtin(n: usize) -> String {
    let body = format!("690{n:09}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

struct Upserts {
    first: Duration,
    again: Duration,
    skus: usize,
}

async fn upserts(kind: Backend, skus: usize) -> Option<Upserts> {
    let s = Server::start(kind).await?;
    let batches = skus / (PRODUCTS_PER_BATCH * SKUS_PER_PRODUCT);
    let bodies: Vec<Value> = (0..batches).map(catalogue_batch).collect();
    let start = Instant::now();
    for p in &bodies {
        let r = s.call(UPSERT, json!({ "p": p })).await;
        assert_eq!(r["data"]["upsertProducts"]["changed"], PRODUCTS_PER_BATCH);
    }
    let first = start.elapsed();
    let start = Instant::now();
    for p in &bodies {
        let r = s.call(UPSERT, json!({ "p": p })).await;
        assert_eq!(r["data"]["upsertProducts"]["changed"], 0);
    }
    Some(Upserts {
        first,
        again: start.elapsed(),
        skus: batches * PRODUCTS_PER_BATCH * SKUS_PER_PRODUCT,
    })
}

fn event(n: usize) -> Value {
    json!({
        "type": "order.paid",
        "payload": {"order": format!("SO-{n}"), "total": n % 977, "currency": "CNY"},
        "idempotencyKey": format!("order-{n}"),
    })
}

struct Appends {
    single_one_client: f64,
    single_many_clients: f64,
    batched: f64,
}

async fn appends(kind: Backend, batched: usize) -> Option<Appends> {
    let s = Server::start(kind).await?;
    let singles = (batched / 10).max(CLIENTS);
    // Warm up connections and caches.
    for n in 0..100 {
        s.call(APPEND_ONE, json!({ "i": event(10_000_000 + n) }))
            .await;
    }
    let start = Instant::now();
    for n in 0..singles {
        s.call(APPEND_ONE, json!({ "i": event(n) })).await;
    }
    let single_one_client = singles as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let per_client = singles / CLIENTS;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, url, key) = (s.client.clone(), s.url.clone(), s.key.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client {
                let i = event(20_000_000 + c * per_client + n);
                call(&client, &url, &key, APPEND_ONE, json!({ "i": i })).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let single_many_clients = (per_client * CLIENTS) as f64 / start.elapsed().as_secs_f64();

    let bodies: Vec<Value> = (0..batched / EVENTS_PER_BATCH)
        .map(|b| {
            (0..EVENTS_PER_BATCH)
                .map(|i| event(30_000_000 + b * EVENTS_PER_BATCH + i))
                .collect()
        })
        .collect();
    let start = Instant::now();
    for e in &bodies {
        let r = s.call(APPEND_MANY, json!({ "e": e })).await;
        assert_eq!(
            r["data"]["appendEvents"].as_array().map(Vec::len),
            Some(EVENTS_PER_BATCH)
        );
    }
    let batched = (bodies.len() * EVENTS_PER_BATCH) as f64 / start.elapsed().as_secs_f64();
    Some(Appends {
        single_one_client,
        single_many_clients,
        batched,
    })
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let skus = env("KEEL_BENCH_SKUS", 100_000);
    let events = env("KEEL_BENCH_EVENTS", 50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("keel ingest bench: {skus} SKUs, {events} batched events, {cores} cores");
        for (name, kind) in [("SQLite", Backend::Sqlite), ("PostgreSQL", Backend::Postgres)] {
            match upserts(kind, skus).await {
                Some(u) => {
                    let rate = |d: Duration| u.skus as f64 / d.as_secs_f64();
                    println!(
                        "upsertProducts, {name}: first sync {} SKUs in {:.2} s = {:.0} SKUs/s; \
                         unchanged resync {:.2} s = {:.0} SKUs/s",
                        u.skus,
                        u.first.as_secs_f64(),
                        rate(u.first),
                        u.again.as_secs_f64(),
                        rate(u.again),
                    );
                }
                None => println!("upsertProducts, {name}: skipped (set KEEL_TEST_POSTGRES_URL)"),
            }
            match appends(kind, events).await {
                Some(a) => println!(
                    "appendEvents, {name}: single 1 client {:.0}/s; single {CLIENTS} clients {:.0}/s; \
                     batches of {EVENTS_PER_BATCH} {:.0}/s = {:.1}x one client, {:.1}x {CLIENTS} clients",
                    a.single_one_client,
                    a.single_many_clients,
                    a.batched,
                    a.batched / a.single_one_client,
                    a.batched / a.single_many_clients,
                ),
                None => println!("appendEvents, {name}: skipped (set KEEL_TEST_POSTGRES_URL)"),
            }
        }
    });
}
