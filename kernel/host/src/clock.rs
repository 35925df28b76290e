//! The wall clock plugins read (`wasi:clocks/wall-clock`, which the SDK's
//! `time::now` and every guest language's clock use).
//!
//! Production plugins read the system's clock. A test harness may give the
//! host a [`SetClock`] instead, so that a plugin's tests can fix "now" (a
//! campaign's last day, a daily limit's midnight) and move it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall clock that reads the system's until it is set, shared by every
/// invocation of the host that holds it.
#[derive(Debug, Clone, Default)]
pub struct SetClock {
    at: Arc<Mutex<Option<Duration>>>,
}

impl SetClock {
    /// Plugins read `at` from now on (the system's clock again with `None`).
    /// A time before 1970 is refused: the WASI clock cannot say it.
    pub fn set(&self, at: Option<SystemTime>) -> Result<(), String> {
        let since = match at {
            Some(t) => Some(
                t.duration_since(UNIX_EPOCH)
                    .map_err(|_| "a fixed clock cannot be set before 1970-01-01".to_owned())?,
            ),
            None => None,
        };
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = since;
        Ok(())
    }

    fn read(&self) -> Option<Duration> {
        *self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl wasmtime_wasi::HostWallClock for SetClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.read().unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::HostWallClock as _;

    #[test]
    fn a_set_clock_reads_what_was_set_and_the_system_clock_after_a_reset() {
        let clock = SetClock::default();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        clock.set(Some(at)).unwrap();
        assert_eq!(clock.clone().now(), Duration::from_secs(1_800_000_000));
        clock.set(None).unwrap();
        let system = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(clock.now().abs_diff(system) < Duration::from_secs(60));
        let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
        assert!(clock.set(Some(before_1970)).unwrap_err().contains("1970"));
    }
}
