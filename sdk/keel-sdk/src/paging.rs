//! Page sizes a caller asks for.

use crate::{Error, Result};

/// Checks a page size a caller sent as `limit`: `None` is `default`,
/// otherwise it must lie in `1..=max`.
pub fn limit(limit: Option<i64>, default: u32, max: u32) -> Result<u32> {
    match limit {
        None => Ok(default),
        Some(n) if n >= 1 && n <= i64::from(max) => Ok(n as u32),
        Some(n) => Err(Error::invalid(format!("limit: must be 1..={max}, got {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert_eq!(limit(None, 50, 500).unwrap(), 50);
        assert_eq!(limit(Some(500), 50, 500).unwrap(), 500);
        for bad in [0, -1, 501, i64::MAX] {
            let e = limit(Some(bad), 50, 500).unwrap_err();
            assert!(e.to_string().contains("limit: must be 1..=500"), "{e}");
        }
    }
}
