//! `keel:plugin/crypto`: SHA-256 and HMAC-SHA-256 of many messages in
//! native code (CPU SHA instructions where the machine has them). Pure
//! computation, so no grant; the limits bound one call's work (at most
//! 65,536 messages, about 20 ms) so that a call cannot hold its worker
//! thread for long.

use hmac::{Hmac, Mac};
use sha2::digest::{FixedOutput, Update};
use sha2::{Digest, Sha256};

use crate::bindings::WitError;
use crate::bindings::keel::plugin::crypto::Host;
use crate::state::State;

/// Bytes of `prefix` or `key`.
const MAX_PREFIX: usize = 1024;
/// Bytes of all messages of one call.
const MAX_MESSAGES: usize = 1 << 20;
/// Messages of one call.
const MAX_COUNT: usize = 65_536;
/// Bytes of one message.
const MAX_MESSAGE_LEN: u32 = 1024;

impl Host for State {
    async fn sha256_each(
        &mut self,
        prefix: Vec<u8>,
        messages: Vec<u8>,
        message_len: u32,
        digest_len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, WitError>> {
        let shape = Shape::check(None, &prefix, &messages, message_len, digest_len);
        Ok(shape.map(|shape| shape.each(Sha256::new_with_prefix(&prefix), &messages)))
    }

    async fn hmac_sha256_each(
        &mut self,
        key: Vec<u8>,
        prefix: Vec<u8>,
        messages: Vec<u8>,
        message_len: u32,
        digest_len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, WitError>> {
        let shape = Shape::check(Some(&key), &prefix, &messages, message_len, digest_len);
        Ok(shape.map(|shape| {
            let mut base = <Hmac<Sha256> as Mac>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            Mac::update(&mut base, &prefix);
            shape.each(base, &messages)
        }))
    }
}

/// A call's messages, checked against the limits.
struct Shape {
    message_len: usize,
    digest_len: usize,
}

impl Shape {
    fn check(
        key: Option<&[u8]>,
        prefix: &[u8],
        messages: &[u8],
        message_len: u32,
        digest_len: u32,
    ) -> Result<Shape, WitError> {
        for (name, bytes) in [("key", key.unwrap_or_default()), ("prefix", prefix)] {
            if bytes.len() > MAX_PREFIX {
                return Err(invalid(format!(
                    "{name}: at most {MAX_PREFIX} bytes, got {}",
                    bytes.len()
                )));
            }
        }
        if !(1..=MAX_MESSAGE_LEN).contains(&message_len) {
            return Err(invalid(format!(
                "message-len: 1 to {MAX_MESSAGE_LEN} bytes, got {message_len}"
            )));
        }
        if !(1..=32).contains(&digest_len) {
            return Err(invalid(format!(
                "digest-len: 1 to 32 bytes, got {digest_len}"
            )));
        }
        if messages.len() > MAX_MESSAGES {
            return Err(invalid(format!(
                "messages: at most {MAX_MESSAGES} bytes, got {}",
                messages.len()
            )));
        }
        let message_len = message_len as usize;
        if !messages.len().is_multiple_of(message_len) {
            return Err(invalid(format!(
                "messages: {} bytes is not a whole number of {message_len}-byte messages",
                messages.len()
            )));
        }
        if messages.len() / message_len > MAX_COUNT {
            return Err(invalid(format!(
                "messages: at most {MAX_COUNT} messages, got {}",
                messages.len() / message_len
            )));
        }
        Ok(Shape {
            message_len,
            digest_len: digest_len as usize,
        })
    }

    /// The first `digest_len` bytes of the digest of each message, hashed
    /// after what `base` has already taken in (the prefix), concatenated.
    fn each<H: Update + FixedOutput + Clone>(&self, base: H, messages: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(messages.len() / self.message_len * self.digest_len);
        for m in messages.chunks_exact(self.message_len) {
            let mut h = base.clone();
            Update::update(&mut h, m);
            out.extend_from_slice(&h.finalize_fixed()[..self.digest_len]);
        }
        out
    }
}

fn invalid(message: String) -> WitError {
    WitError::InvalidInput(message)
}
