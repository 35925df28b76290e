//! The host side of each `keel:plugin` import. Every function checks the
//! grant first, acts in the invocation's tenant and transaction, and maps
//! kernel errors to WIT errors; a database failure traps the call (and so
//! rolls it back).

mod batch;
mod catalog;
mod counters;
mod crypto;
mod events;
mod http;
mod org;
mod persons;
mod plugins;
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

/// The reserved secret name under which a plugin built for contract 0.1
/// reads how the tenant's consumers sign in: the identifier kind of its
/// consumer sessions (`wechat_openid`), or none when it has no sign-in, so
/// that public calls are anonymous. Contract 0.2 asks
/// `config.consumer-sign-in` instead. Names under `keel.` are the kernel's:
/// `setPluginSecret` refuses them, and a 0.2 `config.secret` of one is
/// invalid input.
pub const CONSUMER_SIGN_IN: &str = "keel.consumer_sign_in";

impl types::Host for State {}

impl config::Host for State {
    async fn get(&mut self) -> wasmtime::Result<String> {
        Ok(self.activation.config.to_string())
    }

    async fn secret(&mut self, name: String) -> wasmtime::Result<Result<Option<String>, WitError>> {
        // 0.1's reserved names are answered by its adapter (bindings::v0_1).
        if name.starts_with("keel.") {
            return Ok(Err(WitError::InvalidInput(format!(
                "name: {name:?}: names under `keel.` are the kernel's; ask config.consumer-sign-in for how consumers sign in"
            ))));
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
        let mut conn = self.read().await?;
        wit(keel_core::sealing::plugin_secret(&mut conn, &sealer, &tenant, &plugin, &name).await)
    }

    /// The tenant's IANA time zone (`setTenantTimeZone`), a fact of the
    /// kernel readable without any grant.
    async fn time_zone(&mut self) -> wasmtime::Result<String> {
        let tenant = self.tenant().clone();
        let mut conn = self.read().await?;
        Ok(keel_core::tenants::time_zone(&mut *conn, &tenant).await?)
    }

    /// A fact of the kernel, readable without any grant.
    async fn consumer_sign_in(&mut self) -> wasmtime::Result<Result<Option<String>, WitError>> {
        let tenant = self.tenant().clone();
        let mut conn = self.read().await?;
        wit(keel_core::consumers::wechat_app(&mut conn, &tenant)
            .await
            .map(|app| app.map(|_| keel_core::consumers::WECHAT_OPENID.to_owned())))
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
