//! One call into a plugin: one fresh instance, one database transaction.
//!
//! The transaction begins at the plugin's first write (reads before it run
//! on a pooled reader, `State::read`) and commits only when the plugin
//! returns `Ok`; a typed error, a trap, a deadline, a memory cap
//! or an oversized output drops it, and with it every write and event of
//! the call. The instance is dropped after every call, so a plugin that
//! trapped never runs again in a broken state.

use std::sync::Arc;
use std::time::Duration;

use keel_core::TenantId;
use wasmtime::Store;

use crate::bindings::{Guest, GuestResult, WitError};
use crate::engine::{EPOCH_TICK, Host, LoadedComponent};
use crate::manifest::{Grants, Manifest};
use crate::state::State;
use crate::{PluginError, Result};

/// A plugin as one tenant enabled it: what runs, what it may do, and how
/// it is configured. The tenant comes from the kernel, never the plugin.
#[derive(Debug)]
pub struct Activation {
    pub tenant: TenantId,
    pub manifest: Arc<Manifest>,
    pub component: Arc<LoadedComponent>,
    pub grants: Grants,
    pub config: serde_json::Value,
}

impl Activation {
    /// The same plugin with another configuration.
    pub fn clone_with_config(&self, config: serde_json::Value) -> Activation {
        Activation {
            tenant: self.tenant.clone(),
            manifest: self.manifest.clone(),
            component: self.component.clone(),
            grants: self.grants.clone(),
            config,
        }
    }
}

/// Who calls an operation.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The caller's label; `None` for a public operation.
    pub caller: Option<String>,
    pub client_address: Option<String>,
    pub request_id: String,
    /// The org node the caller is limited to (a scoped operator or key);
    /// `None` for the whole tenant. Contract 0.2 passes it to the plugin.
    pub scope: Option<String>,
    /// The schedule that started the call (contract 0.2 passes it on).
    pub schedule: Option<String>,
    /// The plugin calling this operation through `plugins.call`, if any
    /// (contract 0.2 passes it on; `caller` stays the original caller).
    pub calling_plugin: Option<String>,
    /// The tenant's enabled plugins: events the call emits are delivered to
    /// those that subscribe (sync ones inside the call's transaction, async
    /// ones through the outbox). Without it, emitted events reach no plugin.
    pub plugins: Option<Arc<crate::TenantPlugins>>,
    /// What the client behind the call may itself write in the kernel's
    /// master data: a plugin writes the catalogue or the org tree for a
    /// client only where the client could (and, for a client limited to an
    /// org node, only under it). `None`: no client is behind the call (a
    /// schedule, an event delivery), and the plugin acts on its own
    /// account, within its grants. Every call a client starts must set it.
    pub caller_rights: Option<CallerRights>,
}

/// The kernel rights of the client behind a call that a plugin's writes on
/// its behalf are held to ([`CallContext::caller_rights`]). A consumer has
/// none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerRights {
    /// May write the product catalogue (`catalog`, write).
    pub catalog_write: bool,
    /// May write the organisation tree (`org`, write).
    pub org_write: bool,
}

/// Where a call runs: its own transaction, or one lent by an emitter.
pub(crate) struct CallEnv {
    // Fields are filled by the call paths and by sync delivery.
    pub(crate) tx: Option<keel_core::Tx>,
    /// Commit on success (a call of its own) or hand the transaction back.
    pub(crate) commit: bool,
    pub(crate) plugins: Option<Arc<crate::TenantPlugins>>,
    pub(crate) depth: u8,
    /// The plugins above this invocation and the original caller
    /// (`plugins.call`).
    pub(crate) chain: crate::calls::CallChain,
}

impl CallEnv {
    fn own(plugins: Option<Arc<crate::TenantPlugins>>) -> CallEnv {
        CallEnv {
            tx: None,
            commit: true,
            plugins,
            depth: 0,
            chain: crate::calls::CallChain::default(),
        }
    }
}

/// What a successful call leaves behind besides its value.
#[derive(Debug, Clone)]
pub struct InvocationEvent {
    pub event: keel_core::events::Event,
}

fn wit_error(plugin: &str, e: WitError) -> PluginError {
    let (code, message) = match e {
        WitError::NotFound(m) => ("NOT_FOUND".to_owned(), m),
        WitError::Conflict(m) => ("CONFLICT".to_owned(), m),
        WitError::InvalidInput(m) => ("BAD_USER_INPUT".to_owned(), m),
        WitError::Denied(m) => ("FORBIDDEN".to_owned(), m),
        WitError::Refused(r) => {
            let ok = !r.code.is_empty()
                && r.code.len() <= 64
                && r.code
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            let code = if ok {
                r.code
            } else {
                "PLUGIN_REFUSED".to_owned()
            };
            (code, r.message)
        }
        WitError::Internal(m) => {
            tracing::warn!(plugin, message = %m, "plugin reported an internal error");
            (
                "PLUGIN_FAILED".to_owned(),
                format!("the plugin {plugin} failed: {m}"),
            )
        }
    };
    let message: String = message.chars().take(2000).collect();
    PluginError::Returned {
        code,
        message,
        field: None,
    }
}

impl Host {
    /// Runs the operation `name` with `input` (a JSON object) and returns
    /// its JSON output.
    pub async fn call_operation(
        &self,
        act: &Arc<Activation>,
        name: &str,
        input: &str,
        ctx: CallContext,
    ) -> Result<String> {
        let plugin = act.manifest.name.clone();
        let limit = self.inner.config.max_input_bytes;
        if input.len() > limit {
            return Err(PluginError::TooLarge {
                plugin,
                what: "input",
                size: input.len(),
                limit,
            });
        }
        // What the plugins it calls are told of their caller.
        let chain = crate::calls::CallChain::root(&ctx);
        // In the newest contract's types; a 0.1 guest gets the fields it knows.
        let wit_ctx = crate::bindings::CallContext {
            caller: ctx.caller,
            client_address: ctx.client_address,
            request_id: ctx.request_id.clone(),
            scope: ctx.scope,
            calling_plugin: ctx.calling_plugin,
            schedule: ctx.schedule,
        };
        let (name, input) = (name.to_owned(), input.to_owned());
        let env = CallEnv {
            chain,
            ..CallEnv::own(ctx.plugins.clone())
        };
        let (out, _) = self
            .invoke(act, &ctx.request_id, env, |plugin, store| {
                Box::pin(
                    async move { plugin.handle_operation(store, &name, input, &wit_ctx).await },
                )
            })
            .await
            .0?;
        let limit = self.inner.config.max_output_bytes;
        if out.len() > limit {
            return Err(PluginError::TooLarge {
                plugin: act.manifest.name.clone(),
                what: "output",
                size: out.len(),
                limit,
            });
        }
        Ok(out)
    }

    /// Calls the plugin's `on-enable` with its configuration.
    pub async fn on_enable(&self, act: &Arc<Activation>, request_id: &str) -> Result<()> {
        let config = act.config.to_string();
        self.invoke(act, request_id, CallEnv::own(None), |plugin, store| {
            Box::pin(async move { plugin.on_enable(store, config).await })
        })
        .await
        .0
        .map(|_| ())
    }

    /// Runs the plugin's `on-enable` inside `tx`, the enable's own
    /// transaction, so that what it writes (an upgrade step's migration)
    /// commits with the switch to the new version or not at all. The
    /// transaction comes back whatever happens; after an error, drop it.
    pub(crate) async fn on_enable_in(
        &self,
        act: &Arc<Activation>,
        request_id: &str,
        tx: keel_core::Tx,
    ) -> (Result<()>, Option<keel_core::Tx>) {
        let config = act.config.to_string();
        let env = CallEnv {
            tx: Some(tx),
            commit: false,
            ..CallEnv::own(None)
        };
        let (result, tx) = self
            .invoke(act, request_id, env, |plugin, store| {
                Box::pin(async move { plugin.on_enable(store, config).await })
            })
            .await;
        (result.map(|_| ()), tx)
    }

    /// Delivers an event to the plugin's `handle-event` in a transaction of
    /// its own (the outbox's async delivery).
    pub async fn handle_event(
        &self,
        act: &Arc<Activation>,
        event: &keel_core::events::Event,
        request_id: &str,
        plugins: Option<Arc<crate::TenantPlugins>>,
    ) -> Result<()> {
        self.deliver(act, event, request_id, CallEnv::own(plugins))
            .await
            .0
    }

    /// Delivers an event inside the emitter's transaction (a sync
    /// subscriber); the transaction comes back whatever happens.
    pub(crate) async fn deliver(
        &self,
        act: &Arc<Activation>,
        event: &keel_core::events::Event,
        request_id: &str,
        env: CallEnv,
    ) -> (Result<()>, Option<keel_core::Tx>) {
        let e = crate::bindings::Event {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at.to_datetime().to_rfc3339(),
            person_id: event.person_id.clone(),
            payload: event.payload.to_string(),
            producer: event.producer.clone(),
        };
        let (r, tx) = self
            .invoke(act, request_id, env, |plugin, store| {
                Box::pin(async move { plugin.handle_event(store, &e).await })
            })
            .await;
        (r.map(|_| ()), tx)
    }

    /// Instantiates, calls `f`, and commits or rolls back. Returns the value
    /// and the events the call emitted.
    pub(crate) async fn invoke<T, F>(
        &self,
        act: &Arc<Activation>,
        request_id: &str,
        env: CallEnv,
        f: F,
    ) -> (
        Result<(T, Vec<keel_core::events::Event>)>,
        Option<keel_core::Tx>,
    )
    where
        F: for<'a> FnOnce(
            &'a Guest,
            &'a mut Store<State>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = GuestResult<T>> + Send + 'a>,
        >,
        T: Send,
    {
        let inner = &self.inner;
        let plugin_name = act.manifest.name.clone();
        // The manifest's `[resources]`, within the operator's maximums.
        let (memory, own_deadline) = inner.config.limits_clamped(&act.manifest.resources);
        let mut state = State::new(
            inner.db.clone(),
            act.clone(),
            request_id.to_owned(),
            inner.http.clone(),
            memory,
            inner.config.wall_clock.clone(),
        );
        state.tx = env.tx;
        state.plugins = env.plugins;
        state.host = Some(self.clone());
        state.depth = env.depth;
        // A plugin call's callee must end by its caller's deadline (less
        // the caller's reserve); every invocation keeps its own end.
        let deadline = env.chain.time_left(own_deadline);
        state.chain = crate::calls::CallChain {
            deadline: Some(std::time::Instant::now() + deadline),
            ..env.chain
        };
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        // The guest yields to the runtime at every epoch tick it runs
        // through, and is interrupted at its deadline: a call that
        // computes for long neither holds a runtime thread for it nor
        // keeps the request's timeout from firing (host calls that do
        // not wait, such as SQLite's writer, never yield on their own).
        let mut ticks_left = (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks_left = ticks_left.saturating_sub(1);
            Ok(if ticks_left == 0 {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });

        let instance = match act.component.pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) => {
                let err = self.classify(&store, e, &plugin_name, deadline, "instantiating");
                return (Err(err), store.data_mut().tx.take());
            }
        };
        let outcome = f(&instance, &mut store).await;
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(wit_error(&plugin_name, e)),
            Err(trap) => Err(self.classify(&store, trap, &plugin_name, deadline, "calling")),
        };
        let state = store.data_mut();
        let tx = state.tx.take();
        let events = std::mem::take(&mut state.emitted);
        match (result, env.commit) {
            (Ok(value), true) => {
                if let Some(tx) = tx
                    && let Err(e) = tx.commit().await
                {
                    return (Err(PluginError::Internal(e.into())), None);
                }
                (Ok((value, events)), None)
            }
            (Ok(value), false) => (Ok((value, events)), tx),
            // An own transaction rolls back when dropped here.
            (Err(e), true) => (Err(e), None),
            (Err(e), false) => (Err(e), tx),
        }
        // The store, the instance and an uncommitted transaction drop here.
    }

    fn classify(
        &self,
        store: &Store<State>,
        e: wasmtime::Error,
        plugin: &str,
        deadline: Duration,
        doing: &str,
    ) -> PluginError {
        let state = store.data();
        if state.memory_denied {
            return PluginError::MemoryLimit {
                plugin: plugin.to_owned(),
                bytes: state.memory_cap,
            };
        }
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return PluginError::Deadline {
                plugin: plugin.to_owned(),
                millis: deadline.as_millis(),
            };
        }
        if e.chain()
            .any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>())
        {
            return PluginError::Busy;
        }
        let text = format!("{e:#}");
        if e.downcast_ref::<wasmtime::Trap>().is_none()
            && doing == "calling"
            && !text.contains("wasm trap")
        {
            // A host call failed (e.g. the database): the kernel's fault.
            tracing::error!(plugin, error = %text, "host failure during a plugin call");
            return PluginError::Internal(e.into());
        }
        let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
        let detail = if stderr.trim().is_empty() {
            text
        } else {
            format!("{text}; stderr: {}", stderr.trim())
        };
        tracing::warn!(plugin, %detail, "plugin trapped");
        PluginError::Trapped {
            plugin: plugin.to_owned(),
            detail,
        }
    }
}
