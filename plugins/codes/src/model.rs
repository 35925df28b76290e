//! What the plugin stores, and the lookups every operation shares.

use std::sync::OnceLock;

use keel_codes_core::{BatchCodec, CodeError, CodeRef, Key};
use keel_sdk::records::{self, Record};
use keel_sdk::{Error, Result, config};
use serde::{Deserialize, Serialize};

use crate::Config;

pub(crate) const SETTINGS_KEY: &str = "keys";

/// The tenant's code key (encrypts batch numbers and serials in codes).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub tenant_key: String,
}

/// Each call runs in a fresh instance: these live for one call.
static CONFIG: OnceLock<Config> = OnceLock::new();
static TENANT_KEY: OnceLock<Key> = OnceLock::new();

pub(crate) fn config() -> Result<&'static Config> {
    if let Some(c) = CONFIG.get() {
        return Ok(c);
    }
    let c: Config = config::get()?;
    Ok(CONFIG.get_or_init(|| c))
}

pub(crate) fn tenant_key() -> Result<&'static Key> {
    if let Some(k) = TENANT_KEY.get() {
        return Ok(k);
    }
    let s = records::get::<Settings>("settings", SETTINGS_KEY)?.ok_or_else(|| {
        Error::Internal("the codes plugin has no tenant key; re-enable it".into())
    })?;
    let k = Key::from_hex(&s.data.tenant_key)
        .ok_or_else(|| Error::Internal("the stored tenant key is malformed".into()))?;
    Ok(TENANT_KEY.get_or_init(|| k))
}

// Time, randomness and page sizes are the SDK's (`keel_sdk::time`, …).
pub(crate) use keel_sdk::paging::limit as page_limit;
pub(crate) use keel_sdk::time::{now, parse_day, rfc3339, time_key};

/// 32 bytes of the host's secure randomness (a key).
pub(crate) fn random_bytes() -> Result<[u8; 32]> {
    keel_sdk::random::bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Level {
    Unit,
    Case,
    Pallet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Format {
    Default,
    Gs1DigitalLink,
}

/// A serial range with when (and why) it changed state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Span {
    pub from: u32,
    pub to: u32,
    pub at: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Span {
    pub fn overlaps(&self, from: u32, to: u32) -> bool {
        self.from <= to && from <= self.to
    }
    pub fn len(&self) -> u64 {
        (self.to - self.from) as u64 + 1
    }
}

/// A code batch as stored. `secret` never leaves the plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub no: u32,
    /// The kernel catalogue's SKU code.
    pub product: String,
    pub lot: String,
    /// `{sku}|{lot}`: the lot's identity within the tenant.
    pub lot_key: String,
    /// `{gtin14}|{lot}` for GS1 batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtin_lot: Option<String>,
    pub production_date: Option<String>,
    pub expiry_date: Option<String>,
    pub quantity: u32,
    pub level: Level,
    pub format: Format,
    pub secret: String,
    pub created_at: String,
    pub activated: Vec<Span>,
    pub voided: Vec<Span>,
}

/// Where a code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeState {
    Inactive,
    Active,
    Voided,
}

impl CodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeState::Inactive => "inactive",
            CodeState::Active => "active",
            CodeState::Voided => "voided",
        }
    }
}

pub(crate) fn batch_key(no: u32) -> String {
    format!("{no:07}")
}

pub(crate) fn batch_id(no: u32) -> String {
    format!("B{no}")
}

/// Reads a batch id (`B12`).
pub(crate) fn parse_batch_id(id: &str) -> Result<u32> {
    id.strip_prefix('B')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=keel_codes_core::MAX_BATCH_NO).contains(n))
        .ok_or_else(|| Error::invalid(format!("batch: {id:?} is not a batch id such as B12")))
}

impl Batch {
    pub fn id(&self) -> String {
        batch_id(self.no)
    }

    pub fn codec(&self) -> Result<BatchCodec> {
        let secret = Key::from_hex(&self.secret)
            .ok_or_else(|| Error::Internal(format!("batch {} has a malformed secret", self.no)))?;
        Ok(BatchCodec::new(tenant_key()?, self.no, secret))
    }

    pub fn state_of(&self, serial: u32) -> CodeState {
        if self.voided.iter().any(|s| s.overlaps(serial, serial)) {
            CodeState::Voided
        } else if self.activated.iter().any(|s| s.overlaps(serial, serial)) {
            CodeState::Active
        } else {
            CodeState::Inactive
        }
    }

    /// Checks that `from..=to` lies within the batch.
    pub fn check_range(&self, from: i64, to: i64) -> Result<(u32, u32)> {
        if from < 1 || to < from || to > self.quantity as i64 {
            return Err(Error::invalid(format!(
                "serials {from}..{to} are not a range within batch {} (1..{})",
                self.id(),
                self.quantity
            )));
        }
        Ok((from as u32, to as u32))
    }

    /// The printed URL of the code `code` (as `push_code`/`gs1_serial` made it).
    pub fn url(&self, base: &str, code: &str, gtin: Option<&str>) -> String {
        match (self.format, gtin) {
            (Format::Gs1DigitalLink, Some(g)) => format!(
                "{base}01/{}/10/{}/21/{code}",
                keel_codes_core::gtin14(g),
                keel_codes_core::percent_encode(&self.lot)
            ),
            _ => format!("{base}c/{code}"),
        }
    }

    /// The code of `serial` in the batch's format.
    pub fn code_of(&self, codec: &BatchCodec, serial: u32) -> String {
        match self.format {
            Format::Default => codec.code(serial),
            Format::Gs1DigitalLink => codec.gs1_serial(serial),
        }
    }
}

pub(crate) fn load_batch(no: u32) -> Result<Option<Record<Batch>>> {
    records::get::<Batch>("batches", &batch_key(no))
}

/// A batch by id, or NOT_FOUND.
pub(crate) fn batch_by_id(id: &str) -> Result<Record<Batch>> {
    let no = parse_batch_id(id)?;
    load_batch(no)?.ok_or_else(|| Error::NotFound(format!("no batch {id}")))
}

/// A genuine code of the tenant: its batch and serial.
#[derive(Debug, Clone)]
pub(crate) struct Code {
    pub batch: Batch,
    pub serial: u32,
}

impl Code {
    /// Record key part: sorts by batch, then serial.
    pub fn key(&self) -> String {
        unit_key(self.batch.no, self.serial)
    }
    /// The stable public id, e.g. `B12/1000` (not secret).
    pub fn id(&self) -> String {
        format!("B{}/{}", self.batch.no, self.serial)
    }
    pub fn state(&self) -> CodeState {
        self.batch.state_of(self.serial)
    }
}

pub(crate) fn unit_key(batch: u32, serial: u32) -> String {
    format!("{batch:07}:{serial:08}")
}

/// Reads a code key `0000012:00001000` back.
pub(crate) fn parse_unit_key(key: &str) -> Option<(u32, u32)> {
    let (b, s) = key.split_once(':')?;
    Some((b.parse().ok()?, s.parse().ok()?))
}

/// Why a scanned text is not a code of this tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    Malformed,
    Mistyped,
    NotACode,
}

impl From<CodeError> for Invalid {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::Malformed => Invalid::Malformed,
            CodeError::Mistyped => Invalid::Mistyped,
        }
    }
}

/// Finds the genuine code behind a scanned text (a code, a scan URL, or a
/// GS1 Digital Link). Another tenant's code is simply not a code here.
pub(crate) fn resolve(text: &str) -> Result<std::result::Result<Code, Invalid>> {
    let Some(found) = keel_codes_core::locate(text) else {
        return Err(Error::invalid(format!(
            "code: must be 1-{} characters",
            keel_codes_core::MAX_SCAN_TEXT
        )));
    };
    match found {
        CodeRef::Default(text) => {
            let parsed = match keel_codes_core::parse_code(tenant_key()?, &text) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e.into())),
            };
            let Some(batch) = load_batch(parsed.batch_no)? else {
                return Ok(Err(Invalid::NotACode));
            };
            let batch = batch.data;
            if batch.format != Format::Default
                || parsed.serial > batch.quantity
                || !batch.codec()?.verify(&parsed)
            {
                return Ok(Err(Invalid::NotACode));
            }
            Ok(Ok(Code {
                serial: parsed.serial,
                batch,
            }))
        }
        CodeRef::Gs1 { gtin, lot, serial } => {
            let key = format!("{gtin}|{lot}");
            let page = records::query::<Batch>("batches", "gtin_lot", &key.into(), None, 100)?;
            for b in page.records {
                match b.data.codec()?.open_gs1_serial(&serial) {
                    Ok(Some(s)) if s <= b.data.quantity => {
                        return Ok(Ok(Code {
                            batch: b.data,
                            serial: s,
                        }));
                    }
                    Ok(_) => {}
                    Err(e) => return Ok(Err(e.into())),
                }
            }
            Ok(Err(Invalid::NotACode))
        }
    }
}

/// Like [`resolve`], for operators: an invalid code is BAD_USER_INPUT.
pub(crate) fn require_code(field: &str, text: &str) -> Result<Code> {
    resolve(text)?.map_err(|why| {
        Error::invalid(format!(
            "{field}: {} is {}",
            shorten(text),
            match why {
                Invalid::Malformed => "not a code in any format we print",
                Invalid::Mistyped => "mistyped (its check character does not match)",
                Invalid::NotACode => "not a code of this brand",
            }
        ))
    })
}

pub(crate) fn shorten(text: &str) -> String {
    let t: String = text.chars().take(40).collect();
    if t.len() < text.len() {
        format!("{t:?}…")
    } else {
        format!("{t:?}")
    }
}

/// A link (packing) or binding (shipment): one code, or a serial range,
/// pointing at a parent code or a shipment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Link {
    /// The parent code key (links) — indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The shipment id (bindings) — indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<String>,
    pub batch: u32,
    pub from: u32,
    pub to: u32,
    pub at: String,
}

/// Makes the rest of the call run alone among calls that take the same
/// `key`: adding nothing to a counter takes its row lock on PostgreSQL and
/// the writer on SQLite, until the call commits. For checks made by
/// reading ("not packed yet", "no shipment with this reference") that no
/// conditional write of the call would catch: reads before a call's first
/// write see only what was committed.
pub(crate) fn one_at_a_time(key: &str) -> Result<()> {
    keel_sdk::counters::add(key, 0, i64::MIN, i64::MAX, None).map(|_| ())
}

pub(crate) fn single_link_key(batch: u32, serial: u32) -> String {
    format!("u:{}", unit_key(batch, serial))
}

pub(crate) fn range_link_key(batch: u32, to: u32) -> String {
    format!("r:{}", unit_key(batch, to))
}

/// The link of `collection` covering serial `serial` of `batch`: its own,
/// or the range's that contains it. Ranges do not overlap, so the range
/// with the smallest end at or after `serial` is the only candidate.
pub(crate) fn find_link(collection: &str, batch: u32, serial: u32) -> Result<Option<Record<Link>>> {
    if let Some(l) = records::get::<Link>(collection, &single_link_key(batch, serial))? {
        return Ok(Some(l));
    }
    first_range_from(collection, batch, serial).map(|r| r.filter(|r| r.data.from <= serial))
}

/// The first range link of `batch` whose end is at or after `serial`.
fn first_range_from(collection: &str, batch: u32, serial: u32) -> Result<Option<Record<Link>>> {
    let after = format!("r:{batch:07}:{:08}", serial.saturating_sub(1));
    let page = records::scan::<Link>(collection, Some(&after), 1)?;
    Ok(page
        .records
        .into_iter()
        .next()
        .filter(|r| r.key.starts_with(&format!("r:{batch:07}:"))))
}

/// Any link of `collection` on a serial of `from..=to` of `batch`: a
/// single code's, or an overlapping range's.
pub(crate) fn any_link_in(
    collection: &str,
    batch: u32,
    from: u32,
    to: u32,
) -> Result<Option<Record<Link>>> {
    let after = format!("u:{batch:07}:{:08}", from.saturating_sub(1));
    let page = records::scan::<Link>(collection, Some(&after), 1)?;
    if let Some(r) = page.records.into_iter().next()
        && r.key <= single_link_key(batch, to)
    {
        return Ok(Some(r));
    }
    Ok(first_range_from(collection, batch, from)?.filter(|r| r.data.from <= to))
}

/// The code with key `key` (`batch:serial`), from the batch record.
pub(crate) fn code_by_key(key: &str) -> Result<Code> {
    let (b, s) =
        parse_unit_key(key).ok_or_else(|| Error::Internal(format!("malformed code key {key}")))?;
    let batch = load_batch(b)?
        .ok_or_else(|| Error::Internal(format!("code key {key} names a missing batch")))?;
    Ok(Code {
        batch: batch.data,
        serial: s,
    })
}

/// The chain of parents of a code, nearest first (case, then pallet).
pub(crate) fn parents(code: &Code) -> Result<Vec<Code>> {
    let mut out: Vec<Code> = Vec::new();
    let (mut b, mut s) = (code.batch.no, code.serial);
    while out.len() < 8 {
        let Some(link) = find_link("links", b, s)? else {
            break;
        };
        let Some(parent) = link.data.parent else {
            break;
        };
        let p = code_by_key(&parent)?;
        (b, s) = (p.batch.no, p.serial);
        out.push(p);
    }
    Ok(out)
}
