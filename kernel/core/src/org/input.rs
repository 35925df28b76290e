//! The input of an org upsert — GraphQL's `OrgNodeInput` and the JSON
//! objects of the WIT's `upsert-nodes` — and the checks that need no
//! database, shared by both.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Boundary, GeoPoint, MAX_ATTRIBUTES_BYTES, NodeKind, NodeStatus};
use crate::master_data::{ExternalId, MAX_EXTERNAL_IDS, Patch, check_external_id, check_text};
use crate::{Error, Result};

/// The most nodes one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// The longest code, in bytes.
pub(crate) const MAX_CODE: usize = 64;
const MAX_NAME: usize = 200;
const MAX_ADDRESS: usize = 500;

/// One node of an upsert: GraphQL's `OrgNodeInput`, and the objects of the
/// JSON array that the WIT's `upsert-nodes` takes (camelCase, kinds and
/// statuses in any letter case).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeInput {
    pub code: String,
    pub kind: NodeKind,
    pub name: String,
    /// The parent's code; `null` makes the node a root.
    #[serde(default)]
    pub parent_code: Patch<String>,
    /// Left out or `null`: keep (a new node is active).
    #[serde(default)]
    pub status: Option<NodeStatus>,
    #[serde(default)]
    pub address: Patch<String>,
    #[serde(default)]
    pub location: Patch<GeoPoint>,
    /// A region's GeoJSON Polygon or MultiPolygon.
    #[serde(default)]
    pub boundary: Patch<Value>,
    /// A JSON object that replaces the stored one; `null` empties it.
    #[serde(default)]
    pub attributes: Patch<Value>,
    /// The node's complete set of external ids; `null` removes them all.
    #[serde(default)]
    pub external_ids: Patch<Vec<ExternalId>>,
}

/// Parses the WIT's `upsert-nodes` argument: a JSON array of `OrgNodeInput`
/// objects. Pass the result to [`super::upsert_nodes`], which validates it exactly
/// as it validates GraphQL's input.
pub fn parse_nodes_json(text: &str) -> Result<Vec<NodeInput>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::bad_input("nodes", format!("is not JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(Error::bad_input(
            "nodes",
            "must be a JSON array of node objects",
        ));
    };
    check_batch_size(items.len())?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item)
                .map_err(|e| Error::bad_input(format!("nodes[{i}]"), e.to_string()))
        })
        .collect()
}

pub(super) fn check_batch_size(n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(Error::bad_input(
            "nodes",
            format!("at most {MAX_BATCH} nodes per call; this batch has {n}"),
        ));
    }
    Ok(())
}

/// Checks a brand code: 1-64 of `A-Z a-z 0-9 . _ : -`, starting with a
/// letter or digit.
pub(crate) fn check_code(field: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= MAX_CODE
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(
            field,
            format!(
                "{:?} is not a code: 1-{MAX_CODE} letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
                truncate(s)
            ),
        ))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Trims and checks a line of text: 1 to `max` characters, no control
/// characters (NUL, newlines…).
fn check_external_ids(mut ids: Vec<ExternalId>) -> Result<Vec<ExternalId>> {
    if ids.len() > MAX_EXTERNAL_IDS {
        return Err(Error::bad_input(
            "externalIds",
            format!("at most {MAX_EXTERNAL_IDS} external ids per node"),
        ));
    }
    let mut systems = HashSet::new();
    for (k, x) in ids.iter_mut().enumerate() {
        *x = check_external_id(&format!("externalIds[{k}]"), x)?;
        if !systems.insert(x.system.clone()) {
            return Err(Error::bad_input(
                format!("externalIds[{k}].system"),
                format!("{} appears twice; a node has one id per system", x.system),
            ));
        }
    }
    ids.sort();
    Ok(ids)
}

/// An input item that passed the checks that need no database.
pub(super) struct Checked {
    pub(super) code: String,
    pub(super) kind: NodeKind,
    pub(super) name: String,
    pub(super) parent_code: Patch<String>,
    pub(super) status: Option<NodeStatus>,
    pub(super) address: Patch<String>,
    pub(super) location: Patch<GeoPoint>,
    pub(super) boundary: Patch<Value>,
    pub(super) attributes: Patch<Map<String, Value>>,
    pub(super) external_ids: Patch<Vec<ExternalId>>,
}

pub(super) fn check(input: &NodeInput) -> Result<Checked> {
    let n = input.clone();
    check_code("code", &n.code)?;
    let name = check_text("name", &n.name, MAX_NAME)?;
    let parent_code = n.parent_code.map(|p| {
        check_code("parentCode", &p)?;
        if p == n.code {
            return Err(Error::bad_input(
                "parentCode",
                "a node cannot be its own parent",
            ));
        }
        Ok(p)
    })?;
    let address = n.address.map(|a| check_text("address", &a, MAX_ADDRESS))?;
    let location = n.location.map(|l| {
        l.validate("location")?;
        Ok(l)
    })?;
    let boundary = n.boundary.map(|b| {
        if n.kind != NodeKind::Region {
            return Err(Error::bad_input(
                "boundary",
                format!("only a region has a boundary, not a {}", n.kind),
            ));
        }
        Ok(Boundary::parse("boundary", &b)?.to_geojson())
    })?;
    let attributes = n.attributes.map(|a| {
        let Value::Object(m) = a else {
            return Err(Error::bad_input("attributes", "must be a JSON object"));
        };
        let size = serde_json::to_string(&m)?.len();
        if size > MAX_ATTRIBUTES_BYTES {
            return Err(Error::bad_input(
                "attributes",
                format!("is {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES}"),
            ));
        }
        Ok(m)
    })?;
    let external_ids = n.external_ids.map(check_external_ids)?;
    Ok(Checked {
        code: n.code,
        kind: n.kind,
        name,
        parent_code,
        status: n.status,
        address,
        location,
        boundary,
        attributes,
        external_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::NodeStatus;

    fn field_of(r: Result<Vec<NodeInput>>) -> String {
        match r {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("expected a bad input, got {other:?}"),
        }
    }

    #[test]
    fn the_json_form_reads_like_graphqls_input() {
        let nodes = parse_nodes_json(
            r#"[{"code": "CN", "kind": "HEADQUARTERS", "name": "China"},
                {"code": "CN-GD", "kind": "region", "name": "Guangdong", "parentCode": "CN",
                 "address": null, "location": {"lat": 23.1, "lng": 113.3},
                 "externalIds": [{"system": "kingdee", "id": "R-1"}], "status": "inactive"}]"#,
        )
        .unwrap();
        assert_eq!(nodes[0].kind, NodeKind::Headquarters);
        assert_eq!(nodes[0].parent_code, Patch::Keep);
        assert_eq!(nodes[1].parent_code, Patch::Set("CN".into()));
        assert_eq!(nodes[1].address, Patch::Clear);
        assert_eq!(nodes[1].status, Some(NodeStatus::Inactive));
        assert!(matches!(nodes[1].location, Patch::Set(GeoPoint { lat, .. }) if lat == 23.1));
    }

    #[test]
    fn malformed_json_batches_name_the_offending_item() {
        assert_eq!(field_of(parse_nodes_json("{")), "nodes");
        assert_eq!(field_of(parse_nodes_json(r#"{"code": "A"}"#)), "nodes");
        assert_eq!(
            field_of(parse_nodes_json(
                r#"[{"code": "A", "kind": "store", "name": "a"}, {"code": "B", "name": "b"}]"#
            )),
            "nodes[1]"
        );
        assert_eq!(
            field_of(parse_nodes_json(
                r#"[{"code": "A", "kind": "shop", "name": "a"}]"#
            )),
            "nodes[0]"
        );
        assert_eq!(
            field_of(parse_nodes_json(
                r#"[{"code": "A", "kind": "store", "name": "a", "colour": "red"}]"#
            )),
            "nodes[0]"
        );
        let many = format!(
            "[{}]",
            vec![r#"{"code": "A", "kind": "store", "name": "a"}"#; MAX_BATCH + 1].join(",")
        );
        assert_eq!(field_of(parse_nodes_json(&many)), "nodes");
    }

    #[test]
    fn kinds_sit_only_where_a_brand_would_put_them() {
        use NodeKind::*;
        assert!(Headquarters.may_be_under(None));
        assert!(!Headquarters.may_be_under(Some(Region)));
        assert!(Region.may_be_under(Some(Region)));
        assert!(!Region.may_be_under(Some(Distributor)));
        assert!(Distributor.may_be_under(Some(Distributor)));
        assert!(Store.may_be_under(Some(Distributor)));
        for k in NodeKind::ALL {
            assert!(!k.may_be_under(Some(Store)), "{k} under a store");
            assert!(!k.may_be_under(Some(Warehouse)), "{k} under a warehouse");
        }
    }

    #[test]
    fn text_fields_refuse_control_characters_and_huge_values() {
        assert!(check_text("name", "Guangdong\0", 200).is_err());
        assert!(check_text("name", "a\nb", 200).is_err());
        assert!(check_text("name", "   ", 200).is_err());
        assert!(check_text("name", &"x".repeat(10 * 1024 * 1024), 200).is_err());
        assert_eq!(check_text("name", "  广东  ", 200).unwrap(), "广东");
        assert!(check_code("code", "CN-GD.01:a_b").is_ok());
        for bad in ["", "-CN", "CN GD", "CN/GD", "CN\0", &"A".repeat(65)] {
            assert!(check_code("code", bad).is_err(), "{bad:?}");
        }
    }
}
