//! Codes derived many at a time: the print file's path.
//!
//! Each code costs six SHA-256 compressions (four Feistel rounds and the
//! HMAC tag). One code at a time, each round waits for the one before; a
//! run of serials instead asks for every code's round `i` in one call, so
//! that the hashing can be done by something faster than this crate's own
//! code. In a plugin that is the kernel's native hashing (`keel:plugin`
//! `crypto`, CPU SHA instructions that WebAssembly lacks), behind the
//! [`Hashes`] trait; natively it is [`Software`].
//!
//! The codes are byte for byte those of [`BatchCodec::code`] and
//! [`BatchCodec::gs1_serial`] (see the golden vectors in the tests).

use std::convert::Infallible;

use hmac::{Hmac, Mac};
use sha2::digest::{FixedOutput, Update};
use sha2::{Digest, Sha256};

use crate::alphabet::{BASE62, PRINT_SAFE};
use crate::{
    BatchCodec, CODE_LEN, GS1_BODY_LEN, GS1_SERIAL_LEN, GS1_TAG_BITS, ID_LEN, Key, MAX_SERIAL,
    TAG_BITS, TAG_LEN,
};

/// A source of SHA-256 and HMAC-SHA-256 over many equal-length messages
/// sharing a prefix.
pub trait Hashes {
    type Error;

    /// For each `message_len`-byte message of `messages` (their
    /// concatenation), the first `digest_len` bytes of
    /// SHA-256(`prefix` ‖ message), concatenated in order.
    fn sha256_each(
        &mut self,
        prefix: &[u8],
        messages: &[u8],
        message_len: usize,
        digest_len: usize,
    ) -> Result<Vec<u8>, Self::Error>;

    /// The same with HMAC-SHA-256(`key`, `prefix` ‖ message).
    fn hmac_sha256_each(
        &mut self,
        key: &[u8],
        prefix: &[u8],
        messages: &[u8],
        message_len: usize,
        digest_len: usize,
    ) -> Result<Vec<u8>, Self::Error>;
}

/// This crate's own hashing (the `sha2` and `hmac` crates).
#[derive(Debug, Clone, Copy, Default)]
pub struct Software;

impl Hashes for Software {
    type Error = Infallible;

    fn sha256_each(
        &mut self,
        prefix: &[u8],
        messages: &[u8],
        message_len: usize,
        digest_len: usize,
    ) -> Result<Vec<u8>, Infallible> {
        let base = Sha256::new_with_prefix(prefix);
        Ok(each(base, messages, message_len, digest_len))
    }

    fn hmac_sha256_each(
        &mut self,
        key: &[u8],
        prefix: &[u8],
        messages: &[u8],
        message_len: usize,
        digest_len: usize,
    ) -> Result<Vec<u8>, Infallible> {
        let mut base = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Mac::update(&mut base, prefix);
        Ok(each(base, messages, message_len, digest_len))
    }
}

/// The first `digest_len` (at most 32) bytes of the digest of each
/// message, hashed after what `base` has already taken in.
fn each<H: Update + FixedOutput + Clone>(
    base: H,
    messages: &[u8],
    message_len: usize,
    digest_len: usize,
) -> Vec<u8> {
    let digest_len = digest_len.min(32);
    if message_len == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(messages.len() / message_len * digest_len);
    for m in messages.chunks_exact(message_len) {
        let mut h = base.clone();
        Update::update(&mut h, m);
        out.extend_from_slice(&h.finalize_fixed()[..digest_len]);
    }
    out
}

/// The two layouts of a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFormat {
    /// [`BatchCodec::code`]: [`CODE_LEN`] characters.
    Default,
    /// [`BatchCodec::gs1_serial`]: [`GS1_SERIAL_LEN`] characters.
    Gs1Serial,
}

impl CodeFormat {
    /// Characters of one code.
    pub const fn code_len(self) -> usize {
        match self {
            CodeFormat::Default => CODE_LEN,
            CodeFormat::Gs1Serial => GS1_SERIAL_LEN,
        }
    }
}

/// Why a batch of codes was not derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError<E> {
    /// The serials `first..first + count` are not all in 1..=[`MAX_SERIAL`].
    Serials { first: u32, count: usize },
    /// The hash source answered `got` bytes where `expected` were due.
    Length { expected: usize, got: usize },
    /// The hash source failed.
    Hashes(E),
}

impl<E: std::fmt::Display> std::fmt::Display for BatchError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Serials { first, count } => write!(
                f,
                "serials {first} + {count} are not all in 1..={MAX_SERIAL}"
            ),
            BatchError::Length { expected, got } => write!(
                f,
                "the hash source answered {got} bytes where {expected} were due"
            ),
            BatchError::Hashes(e) => write!(f, "hashing failed: {e}"),
        }
    }
}

impl BatchCodec {
    /// The codes of serials `first..first + count` in `format`, each
    /// [`CodeFormat::code_len`] bytes, concatenated in serial order; six hash
    /// calls whatever `count`.
    pub fn codes_each<H: Hashes>(
        &self,
        format: CodeFormat,
        first: u32,
        count: usize,
        hashes: &mut H,
    ) -> Result<Vec<u8>, BatchError<H::Error>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let last = first as u64 + count as u64 - 1;
        if first == 0 || last > MAX_SERIAL as u64 {
            return Err(BatchError::Serials { first, count });
        }
        let serials = first..=last as u32;
        let mut out = Vec::with_capacity(count * format.code_len());
        match format {
            CodeFormat::Default => {
                let ids = serials
                    .clone()
                    .map(|s| ((self.batch_no as u64) << 24) | s as u64)
                    .collect();
                let hidden = feistel_each(hashes, &self.tenant, b'c', ids, 22)?;
                let tags = self.tags_each(hashes, b"keel-code", serials, TAG_BITS)?;
                let inverse = PRINT_SAFE.check_inverse(CODE_LEN - 1);
                for (hidden, tag) in hidden.into_iter().zip(tags) {
                    let sum = PRINT_SAFE.push_weighted(hidden as u128, ID_LEN, 1, &mut out)
                        + PRINT_SAFE.push_weighted(tag, TAG_LEN, ID_LEN as u64 + 1, &mut out);
                    out.push(PRINT_SAFE.check_of_sum(sum, inverse));
                }
            }
            CodeFormat::Gs1Serial => {
                let values = serials.clone().map(u64::from).collect();
                let hidden = feistel_each(hashes, &self.batch, b'g', values, 12)?;
                let tags = self.tags_each(hashes, b"keel-gs1", serials, GS1_TAG_BITS)?;
                let inverse = BASE62.check_inverse(GS1_BODY_LEN);
                for (hidden, tag) in hidden.into_iter().zip(tags) {
                    let value = ((hidden as u128) << GS1_TAG_BITS) | tag;
                    let sum = BASE62.push_weighted(value, GS1_BODY_LEN, 1, &mut out);
                    out.push(BASE62.check_of_sum(sum, inverse));
                }
            }
        }
        Ok(out)
    }

    /// [`BatchCodec::tag`] of each serial: the first `bits / 8` bytes of
    /// HMAC(batch secret, domain ‖ batch_no ‖ serial), big-endian.
    fn tags_each<H: Hashes>(
        &self,
        hashes: &mut H,
        domain: &[u8],
        serials: std::ops::RangeInclusive<u32>,
        bits: u32,
    ) -> Result<Vec<u128>, BatchError<H::Error>> {
        let width = bits as usize / 8;
        let batch_no = self.batch_no.to_le_bytes();
        let mut messages = Vec::with_capacity(serials.size_hint().0 * 8);
        for s in serials {
            messages.extend_from_slice(&batch_no);
            messages.extend_from_slice(&s.to_le_bytes());
        }
        let n = messages.len() / 8;
        let digests = hashes
            .hmac_sha256_each(&self.batch.0, domain, &messages, 8, width)
            .map_err(BatchError::Hashes)?;
        checked_len(&digests, n * width)?;
        Ok(digests
            .chunks_exact(width)
            .map(|d| d.iter().fold(0u128, |acc, &b| (acc << 8) | b as u128))
            .collect())
    }
}

/// [`crate::feistel`] (encryption) of each value, one hash call per round.
fn feistel_each<H: Hashes>(
    hashes: &mut H,
    key: &Key,
    domain: u8,
    values: Vec<u64>,
    half: u32,
) -> Result<Vec<u64>, BatchError<H::Error>> {
    let mask = (1u64 << half) - 1;
    let mut left: Vec<u64> = values.iter().map(|v| (v >> half) & mask).collect();
    let mut right: Vec<u64> = values.iter().map(|v| v & mask).collect();
    let mut prefix = [0u8; 34];
    prefix[..32].copy_from_slice(&key.0);
    prefix[32] = domain;
    for i in 0..4u8 {
        prefix[33] = i;
        let messages: Vec<u8> = right.iter().flat_map(|r| r.to_le_bytes()).collect();
        let digests = hashes
            .sha256_each(&prefix, &messages, 8, 8)
            .map_err(BatchError::Hashes)?;
        checked_len(&digests, right.len() * 8)?;
        for ((l, r), d) in left
            .iter_mut()
            .zip(right.iter_mut())
            .zip(digests.chunks_exact(8))
        {
            let f = u64::from_le_bytes(d.try_into().unwrap_or_else(|_| unreachable!("8 bytes")));
            let next = *l ^ (f & mask);
            *l = *r;
            *r = next;
        }
    }
    Ok(left
        .into_iter()
        .zip(right)
        .map(|(l, r)| (l << half) | r)
        .collect())
}

fn checked_len<E>(digests: &[u8], expected: usize) -> Result<(), BatchError<E>> {
    if digests.len() == expected {
        Ok(())
    } else {
        Err(BatchError::Length {
            expected,
            got: digests.len(),
        })
    }
}
