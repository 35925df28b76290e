//! What a plugin instance's store holds: the call's transaction, its tenant
//! and grants, and the sandbox's own state.

use std::sync::Arc;

use keel_core::{Conn, Db, TenantId, Tx};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::WitError;
use crate::invocation::Activation;
use crate::manifest::Capability;

/// The data of one invocation's store. Dropped with the instance.
pub(crate) struct State {
    /// The invocation's transaction, begun at the plugin's first write (so
    /// a plugin that computes or only reads never holds SQLite's single
    /// writer) and committed when the call returns `Ok`.
    pub(crate) tx: Option<Tx>,
    pub(crate) db: Db,
    pub(crate) activation: Arc<Activation>,
    pub(crate) request_id: String,
    pub(crate) http: reqwest::Client,
    /// Events emitted during the call, in order.
    pub(crate) emitted: Vec<keel_core::events::Event>,
    pub(crate) memory_cap: usize,
    /// Set when the plugin asked for more memory than its cap.
    pub(crate) memory_denied: bool,
    wasi: WasiCtx,
    table: ResourceTable,
    /// What the plugin wrote to stderr (a panic message), capped.
    pub(crate) stderr: MemoryOutputPipe,
    /// The tenant's enabled plugins, for delivering emitted events.
    pub(crate) plugins: Option<Arc<crate::TenantPlugins>>,
    /// The host, to run sync subscribers inside this transaction.
    pub(crate) host: Option<crate::Host>,
    /// How deep in sync deliveries and plugin calls this call runs (0 =
    /// called by a client, a schedule or the outbox).
    pub(crate) depth: u8,
    /// The plugins above this call and the original caller, passed on to
    /// the plugins it calls (`plugins.call`).
    pub(crate) chain: crate::calls::CallChain,
}

impl State {
    pub(crate) fn new(
        db: Db,
        activation: Arc<Activation>,
        request_id: String,
        http: reqwest::Client,
        memory_cap: usize,
        wall_clock: Option<crate::clock::SetClock>,
    ) -> State {
        let stderr = MemoryOutputPipe::new(8 * 1024);
        // A sandbox with nothing ambient: no files, no environment, no
        // network, no arguments; clocks and randomness only.
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        if let Some(clock) = wall_clock {
            wasi.wall_clock(clock);
        }
        let wasi = wasi.build();
        State {
            tx: None,
            db,
            activation,
            request_id,
            http,
            emitted: Vec::new(),
            memory_cap,
            memory_denied: false,
            wasi,
            table: ResourceTable::new(),
            stderr,
            plugins: None,
            host: None,
            depth: 0,
            chain: crate::calls::CallChain::default(),
        }
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.activation.tenant
    }

    /// The plugin's name: the namespace of its records and counters.
    pub(crate) fn namespace(&self) -> &str {
        &self.activation.manifest.name
    }

    /// A connection for a read: the call's transaction once it has one (a
    /// call reads its own writes), else a pooled reader. Reads before a
    /// call's first write so never hold SQLite's one writer, nor a
    /// PostgreSQL transaction: they see what was committed when they ran,
    /// as PostgreSQL's read-committed reads do. Every limit is a
    /// conditional write, so this costs no exactness.
    pub(crate) async fn read(&mut self) -> wasmtime::Result<Reader<'_>> {
        match self.tx.as_mut() {
            Some(tx) => Ok(Reader::Tx(tx)),
            None => Ok(Reader::Pooled(
                self.db
                    .point_reader()
                    .acquire()
                    .await
                    .map_err(|e| wasmtime::Error::msg(e.to_string()))?,
            )),
        }
    }

    /// True once the call writes in a transaction of its own or lent to it.
    pub(crate) fn writing(&self) -> bool {
        self.tx.is_some()
    }

    /// The call's transaction, begun on first use (for a write, or a read
    /// that must see the call's own writes).
    pub(crate) async fn conn(&mut self) -> wasmtime::Result<&mut Conn> {
        if self.tx.is_none() {
            let tx = self
                .db
                .begin()
                .await
                .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
            self.tx = Some(tx);
        }
        match self.tx.as_mut() {
            Some(tx) => Ok(&mut **tx),
            None => Err(wasmtime::Error::msg("the invocation's transaction is gone")),
        }
    }

    /// `Err(denied)` unless the tenant granted `c` and, when a client is
    /// behind the call, the client may itself write what `c` writes
    /// (`catalog-write`, `org-write`): a plugin is not a way around the
    /// kernel's roles.
    pub(crate) fn require_write_for_caller(&self, c: Capability) -> Result<(), WitError> {
        self.require(c)?;
        let (allowed, what) = match (c, self.chain.caller_rights) {
            (_, None) => return Ok(()),
            (Capability::CatalogWrite, Some(r)) => (r.catalog_write, "the product catalogue"),
            (Capability::OrgWrite, Some(r)) => (r.org_write, "the organisation tree"),
            _ => return Ok(()),
        };
        if allowed {
            Ok(())
        } else {
            Err(WitError::Denied(format!(
                "the caller may not write {what} in the kernel, so the plugin {} may not write it for them",
                self.namespace()
            )))
        }
    }

    /// `Err(denied)` unless the tenant granted `c`.
    pub(crate) fn require(&self, c: Capability) -> Result<(), WitError> {
        if self.activation.grants.has(c) {
            Ok(())
        } else {
            Err(WitError::Denied(format!(
                "the plugin {} was not granted the {} capability",
                self.namespace(),
                c.as_str()
            )))
        }
    }
}

/// A connection to read through ([`State::read`]).
pub(crate) enum Reader<'a> {
    Tx(&'a mut Conn),
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Reader::Tx(c) => c,
            Reader::Pooled(c) => c,
        }
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Reader::Tx(c) => c,
            Reader::Pooled(c) => &mut *c,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
