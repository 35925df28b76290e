//! The arithmetic of Keel's `cdp` plugin, with no I/O, so the plugin (in
//! WebAssembly) and native tests and benchmarks share it:
//!
//! - [`traits`] — computed-trait definitions (`scans_30d`, `spend_total`,
//!   `last_store`), validated on save with the place of each mistake;
//! - [`segments`] — segment rules over traits, tags, attributes, tiers and
//!   consent;
//! - [`tiers`] — the member-tier ladder: upgrade at once, downgrade when a
//!   period ends;
//! - [`aggregate`] — what a trait keeps per person: partial aggregates
//!   that combine in any order, so out-of-order events, late events and a
//!   merge of two persons all give the value a recompute from the log
//!   gives.
//!
//! ```
//! use keel_cdp_core::traits::{parse_all, Observed};
//! use keel_cdp_core::aggregate::TraitState;
//! let defs = parse_all(&serde_json::json!([
//!     {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"}
//! ])).unwrap();
//! let mut state = TraitState::default();
//! let e = Observed { event_type: "order.paid", id: "e1", at_micros: 0,
//!                    properties: &serde_json::json!({"total": 12.5}) };
//! if let Some(part) = defs[0].observe(&e) { state.add(&defs[0], e.day(), part); }
//! assert_eq!(state.value(&defs[0], 0), serde_json::json!(12.5));
//! ```

pub mod aggregate;
pub mod segments;
pub mod tiers;
pub mod traits;

#[cfg(test)]
mod segment_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;
