//! Time as plugins use it: now, RFC 3339 text, calendar days, and keys
//! that sort by time.
//!
//! The clock is the host's (WASI wall clock); the time zone of "today" is
//! the tenant's, from [`crate::config::time_zone`], where a plugin needs it.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::{Error, Result};

/// An instant, in UTC.
pub type Time = DateTime<Utc>;

/// Now, from the host's clock.
pub fn now() -> Time {
    Utc::now()
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-29T08:00:00.000000Z`:
/// fixed width, so the text sorts like the instant.
pub fn rfc3339(t: Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses RFC 3339 text that a caller sent, naming `field` when it is not.
pub fn parse_rfc3339(field: &str, s: &str) -> Result<Time> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Error::invalid(format!("{field}: expected an RFC 3339 time, got {s:?}")))
}

/// The UTC calendar day `YYYY-MM-DD` of an instant.
pub fn day(t: Time) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// A calendar day `YYYY-MM-DD`, checked; the error names `field`.
pub fn parse_day(field: &str, s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Error::invalid(format!("{field}: expected a date YYYY-MM-DD, got {s:?}")))
}

/// Random bits in a [`time_key`]: enough that a key cannot be guessed, even
/// knowing when it was made.
pub const TIME_KEY_RANDOM_BITS: u32 = 128;

/// A record key that sorts by time and cannot be guessed: microseconds since
/// 1970 (16 hex digits), then 128 bits of the host's secure randomness (32
/// hex digits) — 48 lowercase hex digits in all.
pub fn time_key(t: Time) -> Result<String> {
    let random: [u8; 16] = crate::random::bytes()?;
    Ok(format!(
        "{:016x}{}",
        t.timestamp_micros(),
        crate::random::hex(&random)
    ))
}

/// True for text shaped like a [`time_key`] (48 lowercase hex digits), so a
/// key a caller sends can be checked before it is looked up.
pub fn is_time_key(s: &str) -> bool {
    s.len() == 48 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_by_time_and_differ() {
        let t = now();
        let a = time_key(t).unwrap();
        let b = time_key(t).unwrap();
        let later = time_key(t + chrono::Duration::microseconds(1)).unwrap();
        assert!(is_time_key(&a) && is_time_key(&later), "{a}");
        assert_ne!(a, b);
        assert!(a[..16] < later[..16]);
    }

    #[test]
    fn days_and_times_are_checked() {
        assert!(parse_day("day", "2026-11-29").is_ok());
        let e = parse_day("day", "2026-13-01").unwrap_err();
        assert!(e.to_string().contains("day:"), "{e}");
        assert!(parse_rfc3339("at", "yesterday").is_err());
        let t = parse_rfc3339("at", "2026-11-29T08:00:00+08:00").unwrap();
        assert_eq!(rfc3339(t), "2026-11-29T00:00:00.000000Z");
        assert_eq!(day(t), "2026-11-29");
    }
}
