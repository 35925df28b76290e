//! The host side of each `keel:plugin` import. Every function checks the
//! grant first, acts in the invocation's tenant and transaction, and maps
//! kernel errors to WIT errors; a database failure traps the call (and so
//! rolls it back).

mod counters;
mod events;
mod http;
mod persons;
mod records;

use crate::bindings::WitError;
use crate::bindings::keel::plugin::{config, log, types};
use crate::manifest::Capability;
use crate::state::State;

/// A kernel result as a host-call result: typed errors go to the plugin,
/// internal ones trap.
pub(crate) fn wit<T>(r: keel_core::Result<T>) -> wasmtime::Result<Result<T, WitError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match e {
            keel_core::Error::NotFound(m) => Ok(Err(WitError::NotFound(m))),
            keel_core::Error::Conflict(m) => Ok(Err(WitError::Conflict(m))),
            keel_core::Error::BadInput { field, message } => {
                Ok(Err(WitError::InvalidInput(format!("{field}: {message}"))))
            }
            keel_core::Error::Forbidden(m) | keel_core::Error::Unauthenticated(m) => {
                Ok(Err(WitError::Denied(m)))
            }
            keel_core::Error::RateLimited(m) => Ok(Err(WitError::Conflict(m))),
            keel_core::Error::Internal(cause) => Err(wasmtime::Error::from_anyhow(cause)),
        },
    }
}

/// Parses a JSON text the plugin sent.
pub(crate) fn json_arg(field: &str, text: &str) -> Result<serde_json::Value, WitError> {
    serde_json::from_str(text)
        .map_err(|e| WitError::InvalidInput(format!("{field}: not JSON: {e}")))
}

/// The reserved secret name under which a plugin reads how the tenant's
/// consumers sign in: the identifier kind of its consumer sessions
/// (`wechat_openid`), or none when it has no sign-in, so that public calls
/// are anonymous. Names under `keel.` are the kernel's: `setPluginSecret`
/// refuses them.
pub const CONSUMER_SIGN_IN: &str = "keel.consumer_sign_in";

impl types::Host for State {}

impl config::Host for State {
    async fn get(&mut self) -> wasmtime::Result<String> {
        Ok(self.activation.config.to_string())
    }

    async fn secret(&mut self, name: String) -> wasmtime::Result<Result<Option<String>, WitError>> {
        // Facts of the kernel under reserved names, readable without the
        // `secrets` grant (contract 0.1 has no other way to say them).
        if name == CONSUMER_SIGN_IN {
            let tenant = self.tenant().clone();
            let conn = self.conn().await?;
            return wit(keel_core::consumers::wechat_app(conn, &tenant)
                .await
                .map(|app| app.map(|_| keel_core::consumers::WECHAT_OPENID.to_owned())));
        }
        if let Err(e) = self.require(Capability::Secrets) {
            return Ok(Err(e));
        }
        let (tenant, plugin) = (self.tenant().clone(), self.namespace().to_owned());
        let sealer = match self.db.sealer() {
            Ok(s) => s.clone(),
            Err(e) => return wit(Err(e)),
        };
        // A value that does not open (altered, moved from another row) traps
        // the call: the cause is logged, never the value.
        let conn = self.conn().await?;
        wit(keel_core::sealing::plugin_secret(conn, &sealer, &tenant, &plugin, &name).await)
    }
}

impl log::Host for State {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let message: String = message.chars().take(4096).collect();
        let (tenant, plugin, request) = (
            self.tenant().as_str(),
            self.namespace(),
            self.request_id.as_str(),
        );
        match level {
            log::Level::Debug => tracing::debug!(%tenant, %plugin, %request, "{message}"),
            log::Level::Info => tracing::info!(%tenant, %plugin, %request, "{message}"),
            log::Level::Warn => tracing::warn!(%tenant, %plugin, %request, "{message}"),
            log::Level::Error => tracing::error!(%tenant, %plugin, %request, "{message}"),
        }
        Ok(())
    }
}
