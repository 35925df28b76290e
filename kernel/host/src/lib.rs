#![doc = include_str!("../README.md")]

mod bindings;
pub mod calls;
mod capabilities;
pub mod clock;
mod engine;
mod error;
pub mod event_catalog;
mod event_schemas;
pub mod guests;
mod invocation;
pub mod manifest;
pub mod outbox;
pub mod registry;
pub mod schedules;
mod state;
pub mod stubs;
mod warmup;

pub use calls::PluginCall;
pub use capabilities::CONSUMER_SIGN_IN;
pub use engine::{Host, HostConfig, LoadedComponent};
pub use error::{PluginError, Result};
pub use invocation::{Activation, CallContext, CallerRights, InvocationEvent};
pub use manifest::{Access, Capability, Download, Grants, Manifest, Pages};
pub use registry::{Enabled, Package, Registry, TenantPlugins};
pub use schedules::{Scheduler, SchedulerConfig};
pub use warmup::{WarmUp, WarmUpReport};

/// The WIT versions (`keel:plugin@…`) this kernel runs plugins for, oldest
/// first: [`keel_contract::SUPPORTED`].
pub const SUPPORTED_WIT_VERSIONS: &[&str] = keel_contract::SUPPORTED;
