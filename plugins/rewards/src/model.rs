//! Shared helpers: configuration, time, randomness, page sizes.

use keel_sdk::{Error, Result, config};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct Config {
    pub payout_url: Option<String>,
    pub payout_max_attempts: Option<i64>,
    pub payout_retry_seconds: Option<i64>,
}

pub(crate) fn config() -> Result<Config> {
    config::get()
}

pub(crate) type Time = chrono::DateTime<chrono::Utc>;

pub(crate) fn now() -> Time {
    chrono::Utc::now()
}

pub(crate) fn rfc3339(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn day(t: Time) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub(crate) fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    Ok(u64::from_le_bytes(b))
}

/// A key that sorts by time: microseconds, then randomness.
pub(crate) fn time_key(t: Time) -> Result<String> {
    Ok(format!(
        "{:016x}{:08x}",
        t.timestamp_micros(),
        random_u64()? as u32
    ))
}

pub(crate) fn parse_day(field: &str, s: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Error::invalid(format!("{field}: expected a date YYYY-MM-DD, got {s:?}")))
}

pub(crate) fn page_limit(limit: Option<i64>, default: u32, max: u32) -> Result<u32> {
    match limit {
        None => Ok(default),
        Some(n) if n >= 1 && n <= max as i64 => Ok(n as u32),
        Some(n) => Err(Error::invalid(format!("limit: must be 1..={max}, got {n}"))),
    }
}

/// A person's identifiers as the GraphQL input gives them.
#[derive(Debug, Deserialize)]
pub(crate) struct Identifier {
    pub kind: String,
    pub value: String,
}
