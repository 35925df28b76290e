//! Sales regions, read from the kernel's organisation tree: a region is an
//! org node of kind `region` (`CN`, `CN-GD`, `CN-GD-SZ`), optionally with a
//! GeoJSON boundary for locating scans by coordinates. The tree is the
//! brand's (written with `upsertOrgNodes`); codes reads it, except through
//! the deprecated `defineRegion`.

use std::collections::HashMap;

use keel_codes_core::geo::Boundary;
use keel_sdk::org::{self, GeoPoint, Node, NodeKey, NodeKind};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// GraphQL `SalesRegion`.
#[derive(Debug, Serialize)]
pub(crate) struct RegionOut {
    code: String,
    name: String,
    /// The parent's code when the parent is a region too.
    parent: Option<String>,
    boundary: Option<Value>,
}

/// A node kind in plain words, for errors.
pub(crate) fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Headquarters => "headquarters",
        NodeKind::Region => "region",
        NodeKind::Distributor => "distributor",
        NodeKind::Store => "store",
        NodeKind::Warehouse => "warehouse",
    }
}

/// Writes whole numbers as integers (`113`, not `113.0`): the kernel keeps
/// boundaries as floating point, and clients compare what they sent.
pub(crate) fn compact_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(compact_numbers).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, compact_numbers(v)))
                .collect::<Map<_, _>>(),
        ),
        v => v,
    }
}

fn out(n: Node) -> Result<RegionOut> {
    let parent = match &n.parent_id {
        Some(id) => org::get_node(&NodeKey::Id(id.clone()))?
            .filter(|p| p.kind == NodeKind::Region)
            .map(|p| p.code),
        None => None,
    };
    Ok(RegionOut {
        code: n.code,
        name: n.name,
        parent,
        boundary: n.boundary.map(compact_numbers),
    })
}

/// The region node with this code, if the tree has one of kind `region`.
fn find(code: &str) -> Result<Option<Node>> {
    if code.is_empty() || code.len() > 64 {
        return Ok(None);
    }
    Ok(org::get_node(&NodeKey::Code(code.to_owned()))?.filter(|n| n.kind == NodeKind::Region))
}

/// The region `code`, or BAD_USER_INPUT naming `field`.
pub(crate) fn require(field: &str, code: &str) -> Result<Node> {
    if code.is_empty() || code.len() > 64 {
        return Err(Error::invalid(format!(
            "{field}: {code:?} is not a region code"
        )));
    }
    match org::get_node(&NodeKey::Code(code.to_owned()))? {
        Some(n) if n.kind == NodeKind::Region => Ok(n),
        Some(n) => Err(Error::invalid(format!(
            "{field}: {code} is a {} of the org tree, not a region",
            kind_name(n.kind)
        ))),
        None => Err(Error::invalid(format!(
            "{field}: no region {code} is defined"
        ))),
    }
}

/// Checks a region code of the deprecated `defineRegion`: `CN`, `CN-GD`…
pub(crate) fn check_code(code: &str) -> Result<()> {
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
pub(crate) fn parent_of(code: &str) -> &str {
    code.rsplit_once('-').map(|(p, _)| p).unwrap_or("")
}

/// Checks a boundary as codes always has (its errors name the ring), and
/// returns the GeoJSON geometry the kernel takes (a `Feature`'s geometry).
pub(crate) fn check_boundary(v: &Value) -> std::result::Result<Value, String> {
    Boundary::from_geojson(v)?;
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("Feature") => v.get("geometry").cloned().unwrap_or(Value::Null),
        _ => v.clone(),
    })
}

#[derive(Deserialize)]
pub(crate) struct DefineInput {
    code: String,
    name: String,
    boundary: Option<Value>,
}

/// Deprecated `defineRegion`: creates or redefines a region node of the
/// org tree (needs `org-write`); `upsertOrgNodes` replaces it. A new region
/// goes under the region its code names (`CN-GD` under `CN`), which must
/// exist; an existing one keeps its place in the tree.
pub(crate) fn define(_ctx: &Context, input: DefineInput) -> Result<RegionOut> {
    check_code(&input.code)?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name: 1-100 characters"));
    }
    let boundary = match input.boundary {
        None | Some(Value::Null) => Value::Null,
        Some(v) => {
            // GraphQL's JSON scalar may arrive as text.
            let v = match v {
                Value::String(s) => serde_json::from_str(&s)
                    .map_err(|e| Error::invalid(format!("boundary: not JSON: {e}")))?,
                v => v,
            };
            check_boundary(&v).map_err(|e| Error::invalid(format!("boundary: {e}")))?
        }
    };
    let mut item =
        json!({"code": input.code, "kind": "region", "name": name, "boundary": boundary});
    match org::get_node(&NodeKey::Code(input.code.clone()))? {
        Some(n) if n.kind != NodeKind::Region => {
            return Err(Error::Conflict(format!(
                "region: {} is a {} of the org tree, not a region",
                input.code,
                kind_name(n.kind)
            )));
        }
        Some(_) => {}
        None => {
            let parent = parent_of(&input.code);
            if !parent.is_empty() {
                if find(parent)?.is_none() {
                    return Err(Error::invalid(format!(
                        "region: define its parent {parent} first"
                    )));
                }
                item["parentCode"] = json!(parent);
            }
        }
    }
    org::upsert_nodes(&[item]).map_err(|e| match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("region {}: {m}", input.code)),
        e => e,
    })?;
    let node = find(&input.code)?
        .ok_or_else(|| Error::Internal(format!("region {} vanished", input.code)))?;
    out(node)
}

#[derive(Deserialize)]
pub(crate) struct GetInput {
    code: String,
}

/// Deprecated `region(code)`: `orgNode(code:)` replaces it.
pub(crate) fn get(_ctx: &Context, input: GetInput) -> Result<Option<RegionOut>> {
    find(&input.code)?.map(out).transpose()
}

#[derive(Deserialize)]
pub(crate) struct ListInput {
    parent: Option<String>,
}

/// Most regions one listing returns.
const MAX_LISTED: usize = 10_000;

/// The direct children of `parent` (`None`: the roots), in code order.
fn children_of(parent: Option<&str>) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = org::children(parent, after.as_deref(), 200)?;
        out.extend(page.nodes);
        match page.next {
            Some(n) if out.len() < MAX_LISTED => after = Some(n),
            _ => return Ok(out),
        }
    }
}

/// Deprecated `regions(parent)`: the regions directly under `parent`, or
/// the top-level ones (regions that are roots or sit under headquarters).
/// `orgNodes(parent:)` replaces it.
pub(crate) fn list(_ctx: &Context, input: ListInput) -> Result<Vec<RegionOut>> {
    let nodes = match input.parent.as_deref() {
        Some(code) => match org::get_node(&NodeKey::Code(code.to_owned()))? {
            Some(p) => children_of(Some(&p.id))?,
            None => Vec::new(),
        },
        None => {
            let mut top = Vec::new();
            for root in children_of(None)? {
                if root.kind == NodeKind::Headquarters {
                    top.extend(children_of(Some(&root.id))?);
                } else {
                    top.push(root);
                }
            }
            top.sort_by(|a, b| a.code.cmp(&b.code));
            top
        }
    };
    nodes
        .into_iter()
        .filter(|n| n.kind == NodeKind::Region)
        .map(out)
        .collect()
}

/// The innermost region whose boundary contains the point.
pub(crate) fn locate(lat: f64, lon: f64) -> Result<Option<Node>> {
    Ok(org::regions_at(GeoPoint { lat, lng: lon })?
        .into_iter()
        .next())
}

/// True when the region node `inner` is the region `outer_code` or lies
/// under it. `outer_id`, when known (a shipment stores it), saves a lookup.
pub(crate) fn within(inner: &Node, outer_code: &str, outer_id: Option<&str>) -> Result<bool> {
    if inner.code == outer_code {
        return Ok(true);
    }
    let outer = match outer_id {
        Some(id) => id.to_owned(),
        None => match org::get_node(&NodeKey::Code(outer_code.to_owned()))? {
            Some(n) => n.id,
            None => return Ok(false),
        },
    };
    org::is_within(&inner.id, &outer)
}

/// Answers "is region code X within region code Y" for many X and one Y,
/// asking the tree once per X (reports).
pub(crate) struct WithinCache {
    outer_code: String,
    outer_id: Option<String>,
    seen: HashMap<String, bool>,
}

impl WithinCache {
    pub(crate) fn new(outer_code: &str) -> Result<WithinCache> {
        Ok(WithinCache {
            outer_code: outer_code.to_owned(),
            outer_id: org::get_node(&NodeKey::Code(outer_code.to_owned()))?.map(|n| n.id),
            seen: HashMap::new(),
        })
    }

    pub(crate) fn contains(&mut self, code: &str) -> Result<bool> {
        if let Some(b) = self.seen.get(code) {
            return Ok(*b);
        }
        let inside = code == self.outer_code
            || match (&self.outer_id, find(code)?) {
                (Some(outer), Some(inner)) => org::is_within(&inner.id, outer)?,
                _ => false,
            };
        self.seen.insert(code.to_owned(), inside);
        Ok(inside)
    }
}
