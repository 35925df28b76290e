//! What an upsert may say, and how it is checked: the input types, their
//! JSON form (the WIT's `upsert-products(json)`), GTINs, limits.
//!
//! Checking is pure: it needs no database, so a batch with one bad row is
//! refused before anything is read or written. Every error names the item
//! by its path in the batch, e.g. `products[3].skus[1].gtin`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Status;
use crate::master_data::Patch;
pub(crate) use crate::master_data::check_text;
use crate::master_data::{ExternalId, MAX_EXTERNAL_IDS, check_external_id};
use crate::{Error, Result};

/// The most products one upsert takes.
pub const MAX_PRODUCTS_PER_CALL: usize = 1000;
/// The most SKUs one product may list in one upsert.
pub const MAX_SKUS_PER_PRODUCT: usize = 1000;
/// The most SKUs one upsert takes, over all its products.
pub const MAX_SKUS_PER_CALL: usize = 10_000;
/// The largest `attributes` of one product or SKU, serialised.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

/// Longest code, in characters.
pub const MAX_CODE_CHARS: usize = 100;
const MAX_NAME_CHARS: usize = 200;
const MAX_UNIT_CHARS: usize = 32;

/// One product of an upsert, as the caller sent it (unchecked).
///
/// Leaving a field out keeps what is stored; sending it replaces the
/// stored value entirely (`attributes` are not merged). `null` clears
/// `category`. `skus` lists SKUs to create or update by code; SKUs of the
/// product that it does not list are left as they are.
#[derive(Debug, Clone, Default)]
pub struct ProductInput {
    /// The brand's product code: the key of the upsert.
    pub code: String,
    pub name: String,
    pub category: Patch<String>,
    /// The unit a consumer buys, e.g. `bottle`.
    pub unit: String,
    /// `active` or `inactive`; a new product is active.
    pub status: Option<String>,
    /// A JSON object; a new product has `{}`.
    pub attributes: Option<Value>,
    /// Replaces the product's external ids when given.
    pub external_ids: Option<Vec<ExternalId>>,
    pub skus: Option<Vec<SkuInput>>,
}

/// One SKU of a [`ProductInput`], as the caller sent it (unchecked).
#[derive(Debug, Clone, Default)]
pub struct SkuInput {
    /// The brand's SKU code, unique in the tenant: the key of the upsert.
    pub code: String,
    /// GTIN-8, -12, -13 or -14; `null` clears it.
    pub gtin: Patch<String>,
    pub name: String,
    pub status: Option<String>,
    pub attributes: Option<Value>,
    pub external_ids: Option<Vec<ExternalId>>,
}

/// A product of a checked batch: trimmed, normalised, within limits.
#[derive(Debug, Clone)]
pub(crate) struct CheckedProduct {
    pub path: String,
    pub code: String,
    pub name: String,
    pub category: Patch<String>,
    pub unit: String,
    pub status: Option<Status>,
    pub attributes: Option<Map<String, Value>>,
    /// Sorted by (system, id), without repeats.
    pub external_ids: Option<Vec<ExternalId>>,
    pub skus: Vec<CheckedSku>,
}

/// A SKU of a checked batch.
#[derive(Debug, Clone)]
pub(crate) struct CheckedSku {
    pub path: String,
    pub code: String,
    /// The 14-digit form.
    pub gtin: Patch<String>,
    pub name: String,
    pub status: Option<Status>,
    pub attributes: Option<Map<String, Value>>,
    pub external_ids: Option<Vec<ExternalId>>,
}

/// Checks a whole batch; the first bad item fails it, named by its path.
pub(crate) fn check_batch(items: Vec<ProductInput>) -> Result<Vec<CheckedProduct>> {
    if items.len() > MAX_PRODUCTS_PER_CALL {
        return Err(Error::bad_input(
            "products",
            format!(
                "{} products; at most {MAX_PRODUCTS_PER_CALL} per call",
                items.len()
            ),
        ));
    }
    let skus: usize = items
        .iter()
        .map(|p| p.skus.as_ref().map_or(0, Vec::len))
        .sum();
    if skus > MAX_SKUS_PER_CALL {
        return Err(Error::bad_input(
            "products",
            format!("{skus} SKUs in all; at most {MAX_SKUS_PER_CALL} per call"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut product_codes: HashMap<String, String> = HashMap::new();
    let mut sku_codes: HashMap<String, String> = HashMap::new();
    let mut gtins: HashMap<String, String> = HashMap::new();
    let mut product_ext: HashMap<ExternalId, String> = HashMap::new();
    let mut sku_ext: HashMap<ExternalId, String> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let p = check_product(format!("products[{i}]"), item)?;
        once(
            &mut product_codes,
            p.code.clone(),
            &p.path,
            "code",
            "product code",
        )?;
        for e in p.external_ids.iter().flatten() {
            once(
                &mut product_ext,
                e.clone(),
                &p.path,
                "externalIds",
                "external id",
            )?;
        }
        for s in &p.skus {
            once(&mut sku_codes, s.code.clone(), &s.path, "code", "SKU code")?;
            if let Patch::Set(g) = &s.gtin {
                once(&mut gtins, g.clone(), &s.path, "gtin", "GTIN")?;
            }
            for e in s.external_ids.iter().flatten() {
                once(
                    &mut sku_ext,
                    e.clone(),
                    &s.path,
                    "externalIds",
                    "external id",
                )?;
            }
        }
        out.push(p);
    }
    Ok(out)
}

/// Records that `path` uses `value`; refuses a second user in the batch.
fn once<K: std::hash::Hash + Eq + std::fmt::Display>(
    seen: &mut HashMap<K, String>,
    value: K,
    path: &str,
    field: &str,
    what: &str,
) -> Result<()> {
    if let Some(first) = seen.get(&value) {
        return Err(Error::bad_input(
            format!("{path}.{field}"),
            format!("the {what} {value} is also in {first}; list each once per batch"),
        ));
    }
    seen.insert(value, path.to_owned());
    Ok(())
}

fn check_product(path: String, p: ProductInput) -> Result<CheckedProduct> {
    let f = |name: &str| format!("{path}.{name}");
    let skus = p.skus.unwrap_or_default();
    if skus.len() > MAX_SKUS_PER_PRODUCT {
        return Err(Error::bad_input(
            f("skus"),
            format!(
                "{} SKUs; at most {MAX_SKUS_PER_PRODUCT} per product and call",
                skus.len()
            ),
        ));
    }
    let checked = CheckedProduct {
        code: check_code(&f("code"), &p.code)?,
        name: check_text(&f("name"), &p.name, MAX_NAME_CHARS)?,
        category: match p.category {
            Patch::Set(c) if !c.trim().is_empty() => {
                Patch::Set(check_text(&f("category"), &c, MAX_NAME_CHARS)?)
            }
            // An empty category is no category: ERPs send "" for none.
            Patch::Set(_) | Patch::Clear => Patch::Clear,
            Patch::Keep => Patch::Keep,
        },
        unit: check_text(&f("unit"), &p.unit, MAX_UNIT_CHARS)?,
        status: p
            .status
            .map(|s| Status::parse(&f("status"), &s))
            .transpose()?,
        attributes: p
            .attributes
            .map(|a| check_attributes(&f("attributes"), a))
            .transpose()?,
        external_ids: p
            .external_ids
            .map(|e| check_external_ids(&f("externalIds"), e))
            .transpose()?,
        skus: skus
            .into_iter()
            .enumerate()
            .map(|(j, s)| check_sku(format!("{path}.skus[{j}]"), s))
            .collect::<Result<_>>()?,
        path,
    };
    Ok(checked)
}

fn check_sku(path: String, s: SkuInput) -> Result<CheckedSku> {
    let f = |name: &str| format!("{path}.{name}");
    Ok(CheckedSku {
        code: check_code(&f("code"), &s.code)?,
        gtin: match s.gtin {
            Patch::Set(g) if !g.trim().is_empty() => Patch::Set(normalize_gtin(&f("gtin"), &g)?),
            Patch::Set(_) | Patch::Clear => Patch::Clear,
            Patch::Keep => Patch::Keep,
        },
        name: check_text(&f("name"), &s.name, MAX_NAME_CHARS)?,
        status: s
            .status
            .map(|st| Status::parse(&f("status"), &st))
            .transpose()?,
        attributes: s
            .attributes
            .map(|a| check_attributes(&f("attributes"), a))
            .transpose()?,
        external_ids: s
            .external_ids
            .map(|e| check_external_ids(&f("externalIds"), e))
            .transpose()?,
        path,
    })
}

/// A product or SKU code (trimmed, like every text).
pub(crate) fn check_code(field: &str, raw: &str) -> Result<String> {
    check_text(field, raw, MAX_CODE_CHARS)
}

fn check_attributes(field: &str, v: Value) -> Result<Map<String, Value>> {
    let Value::Object(m) = v else {
        return Err(Error::bad_input(field, "must be a JSON object"));
    };
    let size = serde_json::to_string(&m)?.len();
    if size > MAX_ATTRIBUTES_BYTES {
        return Err(Error::bad_input(
            field,
            format!("is {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES}"),
        ));
    }
    Ok(m)
}

fn check_external_ids(field: &str, list: Vec<ExternalId>) -> Result<Vec<ExternalId>> {
    if list.len() > MAX_EXTERNAL_IDS {
        return Err(Error::bad_input(
            field,
            format!("{} external ids; at most {MAX_EXTERNAL_IDS}", list.len()),
        ));
    }
    let mut out: Vec<ExternalId> = Vec::with_capacity(list.len());
    for (k, e) in list.iter().enumerate() {
        let e = check_external_id(&format!("{field}[{k}]"), e)?;
        if out.contains(&e) {
            return Err(Error::bad_input(
                format!("{field}[{k}]"),
                format!("{e} is listed twice"),
            ));
        }
        out.push(e);
    }
    out.sort();
    Ok(out)
}

/// Checks a GTIN-8, -12, -13 or -14 (digits only, surrounding spaces
/// ignored), verifies its GS1 check digit and returns its 14-digit form
/// (zero-padded on the left), the form GS1 compares and stores GTINs in.
pub fn normalize_gtin(field: &str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.len() > 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        let shown = if s.len() <= 20 {
            format!("{s:?} is")
        } else {
            "it is".to_owned()
        };
        return Err(Error::bad_input(
            field,
            format!("{shown} not a GTIN: write its 8, 12, 13 or 14 digits"),
        ));
    }
    if ![8, 12, 13, 14].contains(&s.len()) {
        return Err(Error::bad_input(
            field,
            format!("has {} digits; a GTIN has 8, 12, 13 or 14", s.len()),
        ));
    }
    let digits: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
    let (body, given) = digits.split_at(digits.len() - 1);
    let expected = gtin_check_digit(body);
    if expected != given[0] {
        return Err(Error::bad_input(
            field,
            format!("check digit is {expected}, not {}", given[0]),
        ));
    }
    if digits.iter().all(|d| *d == 0) {
        return Err(Error::bad_input(field, "all zeros is not a GTIN"));
    }
    Ok(format!("{s:0>14}"))
}

/// The GS1 check digit of `body` (every digit but the last): weights 3 and
/// 1 alternate from the right, starting with 3.
fn gtin_check_digit(body: &[u32]) -> u32 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { d * 3 } else { *d })
        .sum();
    (10 - sum % 10) % 10
}

/// Reads the JSON form of a batch — an array of the same objects as
/// GraphQL's `ProductInput`, camelCase — as the WIT's
/// `upsert-products(json)` receives it. Unknown keys are refused, so a
/// misspelt field cannot be silently ignored; values are checked by the
/// upsert exactly as GraphQL's are.
pub fn parse_products_json(json: &str) -> Result<Vec<ProductInput>> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| Error::bad_input("products", format!("is not JSON: {e}")))?;
    parse_products(&v)
}

/// [`parse_products_json`] for an already-parsed value.
pub fn parse_products(v: &Value) -> Result<Vec<ProductInput>> {
    let Value::Array(items) = v else {
        return Err(Error::bad_input(
            "products",
            "must be a JSON array of products",
        ));
    };
    if items.len() > MAX_PRODUCTS_PER_CALL {
        return Err(Error::bad_input(
            "products",
            format!(
                "{} products; at most {MAX_PRODUCTS_PER_CALL} per call",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_product(&format!("products[{i}]"), item))
        .collect()
}

const PRODUCT_KEYS: &[&str] = &[
    "code",
    "name",
    "category",
    "unit",
    "status",
    "attributes",
    "externalIds",
    "skus",
];
const SKU_KEYS: &[&str] = &[
    "code",
    "gtin",
    "name",
    "status",
    "attributes",
    "externalIds",
];

fn parse_product(path: &str, v: &Value) -> Result<ProductInput> {
    let o = Obj::new(path, v, PRODUCT_KEYS)?;
    Ok(ProductInput {
        code: o.required("code")?,
        name: o.required("name")?,
        category: o.patch("category")?,
        unit: o.required("unit")?,
        status: o.optional("status")?,
        attributes: o.value("attributes"),
        external_ids: o.external_ids()?,
        skus: match o.array("skus")? {
            None => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(j, s)| parse_sku(&format!("{path}.skus[{j}]"), s))
                    .collect::<Result<_>>()?,
            ),
        },
    })
}

fn parse_sku(path: &str, v: &Value) -> Result<SkuInput> {
    let o = Obj::new(path, v, SKU_KEYS)?;
    Ok(SkuInput {
        code: o.required("code")?,
        gtin: o.patch("gtin")?,
        name: o.required("name")?,
        status: o.optional("status")?,
        attributes: o.value("attributes"),
        external_ids: o.external_ids()?,
    })
}

/// A JSON object being read, with its path for errors.
struct Obj<'a> {
    path: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(path: &'a str, v: &'a Value, allowed: &[&str]) -> Result<Self> {
        let Value::Object(map) = v else {
            return Err(Error::bad_input(path, "must be a JSON object"));
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let k: String = k.chars().take(40).collect();
            return Err(Error::bad_input(
                path,
                format!("unknown field {k:?}; the fields are {}", allowed.join(", ")),
            ));
        }
        Ok(Obj { path, map })
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn string(&self, key: &str, v: &Value) -> Result<String> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::bad_input(self.field(key), "must be a string"))
    }

    fn required(&self, key: &str) -> Result<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Err(Error::bad_input(self.field(key), "is required")),
            Some(v) => self.string(key, v),
        }
    }

    fn optional(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.string(key, v).map(Some),
        }
    }

    fn patch(&self, key: &str) -> Result<Patch<String>> {
        match self.map.get(key) {
            None => Ok(Patch::Keep),
            Some(Value::Null) => Ok(Patch::Clear),
            Some(v) => self.string(key, v).map(Patch::Set),
        }
    }

    fn value(&self, key: &str) -> Option<Value> {
        self.map.get(key).filter(|v| !v.is_null()).cloned()
    }

    fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(Error::bad_input(self.field(key), "must be an array")),
        }
    }

    fn external_ids(&self) -> Result<Option<Vec<ExternalId>>> {
        let Some(list) = self.array("externalIds")? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(list.len().min(MAX_EXTERNAL_IDS + 1));
        for (k, e) in list.iter().enumerate() {
            let path = format!("{}.externalIds[{k}]", self.path);
            let o = Obj::new(&path, e, &["system", "id"])?;
            out.push(ExternalId {
                system: o.required("system")?,
                id: o.required("id")?,
            });
            if out.len() > MAX_EXTERNAL_IDS {
                break; // the upsert refuses the list by its length
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(r: Result<impl std::fmt::Debug>) -> (String, String) {
        match r {
            Err(Error::BadInput { field, message }) => (field, message),
            other => panic!("expected a bad input, got {other:?}"),
        }
    }

    #[test]
    fn gtins_are_checked_and_padded_to_fourteen_digits() {
        for (raw, want) in [
            ("6901234567892", "06901234567892"),
            ("96385074", "00000096385074"),
            ("012345678905", "00012345678905"),
            (" 10614141000415 ", "10614141000415"),
        ] {
            assert_eq!(normalize_gtin("gtin", raw).unwrap(), want, "{raw}");
        }
        for (raw, message) in [
            ("6901234567891", "check digit is 2, not 1"),
            ("69012345678", "has 11 digits"),
            ("69012345678X2", "not a GTIN"),
            ("00000000", "all zeros"),
            ("123456789012345", "not a GTIN"),
        ] {
            let (_, m) = field_of(normalize_gtin("gtin", raw));
            assert!(m.contains(message), "{raw}: {m}");
        }
        let (_, m) = field_of(normalize_gtin("gtin", &"9".repeat(10_000_000)));
        assert!(m.len() < 100, "the message does not repeat a huge value");
    }

    #[test]
    fn texts_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(check_text("name", "  Cola  ", 10).unwrap(), "Cola");
        assert_eq!(check_text("name", "可口可乐", 4).unwrap(), "可口可乐");
        for bad in ["", "   ", "a\0b", "line\nbreak", "12345678901"] {
            field_of(check_text("name", bad, 10));
        }
        field_of(check_text("name", &"x".repeat(10 << 20), 10));
    }

    #[test]
    fn json_batches_name_the_offending_path() {
        let cases = [
            (json!({}), "products"),
            (json!([1]), "products[0]"),
            (json!([{"code": "P", "name": "N"}]), "products[0].unit"),
            (
                json!([{"code": "P", "name": "N", "unit": "u", "colour": 1}]),
                "products[0]",
            ),
            (
                json!([{"code": "P", "name": "N", "unit": "u", "skus": [{"code": 5, "name": "S"}]}]),
                "products[0].skus[0].code",
            ),
            (
                json!([{"code": "P", "name": "N", "unit": "u", "externalIds": [{"system": "sap"}]}]),
                "products[0].externalIds[0].id",
            ),
        ];
        for (v, want) in cases {
            let (f, _) = field_of(parse_products(&v));
            assert_eq!(f, want, "{v}");
        }
        let (f, _) = field_of(parse_products_json("[{"));
        assert_eq!(f, "products");
    }

    #[test]
    fn a_json_product_reads_null_as_clear_and_absence_as_keep() {
        let v = json!([{"code": "P", "name": "N", "unit": "u", "category": null,
                        "skus": [{"code": "S", "name": "S", "gtin": "96385074"}]}]);
        let p = parse_products(&v).unwrap().remove(0);
        assert_eq!(p.category, Patch::Clear);
        assert_eq!(p.external_ids, None);
        let s = &p.skus.unwrap()[0];
        assert_eq!(s.gtin, Patch::Set("96385074".into()));
        assert_eq!(s.status, None);
    }

    #[test]
    fn a_batch_refuses_repeats_naming_both_items() {
        let p = |code: &str, sku: &str, gtin: &str| ProductInput {
            code: code.into(),
            name: "N".into(),
            unit: "u".into(),
            skus: Some(vec![SkuInput {
                code: sku.into(),
                name: "S".into(),
                gtin: Patch::Set(gtin.into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let (f, m) = field_of(check_batch(vec![
            p("A", "S1", "96385074"),
            p("A", "S2", ""),
        ]));
        assert_eq!(f, "products[1].code");
        assert!(m.contains("products[0]"), "{m}");
        let (f, _) = field_of(check_batch(vec![p("A", "S1", ""), p("B", "S1", "")]));
        assert_eq!(f, "products[1].skus[0].code");
        let (f, _) = field_of(check_batch(vec![
            p("A", "S1", "96385074"),
            p("B", "S2", "0000096385074"),
        ]));
        assert_eq!(f, "products[1].skus[0].gtin");
        let (f, m) = field_of(check_batch(vec![p("A", "S1", "96385075")]));
        assert_eq!(
            (f.as_str(), m.as_str()),
            ("products[0].skus[0].gtin", "check digit is 4, not 5")
        );
    }
}
