//! The one way to assemble a kernel process: over a migrated database, the
//! plugin host and registry, the gateway, and — while it serves — the
//! background warm-up, the scheduler and the outbox dispatcher, stopped in
//! order and the database closed at the end.
//!
//! `keel serve`, every test harness (the gateway's `TestApp`, the bundled
//! plugins' `Kernel`, `keel plugin harness` for plugins' tests) and the benches
//! build their kernel here, so none of them can drift from what runs in
//! production. Installing the bundled plugins (`keel_plugins::install_all`)
//! stays a step the caller takes on [`Kernel::registry`] between
//! [`Kernel::assemble`] and [`Kernel::serve`]: that crate depends on this one.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use keel_core::{Db, TenantId};
use keel_host::manifest::Grants;
use keel_host::outbox::{Dispatcher, DispatcherConfig};
use keel_host::{CallContext, Enabled, Host, HostConfig, Registry, Scheduler, SchedulerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Gateway, GatewayConfig};

/// Everything a kernel process is tuned by.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// The plugin host: compiled-code cache, deadlines, memory, pool size.
    pub host: HostConfig,
    /// The HTTP front.
    pub gateway: GatewayConfig,
    /// How the outbox dispatcher paces delivery to async subscribers.
    pub dispatcher: DispatcherConfig,
    /// How the scheduler paces plugins' `[[schedules]]`.
    pub scheduler: SchedulerConfig,
    /// Whether [`Kernel::serve`] runs the outbox dispatcher and the
    /// scheduler in the background (`keel serve` does). A test that drives
    /// delivery and ticks itself turns them off and uses
    /// [`Kernel::dispatcher`] and [`Kernel::scheduler`].
    pub background_jobs: bool,
}

impl KernelConfig {
    /// The defaults, with compiled plugins cached in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> KernelConfig {
        KernelConfig {
            host: HostConfig::new(cache_dir),
            gateway: GatewayConfig::default(),
            dispatcher: DispatcherConfig::default(),
            scheduler: SchedulerConfig::default(),
            background_jobs: true,
        }
    }
}

/// An assembled kernel process, not yet serving.
#[derive(Debug, Clone)]
pub struct Kernel {
    db: Db,
    registry: Registry,
    gateway: Gateway,
    config: KernelConfig,
}

impl Kernel {
    /// Builds the plugin host, the registry and the gateway over `db`
    /// (migrated and unlocked). Nothing runs until [`Kernel::serve`].
    pub async fn assemble(db: Db, config: KernelConfig) -> anyhow::Result<Kernel> {
        let host = Host::new(db.clone(), config.host.clone())
            .await
            .context("starting the plugin host")?;
        let registry = Registry::new(host, db.clone());
        let gateway = Gateway::new(db.clone(), registry.clone(), config.gateway.clone())
            .await
            .context("building the gateway")?;
        Ok(Kernel {
            db,
            registry,
            gateway,
            config,
        })
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The plugin registry (and through it, the host).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The HTTP front.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The configuration it was assembled with.
    pub fn config(&self) -> &KernelConfig {
        &self.config
    }

    /// Enables a plugin for `tenant` exactly as `enablePlugin` does: the
    /// registry's checks (grants, config schema, the plugin's own
    /// `on-enable`) and the gateway's, that the plugin's GraphQL merges with
    /// the kernel's and the tenant's other plugins'.
    pub async fn enable(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<&str>,
        grants: Grants,
        config: serde_json::Value,
    ) -> keel_host::Result<Enabled> {
        self.registry
            .enable(
                tenant,
                name,
                version,
                grants,
                config,
                &crate::tenant_schema::check_plugin_set,
            )
            .await
    }

    /// Moves an enabled plugin to another installed version as
    /// `upgradePlugin` does, with the same checks as [`Kernel::enable`];
    /// `grants` replace the plugin's when given.
    pub async fn upgrade(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &str,
        grants: Option<Grants>,
    ) -> keel_host::Result<Enabled> {
        self.registry
            .upgrade(
                tenant,
                name,
                version,
                grants,
                &crate::tenant_schema::check_plugin_set,
            )
            .await
    }

    /// Runs a plugin operation with the gateway's output checks
    /// ([`Gateway::call_operation`]).
    pub async fn call(
        &self,
        tenant: &TenantId,
        plugin: &str,
        operation: &str,
        input: serde_json::Value,
        ctx: CallContext,
    ) -> keel_host::Result<serde_json::Value> {
        self.gateway
            .call_operation(tenant, plugin, operation, input, ctx)
            .await
    }

    /// The outbox dispatcher this kernel runs in the background, for a
    /// test or tool that delivers due events itself.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.db.clone(),
            self.registry.clone(),
            self.config.dispatcher.clone(),
        )
    }

    /// The scheduler this kernel runs in the background, for a test that
    /// drives ticks itself.
    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.db.clone(),
            self.registry.clone(),
            self.config.scheduler.clone(),
        )
    }

    /// Serves until `shutdown` completes, then stops: what `keel serve`
    /// runs. In order: a background warm-up of every installed package
    /// (`/readyz` answers 503 until it is done), the scheduler and the
    /// outbox dispatcher (unless `background_jobs` is off), HTTP on
    /// `listener` until `shutdown`, draining requests for at most the
    /// request timeout; then the dispatcher and the scheduler are told to
    /// stop and awaited, and the database is closed.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let jobs = self.start_jobs();
        self.run(jobs, listener, shutdown).await
    }

    /// [`Kernel::serve`] in a task of its own, for tests and benches: the
    /// returned handle stops it (the same sequence) when told to or
    /// dropped.
    pub fn spawn(self, listener: tokio::net::TcpListener) -> std::io::Result<RunningKernel> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let kernel = self.clone();
        // The warm-up begins before this returns, so that
        // `RunningKernel::warmed_up` never sees the moment before it.
        let jobs = self.start_jobs();
        let task = tokio::spawn(self.run(jobs, listener, async move {
            let _ = stopped.await;
        }));
        Ok(RunningKernel {
            addr,
            kernel,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Starts the background work of a serving kernel.
    fn start_jobs(&self) -> Jobs {
        // Every installed package compiled (or loaded from the cache) in
        // the background; a request that needs a package meanwhile waits
        // for its one compile.
        tokio::spawn(self.registry.warm_up().run());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut running = Vec::new();
        if self.config.background_jobs {
            // Plugins' `[[schedules]]`: each due tick is claimed and run
            // once across every kernel process on this database.
            running.push(tokio::spawn(self.scheduler().run(until_stopped())));
            // Async subscribers get their events from the outbox.
            running.push(tokio::spawn(self.dispatcher().run(until_stopped())));
        }
        Jobs { stop, running }
    }

    async fn run(
        self,
        jobs: Jobs,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let served = self.gateway.serve(listener, shutdown).await;
        let _ = jobs.stop.send(true);
        for job in jobs.running {
            let _ = job.await;
        }
        self.db.close().await;
        served.context("serving HTTP")
    }
}

/// The background work of a serving kernel, and how to stop it.
struct Jobs {
    stop: tokio::sync::watch::Sender<bool>,
    running: Vec<JoinHandle<()>>,
}

/// A kernel serving in a task of its own ([`Kernel::spawn`]). Dropping it
/// stops the kernel without waiting; [`RunningKernel::stop`] waits.
#[derive(Debug)]
pub struct RunningKernel {
    addr: SocketAddr,
    kernel: Kernel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningKernel {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kernel it runs.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Waits until the start-up warm-up is done (`/readyz` answers 200
    /// again).
    pub async fn warmed_up(&self) {
        while self.kernel.registry.host().warming_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops it as `keel serve` stops, and waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("the kernel's task")?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningKernel {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
