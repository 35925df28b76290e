//! Shared helpers: configuration, time, randomness, page sizes.

use keel_sdk::{Result, config};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct Config {
    pub payout_url: Option<String>,
    pub payout_max_attempts: Option<i64>,
    pub payout_retry_seconds: Option<i64>,
    /// Refuse persons on the CDP's blocklist (asked on every claim).
    pub honour_blocklist: Option<bool>,
}

pub(crate) fn config() -> Result<Config> {
    config::get()
}

// Time, randomness and page sizes are the SDK's (`keel_sdk::time`, …).
// Keys from `time_key` carry 128 random bits: an award id cannot be guessed.
pub(crate) use keel_sdk::paging::limit as page_limit;
pub(crate) use keel_sdk::random::u64 as random_u64;
pub(crate) use keel_sdk::time::{Time, day, now, parse_day, rfc3339, time_key};

/// A person's identifiers as the GraphQL input gives them.
#[derive(Debug, Deserialize)]
pub(crate) struct Identifier {
    pub kind: String,
    pub value: String,
}
