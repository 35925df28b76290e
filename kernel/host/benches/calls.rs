//! A plugin-to-plugin call against the same logic inside one plugin, side
//! by side in one run, on SQLite (and PostgreSQL when
//! `KEEL_TEST_POSTGRES_URL` is set):
//!
//! - **write path**: the `caller` fixture's `order` writes its order and
//!   calls the probe's offered `put` (a record, an event, a counter in the
//!   probe's namespace), against the caller's `local`, which makes the same
//!   four writes itself;
//! - **one call's cost**: `order` with one call to the probe's `context`
//!   (no data) against `order` with no call.
//!
//! Each pair is measured in alternating rounds, one operation at a time
//! through `Host::call_operation`, each its own transaction.
//!
//! ```sh
//! KEEL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo bench -p keel-host --bench calls      # CALLS=… to resize
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_core::{Backend, tenants};
use keel_host::manifest::{Grants, Manifest};
use keel_host::{Activation, CallContext, Host, HostConfig, TenantPlugins};
use keel_testkit::TestDb;
use serde_json::{Value, json};

const PROBE: &str = r#"
name = "probe"
version = "0.1.0"
publisher = "Keel benches"
description = "The callee."
wit = "0.2.0"

[[collections]]
name = "items"

[events]
emits = ["probe.put"]

[events.schemas."probe.put"]
type = "object"

[capabilities]
capabilities = ["records", "events", "counters"]

[offers]
operations = ["put", "context"]
"#;

const CALLER: &str = r#"
name = "caller"
version = "0.1.0"
publisher = "Keel benches"
description = "The caller."
wit = "0.2.0"

[[collections]]
name = "orders"

[[collections]]
name = "items"

[events]
emits = ["caller.put"]

[events.schemas."caller.put"]
type = "object"

[capabilities]
capabilities = ["records", "events", "counters"]

[[calls]]
plugin = "probe"
operation = "put"

[[calls]]
plugin = "probe"
operation = "context"
"#;

struct Bench {
    host: Host,
    caller: Arc<Activation>,
    ctx: CallContext,
    n: u64,
}

impl Bench {
    async fn call(&mut self, op: &str, input: Value) {
        self.n += 1;
        self.host
            .call_operation(&self.caller, op, &input.to_string(), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("{op}: {e:?}"));
    }

    /// Runs one variant `count` times; the mean time of one call.
    async fn run(&mut self, variant: Variant, count: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            let key = format!("k{}", self.n);
            let (op, input) = match variant {
                Variant::Call => (
                    "order",
                    json!({"key": key, "calls": [{"plugin": "probe", "operation": "put", "input": {"key": key, "data": {"n": 1}}}]}),
                ),
                Variant::Local => ("local", json!({"key": key, "data": {"n": 1}})),
                Variant::EmptyCall => (
                    "order",
                    json!({"key": key, "calls": [{"plugin": "probe", "operation": "context"}]}),
                ),
                Variant::NoCall => ("order", json!({"key": key, "calls": []})),
            };
            self.call(op, input).await;
        }
        start.elapsed() / count as u32
    }
}

#[derive(Clone, Copy)]
enum Variant {
    Call,
    Local,
    EmptyCall,
    NoCall,
}

async fn bench(kind: Backend, wasm: &std::path::Path, count: usize) -> Option<Vec<String>> {
    let db = TestDb::of(kind).await?;
    let cache = tempfile::tempdir().unwrap();
    let host = Host::new(db.db.clone(), HostConfig::new(cache.path()))
        .await
        .unwrap();
    let mut tx = db.db.begin().await.unwrap();
    let tenant = tenants::create(&mut tx, "bench", "Bench").await.unwrap().id;
    tx.commit().await.unwrap();
    let activation = |text: &str, file: &str| {
        let manifest = Manifest::from_toml(text).unwrap();
        let wasm = std::fs::read(wasm.join(file)).unwrap();
        let (host, tenant) = (host.clone(), tenant.clone());
        async move {
            Arc::new(Activation {
                tenant,
                grants: Grants::all_requested(&manifest),
                manifest: Arc::new(manifest),
                component: host.load(&wasm).await.unwrap(),
                config: json!({}),
            })
        }
    };
    let caller = activation(CALLER, "caller.wasm").await;
    let probe = activation(PROBE, "probe.wasm").await;
    let plugins = Arc::new(TenantPlugins {
        version: 1,
        plugins: vec![caller.clone(), probe],
    });
    let ctx = CallContext {
        caller: Some("key:bench".into()),
        request_id: "bench".into(),
        plugins: Some(plugins),
        ..CallContext::default()
    };
    let mut b = Bench {
        host,
        caller,
        ctx,
        n: 0,
    };
    let pairs = [
        ("write path", Variant::Call, Variant::Local),
        ("one call's cost", Variant::EmptyCall, Variant::NoCall),
    ];
    let mut rows = Vec::new();
    for (name, with, without) in pairs {
        // Warm up: the instances' pools, the database's caches.
        b.run(with, count / 10).await;
        b.run(without, count / 10).await;
        let (mut a, mut z) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            a.push(b.run(with, count / 5).await);
            z.push(b.run(without, count / 5).await);
        }
        a.sort();
        z.sort();
        let (a, z) = (a[2], z[2]);
        let per_s = |d: Duration| 1.0 / d.as_secs_f64();
        rows.push(format!(
            "| {kind:?} | {name} | {:.0}/s ({:.0} µs) | {:.0}/s ({:.0} µs) | {:.2}x time, +{:.0} µs |",
            per_s(a),
            a.as_secs_f64() * 1e6,
            per_s(z),
            z.as_secs_f64() * 1e6,
            a.as_secs_f64() / z.as_secs_f64(),
            (a.as_secs_f64() - z.as_secs_f64()) * 1e6,
        ));
    }
    Some(rows)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let wasm = keel_host::guests::build(
        &root.join("fixtures/Cargo.toml"),
        &root.join("../../target/wasm"),
    )
    .expect("building the host's fixtures");
    println!(
        "{count} calls per variant (median of 5 rounds of {}), one at a time",
        count / 5
    );
    println!(
        "| backend | measure | plugin-to-plugin call | same logic, one plugin | call / one plugin |"
    );
    println!("|---|---|---|---|---|");
    for kind in [Backend::Sqlite, Backend::Postgres] {
        match bench(kind, &wasm, count).await {
            Some(rows) => rows.iter().for_each(|r| println!("{r}")),
            None => println!("| {kind:?} | skipped: KEEL_TEST_POSTGRES_URL is not set | | | |"),
        }
    }
}
