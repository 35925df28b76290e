//! The reward strategy engine of Keel's `rewards` plugin, with no I/O, so
//! the plugin (in WebAssembly) and native code share it: targeting
//! [`rules`] (data, validated on save), prize tables with the weighted
//! draw, and campaign simulation ([`prizes`]).
//!
//! ```
//! use keel_rewards_core::rules::{Facts, Rule};
//! let rule = Rule::parse(&serde_json::json!({"all": [{"product": ["WINE-750"]}, {"region": ["CN-GD"]}]})).unwrap();
//! let scan = Facts { sku: "WINE-750".into(), region: Some("CN-GD-SZ".into()), ..Facts::default() };
//! assert!(rule.eval(&scan));
//! ```

pub mod prizes;
pub mod rules;

#[cfg(test)]
mod tests;
