#![doc = include_str!("../README.md")]

use std::path::Path;

use anyhow::{Context as _, anyhow};
use keel_core::events::{self, Event, EventFilter};
use keel_core::records::{self, Location};
use keel_core::{Db, DbOptions, TenantId, counters, tenants};
use keel_gateway::{Kernel, KernelConfig};
use keel_host::manifest::{Grants, Manifest};
use keel_host::{CallContext, PluginError};
use serde_json::Value;

/// A kernel in the test process: SQLite in a temporary folder, assembled
/// as `keel serve` assembles it (`keel_gateway::Kernel`), and one tenant
/// (`test`). Plugins are enabled with production's checks (their GraphQL
/// must merge with the kernel's) and called with its output checks (an
/// answer must match the type the plugin's SDL declares); it serves no HTTP.
pub struct MiniKernel {
    kernel: Kernel,
    tenant: TenantId,
    _dir: tempfile::TempDir,
}

/// A plugin enabled in the mini-kernel.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
}

impl std::fmt::Debug for MiniKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniKernel")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl MiniKernel {
    /// Starts an empty kernel with one tenant.
    pub async fn start() -> anyhow::Result<MiniKernel> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("keel.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await?
            .with_sealer(keel_core::sealing::Sealer::random());
        db.migrate().await?;
        let mut tx = db.begin().await?;
        let tenant = tenants::create(&mut tx, "test", "Test tenant").await?.id;
        tx.commit().await?;
        let kernel = Kernel::assemble(db, KernelConfig::new(dir.path().join("cache"))).await?;
        Ok(MiniKernel {
            kernel,
            tenant,
            _dir: dir,
        })
    }

    fn db(&self) -> &Db {
        self.kernel.db()
    }

    /// Builds the plugin crate in `dir` (which holds `Cargo.toml` and
    /// `keel-plugin.toml`), installs it and enables it with everything its
    /// manifest requests and `config`, checked as `enablePlugin` checks.
    pub async fn plugin(&self, dir: impl AsRef<Path>, config: Value) -> anyhow::Result<Plugin> {
        let dir = dir.as_ref();
        let wasm = build(dir)?;
        let text = std::fs::read_to_string(dir.join("keel-plugin.toml"))
            .context("reading keel-plugin.toml")?;
        let manifest = Manifest::from_toml(&text).map_err(|e| anyhow!(e))?;
        self.kernel
            .registry()
            .install(manifest.clone(), &wasm)
            .await?;
        self.kernel
            .enable(
                &self.tenant,
                &manifest.name,
                Some(&manifest.version),
                Grants::all_requested(&manifest),
                config,
            )
            .await?;
        Ok(Plugin {
            name: manifest.name,
        })
    }

    /// Calls an operation with a JSON input, as an operator `key:test`
    /// would, through the gateway's output checks: an answer that does not
    /// match the type the plugin's SDL declares is `PLUGIN_INVALID_OUTPUT`.
    pub async fn call(
        &self,
        plugin: &Plugin,
        operation: &str,
        input: Value,
    ) -> Result<Value, PluginError> {
        let ctx = CallContext {
            caller: Some("key:test".into()),
            client_address: Some("127.0.0.1".into()),
            request_id: "test".into(),
            ..CallContext::default()
        };
        self.kernel
            .call(&self.tenant, &plugin.name, operation, input, ctx)
            .await
    }

    /// The tenant's events of `event_type`, oldest first (up to 100).
    pub async fn events(&self, event_type: &str) -> Vec<Event> {
        let filter = EventFilter {
            types: vec![event_type.to_owned()],
            ..Default::default()
        };
        events::list(self.db(), &self.tenant, &filter, 100, None)
            .await
            .map(|p| p.events)
            .unwrap_or_default()
    }

    /// A counter of the plugin.
    pub async fn counter(&self, plugin: &Plugin, key: &str) -> i64 {
        counters::get(self.db(), &self.tenant, &plugin.name, key)
            .await
            .unwrap_or(0)
    }

    /// A record of the plugin, if any.
    pub async fn record(&self, plugin: &Plugin, collection: &str, key: &str) -> Option<Value> {
        let mut conn = self.db().reader().acquire().await.ok()?;
        let loc = Location {
            namespace: &plugin.name,
            collection,
            key,
        };
        records::get(&mut conn, &self.tenant, loc)
            .await
            .ok()
            .flatten()
            .map(|r| r.data)
    }

    /// Delivers due async events to subscribers once; returns how many rows
    /// were handled.
    pub async fn deliver_events(&self) -> anyhow::Result<usize> {
        Ok(self.kernel.dispatcher().deliver_due().await?)
    }
}

/// Builds the plugin crate in `dir` for wasm32-wasip2 and returns the component.
pub fn build(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let manifest = dir.join("Cargo.toml");
    let cargo: toml::Value = toml::from_str(&std::fs::read_to_string(&manifest)?)?;
    let name = cargo
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| anyhow!("{} has no package name", manifest.display()))?
        .replace('-', "_");
    let target_dir = std::env::var_os("KEEL_PLUGIN_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| dir.join("target"));
    let out = keel_host::guests::build(&manifest, &target_dir)?;
    std::fs::read(out.join(format!("{name}.wasm"))).with_context(|| format!("reading {name}.wasm"))
}
