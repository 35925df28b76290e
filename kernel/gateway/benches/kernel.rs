//! Kernel benchmarks, run side by side in one process:
//!
//! - `viewer` GraphQL queries over HTTP on loopback: throughput, p50, p99;
//! - counter increments with limits per second, on SQLite and on PostgreSQL.
//!
//! `cargo bench -p keel-gateway --bench kernel`. PostgreSQL is measured
//! when `KEEL_TEST_POSTGRES_URL` is set. `KEEL_BENCH_REQUESTS` (default
//! 20000) sets the number of HTTP requests per run.

use std::sync::Arc;

use keel_core::counters::{self, Add, Outcome};
use keel_core::identity::api_keys::{self, NewApiKey};
use keel_core::{Backend, tenants};
use keel_gateway::{Kernel, KernelConfig};
use keel_testkit::TestDb;

mod support;

use support::Stats;

const CONCURRENCY: usize = 32;

async fn setup(kind: Backend) -> Option<(TestDb, String)> {
    let t = TestDb::of(kind).await?;
    let mut tx = t.db.begin().await.unwrap();
    let tenant = tenants::create(&mut tx, "bench", "Bench").await.unwrap();
    let (_, key) = api_keys::create(
        &mut tx,
        &tenant.id,
        NewApiKey {
            name: "bench".into(),
            roles: vec!["owner".into()],
            scopes: vec![],
        },
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Some((t, key))
}

async fn viewer_over_http(kind: Backend, requests: usize) -> Option<Stats> {
    let (t, key) = setup(kind).await?;
    let cache = tempfile::tempdir().unwrap();
    // The kernel `keel serve` runs, with its defaults.
    let kernel = Kernel::assemble(t.db.clone(), KernelConfig::new(cache.path()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = kernel.spawn(listener).unwrap();
    let url = format!("http://{}/graphql", server.addr());
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "query": "{ viewer { tenant { id slug } roles } }" });
    let call = |client: reqwest::Client, url: String, key: String, body: serde_json::Value| async move {
        let r = client
            .post(&url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v.get("errors").is_none(), "{v}");
    };
    for _ in 0..200 {
        call(client.clone(), url.clone(), key.clone(), body.clone()).await;
    }
    let stats = support::concurrently(CONCURRENCY, requests / CONCURRENCY, move || {
        call(client.clone(), url.clone(), key.clone(), body.clone())
    })
    .await;
    drop(server);
    Some(stats)
}

async fn counter_increments(kind: Backend, total: usize, concurrency: usize) -> Option<Stats> {
    let (t, _) = setup(kind).await?;
    let tenant = Arc::new(tenants::get_by_slug(&t.db, "bench").await.unwrap().id);
    let per_task = total / concurrency;
    let db = t.db.clone();
    let tenant2 = tenant.clone();
    let stats = support::concurrently(concurrency, per_task, move || {
        let (db, tenant) = (db.clone(), tenant2.clone());
        async move {
            let add = Add {
                namespace: "bench",
                key: "stock",
                delta: 1,
                min: 0,
                max: i64::from(u32::MAX),
                idempotency_key: None,
            };
            let out = counters::add_now(&db, &tenant, add).await.unwrap();
            assert!(matches!(out, Outcome::Applied(_)));
        }
    })
    .await;
    let value = counters::get(&t.db, &tenant, "bench", "stock")
        .await
        .unwrap();
    assert_eq!(value as usize, per_task * concurrency);
    Some(stats)
}

fn row(name: &str, s: Option<Stats>) {
    match s {
        Some(s) => support::row(name, &s),
        None => println!("{name:<46} skipped (set KEEL_TEST_POSTGRES_URL)"),
    }
}

fn main() {
    let requests: usize = std::env::var("KEEL_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("keel kernel bench: {requests} HTTP requests, {CONCURRENCY} concurrent clients, {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        row("viewer over HTTP, SQLite", viewer_over_http(Backend::Sqlite, requests).await);
        row("viewer over HTTP, PostgreSQL", viewer_over_http(Backend::Postgres, requests).await);
        row("counter add, SQLite, 1 task", counter_increments(Backend::Sqlite, 5_000, 1).await);
        row("counter add, SQLite, 16 tasks (one hot key)", counter_increments(Backend::Sqlite, 5_000, 16).await);
        row("counter add, PostgreSQL, 1 task", counter_increments(Backend::Postgres, 5_000, 1).await);
        row("counter add, PostgreSQL, 16 tasks (one hot key)", counter_increments(Backend::Postgres, 5_000, 16).await);
    });
}
