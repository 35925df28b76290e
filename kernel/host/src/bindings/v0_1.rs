//! `keel:plugin@0.1.0`, frozen: adapted to the 0.2 implementation.
//!
//! The interfaces that 0.2.0 left unchanged (`types`, `records`,
//! `counters`, `http`, `log`) are not generated again: bindgen's `with`
//! takes their Rust types and host traits from [`super::v0_2`], and
//! [`add_to_linker`] links the 0.2 implementation under the 0.1.0 instance
//! names (wasmtime checks each function's type structurally when a
//! component is loaded). The interfaces 0.2.0 grew (`persons`, `events`,
//! `config`) get their own 0.1 bindings here and thin adapters that convert
//! the 0.1 values to 0.2, delegate to the 0.2 implementation and convert
//! back. The reserved secret [`CONSUMER_SIGN_IN`] exists only here: 0.2.0
//! has `config.consumer-sign-in` for it.

use wasmtime::component::{HasSelf, Linker};

use super::WitError;
use super::v0_2::keel::plugin as v2;
use crate::capabilities::CONSUMER_SIGN_IN;
use crate::state::State;

wasmtime::component::bindgen!({
    path: "../../schemas/wit/0.1.0",
    world: "keel:plugin/plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "keel:plugin/types@0.1.0": crate::bindings::v0_2::keel::plugin::types,
        "keel:plugin/records@0.1.0": crate::bindings::v0_2::keel::plugin::records,
        "keel:plugin/counters@0.1.0": crate::bindings::v0_2::keel::plugin::counters,
        "keel:plugin/http@0.1.0": crate::bindings::v0_2::keel::plugin::http,
        "keel:plugin/log@0.1.0": crate::bindings::v0_2::keel::plugin::log,
    },
});

use keel::plugin::{config, events, persons};

/// The interfaces shared with 0.2.0 unchanged, by name (see the module
/// docs); a test checks that their WIT did not change.
#[cfg(test)]
pub(crate) const SHARED: &[&str] = &["types", "records", "counters", "http", "log"];

/// The instance name of a 0.1.0 interface.
fn instance(interface: &str) -> String {
    format!("keel:plugin/{interface}@{}", keel_contract::WIT_0_1_0)
}

/// Links the 0.1.0 imports: the shared interfaces' 0.2 implementation under
/// their 0.1.0 names, and the adapters of the others.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    fn get(s: &mut State) -> &mut State {
        s
    }
    // `types` has no functions: its instance only has to exist.
    linker.instance(&instance("types"))?;
    v2::records::add_to_linker_instance::<State, HasSelf<State>>(
        &mut linker.instance(&instance("records"))?,
        get,
    )?;
    v2::counters::add_to_linker_instance::<State, HasSelf<State>>(
        &mut linker.instance(&instance("counters"))?,
        get,
    )?;
    v2::http::add_to_linker_instance::<State, HasSelf<State>>(
        &mut linker.instance(&instance("http"))?,
        get,
    )?;
    v2::log::add_to_linker_instance::<State, HasSelf<State>>(
        &mut linker.instance(&instance("log"))?,
        get,
    )?;
    persons::add_to_linker::<State, HasSelf<State>>(linker, get)?;
    events::add_to_linker::<State, HasSelf<State>>(linker, get)?;
    config::add_to_linker::<State, HasSelf<State>>(linker, get)?;
    Ok(())
}

fn identifier_to_v2(i: persons::Identifier) -> v2::persons::Identifier {
    v2::persons::Identifier {
        kind: i.kind,
        value: i.value,
    }
}

fn person_from_v2(p: v2::persons::Person) -> persons::Person {
    persons::Person {
        id: p.id,
        identifiers: p
            .identifiers
            .into_iter()
            .map(|i| persons::Identifier {
                kind: i.kind,
                value: i.value,
            })
            .collect(),
        attributes: p.attributes,
    }
}

impl persons::Host for State {
    async fn resolve(
        &mut self,
        identifiers: Vec<persons::Identifier>,
    ) -> wasmtime::Result<Result<persons::Person, WitError>> {
        let identifiers = identifiers.into_iter().map(identifier_to_v2).collect();
        Ok(v2::persons::Host::resolve(self, identifiers)
            .await?
            .map(person_from_v2))
    }

    async fn get(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<Option<persons::Person>, WitError>> {
        Ok(v2::persons::Host::get(self, id)
            .await?
            .map(|p| p.map(person_from_v2)))
    }

    async fn set_attributes(
        &mut self,
        id: String,
        patch: String,
    ) -> wasmtime::Result<Result<persons::Person, WitError>> {
        Ok(v2::persons::Host::set_attributes(self, id, patch)
            .await?
            .map(person_from_v2))
    }
}

impl events::Host for State {
    async fn emit(
        &mut self,
        event_type: String,
        person_id: Option<String>,
        payload: String,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        v2::events::Host::emit(self, event_type, person_id, payload, idempotency_key).await
    }
}

impl config::Host for State {
    async fn get(&mut self) -> wasmtime::Result<String> {
        v2::config::Host::get(self).await
    }

    /// 0.1.0 has no `consumer-sign-in`: it reads that fact as the reserved
    /// secret [`CONSUMER_SIGN_IN`], without the `secrets` grant.
    async fn secret(&mut self, name: String) -> wasmtime::Result<Result<Option<String>, WitError>> {
        if name == CONSUMER_SIGN_IN {
            return v2::config::Host::consumer_sign_in(self).await;
        }
        if name.starts_with("keel.") {
            // 0.2 refuses the kernel's names; 0.1 read them as secrets
            // nobody can store.
            if let Err(e) = self.require(crate::manifest::Capability::Secrets) {
                return Ok(Err(e));
            }
            return Ok(Ok(None));
        }
        v2::config::Host::secret(self, name).await
    }
}
