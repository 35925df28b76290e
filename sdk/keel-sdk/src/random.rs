//! Secure randomness from the host (WASI `random`), and hex text.

use crate::{Error, Result};

/// `N` bytes of the host's secure randomness.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    Ok(b)
}

/// A random `u64` (e.g. a draw), from the host's secure randomness.
pub fn u64() -> Result<u64> {
    Ok(u64::from_le_bytes(bytes()?))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Bytes from hex text of exactly `N` bytes (either case); `None` otherwise.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_the_wrong_length() {
        let b: [u8; 4] = [0, 15, 160, 255];
        assert_eq!(hex(&b), "000fa0ff");
        assert_eq!(from_hex::<4>("000FA0ff"), Some(b));
        assert_eq!(from_hex::<4>("000fa0f"), None);
        assert_eq!(from_hex::<4>("000fa0fg"), None);
        assert_eq!(from_hex::<2>("ééé"), None);
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(bytes::<16>().unwrap(), bytes::<16>().unwrap());
    }
}
