//! The wasmtime engine, compiled-component cache and the [`Host`] handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use keel_core::Db;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{Contract, GuestPre, Linkers};
use crate::{PluginError, Result, SUPPORTED_WIT_VERSIONS};

/// How often the epoch ticks; deadlines are whole ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits and places of the plugin host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// How long one call may run, unless the manifest asks for more.
    pub deadline: Duration,
    /// Linear memory one instance may use, unless the manifest asks for more.
    pub memory_bytes: usize,
    /// The most memory a manifest's `[resources]` may ask for.
    pub max_memory_bytes: usize,
    /// The longest deadline a manifest's `[resources]` may ask for.
    pub max_deadline: Duration,
    /// Largest operation input (JSON text).
    pub max_input_bytes: usize,
    /// Largest operation output (JSON text).
    pub max_output_bytes: usize,
    /// Instances alive at once (concurrent calls), across all plugins.
    pub max_instances: u32,
    /// Time limit of one outbound HTTP request.
    pub http_timeout: Duration,
    /// The wall clock plugins read, when not the system's: set only by
    /// test harnesses (`keel plugin harness`), never by `keel serve`.
    pub wall_clock: Option<crate::clock::SetClock>,
    /// Scripted answers to plugin-to-plugin calls: set only by test
    /// harnesses, never by `keel serve`.
    pub call_stubs: Option<crate::stubs::CallStubs>,
}

impl HostConfig {
    /// Defaults with the cache under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        HostConfig {
            cache_dir: cache_dir.into(),
            deadline: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            max_memory_bytes: 512 << 20,
            max_deadline: Duration::from_secs(30),
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_instances: 256,
            http_timeout: Duration::from_secs(10),
            wall_clock: None,
            call_stubs: None,
        }
    }
}

impl HostConfig {
    /// The memory and deadline of one invocation of a plugin whose manifest
    /// asks for `r`: the defaults, or what it asks for when that is larger,
    /// refused (naming the field and the operator's maximum) beyond the
    /// maximums.
    pub fn limits(
        &self,
        r: &crate::manifest::Resources,
    ) -> std::result::Result<(usize, Duration), String> {
        let memory = match r.memory_mib {
            None => self.memory_bytes,
            Some(mib) => {
                let asked = (mib as usize) << 20;
                if asked > self.max_memory_bytes.max(self.memory_bytes) {
                    return Err(format!(
                        "resources.memory_mib: {mib} MiB is over this kernel's maximum of {} MiB",
                        self.max_memory_bytes.max(self.memory_bytes) >> 20
                    ));
                }
                asked.max(self.memory_bytes)
            }
        };
        let deadline = match r.deadline_ms {
            None => self.deadline,
            Some(ms) => {
                let asked = Duration::from_millis(u64::from(ms));
                if asked > self.max_deadline.max(self.deadline) {
                    return Err(format!(
                        "resources.deadline_ms: {ms} ms is over this kernel's maximum of {} ms",
                        self.max_deadline.max(self.deadline).as_millis()
                    ));
                }
                asked.max(self.deadline)
            }
        };
        Ok((memory, deadline))
    }

    /// [`HostConfig::limits`] for a package already installed: when the
    /// operator has since lowered a maximum, the plugin runs at the maximum.
    pub fn limits_clamped(&self, r: &crate::manifest::Resources) -> (usize, Duration) {
        let clamp = crate::manifest::Resources {
            memory_mib: r
                .memory_mib
                .map(|m| m.min((self.max_memory_bytes.max(self.memory_bytes) >> 20) as u32)),
            deadline_ms: r.deadline_ms.map(|d| {
                d.min(
                    self.max_deadline
                        .max(self.deadline)
                        .as_millis()
                        .min(u32::MAX as u128) as u32,
                )
            }),
        };
        self.limits(&clamp)
            .unwrap_or((self.memory_bytes, self.deadline))
    }
}

/// A compiled plugin component, ready to instantiate.
pub struct LoadedComponent {
    /// SHA-256 of the component's bytes, hex.
    pub hash: String,
    /// The `keel:plugin` version it was built for.
    pub wit_version: String,
    /// Instantiates it with its version's imports and calls it in its
    /// version's types.
    pub(crate) pre: GuestPre,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("hash", &self.hash)
            .field("wit_version", &self.wit_version)
            .finish_non_exhaustive()
    }
}

/// The plugin host of one kernel process: cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    /// One linker per contract version.
    pub(crate) linkers: Linkers,
    pub(crate) config: HostConfig,
    pub(crate) db: Db,
    pub(crate) http: reqwest::Client,
    mac_key: Vec<u8>,
    engine_tag: String,
    /// Compiled components (each compiled once at a time), installed
    /// packages' manifests, warm-up state: see `warmup`.
    pub(crate) prepared: crate::warmup::Prepared,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Host {
    /// Builds the engine (pooling allocator, epoch deadlines, async host
    /// calls) and starts its epoch ticker.
    pub async fn new(db: Db, config: HostConfig) -> anyhow::Result<Host> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 4)
            .max_memory_size(config.memory_bytes.max(config.max_memory_bytes))
            // A freed instance's tables are zeroed in place rather than
            // given back to the kernel and faulted in again by the next
            // call: instantiate + call + drop 37 → 30 µs here
            // (`cargo bench -p keel-gateway --bench plugins`).
            .table_keep_resident(64 << 10)
            // A freed instance's memory is put back as it was by copying
            // only the pages the call wrote (found with Linux's
            // PAGEMAP_SCAN, 6.7+; without it, by `madvise` as before), up
            // to 1 MiB per instance; pages past that are given back. The
            // next call then takes no page faults for them: instantiate +
            // call + drop 37-43 → 15.5 µs here. Each warm slot (at most
            // 100, wasmtime's default) keeps what its last call wrote, up
            // to 1 MiB, resident.
            .linear_memory_keep_resident(1 << 20)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wc = Config::new();
        wc.wasm_component_model(true)
            .epoch_interruption(true)
            // `KEEL_PERFMAP=1`: wasmtime writes /tmp/perf-<pid>.map, so
            // that `perf` names plugins' functions (docs/benchmarks.md).
            .profiler(if std::env::var_os("KEEL_PERFMAP").is_some() {
                wasmtime::ProfilingStrategy::PerfMap
            } else {
                wasmtime::ProfilingStrategy::None
            })
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wc)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;

        let linkers = Linkers::new(&engine)
            .map_err(anyhow::Error::from)
            .context("linking WASI and the keel:plugin imports")?;

        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
        let engine_tag = format!("{:016x}", std::hash::Hasher::finish(&h));
        // Sealed at rest under the master key, like plugin secrets.
        let mac_key = keel_core::settings::secret(&db, "plugin-cache-mac-key")
            .await
            .context("reading the plugin cache's key")?;
        std::fs::create_dir_all(&config.cache_dir)
            .with_context(|| format!("creating the plugin cache {}", config.cache_dir.display()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, ticker_stop) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("keel-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Host {
            inner: Arc::new(Inner {
                engine,
                linkers,
                config,
                db,
                http,
                mac_key,
                engine_tag,
                prepared: Default::default(),
                stop,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Compiles (or takes from the cache) a component and checks that it is a
    /// Keel plugin of a supported WIT version. One compile per component at
    /// a time, in a task of its own: concurrent callers wait for it.
    pub async fn load(&self, wasm: &[u8]) -> Result<Arc<LoadedComponent>> {
        let hash = hex(&Sha256::digest(wasm));
        let this = self.clone();
        let job = move || {
            let bytes = wasm.to_vec();
            move |hash: &str| this.compile(hash, &bytes)
        };
        self.inner.prepared.component(self, hash, job).await
    }

    fn cache_paths(&self, hash: &str) -> (PathBuf, PathBuf) {
        let base = self
            .inner
            .config
            .cache_dir
            .join(format!("{hash}-{}", self.inner.engine_tag));
        (base.with_extension("cwasm"), base.with_extension("mac"))
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.inner.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(bytes);
        m
    }

    /// Precompiled code is loaded only if its MAC, keyed by a secret kept in
    /// the database, shows the kernel wrote it; anything else is recompiled.
    fn cached(&self, hash: &str) -> Option<Component> {
        let (code, mac) = self.cache_paths(hash);
        let bytes = std::fs::read(&code).ok()?;
        let tag = std::fs::read_to_string(&mac).ok()?;
        let tag = (0..tag.trim().len() / 2)
            .map(|i| u8::from_str_radix(&tag.trim()[2 * i..2 * i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .ok()?;
        self.mac(&bytes).verify_slice(&tag).ok()?;
        #[allow(
            unsafe_code,
            reason = "the bytes carry our own MAC: wasmtime wrote them for this engine"
        )]
        // SAFETY: `bytes` were produced by `Engine::precompile_component` of an
        // engine with the same compatibility hash (it is in the file name) and
        // authenticated with a key only this kernel's database holds.
        let component = unsafe { Component::deserialize(&self.inner.engine, &bytes) };
        component.ok()
    }

    fn write_cache(&self, hash: &str, code: &[u8]) -> anyhow::Result<()> {
        let (path, mac) = self.cache_paths(hash);
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, code)?;
        std::fs::write(&mac, hex(&self.mac(code).finalize().into_bytes()))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn compile(&self, hash: &str, wasm: &[u8]) -> Result<LoadedComponent> {
        let component = match self.cached(hash) {
            Some(c) => c,
            None => {
                if wasmparser_is_core_module(wasm) {
                    return Err(PluginError::Incompatible(
                        "this is a core WebAssembly module, not a component: build the plugin for wasm32-wasip2".into(),
                    ));
                }
                self.inner.prepared.count_compilation();
                let code = self.inner.engine.precompile_component(wasm).map_err(|e| {
                    PluginError::Incompatible(format!("not a valid WebAssembly component: {e}"))
                })?;
                if let Err(e) = self.write_cache(hash, &code) {
                    tracing::warn!(error = %e, "could not write the plugin cache");
                }
                #[allow(unsafe_code, reason = "deserializing what this engine just compiled")]
                // SAFETY: `code` was produced a moment ago by this engine.
                let c = unsafe { Component::deserialize(&self.inner.engine, &code) };
                c.map_err(|e| PluginError::Internal(e.into()))?
            }
        };
        let contract = contract(&self.inner.engine, &component)?;
        let pre = self.inner.linkers.pre(contract, &component)?;
        Ok(LoadedComponent {
            hash: hash.to_owned(),
            wit_version: contract.as_str().to_owned(),
            pre,
        })
    }
}

/// A core module starts with version 1 (`\0asm\x01\0\0\0`); a component
/// has a different layer/version field.
fn wasmparser_is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0]
}

/// The `keel:plugin` version of the handler a component exports, refused
/// naming the supported versions when this kernel does not support it.
fn contract(engine: &Engine, component: &Component) -> Result<Contract> {
    let ty = component.component_type();
    let exported: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let Some(version) = exported
        .iter()
        .find_map(|n| n.strip_prefix("keel:plugin/handler@"))
        .map(str::to_owned)
    else {
        return Err(PluginError::Incompatible(format!(
            "not a Keel plugin: it exports no keel:plugin/handler interface (it exports: {})",
            if exported.is_empty() {
                "nothing".into()
            } else {
                exported.join(", ")
            }
        )));
    };
    Contract::parse(&version).ok_or_else(|| {
        PluginError::Incompatible(format!(
            "the plugin is built for keel:plugin@{version}; this kernel supports keel:plugin@{}",
            SUPPORTED_WIT_VERSIONS.join(", keel:plugin@")
        ))
    })
}
