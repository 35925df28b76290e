//! Host bindings of the `keel:plugin` WIT contract, one bindgen module per
//! version ([`v0_1`], [`v0_2`]).
//!
//! [`State`] implements the import traits of the newest version only (in
//! `capabilities/`); an older version's imports are thin adapters that
//! convert its values to the newest types and delegate (see [`v0_1`]). Each
//! version has a linker of its own, so a component gets exactly the imports
//! of the version it was built for. A loaded component's [`GuestPre`] knows
//! its version, and [`Guest`] converts the kernel's call (always in the
//! newest types) into that version's export call: an older guest gets the
//! older call context, without the fields it does not know.
//!
//! The rest of the host names the newest version's types through the
//! re-exports below (`crate::bindings::keel::plugin::…`).

pub(crate) mod v0_1;
pub(crate) mod v0_2;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::state::State;
use crate::{PluginError, Result};

pub(crate) use v0_2::exports::keel::plugin::handler::{CallContext, Event};
pub(crate) use v0_2::keel;
pub(crate) use v0_2::keel::plugin::types::{Error as WitError, Refusal};

/// A version of the contract this kernel runs plugins for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contract {
    V0_1,
    V0_2,
}

impl Contract {
    /// Every supported version, oldest first (as
    /// [`keel_contract::SUPPORTED`]).
    pub(crate) const ALL: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

    /// The version named `version` (`0.2.0`), if this kernel supports it.
    pub(crate) fn parse(version: &str) -> Option<Contract> {
        Contract::ALL.into_iter().find(|c| c.as_str() == version)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => keel_contract::WIT_0_1_0,
            Contract::V0_2 => keel_contract::WIT_0_2_0,
        }
    }
}

/// One linker per contract version, each with WASI (nothing ambient) and
/// that version's `keel:plugin` imports.
pub(crate) struct Linkers {
    v0_1: Linker<State>,
    v0_2: Linker<State>,
}

impl Linkers {
    pub(crate) fn new(engine: &wasmtime::Engine) -> wasmtime::Result<Linkers> {
        let wasi = |engine| -> wasmtime::Result<Linker<State>> {
            let mut linker = Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            Ok(linker)
        };
        let mut v0_1 = wasi(engine)?;
        v0_1::add_to_linker(&mut v0_1)?;
        let mut v0_2 = wasi(engine)?;
        v0_2::Plugin::add_to_linker::<State, HasSelf<State>>(&mut v0_2, |s| s)?;
        Ok(Linkers { v0_1, v0_2 })
    }

    /// Resolves the component's imports with its version's linker and
    /// checks that it exports that version's handler.
    pub(crate) fn pre(&self, contract: Contract, component: &Component) -> Result<GuestPre> {
        let linker = match contract {
            Contract::V0_1 => &self.v0_1,
            Contract::V0_2 => &self.v0_2,
        };
        let pre = linker.instantiate_pre(component).map_err(|e| {
            PluginError::Incompatible(format!(
                "the component needs imports Keel does not provide for keel:plugin@{}: {e}",
                contract.as_str()
            ))
        })?;
        let not_a_plugin = |e: wasmtime::Error| {
            PluginError::Incompatible(format!(
                "the component is not a keel:plugin@{} plugin: {e}",
                contract.as_str()
            ))
        };
        Ok(match contract {
            Contract::V0_1 => GuestPre::V0_1(v0_1::PluginPre::new(pre).map_err(not_a_plugin)?),
            Contract::V0_2 => GuestPre::V0_2(v0_2::PluginPre::new(pre).map_err(not_a_plugin)?),
        })
    }
}

/// A component ready to instantiate, with the version it was built for.
pub(crate) enum GuestPre {
    V0_1(v0_1::PluginPre<State>),
    V0_2(v0_2::PluginPre<State>),
}

impl GuestPre {
    pub(crate) async fn instantiate_async(
        &self,
        store: &mut Store<State>,
    ) -> wasmtime::Result<Guest> {
        Ok(match self {
            GuestPre::V0_1(pre) => Guest::V0_1(pre.instantiate_async(store).await?),
            GuestPre::V0_2(pre) => Guest::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance of a plugin, of whichever version.
pub(crate) enum Guest {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
}

/// What a guest call returns: a trap, or the plugin's own result.
pub(crate) type GuestResult<T> = wasmtime::Result<std::result::Result<T, WitError>>;

impl Guest {
    /// `handler.handle-operation`; a 0.1 guest gets the 0.1 call context
    /// (no `scope`, `calling-plugin` or `schedule`).
    pub(crate) async fn handle_operation(
        &self,
        store: &mut Store<State>,
        name: &str,
        input: String,
        ctx: &CallContext,
    ) -> GuestResult<String> {
        match self {
            Guest::V0_1(p) => {
                let ctx = v0_1::exports::keel::plugin::handler::CallContext {
                    caller: ctx.caller.clone(),
                    client_address: ctx.client_address.clone(),
                    request_id: ctx.request_id.clone(),
                };
                p.keel_plugin_handler()
                    .call_handle_operation(store, name, &input, &ctx)
                    .await
            }
            Guest::V0_2(p) => {
                p.keel_plugin_handler()
                    .call_handle_operation(store, name, &input, ctx)
                    .await
            }
        }
    }

    /// `handler.handle-event`.
    pub(crate) async fn handle_event(
        &self,
        store: &mut Store<State>,
        event: &Event,
    ) -> GuestResult<()> {
        match self {
            Guest::V0_1(p) => {
                let event = v0_1::exports::keel::plugin::handler::Event {
                    id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    occurred_at: event.occurred_at.clone(),
                    person_id: event.person_id.clone(),
                    payload: event.payload.clone(),
                    producer: event.producer.clone(),
                };
                p.keel_plugin_handler()
                    .call_handle_event(store, &event)
                    .await
            }
            Guest::V0_2(p) => {
                p.keel_plugin_handler()
                    .call_handle_event(store, event)
                    .await
            }
        }
    }

    /// `handler.on-enable`.
    pub(crate) async fn on_enable(
        &self,
        store: &mut Store<State>,
        config: String,
    ) -> GuestResult<()> {
        match self {
            Guest::V0_1(p) => p.keel_plugin_handler().call_on_enable(store, &config).await,
            Guest::V0_2(p) => p.keel_plugin_handler().call_on_enable(store, &config).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_are_the_supported_versions_in_order() {
        let names: Vec<&str> = Contract::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, keel_contract::SUPPORTED);
        assert_eq!(Contract::parse("0.3.0"), None);
        assert_eq!(
            Contract::parse(keel_contract::CURRENT),
            Some(Contract::V0_2)
        );
    }

    /// `v0_1` takes these interfaces from `v0_2` unchanged: their WIT must
    /// be the same but for the package line (and, for `types`, only grow).
    #[test]
    fn the_interfaces_shared_with_0_1_are_unchanged_in_0_2() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/wit");
        let body = |version: &str, interface: &str| {
            let text = std::fs::read_to_string(root.join(version).join(format!("{interface}.wit")))
                .unwrap_or_else(|e| panic!("reading {version}/{interface}.wit: {e}"));
            text.lines()
                .filter(|l| !l.starts_with("package "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for interface in v0_1::SHARED {
            let (old, new) = (body("0.1.0", interface), body("0.2.0", interface));
            if *interface == "types" {
                // 0.2.0 adds types; every 0.1.0 line is still there, in order.
                let mut rest = new.iter();
                for line in &old {
                    assert!(
                        rest.any(|l| l == line),
                        "types.wit: 0.2.0 lost or reordered {line:?}"
                    );
                }
            } else {
                assert_eq!(old, new, "{interface}.wit differs between 0.1.0 and 0.2.0");
            }
        }
    }
}
