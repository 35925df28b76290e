//! Compiling before any request.
//!
//! Compiling a component takes seconds (an 18 MB Python component, 16 s),
//! so no client request should pay for it:
//!
//! - installing a package compiles it and writes the on-disk cache;
//! - `keel serve` warms every installed package in the background at
//!   start-up ([`Registry::warm_up`]) while `/readyz` answers 503
//!   ([`Host::warming_up`]), so that a load balancer holds traffic back;
//! - a component is compiled at most once at a time ([`Prepared`]): the
//!   compile runs apart from whoever asked for it, and every caller that
//!   needs the same component meanwhile — a request, the outbox, the
//!   warm-up — waits for that one compile instead of starting another. A
//!   caller that gives up (a request's timeout) does not waste it.
//!
//! The event schemas' validators of each installed package are compiled by
//! the warm-up too; the registry shares one manifest per package between
//! every tenant's activation, so they are compiled once per process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::Digest as _;
use tokio::sync::watch;

use crate::engine::LoadedComponent;
use crate::manifest::Manifest;
use crate::{Host, PluginError, Registry, Result};

/// The outcome of one compile, shared by everyone waiting for it.
type Outcome = std::result::Result<Arc<LoadedComponent>, Arc<PluginError>>;

#[derive(Default)]
struct Components {
    /// Compiled and linked, by the component's SHA-256.
    done: HashMap<String, Arc<LoadedComponent>>,
    /// Being compiled: a receiver of the outcome, by SHA-256.
    running: HashMap<String, watch::Receiver<Option<Outcome>>>,
}

/// What the host prepares once per component or package and keeps: the
/// compiled components, the manifests of installed packages, and whether a
/// warm-up is running.
#[derive(Default)]
pub(crate) struct Prepared {
    components: Mutex<Components>,
    /// Compilations from WebAssembly (not loads from the on-disk cache).
    compilations: AtomicU64,
    /// Warm-ups begun and not yet ended.
    warming: AtomicUsize,
    /// Installed packages' manifests by their stored JSON text: one
    /// manifest (and one set of compiled event validators) per package.
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
}

fn poisoned() -> PluginError {
    PluginError::Internal(anyhow::anyhow!(
        "the compiled-component table's lock is poisoned"
    ))
}

/// A copy of a shared compile error for one of its waiters.
fn copy(e: &PluginError) -> PluginError {
    match e {
        PluginError::Incompatible(m) => PluginError::Incompatible(m.clone()),
        PluginError::Returned {
            code,
            message,
            field,
        } => PluginError::Returned {
            code: code.clone(),
            message: message.clone(),
            field: field.clone(),
        },
        PluginError::Internal(cause) => PluginError::Internal(anyhow::anyhow!("{cause:#}")),
        other => PluginError::Internal(anyhow::anyhow!("{other}")),
    }
}

/// Ends a compile's entry in `running` however the compile ends (even if
/// its task is dropped with the runtime), keeping a success in `done`.
struct Finish {
    host: Host,
    hash: String,
    loaded: Option<Arc<LoadedComponent>>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Ok(mut c) = self.host.inner.prepared.components.lock() {
            if let Some(l) = self.loaded.take() {
                c.done.insert(self.hash.clone(), l);
            }
            c.running.remove(&self.hash);
        }
    }
}

impl Prepared {
    fn components(&self) -> Result<MutexGuard<'_, Components>> {
        self.components.lock().map_err(|_| poisoned())
    }

    /// Counts a compilation from WebAssembly.
    pub(crate) fn count_compilation(&self) {
        self.compilations.fetch_add(1, Ordering::Relaxed);
    }

    /// The component `hash`: compiled already, being compiled (then its
    /// compile is awaited), or compiled now by `job()` in a task of its own.
    /// `job` is called only when a compile starts.
    pub(crate) async fn component<J>(
        &self,
        host: &Host,
        hash: String,
        job: impl FnOnce() -> J,
    ) -> Result<Arc<LoadedComponent>>
    where
        J: FnOnce(&str) -> Result<LoadedComponent> + Send + 'static,
    {
        let running = {
            let c = self.components()?;
            if let Some(l) = c.done.get(&hash) {
                return Ok(l.clone());
            }
            c.running.get(&hash).cloned()
        };
        let mut outcome = match running {
            Some(rx) => rx,
            None => {
                let compile = job();
                let (tx, rx) = watch::channel(None);
                {
                    let mut c = self.components()?;
                    // Another caller may have begun (or ended) it meanwhile.
                    if let Some(l) = c.done.get(&hash) {
                        return Ok(l.clone());
                    }
                    if let Some(other) = c.running.get(&hash) {
                        other.clone()
                    } else {
                        c.running.insert(hash.clone(), rx.clone());
                        let mut finish = Finish {
                            host: host.clone(),
                            hash: hash.clone(),
                            loaded: None,
                        };
                        tokio::spawn(async move {
                            let h = finish.hash.clone();
                            let result =
                                match tokio::task::spawn_blocking(move || compile(&h)).await {
                                    Ok(Ok(l)) => Ok(Arc::new(l)),
                                    Ok(Err(e)) => Err(Arc::new(e)),
                                    Err(e) => Err(Arc::new(PluginError::Internal(
                                        anyhow::anyhow!("compiling a plugin component failed: {e}"),
                                    ))),
                                };
                            finish.loaded = result.as_ref().ok().cloned();
                            drop(finish);
                            let _ = tx.send(Some(result));
                        });
                        rx
                    }
                }
            }
        };
        let result = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| {
                PluginError::Internal(anyhow::anyhow!(
                    "the compile of a plugin component ended without a result"
                ))
            })?
            .clone();
        match result {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(copy(&e)),
            None => Err(poisoned()),
        }
    }

    /// The manifest stored as `json`, parsed once per distinct text.
    pub(crate) fn manifest(&self, json: &str) -> serde_json::Result<Arc<Manifest>> {
        if let Some(m) = self
            .manifests
            .lock()
            .ok()
            .and_then(|m| m.get(json).cloned())
        {
            return Ok(m);
        }
        let parsed = Arc::new(serde_json::from_str::<Manifest>(json)?);
        if let Ok(mut m) = self.manifests.lock() {
            return Ok(m.entry(json.to_owned()).or_insert(parsed).clone());
        }
        Ok(parsed)
    }
}

impl Host {
    /// How many components this host compiled from WebAssembly (loads from
    /// the on-disk cache and from memory do not count).
    pub fn compilations(&self) -> u64 {
        self.inner.prepared.compilations.load(Ordering::Relaxed)
    }

    /// True while a warm-up ([`Registry::warm_up`]) runs: `/readyz` then
    /// answers 503.
    pub fn warming_up(&self) -> bool {
        self.inner.prepared.warming.load(Ordering::Acquire) > 0
    }
}

/// Marks the host as warming up for as long as it lives.
struct Warming(Host);

impl Warming {
    fn begin(host: &Host) -> Warming {
        host.inner.prepared.warming.fetch_add(1, Ordering::AcqRel);
        Warming(host.clone())
    }
}

impl Drop for Warming {
    fn drop(&mut self) {
        self.0.inner.prepared.warming.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A warm-up of every installed package, begun by [`Registry::warm_up`]:
/// the host reports [`Host::warming_up`] until [`WarmUp::run`] ends or the
/// warm-up is dropped.
#[must_use = "the host is warming up until the warm-up runs or is dropped"]
pub struct WarmUp {
    registry: Registry,
    _warming: Warming,
}

impl std::fmt::Debug for WarmUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmUp").finish_non_exhaustive()
    }
}

/// What a warm-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmUpReport {
    /// Packages ready to run (compiled now or before).
    pub packages: usize,
    /// Components compiled from WebAssembly meanwhile (the others came from
    /// the on-disk cache or were in memory).
    pub compiled: u64,
    /// Packages that could not be prepared (`name version`) and why; the
    /// requests that need one get the same error.
    pub failed: Vec<(String, String)>,
}

impl Registry {
    /// The installed package `manifest` names, if it holds this very
    /// component: installing it again then changes and compiles nothing.
    pub(crate) async fn installed_as(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
    ) -> Result<Option<crate::Package>> {
        let Some(p) =
            self.packages().await?.into_iter().find(|p| {
                p.manifest.name == manifest.name && p.manifest.version == manifest.version
            })
        else {
            return Ok(None);
        };
        let hash: String = sha2::Sha256::digest(wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // The same component under another manifest (other capabilities,
        // another SDL) is other content: refused as a taken version, not
        // silently answered with the manifest stored first.
        let same_manifest =
            serde_json::to_value(&p.manifest).ok() == serde_json::to_value(manifest).ok();
        Ok((p.hash == hash && same_manifest).then_some(p))
    }

    /// Begins a warm-up of every installed package: the host reports
    /// [`Host::warming_up`] from now until the warm-up has run (spawn
    /// [`WarmUp::run`]).
    pub fn warm_up(&self) -> WarmUp {
        WarmUp {
            _warming: Warming::begin(self.host()),
            registry: self.clone(),
        }
    }
}

impl WarmUp {
    /// Compiles (or loads from the on-disk cache) the component of every
    /// installed package, the newest version of each plugin first, and
    /// compiles its event validators. A package that fails is logged and
    /// skipped; the warm-up always ends.
    pub async fn run(self) -> WarmUpReport {
        let host = self.registry.host().clone();
        let before = host.compilations();
        let mut report = WarmUpReport::default();
        let mut packages = match self.registry.packages().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the plugin packages to warm up");
                report.failed.push(("packages".into(), e.to_string()));
                return report;
            }
        };
        // Newest first within each name: what tenants most likely run.
        packages.sort_by(|a, b| {
            a.manifest.name.cmp(&b.manifest.name).then_with(|| {
                crate::registry::version_key(&b.manifest.version)
                    .cmp(&crate::registry::version_key(&a.manifest.version))
            })
        });
        let (newest, older): (Vec<_>, Vec<_>) = packages
            .iter()
            .enumerate()
            .partition(|(i, p)| *i == 0 || packages[i - 1].manifest.name != p.manifest.name);
        for (_, p) in newest.into_iter().chain(older) {
            let (name, version) = (&p.manifest.name, &p.manifest.version);
            let prepared = async {
                let wasm = self.registry.component(name, version).await?;
                host.load(&wasm).await?;
                p.manifest
                    .events
                    .prepare()
                    .map_err(PluginError::Incompatible)?;
                Ok::<_, PluginError>(())
            }
            .await;
            match prepared {
                Ok(()) => report.packages += 1,
                Err(e) => {
                    tracing::warn!(plugin = %name, %version, error = %e, "could not warm up a plugin package");
                    report
                        .failed
                        .push((format!("{name} {version}"), e.to_string()));
                }
            }
        }
        report.compiled = host.compilations() - before;
        tracing::info!(
            packages = report.packages,
            compiled = report.compiled,
            failed = report.failed.len(),
            "plugin packages warmed up"
        );
        report
    }
}
