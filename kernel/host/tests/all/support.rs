//! Fixtures built from source, and a host over a throwaway database.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keel_core::{Backend, TenantId, tenants};
use keel_host::manifest::{Capability, Grants, Manifest};
use keel_host::{Activation, CallContext, Host, HostConfig, Registry};
use keel_testkit::TestDb;

/// The fixtures' `.wasm` folder, built once per test process.
pub fn fixture(name: &str) -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        keel_host::guests::build(
            &root.join("fixtures/Cargo.toml"),
            &root.join("../../target/wasm"),
        )
        .expect("building the host's test fixtures")
    });
    std::fs::read(dir.join(format!("{name}.wasm"))).expect("fixture component")
}

pub const PROBE_MANIFEST: &str = r#"
name = "probe"
version = "0.1.0"
publisher = "Keel tests"
description = "Does everything a plugin may do, and every abuse."
wit = "0.2.0"

[[collections]]
name = "items"
indexed = ["color"]

[events]
emits = ["probe.touched", "probe.put"]
subscribes = [{ type = "probe.touched", mode = "async" }]

[events.schemas."probe.touched"]
type = "object"
properties = { key = { type = "string" }, count = { type = "integer" } }

[events.schemas."probe.put"]
type = "object"
properties = { key = { type = "string" } }

[capabilities]
capabilities = ["records", "events", "persons-read", "persons-write", "counters", "secrets", "http", "catalog-read", "catalog-write", "org-read", "org-write"]
http_hosts = ["127.0.0.1"]

[[downloads]]
name = "lines"
operation = "lines"
content_type = "text/csv; charset=utf-8"
file_name = "lines.csv"

[[downloads]]
name = "lines-for-writers"
operation = "lines"
content_type = "text/plain"
file_name = "lines.txt"
access = "write"

[pages]
operation = "page"
"#;

pub struct Fixture {
    pub db: TestDb,
    pub host: Host,
    pub tenant: TenantId,
    _cache: tempfile::TempDir,
}

pub fn limits(config: &mut HostConfig) {
    config.deadline = Duration::from_millis(500);
    config.memory_bytes = 32 << 20;
    config.max_output_bytes = 64 << 10;
}

impl Fixture {
    pub async fn new(kind: Backend) -> Fixture {
        Self::with(kind, limits).await
    }

    pub async fn with(kind: Backend, configure: impl FnOnce(&mut HostConfig)) -> Fixture {
        let db = TestDb::of(kind).await.expect("test database");
        let cache = tempfile::tempdir().unwrap();
        let mut config = HostConfig::new(cache.path());
        configure(&mut config);
        let host = Host::new(db.db.clone(), config).await.unwrap();
        let tenant = Self::tenant_in(&db, "acme").await;
        Fixture {
            db,
            host,
            tenant,
            _cache: cache,
        }
    }

    /// A registry over the fixture's host and database. The host's tests
    /// drive its parts (registry, dispatcher, scheduler) one by one; the
    /// whole kernel is assembled in one place, `keel_gateway::Kernel`.
    pub fn registry(&self) -> Registry {
        Registry::new(self.host.clone(), self.db.db.clone())
    }

    pub async fn tenant_in(db: &TestDb, slug: &str) -> TenantId {
        let mut tx = db.db.begin().await.unwrap();
        let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
        tx.commit().await.unwrap();
        t.id
    }

    /// The probe, enabled for `tenant` as `name` with `grants`.
    pub async fn activation(
        &self,
        tenant: &TenantId,
        name: &str,
        grants: Option<Grants>,
    ) -> Arc<Activation> {
        let mut manifest = Manifest::from_toml(PROBE_MANIFEST).unwrap();
        manifest.name = name.to_owned();
        let grants = grants.unwrap_or_else(|| Grants::all_requested(&manifest));
        Arc::new(Activation {
            tenant: tenant.clone(),
            manifest: Arc::new(manifest),
            component: self.host.load(&fixture("probe")).await.unwrap(),
            grants,
            config: serde_json::json!({}),
        })
    }

    pub async fn probe(&self) -> Arc<Activation> {
        self.activation(&self.tenant, "probe", None).await
    }
}

/// Grants without `without`.
pub fn grants_without(without: Capability) -> Grants {
    let m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
    let mut g = Grants::all_requested(&m);
    g.capabilities.remove(&without);
    if without == Capability::Http {
        g.http_hosts.clear();
    }
    g
}

pub fn ctx() -> CallContext {
    CallContext {
        caller: Some("key:test".into()),
        client_address: None,
        request_id: "test-request".into(),
        plugins: None,
        ..CallContext::default()
    }
}

/// Calls `op` with `input` and parses the JSON output.
pub async fn call(
    host: &Host,
    act: &Arc<Activation>,
    op: &str,
    input: serde_json::Value,
) -> keel_host::Result<serde_json::Value> {
    let out = host
        .call_operation(act, op, &input.to_string(), ctx())
        .await?;
    Ok(serde_json::from_str(&out).unwrap())
}
