//! The one-item-one-code format of Keel's `codes` plugin, with no I/O, so
//! the plugin (in WebAssembly) and native tools and benchmarks share it.
//!
//! Codes are never stored: each is derived from secrets and a serial, and
//! verified by deriving it again.
//!
//! - **Default codes** (30 characters of [`alphabet::PRINT_SAFE`]) carry
//!   the batch number and serial, encrypted with the tenant's key (so a code
//!   reveals neither production volumes nor its neighbours), then a 96-bit
//!   tag — an HMAC-SHA-256 of the serial under the batch's secret — and a
//!   check character (a weighted sum modulo 31) that catches any single
//!   mistyped character and any swap of two neighbours.
//! - **GS1 Digital Link serials** (AI 21, 19 characters of base 62) carry the
//!   encrypted serial and an 80-bit tag; the batch is named by the GTIN
//!   (AI 01) and lot (AI 10) beside them.
//!
//! ```
//! use keel_codes_core::{BatchCodec, Key, parse_code};
//! let tenant = Key::from_bytes([7; 32]);
//! let codec = BatchCodec::new(&tenant, 42, Key::from_bytes([9; 32]));
//! let code = codec.code(1_000);
//! let parsed = parse_code(&tenant, &code).unwrap();
//! assert_eq!((parsed.batch_no, parsed.serial), (42, 1_000));
//! assert!(codec.verify(&parsed));
//! ```

pub mod alphabet;
mod batch;
pub mod geo;
mod locate;

pub use batch::{BatchError, CodeFormat, Hashes, Software};
pub use locate::{CodeRef, MAX_SCAN_TEXT, locate, percent_encode};

use alphabet::{BASE62, PRINT_SAFE};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Batch numbers are 1..=MAX_BATCH_NO (20 bits) per tenant.
pub const MAX_BATCH_NO: u32 = (1 << 20) - 1;
/// Serials are 1..=MAX_SERIAL (24 bits, 16.7 million) per batch.
pub const MAX_SERIAL: u32 = (1 << 24) - 1;
/// Characters of a default code, check character included.
pub const CODE_LEN: usize = 30;
/// Characters of a GS1 AI 21 serial, check character included.
pub const GS1_SERIAL_LEN: usize = 19;

const BODY_LEN: usize = CODE_LEN - 1;
/// The encrypted (batch, serial) takes 9 characters (31^9 > 2^44), the tag 20
/// (31^20 > 2^96).
const ID_LEN: usize = 9;
const TAG_LEN: usize = BODY_LEN - ID_LEN;
const GS1_BODY_LEN: usize = GS1_SERIAL_LEN - 1;
const TAG_BITS: u32 = 96;
const GS1_TAG_BITS: u32 = 80;

/// A 256-bit secret (the tenant's code key, or a batch's).
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// Reads 64 hexadecimal digits.
    pub fn from_hex(hex: &str) -> Option<Key> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Key(out))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why text is not a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// Wrong length or characters: not in any code format.
    Malformed,
    /// The right shape, but the check character does not match: a
    /// character was most likely mistyped.
    Mistyped,
}

impl std::fmt::Display for CodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CodeError::Malformed => "this is not a code in any format we print",
            CodeError::Mistyped => "a character of this code seems mistyped",
        })
    }
}

/// A small-domain pseudo-random permutation: a 4-round Feistel network over
/// `2 * half` bits with SHA-256 of (key, domain, round, half) as the round
/// function.
fn feistel(key: &Key, domain: u8, value: u64, half: u32, decrypt: bool) -> u64 {
    let mask = (1u64 << half) - 1;
    let (mut left, mut right) = ((value >> half) & mask, value & mask);
    let round = |i: u8, x: u64| -> u64 {
        let mut h = Sha256::new();
        h.update(key.0);
        h.update([domain, i]);
        h.update(x.to_le_bytes());
        let d = h.finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) & mask
    };
    if decrypt {
        for i in (0..4u8).rev() {
            let prev_right = left;
            left = right ^ round(i, left);
            right = prev_right;
        }
    } else {
        for i in 0..4u8 {
            let next = left ^ round(i, right);
            left = right;
            right = next;
        }
    }
    (left << half) | right
}

/// Derives and verifies the codes of one batch.
#[derive(Clone)]
pub struct BatchCodec {
    tenant: Key,
    batch_no: u32,
    batch: Key,
    /// HMAC keyed with the batch secret, cloned per code.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for BatchCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchCodec")
            .field("batch_no", &self.batch_no)
            .finish_non_exhaustive()
    }
}

/// A default code read from text: who it claims to be, and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedCode {
    pub batch_no: u32,
    pub serial: u32,
    tag: u128,
}

impl BatchCodec {
    pub fn new(tenant: &Key, batch_no: u32, batch: Key) -> BatchCodec {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&batch.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        BatchCodec {
            tenant: tenant.clone(),
            batch_no,
            batch,
            mac,
        }
    }

    fn tag(&self, domain: &[u8], serial: u32, bits: u32) -> u128 {
        let mut m = self.mac.clone();
        m.update(domain);
        m.update(&self.batch_no.to_le_bytes());
        m.update(&serial.to_le_bytes());
        let d = m.finalize().into_bytes();
        let mut first = [0u8; 16];
        first.copy_from_slice(&d[..16]);
        u128::from_be_bytes(first) >> (128 - bits)
    }

    /// The default code of `serial` (1..=[`MAX_SERIAL`]).
    pub fn code(&self, serial: u32) -> String {
        let mut out = Vec::with_capacity(CODE_LEN);
        self.push_code(serial, &mut out);
        String::from_utf8(out).unwrap_or_else(|_| unreachable!("the alphabet is ASCII"))
    }

    /// Appends the default code of `serial` to `out` (no allocation when
    /// `out` has room): the print-file path.
    pub fn push_code(&self, serial: u32, out: &mut Vec<u8>) {
        let id = ((self.batch_no as u64) << 24) | (serial as u64 & MAX_SERIAL as u64);
        let hidden = feistel(&self.tenant, b'c', id, 22, false);
        let start = out.len();
        PRINT_SAFE.push_fixed(hidden as u128, ID_LEN, out);
        PRINT_SAFE.push_fixed(self.tag(b"keel-code", serial, TAG_BITS), TAG_LEN, out);
        let check = PRINT_SAFE
            .check_char(&out[start..])
            .unwrap_or_else(|| unreachable!("pushed digits are in the alphabet"));
        out.push(check);
    }

    /// True when `code` is this batch's code for its serial.
    pub fn verify(&self, code: &ParsedCode) -> bool {
        code.batch_no == self.batch_no
            && code.serial >= 1
            && constant_time_eq(code.tag, self.tag(b"keel-code", code.serial, TAG_BITS))
    }

    /// The GS1 Digital Link serial (AI 21) of `serial`.
    pub fn gs1_serial(&self, serial: u32) -> String {
        let hidden = feistel(
            &self.batch,
            b'g',
            serial as u64 & MAX_SERIAL as u64,
            12,
            false,
        );
        let value =
            ((hidden as u128) << GS1_TAG_BITS) | self.tag(b"keel-gs1", serial, GS1_TAG_BITS);
        let mut out = Vec::with_capacity(GS1_SERIAL_LEN);
        BASE62.push_fixed(value, GS1_BODY_LEN, &mut out);
        let check = BASE62
            .check_char(&out)
            .unwrap_or_else(|| unreachable!("pushed digits are in the alphabet"));
        out.push(check);
        String::from_utf8(out).unwrap_or_else(|_| unreachable!("the alphabet is ASCII"))
    }

    /// The serial behind a GS1 AI 21 value of this batch, if it is one.
    pub fn open_gs1_serial(&self, ai21: &str) -> Result<Option<u32>, CodeError> {
        let bytes = ai21.as_bytes();
        if bytes.len() != GS1_SERIAL_LEN || bytes.iter().any(|&c| BASE62.digit(c).is_none()) {
            return Err(CodeError::Malformed);
        }
        if !BASE62.check_ok(bytes) {
            return Err(CodeError::Mistyped);
        }
        let value = BASE62
            .read(&bytes[..GS1_BODY_LEN])
            .ok_or(CodeError::Malformed)?;
        if value >> (GS1_TAG_BITS + 24) != 0 {
            return Ok(None);
        }
        let hidden = (value >> GS1_TAG_BITS) as u64;
        let serial = feistel(&self.batch, b'g', hidden, 12, true) as u32;
        let tag = value & ((1u128 << GS1_TAG_BITS) - 1);
        let ok = serial >= 1 && constant_time_eq(tag, self.tag(b"keel-gs1", serial, GS1_TAG_BITS));
        Ok(ok.then_some(serial))
    }
}

/// Normalises what a person typed or a scanner read: drops spaces and
/// hyphens, upper-cases.
pub fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Reads a default code (already [`normalise`]d or not) and recovers the
/// batch number and serial it claims, with the tenant's key. Whether it is
/// genuine is [`BatchCodec::verify`]'s to say.
pub fn parse_code(tenant: &Key, text: &str) -> Result<ParsedCode, CodeError> {
    let text = normalise(text);
    let bytes = text.as_bytes();
    if bytes.len() != CODE_LEN || bytes.iter().any(|&c| PRINT_SAFE.digit(c).is_none()) {
        return Err(CodeError::Malformed);
    }
    if !PRINT_SAFE.check_ok(bytes) {
        return Err(CodeError::Mistyped);
    }
    let hidden = PRINT_SAFE
        .read(&bytes[..ID_LEN])
        .ok_or(CodeError::Malformed)?;
    let tag = PRINT_SAFE
        .read(&bytes[ID_LEN..BODY_LEN])
        .ok_or(CodeError::Malformed)?;
    if hidden >> 44 != 0 || tag >> TAG_BITS != 0 {
        return Err(CodeError::Malformed);
    }
    let id = feistel(tenant, b'c', hidden as u64, 22, true);
    Ok(ParsedCode {
        batch_no: (id >> 24) as u32,
        serial: (id & MAX_SERIAL as u64) as u32,
        tag,
    })
}

/// Groups a default code in blocks of five for people: `ABCDE-FGHJK-…`.
pub fn display(code: &str) -> String {
    let mut out = String::with_capacity(code.len() + code.len() / 5);
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// True when `gtin` is a GTIN-8, -12, -13 or -14 with a valid GS1 check digit.
pub fn gtin_valid(gtin: &str) -> bool {
    let digits: Vec<u32> = gtin.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != gtin.len() || ![8, 12, 13, 14].contains(&digits.len()) {
        return false;
    }
    let (body, check) = digits.split_at(digits.len() - 1);
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    (10 - sum % 10) % 10 == check[0]
}

/// The GTIN as the 14 digits GS1 Digital Link uses.
pub fn gtin14(gtin: &str) -> String {
    format!("{gtin:0>14}")
}

fn constant_time_eq(a: u128, b: u128) -> bool {
    let x = a ^ b;
    let folded = (x as u64) | ((x >> 64) as u64);
    folded == 0
}

#[cfg(test)]
mod tests;
