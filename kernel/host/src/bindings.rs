//! Host bindings of the `keel:plugin` WIT contract.

wasmtime::component::bindgen!({
    path: "../../schemas/wit/0.1.0",
    world: "keel:plugin/plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub(crate) use keel::plugin::types::{Error as WitError, Refusal};
