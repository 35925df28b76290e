//! The versions of the `keel:plugin` WIT contract (`schemas/wit/<version>`),
//! one constant each.
//!
//! The host, the guest SDK and `keel plugin new` name a version only through
//! these constants, so that moving to a new contract is one edit here plus
//! the bindings of the new version. A released version's WIT is frozen:
//! `schemas/wit/0.1.0` never changes once plugins are built against it.

/// `keel:plugin@0.1.0`: records, events, persons, counters, config and
/// secrets, HTTP, log. Frozen; kernels keep running plugins built for it.
pub const WIT_0_1_0: &str = "0.1.0";

/// `keel:plugin@0.2.0`: 0.1.0 plus the kernel's product catalogue
/// (`catalog`), organisation tree (`org`), plugin-to-plugin calls
/// (`plugins`), batched `persons.resolve-batch` and `events.emit-batch`,
/// `config.time-zone` and `config.consumer-sign-in`, native hashing of many
/// messages (`crypto`), and the call context's
/// `scope`, `calling-plugin` and `schedule`.
pub const WIT_0_2_0: &str = "0.2.0";

/// The version the SDK builds plugins for and `keel plugin new` writes into
/// a new plugin's manifest: the newest one.
pub const CURRENT: &str = WIT_0_2_0;

/// Every version this kernel runs plugins for, oldest first.
pub const SUPPORTED: &[&str] = &[WIT_0_1_0, WIT_0_2_0];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_version_is_the_newest_supported_one() {
        assert_eq!(SUPPORTED.last(), Some(&CURRENT));
    }
}
