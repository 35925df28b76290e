//! `keel:plugin@0.2.0`, the newest contract. [`State`](crate::state::State)
//! implements its import traits directly (in `capabilities/`); every older
//! version is adapted to these.

wasmtime::component::bindgen!({
    path: "../../schemas/wit/0.2.0",
    world: "keel:plugin/plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});
