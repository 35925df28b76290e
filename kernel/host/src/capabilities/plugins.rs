//! `keel:plugin/plugins` (0.2): calls to the operations other plugins of the
//! tenant offer, inside the caller's transaction.
//!
//! A call is checked before anything runs, each failure a typed error
//! naming the call: declared in the caller's `[[calls]]` and granted by
//! the tenant (`denied`), within [`MAX_DEPTH`](crate::calls::MAX_DEPTH)
//! (`refused` `CALL_TOO_DEEP`), to no plugin already on the chain
//! (`refused` `CALL_CYCLE`), with an input within the operation input
//! limit that is a JSON object (`invalid-input`), to a plugin enabled for
//! the activation's tenant — the only place a callee is looked up, so
//! another tenant's plugin cannot be named — that offers the operation
//! (`not-found`).
//!
//! The callee then runs like a sync subscriber: a fresh instance with its
//! own activation (capabilities, namespace, config), lent the caller's
//! transaction behind a savepoint, one level deeper, with the caller's
//! chain. It must end within three quarters of the time its caller has
//! left (`CALLER_KEEPS_ONE_IN`), so that the caller can still handle a
//! callee that ran out of time, and a whole chain ends within the
//! outermost call's deadline. It sees the original caller's label, address and scope, and the
//! calling plugin's name. Its typed errors come back as they are (the
//! message capped at 2,000 characters); a trap, a deadline, the memory cap
//! or an oversized output is `internal`, naming the callee. On any error
//! the savepoint is rolled back: the callee's writes and events are gone,
//! the caller's stay until it returns.

use std::sync::Arc;

use tracing::Instrument as _;

use crate::bindings::keel::plugin::plugins::Host;
use crate::bindings::{CallContext, Refusal, WitError};
use crate::calls::{CALL_CYCLE, CALL_TOO_DEEP, CallChain, MAX_DEPTH};
use crate::invocation::{Activation, CallEnv};
use crate::state::State;
use crate::{PluginError, Result};

/// The longest message of a callee's error passed back to its caller.
const MAX_MESSAGE_CHARS: usize = 2000;

impl Host for State {
    async fn call(
        &mut self,
        plugin: String,
        operation: String,
        input: String,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let span = tracing::info_span!(
            "plugins.call",
            tenant = %self.tenant().as_str(),
            caller = %self.namespace(),
            callee = %plugin,
            %operation,
            depth = self.depth + 1,
        );
        async move {
            let stubbed = match self.check_call(&plugin, &operation, &input) {
                Ok(()) => self.stubbed(&plugin, &operation, &input),
                Err(e) => Some(Err(e)),
            };
            if let Some(answer) = stubbed {
                if let Err(e) = &answer {
                    tracing::debug!(error = ?e, "plugin call refused");
                }
                return Ok(answer);
            }
            let callee = match self.callee(&plugin, &operation) {
                Ok(callee) => callee,
                Err(e) => {
                    tracing::debug!(error = ?e, "plugin call refused");
                    return Ok(Err(e));
                }
            };
            self.run_call(callee, operation, input).await
        }
        .instrument(span)
        .await
    }
}

fn refused(code: &str, message: String) -> WitError {
    WitError::Refused(Refusal {
        code: code.to_owned(),
        message,
    })
}

impl State {
    /// The caller's side of a call: declared, granted, not too deep, no
    /// cycle, an input within its limit that is a JSON object.
    fn check_call(&self, plugin: &str, operation: &str, input: &str) -> Result<(), WitError> {
        let me = self.namespace();
        let call = format!("{plugin}.{operation}");
        if !self.activation.manifest.declares_call(plugin, operation) {
            return Err(WitError::Denied(format!(
                "the plugin {me} does not declare the call {call} (add it to [[calls]] in its manifest)"
            )));
        }
        if !self
            .activation
            .grants
            .calls
            .iter()
            .any(|c| c.plugin == plugin && c.operation == operation)
        {
            return Err(WitError::Denied(format!(
                "the plugin {me} was not granted the call {call}"
            )));
        }
        if self.depth >= MAX_DEPTH {
            return Err(refused(
                CALL_TOO_DEEP,
                format!(
                    "{me} cannot call {call}: calls and sync deliveries nest at most {MAX_DEPTH} deep"
                ),
            ));
        }
        if plugin == me || self.chain.holds(plugin) {
            let mut chain = self.chain.plugins.clone();
            chain.push(me.to_owned());
            return Err(refused(
                CALL_CYCLE,
                format!(
                    "{me} cannot call {call}: {plugin} is already on the call chain {} → {plugin}",
                    chain.join(" → ")
                ),
            ));
        }
        let limit = self
            .host
            .as_ref()
            .map_or(usize::MAX, |h| h.inner.config.max_input_bytes);
        if input.len() > limit {
            return Err(WitError::InvalidInput(format!(
                "input: the input of {call} is {} bytes; the limit is {limit}",
                input.len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(input) {
            Ok(v) if v.is_object() => {}
            _ => {
                return Err(WitError::InvalidInput(format!(
                    "input: the input of {call} must be a JSON object"
                )));
            }
        }
        Ok(())
    }

    /// A test harness's scripted answer, when it stubs this call.
    fn stubbed(
        &self,
        plugin: &str,
        operation: &str,
        input: &str,
    ) -> Option<Result<String, WitError>> {
        let stubs = self.host.as_ref()?.inner.config.call_stubs.as_ref()?;
        stubs.answer(self.namespace(), plugin, operation, input)
    }

    /// The callee to run (an enabled plugin of the tenant offering the
    /// operation), or why not.
    fn callee(&self, plugin: &str, operation: &str) -> Result<Arc<Activation>, WitError> {
        // Only the activation's tenant's enabled plugins: the callee of
        // another tenant does not exist.
        let callee = self
            .plugins
            .as_ref()
            .and_then(|set| set.get(plugin))
            .filter(|a| a.tenant == *self.tenant())
            .ok_or_else(|| {
                WitError::NotFound(format!(
                    "the plugin {plugin} is not enabled for this tenant"
                ))
            })?;
        if !callee.manifest.offers(operation) {
            return Err(WitError::NotFound(format!(
                "the plugin {plugin} offers no operation {operation:?} to other plugins"
            )));
        }
        // A plugin that does not enforce org scopes would act on the whole
        // tenant for a caller limited to one node.
        if self.chain.scope.is_some() && !callee.manifest.enforces_org_scope {
            return Err(WitError::Denied(format!(
                "the caller is limited to an org node, and the plugin {plugin} does not enforce org scopes"
            )));
        }
        Ok(callee.clone())
    }

    /// Runs the callee in this transaction behind a savepoint, rolled back
    /// on any error.
    async fn run_call(
        &mut self,
        callee: Arc<Activation>,
        operation: String,
        input: String,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let host = self
            .host
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("no host for a plugin call"))?;
        let Some(deadline) = self.chain.callee_deadline() else {
            return Ok(Err(WitError::Internal(format!(
                "{}.{operation} was not started: {} has too little of its deadline left",
                callee.manifest.name,
                self.namespace()
            ))));
        };
        let savepoint = format!("keel_call_{}", self.depth);
        sqlx::query(&format!("SAVEPOINT {savepoint}"))
            .execute(self.conn().await?)
            .await?;
        let ctx = CallContext {
            caller: self.chain.caller.clone(),
            client_address: self.chain.client_address.clone(),
            request_id: self.request_id.clone(),
            scope: self.chain.scope.clone(),
            calling_plugin: Some(self.namespace().to_owned()),
            // A schedule is its plugin's own: the callee was not started
            // by one of its schedules.
            schedule: None,
        };
        let env = CallEnv {
            tx: self.tx.take(),
            commit: false,
            plugins: self.plugins.clone(),
            depth: self.depth + 1,
            chain: CallChain {
                deadline: Some(deadline),
                ..self.chain.below(self.namespace())
            },
        };
        let (outcome, tx) = Box::pin(host.call_offered(&callee, &operation, input, ctx, env)).await;
        match tx {
            Some(tx) => self.tx = Some(tx),
            None => return Err(wasmtime::Error::msg("a plugin call lost the transaction")),
        }
        let callee = &callee.manifest.name;
        let result = match outcome {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(capped(e)),
            Err(e) => {
                tracing::warn!(%callee, %operation, error = %e, code = e.code(), "a called plugin failed");
                Err(WitError::Internal(format!(
                    "{callee}.{operation} failed: {e}"
                )))
            }
        };
        if result.is_err() {
            sqlx::query(&format!("ROLLBACK TO SAVEPOINT {savepoint}"))
                .execute(self.conn().await?)
                .await?;
        }
        sqlx::query(&format!("RELEASE SAVEPOINT {savepoint}"))
            .execute(self.conn().await?)
            .await?;
        Ok(result)
    }
}

/// The callee's own error, as it is, its message capped.
fn capped(e: WitError) -> WitError {
    let cap = |m: String| -> String {
        if m.chars().count() > MAX_MESSAGE_CHARS {
            m.chars().take(MAX_MESSAGE_CHARS).collect()
        } else {
            m
        }
    };
    match e {
        WitError::NotFound(m) => WitError::NotFound(cap(m)),
        WitError::Conflict(m) => WitError::Conflict(cap(m)),
        WitError::InvalidInput(m) => WitError::InvalidInput(cap(m)),
        WitError::Denied(m) => WitError::Denied(cap(m)),
        WitError::Refused(r) => WitError::Refused(Refusal {
            code: r.code.chars().take(64).collect(),
            message: cap(r.message),
        }),
        WitError::Internal(m) => WitError::Internal(cap(m)),
    }
}

impl crate::Host {
    /// Runs an operation another plugin offers (`plugins.call`) in the
    /// transaction lent in `env`, handed back whatever happens. The
    /// callee's typed error is the inner `Err`; a trap, a deadline, the
    /// memory cap or an output over the limit is the outer one.
    pub(crate) async fn call_offered(
        &self,
        callee: &Arc<Activation>,
        operation: &str,
        input: String,
        ctx: CallContext,
        env: CallEnv,
    ) -> (
        Result<std::result::Result<String, WitError>>,
        Option<keel_core::Tx>,
    ) {
        let name = operation.to_owned();
        let request_id = ctx.request_id.clone();
        let (outcome, tx) = self
            .invoke(callee, &request_id, env, |plugin, store| {
                Box::pin(async move {
                    // The callee's own error is a value here, not a
                    // failure of the invocation: it is passed on as it is.
                    plugin
                        .handle_operation(store, &name, input, &ctx)
                        .await
                        .map(Ok)
                })
            })
            .await;
        let limit = self.inner.config.max_output_bytes;
        let outcome = outcome.and_then(|(output, _events)| match output {
            Ok(out) if out.len() > limit => Err(PluginError::TooLarge {
                plugin: callee.manifest.name.clone(),
                what: "output",
                size: out.len(),
                limit,
            }),
            other => Ok(other),
        });
        (outcome, tx)
    }
}
