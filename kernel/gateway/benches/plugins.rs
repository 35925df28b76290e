//! Plugin path vs native path, side by side in one run.
//!
//! The same small operation — read a record, bump a counter, emit an event,
//! in one transaction — as the probe plugin's `touch` mutation through the
//! tenant's GraphQL schema, and as a native resolver over keel-core on the
//! same server, both over HTTP on loopback with the same API key. Also:
//! compiling a component, loading it from the cache, and a bare plugin call
//! (instantiate + call, no database) on the host directly.
//!
//! `cargo bench -p keel-gateway --bench plugins` (PostgreSQL too when
//! `KEEL_TEST_POSTGRES_URL` is set). `KEEL_BENCH_REQUESTS` sets requests,
//! `KEEL_BENCH_CALLS` the calls of the instantiate + call + drop measure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::{EmptySubscription, Object, Schema};
use keel_core::counters::{self, Add};
use keel_core::events::{self, NewEvent};
use keel_core::identity::{self, api_keys};
use keel_core::records::{self, Location};
use keel_core::{Backend, Db, tenants};
use keel_gateway::{Kernel, KernelConfig};
use keel_host::manifest::{Grants, Manifest};
use keel_host::{CallContext, Host, HostConfig};
use keel_testkit::TestDb;
use serde_json::json;

mod support;

use support::{Stats, row};

const CONCURRENCY: usize = 16;

fn probe() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = keel_host::guests::build(
        &root.join("../host/fixtures/Cargo.toml"),
        &root.join("../../target/wasm"),
    )
    .unwrap();
    std::fs::read(dir.join("probe.wasm")).unwrap()
}

const MANIFEST: &str = r#"
name = "probe"
version = "0.1.0"
publisher = "bench"
description = "bench"
wit = "0.2.0"
[[collections]]
name = "items"
[events]
emits = ["probe.touched"]
[events.schemas."probe.touched"]
type = "object"
[graphql]
sdl = """
type Touched { found: Boolean!, count: Int! }
extend type Query { caller: JSON }
extend type Mutation { touch(key: String!): Touched! }
"""
[capabilities]
capabilities = ["records", "events", "counters"]
"#;

/// The native twin of the probe's `touch`.
struct NativeMutation;

#[derive(async_graphql::SimpleObject)]
struct Touched {
    found: bool,
    count: i64,
}

#[derive(Default)]
struct NativeQuery;

#[Object]
impl NativeQuery {
    async fn ok(&self) -> bool {
        true
    }
}

#[Object]
impl NativeMutation {
    async fn touch(
        &self,
        ctx: &async_graphql::Context<'_>,
        key: String,
    ) -> async_graphql::Result<Touched> {
        let (db, token) = (ctx.data_unchecked::<Db>(), ctx.data_unchecked::<String>());
        let p = identity::authenticate(db, token)
            .await
            .map_err(|e| async_graphql::Error::new(e.to_string()))?;
        let tenant = p.tenant.unwrap();
        let err = |e: keel_core::Error| async_graphql::Error::new(e.to_string());
        let mut tx = db.begin().await.map_err(err)?;
        let loc = Location {
            namespace: "native",
            collection: "items",
            key: &key,
        };
        let found = records::get(&mut tx, &tenant, loc)
            .await
            .map_err(err)?
            .is_some();
        let k = format!("touch:{key}");
        let add = Add {
            namespace: "native",
            key: &k,
            delta: 1,
            min: 0,
            max: i64::MAX >> 2,
            idempotency_key: None,
        };
        let count = match counters::add(&mut tx, &tenant, add).await.map_err(err)? {
            counters::Outcome::Applied(v) | counters::Outcome::LimitReached(v) => v,
        };
        let e = NewEvent {
            event_type: "native.touched".into(),
            person_id: None,
            payload: json!({"key": key, "count": count}),
            idempotency_key: None,
            occurred_at: None,
        };
        events::append(&mut tx, &tenant, e, "native")
            .await
            .map_err(err)?;
        tx.commit()
            .await
            .map_err(|e| async_graphql::Error::new(e.to_string()))?;
        Ok(Touched { found, count })
    }
}

async fn load(url: String, key: String, body: serde_json::Value, requests: usize) -> Stats {
    let client = reqwest::Client::new();
    let send = |c: reqwest::Client, url: String, key: String, body: serde_json::Value| async move {
        let r = c
            .post(&url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v.get("errors").is_none(), "{v}");
    };
    for _ in 0..100 {
        send(client.clone(), url.clone(), key.clone(), body.clone()).await;
    }
    support::concurrently(CONCURRENCY, requests / CONCURRENCY, move || {
        send(client.clone(), url.clone(), key.clone(), body.clone())
    })
    .await
}

async fn run(kind: Backend, requests: usize, wasm: &[u8]) -> Option<()> {
    let t = TestDb::of(kind).await?;
    let mut tx = t.db.begin().await.unwrap();
    let tenant = tenants::create(&mut tx, "bench", "Bench").await.unwrap();
    let (_, key) = api_keys::create_owner_key(&mut tx, &tenant.id, "bench", "bench")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let kernel = Kernel::assemble(t.db.clone(), KernelConfig::new(cache.path()))
        .await
        .unwrap();
    let manifest = Manifest::from_toml(MANIFEST).unwrap();
    kernel
        .registry()
        .install(manifest.clone(), wasm)
        .await
        .unwrap();
    kernel
        .enable(
            &tenant.id,
            "probe",
            None,
            Grants::all_requested(&manifest),
            json!({}),
        )
        .await
        .unwrap();
    let gateway = kernel.gateway().clone();

    let native = Schema::build(NativeQuery, NativeMutation, EmptySubscription)
        .data(t.db.clone())
        .finish();
    let native_route = axum::routing::post(
        move |headers: axum::http::HeaderMap, body: axum::Json<async_graphql::Request>| {
            let native = native.clone();
            async move {
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("")
                    .to_owned();
                axum::Json(native.execute(body.0.data(token)).await)
            }
        },
    );
    let router = gateway.router().route("/native", native_route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(keel_gateway::serve(
        listener,
        router,
        std::future::pending(),
    ));

    let label = match kind {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let body = json!({"query": "mutation { touch(key: \"k\") { found count } }"});
    let native = load(
        format!("{base}/native"),
        key.clone(),
        body.clone(),
        requests,
    )
    .await;
    let plugin = load(
        format!("{base}/graphql"),
        key.clone(),
        body.clone(),
        requests,
    )
    .await;
    let native2 = load(
        format!("{base}/native"),
        key.clone(),
        body.clone(),
        requests,
    )
    .await;
    let plugin2 = load(format!("{base}/graphql"), key, body, requests).await;
    row(&format!("touch, native resolver, {label}"), &native);
    row(
        &format!("touch, plugin via tenant schema, {label}"),
        &plugin,
    );
    row(
        &format!("touch, native resolver (again), {label}"),
        &native2,
    );
    row(&format!("touch, plugin (again), {label}"), &plugin2);
    let ratio = (native.per_sec + native2.per_sec) / (plugin.per_sec + plugin2.per_sec);
    let p50 = (plugin.p50 + plugin2.p50).as_secs_f64() / (native.p50 + native2.p50).as_secs_f64();
    println!(
        "  => plugin path costs {ratio:.2}x the native path in throughput, {p50:.2}x at p50 ({label})"
    );
    server.abort();
    Some(())
}

async fn host_micro(wasm: &[u8]) {
    let t = TestDb::sqlite().await;
    let mut tx = t.db.begin().await.unwrap();
    let tenant = tenants::create(&mut tx, "micro", "Micro").await.unwrap();
    tx.commit().await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let s = Instant::now();
    let host = Host::new(t.db.clone(), HostConfig::new(cache.path()))
        .await
        .unwrap();
    let loaded = host.load(wasm).await.unwrap();
    println!(
        "{:<46} {:>9.1} ms",
        "compile a component (cache miss)",
        s.elapsed().as_secs_f64() * 1e3
    );
    let s = Instant::now();
    let again = Host::new(t.db.clone(), HostConfig::new(cache.path()))
        .await
        .unwrap();
    again.load(wasm).await.unwrap();
    println!(
        "{:<46} {:>9.1} ms",
        "new host + load from the disk cache",
        s.elapsed().as_secs_f64() * 1e3
    );
    let manifest = Arc::new(Manifest::from_toml(MANIFEST).unwrap());
    let act = Arc::new(keel_host::Activation {
        tenant: tenant.id,
        grants: Grants::all_requested(&manifest),
        manifest,
        component: loaded,
        config: json!({}),
    });
    let n: u32 = env_or("KEEL_BENCH_CALLS", 2000);
    for _ in 0..100 {
        host.call_operation(&act, "caller", "{}", CallContext::default())
            .await
            .unwrap();
    }
    let s = Instant::now();
    for _ in 0..n {
        host.call_operation(&act, "caller", "{}", CallContext::default())
            .await
            .unwrap();
    }
    let per = s.elapsed() / n;
    println!(
        "{:<46} {:>9.1} µs",
        "instantiate + call + drop (no database)",
        per.as_secs_f64() * 1e6
    );
}

/// The number in the environment variable `name`, or `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let requests: usize = env_or("KEEL_BENCH_REQUESTS", 8000);
    let wasm = probe();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "keel plugin bench: {requests} requests per run, {CONCURRENCY} concurrent clients"
        );
        host_micro(&wasm).await;
        run(Backend::Sqlite, requests, &wasm).await;
        if run(Backend::Postgres, requests, &wasm).await.is_none() {
            println!("PostgreSQL skipped (set KEEL_TEST_POSTGRES_URL)");
        }
    });
}
