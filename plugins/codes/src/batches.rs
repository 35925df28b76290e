//! Code batches: issue, activate, void, reprint, and the print file.

use keel_codes_core::{BatchError, CodeFormat, Hashes, MAX_SERIAL};
use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect, Record};
use keel_sdk::{Context, Error, Result, events};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use crate::epcis;
use crate::model::{
    Batch, Format, Level, Span, batch_by_id, batch_key, config, now, page_limit, parse_batch_id,
    parse_day, random_bytes, rfc3339,
};
use crate::products::{self, Product, load as load_product};

/// Most activation or void ranges one batch keeps.
const MAX_SPANS: usize = 10_000;

/// GraphQL `CodeBatch`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchOut {
    id: String,
    product: Product,
    lot: String,
    production_date: Option<String>,
    expiry_date: Option<String>,
    quantity: u32,
    level: Level,
    format: Format,
    created_at: String,
    activated: Vec<Span>,
    voided: Vec<Span>,
    active_count: u64,
    voided_count: u64,
}

pub(crate) fn out(b: &Batch) -> Result<BatchOut> {
    let voided_count: u64 = b.voided.iter().map(Span::len).sum();
    let active_count: u64 = b
        .activated
        .iter()
        .map(|a| {
            let hidden: u64 = b
                .voided
                .iter()
                .filter(|v| v.overlaps(a.from, a.to))
                .map(|v| (v.to.min(a.to) - v.from.max(a.from)) as u64 + 1)
                .sum();
            a.len() - hidden
        })
        .sum();
    Ok(BatchOut {
        id: b.id(),
        product: load_product(&b.product)?,
        lot: b.lot.clone(),
        production_date: b.production_date.clone(),
        expiry_date: b.expiry_date.clone(),
        quantity: b.quantity,
        level: b.level,
        format: b.format,
        created_at: b.created_at.clone(),
        activated: b.activated.clone(),
        voided: b.voided.clone(),
        active_count,
        voided_count,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IssueInput {
    product: String,
    lot: String,
    quantity: i64,
    level: Option<Level>,
    format: Option<Format>,
    production_date: Option<String>,
    expiry_date: Option<String>,
}

pub(crate) fn issue(_ctx: &Context, input: IssueInput) -> Result<BatchOut> {
    let product = products::load_for_issue(&input.product)?;
    let format = input.format.unwrap_or(Format::Default);
    let lot = input.lot.trim().to_owned();
    let lot_max = if format == Format::Gs1DigitalLink {
        20
    } else {
        40
    };
    if lot.is_empty()
        || lot.chars().count() > lot_max
        || lot.chars().any(|c| c.is_control() || c == '|')
    {
        return Err(Error::invalid(format!(
            "lot: 1-{lot_max} printable characters (no '|'), got {:?}",
            input.lot
        )));
    }
    if !(1..=MAX_SERIAL as i64).contains(&input.quantity) {
        return Err(Error::invalid(format!(
            "quantity: 1..={MAX_SERIAL} codes per batch, got {}",
            input.quantity
        )));
    }
    if format == Format::Gs1DigitalLink && product.gtin.is_none() {
        return Err(Error::invalid(format!(
            "format: GS1 Digital Link codes need a GTIN, and product {} has none",
            product.sku
        )));
    }
    let produced = input
        .production_date
        .as_deref()
        .map(|d| parse_day("productionDate", d))
        .transpose()?;
    let expires = input
        .expiry_date
        .as_deref()
        .map(|d| parse_day("expiryDate", d))
        .transpose()?;
    if let (Some(p), Some(e)) = (produced, expires)
        && e < p
    {
        return Err(Error::invalid(
            "expiryDate: must not be before productionDate",
        ));
    }
    let no = match counters::add(
        "batch-seq",
        1,
        0,
        keel_codes_core::MAX_BATCH_NO as i64,
        None,
    )? {
        Outcome::Applied(n) => n as u32,
        Outcome::LimitReached(_) => {
            return Err(Error::refused(
                "BATCH_LIMIT",
                "this brand has issued the most batches a tenant may hold",
            ));
        }
    };
    let batch = Batch {
        no,
        product: product.sku.clone(),
        lot_key: format!("{}|{lot}", product.sku),
        gtin_lot: match (format, &product.gtin) {
            (Format::Gs1DigitalLink, Some(g)) => {
                Some(format!("{}|{lot}", keel_codes_core::gtin14(g)))
            }
            _ => None,
        },
        lot,
        production_date: input.production_date,
        expiry_date: input.expiry_date,
        quantity: input.quantity as u32,
        level: input.level.unwrap_or(Level::Unit),
        format,
        secret: keel_codes_core::Key::from_bytes(random_bytes()?).to_hex(),
        created_at: rfc3339(now()),
        activated: Vec::new(),
        voided: Vec::new(),
    };
    records::put("batches", &batch_key(no), &batch, Expect::Absent)?;
    events::emit(
        "codes.batch_issued",
        None,
        &json!({
            "batch": batch.id(), "sku": batch.product, "lot": batch.lot,
            "quantity": batch.quantity, "level": batch.level, "format": batch.format,
        }),
        None,
    )?;
    out(&batch)
}

#[derive(Deserialize)]
pub(crate) struct GetInput {
    id: String,
}

pub(crate) fn get(_ctx: &Context, input: GetInput) -> Result<Option<BatchOut>> {
    let no = parse_batch_id(&input.id)?;
    crate::model::load_batch(no)?
        .map(|b| out(&b.data))
        .transpose()
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    product: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn list(_ctx: &Context, input: ListInput) -> Result<Vec<BatchOut>> {
    let limit = page_limit(input.limit, 100, 500)?;
    let after = input
        .after
        .as_deref()
        .map(|a| parse_batch_id(a).map(batch_key))
        .transpose()?;
    let page = match &input.product {
        Some(sku) => {
            records::query::<Batch>("batches", "product", &json!(sku), after.as_deref(), limit)?
        }
        None => records::scan::<Batch>("batches", after.as_deref(), limit)?,
    };
    page.records.iter().map(|r| out(&r.data)).collect()
}

#[derive(Deserialize)]
pub(crate) struct RangeInput {
    batch: String,
    from: Option<i64>,
    to: Option<i64>,
}

fn save(b: &Record<Batch>) -> Result<()> {
    match records::put("batches", &b.key, &b.data, Expect::Version(b.version)) {
        Ok(_) => Ok(()),
        Err(Error::Conflict(_)) => Err(Error::Conflict(format!(
            "batch {} changed meanwhile; retry",
            b.data.id()
        ))),
        Err(e) => Err(e),
    }
}

pub(crate) fn activate(_ctx: &Context, input: RangeInput) -> Result<BatchOut> {
    let mut b = batch_by_id(&input.batch)?;
    let (from, to) = b.data.check_range(
        input.from.unwrap_or(1),
        input.to.unwrap_or(b.data.quantity as i64),
    )?;
    if let Some(v) = b.data.voided.iter().find(|s| s.overlaps(from, to)) {
        return Err(Error::refused(
            "CODE_VOIDED",
            format!(
                "serials {}..{} of {} are voided and cannot be activated; nothing was activated",
                v.from.max(from),
                v.to.min(to),
                input.batch
            ),
        ));
    }
    if let Some(a) = b.data.activated.iter().find(|s| s.overlaps(from, to)) {
        return Err(Error::refused(
            "ALREADY_ACTIVE",
            format!(
                "serials {}..{} of {} are already active (since {}); nothing was activated",
                a.from.max(from),
                a.to.min(to),
                input.batch,
                a.at
            ),
        ));
    }
    if b.data.activated.len() >= MAX_SPANS {
        return Err(Error::refused(
            "TOO_MANY_RANGES",
            "this batch has too many activation ranges",
        ));
    }
    let at = now();
    b.data.activated.push(Span {
        from,
        to,
        at: rfc3339(at),
        reason: None,
    });
    b.data.activated.sort_by_key(|s| s.from);
    save(&b)?;
    let payload = json!({"batch": b.data.id(), "from": from, "to": to});
    events::emit("codes.activated", None, &payload, None)?;
    epcis::record_range(
        &b.data,
        at,
        "ADD",
        "commissioning",
        "active",
        from,
        to,
        None,
    )?;
    out(&b.data)
}

#[derive(Deserialize)]
pub(crate) struct VoidInput {
    batch: String,
    from: i64,
    to: i64,
    reason: String,
}

pub(crate) fn void(_ctx: &Context, input: VoidInput) -> Result<BatchOut> {
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(Error::invalid(
            "reason: 1-200 characters (e.g. recall, damaged roll)",
        ));
    }
    let mut b = batch_by_id(&input.batch)?;
    let (from, to) = b.data.check_range(input.from, input.to)?;
    if let Some(v) = b.data.voided.iter().find(|s| s.overlaps(from, to)) {
        return Err(Error::refused(
            "ALREADY_VOIDED",
            format!(
                "serials {}..{} of {} were already voided at {}; nothing was voided",
                v.from.max(from),
                v.to.min(to),
                input.batch,
                v.at
            ),
        ));
    }
    if b.data.voided.len() >= MAX_SPANS {
        return Err(Error::refused(
            "TOO_MANY_RANGES",
            "this batch has too many void ranges",
        ));
    }
    let at = now();
    b.data.voided.push(Span {
        from,
        to,
        at: rfc3339(at),
        reason: Some(reason.to_owned()),
    });
    b.data.voided.sort_by_key(|s| s.from);
    save(&b)?;
    let payload = json!({"batch": b.data.id(), "from": from, "to": to, "reason": reason});
    events::emit("codes.voided", None, &payload, None)?;
    epcis::record_range(
        &b.data,
        at,
        "DELETE",
        "decommissioning",
        "inactive",
        from,
        to,
        Some(reason),
    )?;
    out(&b.data)
}

/// GraphQL `IssuedCode`.
#[derive(Serialize)]
pub(crate) struct IssuedCode {
    batch: String,
    serial: u32,
    code: String,
    url: String,
}

#[derive(Deserialize)]
pub(crate) struct ReprintInput {
    batch: String,
    serial: i64,
}

pub(crate) fn reprint(_ctx: &Context, input: ReprintInput) -> Result<IssuedCode> {
    let b = batch_by_id(&input.batch)?.data;
    let (serial, _) = b.check_range(input.serial, input.serial)?;
    let codec = b.codec()?;
    let code = b.code_of(&codec, serial);
    let gtin = load_product(&b.product)?.gtin;
    Ok(IssuedCode {
        url: b.url(&config()?.scan_base_url, &code, gtin.as_deref()),
        batch: b.id(),
        serial,
        code,
    })
}

#[derive(Deserialize)]
pub(crate) struct ChunkInput {
    batch: String,
    from: Option<i64>,
    to: Option<i64>,
    after: Option<String>,
}

/// One piece of a file (GraphQL `FileChunk`, the kernel's download protocol).
#[derive(Serialize)]
pub(crate) struct FileChunk {
    /// The CSV as a JSON string, written escaped as it is built (see
    /// [`print_file_chunk`]).
    pub data: Box<RawValue>,
    pub next: Option<String>,
    /// The chunk at `next`'s own `next`, when known: the gateway then
    /// fetches both at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    pub total: Option<u64>,
}

impl FileChunk {
    /// A chunk of `data`, however it is built.
    pub fn text(data: &str, next: Option<String>, total: Option<u64>) -> Result<FileChunk> {
        Ok(FileChunk {
            data: RawValue::from_string(serde_json::to_string(data)?)?,
            next,
            then: None,
            total,
        })
    }
}

/// The kernel's native hashing (`keel_sdk::crypto`), for codes derived
/// many at a time: several times faster than SHA-256 in WebAssembly.
struct KernelHashes;

impl Hashes for KernelHashes {
    type Error = Error;

    fn sha256_each(
        &mut self,
        prefix: &[u8],
        messages: &[u8],
        message_len: usize,
        digest_len: usize,
    ) -> Result<Vec<u8>> {
        keel_sdk::crypto::sha256_each(prefix, messages, message_len as u32, digest_len as u32)
    }

    fn hmac_sha256_each(
        &mut self,
        key: &[u8],
        prefix: &[u8],
        messages: &[u8],
        message_len: usize,
        digest_len: usize,
    ) -> Result<Vec<u8>> {
        keel_sdk::crypto::hmac_sha256_each(
            key,
            prefix,
            messages,
            message_len as u32,
            digest_len as u32,
        )
    }
}

/// Digits of `n` in decimal.
fn decimal_len(n: u32) -> usize {
    n.checked_ilog10().unwrap_or(0) as usize + 1
}

/// Appends `n` in decimal (no allocation, unlike `to_string`: one per row).
fn push_decimal(mut n: u32, out: &mut Vec<u8>) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Bytes of CSV one chunk aims at (the kernel caps an output at 1 MiB).
const CHUNK_BYTES: usize = 768 * 1024;

/// The print file: `serial,code,url` rows, in serial order.
pub(crate) fn print_file_chunk(_ctx: &Context, input: ChunkInput) -> Result<FileChunk> {
    let b = batch_by_id(&input.batch)?.data;
    let (from, to) = b.check_range(
        input.from.unwrap_or(1),
        input.to.unwrap_or(b.quantity as i64),
    )?;
    let start = match &input.after {
        None => from,
        Some(a) => a
            .parse::<u32>()
            .ok()
            .filter(|s| (from..=to).contains(s))
            .ok_or_else(|| Error::invalid(format!("after: {a:?} is not a cursor of this file")))?,
    };
    let codec = b.codec()?;
    let gtin = load_product(&b.product)?.gtin;
    let base = &config()?.scan_base_url;
    // `data` is built as a JSON string, quotes and escapes included:
    // serialising 768 KiB through serde_json byte by byte was the largest
    // cost of a chunk. Rows are ASCII digits, code characters, a URL and
    // commas; only the newline and whatever the URL holds need escaping.
    // The URL's fixed part is written once; only the code changes.
    // As it goes inside the JSON string: escaped, without its quotes.
    let sample = serde_json::to_string(&b.url(base, "", gtin.as_deref()))?;
    let sample = &sample[1..sample.len() - 1];
    let format = match b.format {
        Format::Default => CodeFormat::Default,
        Format::Gs1DigitalLink => CodeFormat::Gs1Serial,
    };
    // As many rows as fit the chunk (rows are longest at `to`), derived
    // together: the kernel hashes each step of all their codes at once.
    let row = |serial: u32| decimal_len(serial) + 2 * format.code_len() + sample.len() + 4;
    let per_chunk = (CHUNK_BYTES / row(to)).clamp(1, keel_sdk::crypto::MAX_MESSAGES);
    let count = ((to - start) as usize + 1).min(per_chunk);
    // Exactly the bytes it will hold: no reallocation, no shrinking copy.
    const HEADER: &[u8] = b"serial,code,url\\n";
    let header = if input.after.is_none() { HEADER } else { b"" };
    let size = 2 + header.len() + (start..start + count as u32).map(row).sum::<usize>();
    let mut data = Vec::with_capacity(size);
    data.push(b'"');
    data.extend_from_slice(header);
    let codes = codec
        .codes_each(format, start, count, &mut KernelHashes)
        .map_err(|e| match e {
            BatchError::Hashes(e) => e,
            e => Error::Internal(e.to_string()),
        })?;
    for (serial, code) in (start..).zip(codes.chunks_exact(format.code_len())) {
        push_decimal(serial, &mut data);
        data.push(b',');
        data.extend_from_slice(code);
        data.push(b',');
        data.extend_from_slice(sample.as_bytes());
        data.extend_from_slice(code);
        data.extend_from_slice(b"\\n");
    }
    data.push(b'"');
    debug_assert_eq!(data.len(), size);
    let serial = start + count as u32;
    let data = String::from_utf8(data).map_err(|e| Error::Internal(e.to_string()))?;
    // Every chunk but the last holds `per_chunk` rows, so the chunk after
    // the next one starts `per_chunk` after it: the gateway fetches the two
    // at once, on two cores.
    let then = serial.checked_add(per_chunk as u32).filter(|s| *s <= to);
    Ok(FileChunk {
        data: RawValue::from_string(data)?,
        next: (serial <= to).then(|| serial.to_string()),
        then: then.map(|s| s.to_string()),
        total: Some((to - from) as u64 + 1),
    })
}
