//! Time as the kernel stores it: microseconds since the Unix epoch, UTC.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A point in time, stored as microseconds since the Unix epoch (UTC) so that
/// both backends sort and compare it as a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// As a `chrono` UTC date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// From a `chrono` UTC date-time.
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }
}

/// The current time.
pub fn now() -> Timestamp {
    Timestamp(Utc::now().timestamp_micros())
}

/// `d` in microseconds, the unit of a [`Timestamp`] (saturating).
pub(crate) fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}
