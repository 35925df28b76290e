//! The wasmtime engine, compiled-component cache and the [`Host`] handle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use keel_core::Db;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::PluginPre;
use crate::state::State;
use crate::{PluginError, Result, SUPPORTED_WIT_VERSIONS};

/// How often the epoch ticks; deadlines are whole ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits and places of the plugin host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// How long one call may run.
    pub deadline: Duration,
    /// Linear memory one instance may use.
    pub memory_bytes: usize,
    /// Largest operation input (JSON text).
    pub max_input_bytes: usize,
    /// Largest operation output (JSON text).
    pub max_output_bytes: usize,
    /// Instances alive at once (concurrent calls), across all plugins.
    pub max_instances: u32,
    /// Time limit of one outbound HTTP request.
    pub http_timeout: Duration,
}

impl HostConfig {
    /// Defaults with the cache under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        HostConfig {
            cache_dir: cache_dir.into(),
            deadline: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_instances: 256,
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// A compiled plugin component, ready to instantiate.
pub struct LoadedComponent {
    /// SHA-256 of the component's bytes, hex.
    pub hash: String,
    /// The `keel:plugin` version it was built for.
    pub wit_version: String,
    pub(crate) pre: PluginPre<State>,
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
    pub(crate) linker: Linker<State>,
    pub(crate) config: HostConfig,
    pub(crate) db: Db,
    pub(crate) http: reqwest::Client,
    mac_key: Vec<u8>,
    engine_tag: String,
    loaded: Mutex<HashMap<String, Arc<LoadedComponent>>>,
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
            .max_memory_size(config.memory_bytes);
        let mut wc = Config::new();
        wc.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wc)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;

        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        crate::bindings::Plugin::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |s| s,
        )
        .map_err(anyhow::Error::from)
        .context("linking the keel:plugin imports")?;

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
                linker,
                config,
                db,
                http,
                mac_key,
                engine_tag,
                loaded: Mutex::new(HashMap::new()),
                stop,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Compiles (or takes from the cache) a component and checks that it is a
    /// Keel plugin of a supported WIT version.
    pub async fn load(&self, wasm: &[u8]) -> Result<Arc<LoadedComponent>> {
        let hash = hex(&Sha256::digest(wasm));
        if let Some(l) = self.inner.loaded.lock().map_err(|_| poisoned())?.get(&hash) {
            return Ok(l.clone());
        }
        let this = self.clone();
        let bytes = wasm.to_vec();
        let h = hash.clone();
        let loaded = tokio::task::spawn_blocking(move || this.compile(&h, &bytes))
            .await
            .map_err(|e| PluginError::Internal(e.into()))??;
        let loaded = Arc::new(loaded);
        self.inner
            .loaded
            .lock()
            .map_err(|_| poisoned())?
            .insert(hash, loaded.clone());
        Ok(loaded)
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
        let wit_version = wit_version(&self.inner.engine, &component)?;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Incompatible(format!(
                "the component needs imports Keel does not provide: {e}"
            ))
        })?;
        let pre = PluginPre::new(pre).map_err(|e| {
            PluginError::Incompatible(format!("the component is not a keel:plugin plugin: {e}"))
        })?;
        Ok(LoadedComponent {
            hash: hash.to_owned(),
            wit_version,
            pre,
        })
    }
}

fn poisoned() -> PluginError {
    PluginError::Internal(anyhow::anyhow!("plugin cache lock poisoned"))
}

/// A core module starts with version 1 (`\0asm\x01\0\0\0`); a component
/// has a different layer/version field.
fn wasmparser_is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0]
}

/// The `keel:plugin` version of the handler a component exports, refused
/// with both versions named when this kernel does not support it.
fn wit_version(engine: &Engine, component: &Component) -> Result<String> {
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
    if !SUPPORTED_WIT_VERSIONS.contains(&version.as_str()) {
        return Err(PluginError::Incompatible(format!(
            "the plugin is built for keel:plugin@{version}; this kernel supports keel:plugin@{}",
            SUPPORTED_WIT_VERSIONS.join(", keel:plugin@")
        )));
    }
    Ok(version)
}
