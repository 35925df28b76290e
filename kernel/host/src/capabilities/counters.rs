//! `keel:plugin/counters`: counters with limits in the plugin's namespace.

use keel_core::counters::{self, Add, Outcome};

use super::wit;
use crate::bindings::WitError;
use crate::bindings::keel::plugin::counters::{self as w, Host};
use crate::manifest::Capability;
use crate::state::State;

impl Host for State {
    async fn add(
        &mut self,
        key: String,
        delta: i64,
        min: i64,
        max: i64,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<w::Outcome, WitError>> {
        if let Err(e) = self.require(Capability::Counters) {
            return Ok(Err(e));
        }
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        // Plugins may pass i64::MIN/MAX for "no bound"; the kernel's widest
        // range is ±2^62.
        let add = Add {
            namespace: &ns,
            key: &key,
            delta,
            min: min.max(-counters::BOUND),
            max: max.min(counters::BOUND),
            idempotency_key: idempotency_key.as_deref(),
        };
        Ok(
            wit(counters::add(self.conn().await?, &tenant, add).await)?.map(|o| match o {
                Outcome::Applied(v) => w::Outcome::Applied(v),
                Outcome::LimitReached(v) => w::Outcome::LimitReached(v),
            }),
        )
    }

    async fn get(&mut self, key: String) -> wasmtime::Result<Result<i64, WitError>> {
        if let Err(e) = self.require(Capability::Counters) {
            return Ok(Err(e));
        }
        let (tenant, ns) = (self.tenant().clone(), self.namespace().to_owned());
        if key.is_empty() || key.len() > 200 {
            return Ok(Err(WitError::InvalidInput(
                "key: must be 1-200 characters".into(),
            )));
        }
        wit(counters::current(&mut *self.read().await?, &tenant, &ns, &key).await)
    }
}
