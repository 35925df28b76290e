#![doc = include_str!("../README.md")]

mod bindings;
mod capabilities;
mod engine;
mod error;
pub mod guests;
mod invocation;
pub mod manifest;
pub mod outbox;
pub mod registry;
mod state;

pub use capabilities::CONSUMER_SIGN_IN;
pub use engine::{Host, HostConfig, LoadedComponent};
pub use error::{PluginError, Result};
pub use invocation::{Activation, CallContext, InvocationEvent};
pub use manifest::{Access, Capability, Download, Grants, Manifest, Pages};
pub use registry::{Enabled, Package, Registry, TenantPlugins};

/// The WIT versions (`keel:plugin@…`) this kernel runs plugins for.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];
