//! Write Keel plugins in Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` against the
//! `keel:plugin` WIT contract. This crate hides the generated bindings
//! behind typed functions — one module per capability — and one macro,
//! [`plugin!`], that routes the kernel's calls to your functions:
//!
//! ```no_run
//! use keel_sdk::{Context, Result, plugin};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct GreetInput { name: String }
//! #[derive(Serialize)]
//! struct Greeting { text: String }
//!
//! fn greet(_ctx: &Context, input: GreetInput) -> Result<Greeting> {
//!     Ok(Greeting { text: format!("hello, {}", input.name) })
//! }
//!
//! plugin! {
//!     operations: { "greet" => greet },
//! }
//! # fn main() {}
//! ```
//!
//! Operations take and return serde types: the input is the GraphQL field's
//! arguments as a JSON object, the output is the field's value. The tenant
//! is never an argument: every capability acts in the tenant of the call.
//! Writes and emitted events commit together when the operation returns
//! `Ok`, and vanish when it returns `Err` or traps.
//!
//! The SDK builds plugins for the current contract, `keel:plugin@0.2.0`
//! ([`WIT_VERSION`]; write it as `wit` in `keel-plugin.toml`). Over 0.1.0
//! it adds the kernel's product catalogue ([`catalog`]), organisation tree
//! ([`org`]), calls to other plugins ([`plugins::call`]), batches
//! ([`persons::resolve_batch`], [`events::emit_batch`]),
//! [`config::time_zone`], native hashing of many messages ([`crypto`]),
//! and the call context's [`Context::scope`] (with
//! [`Context::covers`] and [`Context::require_within`] to enforce it; see
//! [`scope`]), [`Context::calling_plugin`] and [`Context::schedule`]. Kernels keep
//! running plugins built for 0.1.0 with an older SDK.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../schemas/wit/0.2.0",
        world: "keel:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "__export_keel_plugin",
        default_bindings_module: "keel_sdk::bindings",
    });
}

pub mod capabilities;
pub mod catalog;
pub mod crypto;
mod error;
pub mod org;
pub mod paging;
pub mod plugins;
pub mod random;
pub mod scope;
pub mod time;

pub use capabilities::{config, counters, events, http, log, persons, records};
pub use error::{Error, Result};
pub use serde_json::{Value, json};

use bindings::exports::keel::plugin::handler as wit_handler;
use bindings::keel::plugin::types as wit;

/// The WIT version this SDK builds plugins for: `wit` in their
/// `keel-plugin.toml` ([`keel_contract::CURRENT`]).
pub const WIT_VERSION: &str = keel_contract::CURRENT;

/// Who is calling an operation.
#[derive(Debug, Clone)]
pub struct Context {
    /// The caller's label: `key:…` or `operator:…` for an API key or an
    /// operator; `consumer:{kind}:{value}` for a public operation called by
    /// a signed-in consumer (e.g. `consumer:wechat_openid:o-123`, verified by
    /// the kernel); `None` for an anonymous public call.
    pub caller: Option<String>,
    /// The client's address, for public operations.
    pub client_address: Option<String>,
    /// The request id, for correlating logs.
    pub request_id: String,
    scope: Option<String>,
    calling_plugin: Option<String>,
    schedule: Option<String>,
}

impl Context {
    /// The org node (its id) the caller is limited to — a scoped operator
    /// or key — or `None` for the whole tenant. The kernel enforces it on
    /// its own data; a plugin enforces it on its own, with
    /// [`covers`](Self::covers) and [`require_within`](Self::require_within)
    /// (the [`scope`](crate::scope) module).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The plugin calling this operation through [`plugins::call`], if any;
    /// [`caller`](Self::caller) is then the original caller.
    pub fn calling_plugin(&self) -> Option<&str> {
        self.calling_plugin.as_deref()
    }

    /// The schedule that started this call, if any (then `caller` is `None`).
    pub fn schedule(&self) -> Option<&str> {
        self.schedule.as_deref()
    }

    /// The signed-in consumer of a public call: `(kind, value)` of the
    /// identifier the kernel verified (e.g. `("wechat_openid", "o-123")`).
    pub fn consumer(&self) -> Option<(&str, &str)> {
        self.caller
            .as_deref()?
            .strip_prefix("consumer:")?
            .split_once(':')
    }

    /// True for a public call: anonymous, or by a signed-in consumer.
    pub fn is_public(&self) -> bool {
        self.caller.is_none() || self.consumer().is_some()
    }
}

/// An event delivered to a subscriber.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    /// RFC 3339.
    pub occurred_at: String,
    pub person_id: Option<String>,
    pub payload: Value,
    pub producer: String,
}

#[doc(hidden)]
pub fn __run_operation<I, O>(
    context: wit_handler::CallContext,
    input: &str,
    f: fn(&Context, I) -> Result<O>,
) -> std::result::Result<String, wit::Error>
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
{
    let ctx = Context {
        caller: context.caller,
        client_address: context.client_address,
        request_id: context.request_id,
        scope: context.scope,
        calling_plugin: context.calling_plugin,
        schedule: context.schedule,
    };
    let input: I =
        serde_json::from_str(input).map_err(|e| wit::Error::InvalidInput(format!("input: {e}")))?;
    let out = f(&ctx, input).map_err(wit::Error::from)?;
    serde_json::to_string(&out).map_err(|e| wit::Error::Internal(format!("output: {e}")))
}

#[doc(hidden)]
pub fn __run_event(
    event: wit_handler::Event,
    f: fn(Event) -> Result<()>,
) -> std::result::Result<(), wit::Error> {
    let payload = serde_json::from_str(&event.payload)
        .map_err(|e| wit::Error::InvalidInput(format!("payload: {e}")))?;
    f(Event {
        id: event.id,
        event_type: event.event_type,
        occurred_at: event.occurred_at,
        person_id: event.person_id,
        payload,
        producer: event.producer,
    })
    .map_err(wit::Error::from)
}

#[doc(hidden)]
pub fn __run_enable<C: serde::de::DeserializeOwned>(
    config: &str,
    f: fn(C) -> Result<()>,
) -> std::result::Result<(), wit::Error> {
    let config: C = serde_json::from_str(config)
        .map_err(|e| wit::Error::InvalidInput(format!("config: {e}")))?;
    f(config).map_err(wit::Error::from)
}

/// Exports a plugin: routes operations by name to functions
/// `fn(&Context, Input) -> Result<Output>`, events by type to
/// `fn(Event) -> Result<()>`, and enabling to `fn(Config) -> Result<()>`.
///
/// ```no_run
/// # use keel_sdk::{Context, Event, Result, Value};
/// # fn award(_: &Context, _: Value) -> Result<Value> { Ok(Value::Null) }
/// # fn member(_: &Context, _: Value) -> Result<Value> { Ok(Value::Null) }
/// # fn on_scan(_: Event) -> Result<()> { Ok(()) }
/// # fn check_config(_: Value) -> Result<()> { Ok(()) }
/// keel_sdk::plugin! {
///     operations: { "award" => award, "member" => member },
///     events: { "code.scanned" => on_scan },
///     on_enable: check_config,
/// }
/// # fn main() {}
/// ```
/// An operation the plugin does not know is answered with
/// [`Error::NotFound`]; an event type without a handler is acknowledged.
#[macro_export]
macro_rules! plugin {
    (
        operations: { $($op:literal => $f:path),* $(,)? }
        $(, events: { $($ev:literal => $h:path),* $(,)? })?
        $(, on_enable: $enable:path)?
        $(,)?
    ) => {
        #[allow(dead_code)]
        struct __KeelPlugin;

        impl $crate::bindings::exports::keel::plugin::handler::Guest for __KeelPlugin {
            fn handle_operation(
                name: ::std::string::String,
                input: ::std::string::String,
                context: $crate::bindings::exports::keel::plugin::handler::CallContext,
            ) -> ::std::result::Result<::std::string::String, $crate::bindings::keel::plugin::types::Error> {
                match name.as_str() {
                    $( $op => $crate::__run_operation(context, &input, $f), )*
                    other => ::std::result::Result::Err(
                        $crate::Error::NotFound(::std::format!("no operation {other:?}")).into(),
                    ),
                }
            }

            fn handle_event(
                event: $crate::bindings::exports::keel::plugin::handler::Event,
            ) -> ::std::result::Result<(), $crate::bindings::keel::plugin::types::Error> {
                match event.event_type.as_str() {
                    $($( $ev => $crate::__run_event(event, $h), )*)?
                    _ => ::std::result::Result::Ok(()),
                }
            }

            #[allow(unused_variables, unreachable_code)]
            fn on_enable(
                config: ::std::string::String,
            ) -> ::std::result::Result<(), $crate::bindings::keel::plugin::types::Error> {
                $( return $crate::__run_enable(&config, $enable); )?
                ::std::result::Result::Ok(())
            }
        }

        // Exported only in the component: a native build (for the plugin's
        // own `cargo test`) links no WIT exports.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_keel_plugin!(__KeelPlugin with_types_in $crate::bindings);

        /// Keeps the handlers reachable in a native build.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __keel_plugin_handlers() {
            use $crate::bindings::exports::keel::plugin::handler::Guest as _;
            let _ = __KeelPlugin::handle_operation;
            let _ = __KeelPlugin::handle_event;
            let _ = __KeelPlugin::on_enable;
        }
    };
}
