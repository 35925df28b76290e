//! Hashes of many messages at once, computed by the kernel in native code.
//!
//! WebAssembly has no SHA instructions, so SHA-256 inside a plugin runs
//! several times slower than the kernel's. When a plugin derives many
//! values (a print file's codes, a batch of signatures), it hands the
//! kernel all messages of one step at once: one call hashes up to 65,536
//! messages of one length that share a prefix.
//!
//! ```no_run
//! # fn f() -> keel_sdk::Result<()> {
//! // The first 8 bytes of SHA-256(key ‖ round ‖ value) of three values.
//! let values: Vec<u8> = [1u64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
//! let digests = keel_sdk::crypto::sha256_each(b"key-and-round", &values, 8, 8)?;
//! assert_eq!(digests.len(), 3 * 8);
//! # Ok(())
//! # }
//! ```
//!
//! Limits (an invalid-input error past them): `prefix` and `key` at most
//! 1,024 bytes; `messages` at most 1 MiB and 65,536 messages, a whole
//! number of `message_len` (1 to 1,024) bytes; `digest_len` 1 to 32.

use crate::Result;
use crate::bindings::keel::plugin::crypto as wit;

/// Most messages of one call.
pub const MAX_MESSAGES: usize = 65_536;

/// For each `message_len`-byte message of `messages` (their
/// concatenation), the first `digest_len` bytes of SHA-256(`prefix` ‖
/// message), concatenated in order.
pub fn sha256_each(
    prefix: &[u8],
    messages: &[u8],
    message_len: u32,
    digest_len: u32,
) -> Result<Vec<u8>> {
    Ok(wit::sha256_each(prefix, messages, message_len, digest_len)?)
}

/// The same with HMAC-SHA-256(`key`, `prefix` ‖ message) (RFC 2104).
pub fn hmac_sha256_each(
    key: &[u8],
    prefix: &[u8],
    messages: &[u8],
    message_len: u32,
    digest_len: u32,
) -> Result<Vec<u8>> {
    Ok(wit::hmac_sha256_each(
        key,
        prefix,
        messages,
        message_len,
        digest_len,
    )?)
}
