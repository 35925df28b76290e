//! Sales regions: a hierarchy of codes (`CN`, `CN-GD`, `CN-GD-SZ`), each
//! optionally with a GeoJSON boundary for locating scans by coordinates.

use keel_codes_core::geo::Boundary;
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A region as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Region {
    pub code: String,
    pub name: String,
    /// "" for a top-level region (indexed, so the roots can be listed).
    pub parent: String,
    pub boundary: Option<Value>,
}

/// GraphQL `SalesRegion`.
#[derive(Serialize)]
pub(crate) struct RegionOut {
    code: String,
    name: String,
    parent: Option<String>,
    boundary: Option<Value>,
}

impl From<Region> for RegionOut {
    fn from(r: Region) -> Self {
        RegionOut {
            code: r.code,
            name: r.name,
            parent: (!r.parent.is_empty()).then_some(r.parent),
            boundary: r.boundary,
        }
    }
}

fn check_code(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.split('-').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "region: {code:?} is not a region code such as CN, CN-GD or CN-GD-SZ"
        )))
    }
}

/// The parent of a region code (`CN-GD` → `CN`), "" at the top.
fn parent_of(code: &str) -> &str {
    code.rsplit_once('-').map(|(p, _)| p).unwrap_or("")
}

/// True when `inner` is `outer` or lies under it.
pub(crate) fn within(inner: &str, outer: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('-'))
}

#[derive(Deserialize)]
pub(crate) struct DefineInput {
    code: String,
    name: String,
    boundary: Option<Value>,
}

/// Creates or redefines a region; its parent must exist.
pub(crate) fn define(_ctx: &Context, input: DefineInput) -> Result<RegionOut> {
    check_code(&input.code)?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name: 1-100 characters"));
    }
    let parent = parent_of(&input.code);
    if !parent.is_empty() && records::get::<Region>("regions", parent)?.is_none() {
        return Err(Error::invalid(format!(
            "region: define its parent {parent} first"
        )));
    }
    let boundary = match input.boundary {
        None | Some(Value::Null) => None,
        Some(v) => {
            // GraphQL's JSON scalar may arrive as text.
            let v = match v {
                Value::String(s) => serde_json::from_str(&s)
                    .map_err(|e| Error::invalid(format!("boundary: not JSON: {e}")))?,
                v => v,
            };
            Boundary::from_geojson(&v).map_err(|e| Error::invalid(format!("boundary: {e}")))?;
            Some(v)
        }
    };
    let region = Region {
        code: input.code.clone(),
        name: name.to_owned(),
        parent: parent.to_owned(),
        boundary,
    };
    Ok(records::put("regions", &input.code, &region, Expect::Any)?
        .data
        .into())
}

#[derive(Deserialize)]
pub(crate) struct GetInput {
    code: String,
}

pub(crate) fn get(_ctx: &Context, input: GetInput) -> Result<Option<RegionOut>> {
    Ok(records::get::<Region>("regions", &input.code)?.map(|r| r.data.into()))
}

/// An existing region, or BAD_USER_INPUT naming `field`.
pub(crate) fn require(field: &str, code: &str) -> Result<Region> {
    check_code(code)
        .map_err(|_| Error::invalid(format!("{field}: {code:?} is not a region code")))?;
    records::get::<Region>("regions", code)?
        .map(|r| r.data)
        .ok_or_else(|| Error::invalid(format!("{field}: no region {code} is defined")))
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    parent: Option<String>,
}

fn children(parent: &str) -> Result<Vec<Region>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            records::query::<Region>("regions", "parent", &json!(parent), after.as_deref(), 1000)?;
        out.extend(page.records.into_iter().map(|r| r.data));
        match page.next {
            Some(n) if out.len() < 10_000 => after = Some(n),
            _ => return Ok(out),
        }
    }
}

/// The regions directly under `parent` (the top-level ones without it).
pub(crate) fn list(_ctx: &Context, input: ListInput) -> Result<Vec<RegionOut>> {
    Ok(children(input.parent.as_deref().unwrap_or(""))?
        .into_iter()
        .map(RegionOut::from)
        .collect())
}

/// The deepest region whose boundary contains the point. A region without
/// a boundary matches nothing itself, but its children are searched.
pub(crate) fn locate(lat: f64, lon: f64) -> Result<Option<String>> {
    descend("", lat, lon, 0)
}

fn descend(parent: &str, lat: f64, lon: f64, depth: u8) -> Result<Option<String>> {
    if depth > 8 {
        return Ok(None);
    }
    for r in children(parent)? {
        match &r.boundary {
            Some(b) => {
                let inside = Boundary::from_stored(b).is_ok_and(|b| b.contains(lat, lon));
                if inside {
                    return Ok(descend(&r.code, lat, lon, depth + 1)?.or(Some(r.code)));
                }
            }
            None => {
                if let Some(found) = descend(&r.code, lat, lon, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
    }
    Ok(None)
}
