//! Geometry of the organisation tree: WGS-84 points, a region's boundary (a
//! GeoJSON Polygon or MultiPolygon, validated and kept in a canonical 2-D
//! form) and the point-in-region test.
//!
//! Boundaries are planar in degrees and must not cross the antimeridian;
//! rings are checked for closure, size, sane coordinates and a non-zero
//! area, not for self-intersection.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Error, Result};

/// The most positions one boundary may have, over all its rings.
pub const MAX_BOUNDARY_POSITIONS: usize = 10_000;
/// The most rings (outer rings and holes) one boundary may have.
pub const MAX_BOUNDARY_RINGS: usize = 500;

/// A point on the earth, in WGS-84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoPoint {
    pub lat: f64,
    pub lng: f64,
}

impl GeoPoint {
    /// Checks that the point is a real place: finite, latitude within ±90,
    /// longitude within ±180. `field` names it in the error.
    pub fn validate(&self, field: &str) -> Result<()> {
        if !self.lat.is_finite() || !(-90.0..=90.0).contains(&self.lat) {
            return Err(Error::bad_input(
                format!("{field}.lat"),
                "must be a latitude between -90 and 90",
            ));
        }
        if !self.lng.is_finite() || !(-180.0..=180.0).contains(&self.lng) {
            return Err(Error::bad_input(
                format!("{field}.lng"),
                "must be a longitude between -180 and 180",
            ));
        }
        Ok(())
    }
}

/// A ring: closed, `(lng, lat)` pairs, the first equal to the last.
type Ring = Vec<(f64, f64)>;

/// A validated region boundary: polygons, each an outer ring followed by
/// its holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    polygons: Vec<Vec<Ring>>,
    /// Given as a MultiPolygon (kept so that the stored form round-trips).
    multi: bool,
}

/// The smallest latitude/longitude box around a boundary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub min_lat: f64,
    pub min_lng: f64,
    pub max_lat: f64,
    pub max_lng: f64,
}

impl Boundary {
    /// Parses and checks a GeoJSON geometry; `field` (e.g. `boundary`)
    /// prefixes the path of the offending member in errors.
    pub fn parse(field: &str, v: &Value) -> Result<Boundary> {
        let bad = |at: String, msg: &str| Error::bad_input(at, msg.to_owned());
        let Value::Object(m) = v else {
            return Err(bad(
                field.to_owned(),
                "must be a GeoJSON Polygon or MultiPolygon object",
            ));
        };
        let multi = match m.get("type").and_then(Value::as_str) {
            Some("Polygon") => false,
            Some("MultiPolygon") => true,
            _ => {
                return Err(bad(
                    format!("{field}.type"),
                    "must be Polygon or MultiPolygon (a GeoJSON geometry, not a Feature)",
                ));
            }
        };
        let coords = m
            .get("coordinates")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                bad(
                    format!("{field}.coordinates"),
                    "must be an array of linear rings",
                )
            })?;
        let mut counter = Counter::default();
        let polygons = if multi {
            if coords.is_empty() {
                return Err(bad(
                    format!("{field}.coordinates"),
                    "a MultiPolygon needs at least one polygon",
                ));
            }
            coords
                .iter()
                .enumerate()
                .map(|(i, p)| polygon(&format!("{field}.coordinates[{i}]"), p, &mut counter))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![polygon(
                &format!("{field}.coordinates"),
                &m["coordinates"],
                &mut counter,
            )?]
        };
        Ok(Boundary { polygons, multi })
    }

    /// The canonical GeoJSON: the same geometry type, 2-D positions.
    pub fn to_geojson(&self) -> Value {
        let rings = |p: &Vec<Ring>| -> Value {
            Value::Array(
                p.iter()
                    .map(|r| Value::Array(r.iter().map(|(x, y)| json!([x, y])).collect()))
                    .collect(),
            )
        };
        if self.multi {
            json!({"type": "MultiPolygon", "coordinates": self.polygons.iter().map(rings).collect::<Vec<_>>()})
        } else {
            json!({"type": "Polygon", "coordinates": rings(&self.polygons[0])})
        }
    }

    /// The box around every outer ring.
    pub fn bbox(&self) -> BoundingBox {
        let mut b = BoundingBox {
            min_lat: f64::INFINITY,
            min_lng: f64::INFINITY,
            max_lat: f64::NEG_INFINITY,
            max_lng: f64::NEG_INFINITY,
        };
        for (x, y) in self.polygons.iter().flat_map(|p| p[0].iter()) {
            b.min_lng = b.min_lng.min(*x);
            b.max_lng = b.max_lng.max(*x);
            b.min_lat = b.min_lat.min(*y);
            b.max_lat = b.max_lat.max(*y);
        }
        b
    }

    /// True when the point lies inside one of the polygons and outside its
    /// holes (even-odd rule; a point exactly on an edge may go either way).
    pub fn contains(&self, p: GeoPoint) -> bool {
        self.polygons.iter().any(|rings| {
            ring_contains(&rings[0], p) && !rings[1..].iter().any(|h| ring_contains(h, p))
        })
    }
}

#[derive(Default)]
struct Counter {
    rings: usize,
    positions: usize,
}

fn polygon(at: &str, v: &Value, counter: &mut Counter) -> Result<Vec<Ring>> {
    let rings = v.as_array().filter(|r| !r.is_empty()).ok_or_else(|| {
        Error::bad_input(
            at,
            "a polygon is a non-empty array of linear rings (the outer ring, then holes)",
        )
    })?;
    rings
        .iter()
        .enumerate()
        .map(|(i, r)| ring(&format!("{at}[{i}]"), r, counter))
        .collect()
}

fn ring(at: &str, v: &Value, counter: &mut Counter) -> Result<Ring> {
    counter.rings += 1;
    if counter.rings > MAX_BOUNDARY_RINGS {
        return Err(Error::bad_input(
            at,
            format!("a boundary may have at most {MAX_BOUNDARY_RINGS} rings"),
        ));
    }
    let positions = v
        .as_array()
        .ok_or_else(|| Error::bad_input(at, "a linear ring is an array of positions"))?;
    counter.positions += positions.len();
    if counter.positions > MAX_BOUNDARY_POSITIONS {
        return Err(Error::bad_input(
            at,
            format!("a boundary may have at most {MAX_BOUNDARY_POSITIONS} positions"),
        ));
    }
    if positions.len() < 4 {
        return Err(Error::bad_input(
            at,
            "a linear ring needs at least 4 positions, the last equal to the first",
        ));
    }
    let ring: Ring = positions
        .iter()
        .enumerate()
        .map(|(i, p)| position(&format!("{at}[{i}]"), p))
        .collect::<Result<_>>()?;
    if ring.first() != ring.last() {
        return Err(Error::bad_input(
            at,
            "the ring is not closed: its last position must equal its first",
        ));
    }
    // Twice the signed area (shoelace): zero for a ring that encloses nothing.
    let area2: f64 = ring
        .windows(2)
        .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
        .sum();
    if area2 == 0.0 || !area2.is_finite() {
        return Err(Error::bad_input(at, "the ring encloses no area"));
    }
    Ok(ring)
}

fn position(at: &str, v: &Value) -> Result<(f64, f64)> {
    let bad = || {
        Error::bad_input(
            at,
            "a position is [longitude, latitude] (optionally with an altitude)",
        )
    };
    let a = v.as_array().filter(|a| a.len() == 2 || a.len() == 3);
    let a = a.ok_or_else(bad)?;
    let (Some(lng), Some(lat)) = (a[0].as_f64(), a[1].as_f64()) else {
        return Err(bad());
    };
    if a.len() == 3 && a[2].as_f64().is_none() {
        return Err(bad());
    }
    GeoPoint { lat, lng }
        .validate(at)
        .map_err(|_| Error::bad_input(at, "longitude must be within ±180, latitude within ±90"))?;
    Ok((lng, lat))
}

fn ring_contains(ring: &Ring, p: GeoPoint) -> bool {
    let (x, y) = (p.lng, p.lat);
    let mut inside = false;
    for w in ring.windows(2) {
        let ((xi, yi), (xj, yj)) = (w[0], w[1]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Value {
        json!([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    }

    fn field(v: Value) -> String {
        match Boundary::parse("boundary", &v) {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("expected a bad input for {v}, got {other:?}"),
        }
    }

    #[test]
    fn a_polygon_with_a_hole_contains_what_is_between_its_rings() {
        let b = Boundary::parse(
            "boundary",
            &json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 10.0, 10.0), square(4.0, 4.0, 6.0, 6.0)]}),
        )
        .unwrap();
        let at = |lat, lng| b.contains(GeoPoint { lat, lng });
        assert!(at(1.0, 1.0));
        assert!(!at(5.0, 5.0), "inside the hole");
        assert!(!at(11.0, 5.0));
        assert_eq!(
            b.bbox(),
            BoundingBox {
                min_lat: 0.0,
                min_lng: 0.0,
                max_lat: 10.0,
                max_lng: 10.0
            }
        );
    }

    #[test]
    fn a_multipolygon_contains_the_points_of_each_part_and_round_trips() {
        let v = json!({"type": "MultiPolygon", "coordinates": [[square(0.0, 0.0, 1.0, 1.0)], [square(5.0, 5.0, 6.0, 6.0)]]});
        let b = Boundary::parse("boundary", &v).unwrap();
        assert!(b.contains(GeoPoint { lat: 0.5, lng: 0.5 }));
        assert!(b.contains(GeoPoint { lat: 5.5, lng: 5.5 }));
        assert!(!b.contains(GeoPoint { lat: 3.0, lng: 3.0 }));
        assert_eq!(b.to_geojson(), v);
        // Altitudes are dropped from the stored form.
        let with_alt = json!({"type": "Polygon", "coordinates": [[[0, 0, 9], [1, 0, 9], [1, 1, 9], [0, 0, 9]]]});
        let b = Boundary::parse("boundary", &with_alt).unwrap();
        assert_eq!(b.to_geojson()["coordinates"][0][1], json!([1.0, 0.0]));
    }

    #[test]
    fn bad_boundaries_are_refused_naming_the_offending_member() {
        for (v, at) in [
            (json!("Polygon"), "boundary"),
            (json!({"type": "Feature", "geometry": {}}), "boundary.type"),
            (json!({"type": "Polygon"}), "boundary.coordinates"),
            (
                json!({"type": "Polygon", "coordinates": []}),
                "boundary.coordinates",
            ),
            (
                json!({"type": "MultiPolygon", "coordinates": []}),
                "boundary.coordinates",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
                "boundary.coordinates[0]",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}),
                "boundary.coordinates[0]",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}),
                "boundary.coordinates[0]",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [181, 0], [1, 1], [0, 0]]]}),
                "boundary.coordinates[0][1]",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 91], [1, 1], [0, 0]]]}),
                "boundary.coordinates[0][1]",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], ["1", 0], [1, 1], [0, 0]]]}),
                "boundary.coordinates[0][1]",
            ),
            (
                json!({"type": "MultiPolygon", "coordinates": [[square(0.0, 0.0, 1.0, 1.0)], [[[0, 0]]]]}),
                "boundary.coordinates[1][0]",
            ),
        ] {
            assert_eq!(field(v.clone()), at, "{v}");
        }
    }

    #[test]
    fn a_boundary_is_bounded_in_positions_and_rings() {
        let n = MAX_BOUNDARY_POSITIONS;
        let mut ring: Vec<Value> = (0..n)
            .map(|i| json!([i as f64 * 0.001, (i % 2) as f64 * 0.001]))
            .collect();
        ring.push(ring[0].clone());
        let f = field(json!({"type": "Polygon", "coordinates": [ring]}));
        assert_eq!(f, "boundary.coordinates[0]");
        let many: Vec<Value> = (0..=MAX_BOUNDARY_RINGS)
            .map(|_| square(0.0, 0.0, 1.0, 1.0))
            .collect();
        let f = field(json!({"type": "Polygon", "coordinates": many}));
        assert_eq!(f, format!("boundary.coordinates[{MAX_BOUNDARY_RINGS}]"));
    }

    #[test]
    fn points_outside_the_globe_are_refused() {
        for (lat, lng, f) in [
            (91.0, 0.0, "location.lat"),
            (f64::NAN, 0.0, "location.lat"),
            (0.0, -180.5, "location.lng"),
            (0.0, f64::INFINITY, "location.lng"),
        ] {
            match (GeoPoint { lat, lng }).validate("location") {
                Err(Error::BadInput { field, .. }) => assert_eq!(field, f),
                other => panic!("{lat},{lng}: {other:?}"),
            }
        }
        assert!(
            GeoPoint {
                lat: 23.1,
                lng: 113.3
            }
            .validate("location")
            .is_ok()
        );
    }
}
