//! Region boundaries: GeoJSON `Polygon` and `MultiPolygon` geometries (a
//! bare geometry, or a `Feature` holding one), and point-in-region tests.
//! Coordinates are `[longitude, latitude]`, as GeoJSON says.
//!
//! [`Boundary::from_geojson`] is the check a boundary passes before it is
//! stored: every position a finite longitude in -180..180 and latitude in
//! -90..90, and every ring closed, of at least four positions and three
//! distinct vertices, enclosing an area, and simple (no two of its edges
//! cross or touch, except neighbours at their shared vertex). An error
//! names the ring (`coordinates[0][1]`: polygon 0, ring 1) and what is
//! wrong with it. [`Boundary::from_stored`] reads a boundary that passed it
//! without checking again, for the point tests of every scan.

use serde_json::Value;

/// A validated boundary: polygons, each an outer ring and holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

/// Most positions one polygon (its outer ring and holes) may have.
pub const MAX_POLYGON_VERTICES: usize = 10_000;
/// Most positions a boundary may have (keeps each scan's test cheap).
pub const MAX_VERTICES: usize = 20_000;
/// A ring enclosing less than this (in square degrees, about 0.01 m² at
/// the equator) encloses no area.
pub const MIN_RING_AREA: f64 = 1e-12;

impl Boundary {
    /// Reads and checks a GeoJSON geometry; the error names what is wrong
    /// and where.
    pub fn from_geojson(v: &Value) -> Result<Boundary, String> {
        read(v, true)
    }

    /// Reads a boundary that [`Boundary::from_geojson`] accepted when it
    /// was stored, checking its shape but not again its rings' geometry.
    pub fn from_stored(v: &Value) -> Result<Boundary, String> {
        read(v, false)
    }

    /// True when the point lies inside (holes excluded).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        self.polygons.iter().any(|rings| {
            let mut rings = rings.iter();
            rings.next().is_some_and(|outer| inside(outer, lon, lat))
                && !rings.any(|hole| inside(hole, lon, lat))
        })
    }
}

/// Checks a latitude and longitude pair.
pub fn check_point(lat: f64, lon: f64) -> Result<(), String> {
    if !(-90.0..=90.0).contains(&lat) || !lat.is_finite() {
        return Err(format!("latitude {lat} is outside -90..90"));
    }
    if !(-180.0..=180.0).contains(&lon) || !lon.is_finite() {
        return Err(format!("longitude {lon} is outside -180..180"));
    }
    Ok(())
}

fn read(v: &Value, strict: bool) -> Result<Boundary, String> {
    let geometry = match v.get("type").and_then(Value::as_str) {
        Some("Feature") => v.get("geometry").ok_or("a Feature needs a geometry")?,
        _ => v,
    };
    let coords = geometry
        .get("coordinates")
        .ok_or("a geometry needs coordinates")?;
    let polygons = match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => vec![polygon(coords, "coordinates", strict)?],
        Some("MultiPolygon") => coords
            .as_array()
            .ok_or("MultiPolygon coordinates must be an array of polygons")?
            .iter()
            .enumerate()
            .map(|(i, p)| polygon(p, &format!("coordinates[{i}]"), strict))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "a boundary must be a Polygon or MultiPolygon, not {other}"
            ));
        }
        None => return Err("a geometry needs a type".into()),
    };
    if polygons.is_empty() {
        return Err("a boundary needs at least one polygon".into());
    }
    let vertices: usize = polygons.iter().flatten().map(Vec::len).sum();
    if vertices > MAX_VERTICES {
        return Err(format!(
            "a boundary may have at most {MAX_VERTICES} vertices, this one has {vertices}"
        ));
    }
    Ok(Boundary { polygons })
}

/// One polygon at `at` (`coordinates` or `coordinates[i]`).
fn polygon(v: &Value, at: &str, strict: bool) -> Result<Vec<Vec<(f64, f64)>>, String> {
    let rings = v
        .as_array()
        .ok_or_else(|| format!("{at}: polygon coordinates must be an array of rings"))?;
    if rings.is_empty() {
        return Err(format!("{at}: a polygon needs an outer ring"));
    }
    // Counted before anything is read, so a huge polygon costs nothing.
    let positions: usize = rings.iter().filter_map(Value::as_array).map(Vec::len).sum();
    if positions > MAX_POLYGON_VERTICES {
        return Err(format!(
            "{at}: a polygon may have at most {MAX_POLYGON_VERTICES} vertices, this one has {positions}"
        ));
    }
    rings
        .iter()
        .enumerate()
        .map(|(i, ring)| {
            let at = format!("{at}[{i}]");
            let points = positions_of(ring, &at)?;
            let name = || {
                let role = if i == 0 { "the outer ring" } else { "a hole" };
                format!("ring {at} ({role})")
            };
            if points.len() < 4 {
                return Err(format!(
                    "{}: a ring needs at least four positions, this one has {}",
                    name(),
                    points.len()
                ));
            }
            if points.first() != points.last() {
                return Err(format!(
                    "{}: a ring must end where it starts, this one starts at {} and ends at {}",
                    name(),
                    show(points[0]),
                    show(points[points.len() - 1])
                ));
            }
            if strict {
                check_ring(&points).map_err(|e| format!("{}: {e}", name()))?;
            }
            Ok(points)
        })
        .collect()
}

fn positions_of(ring: &Value, at: &str) -> Result<Vec<(f64, f64)>, String> {
    ring.as_array()
        .ok_or_else(|| format!("{at}: a ring must be an array of [longitude, latitude] positions"))?
        .iter()
        .enumerate()
        .map(|(j, p)| match p.as_array().map(Vec::as_slice) {
            Some([lon, lat, ..]) => {
                let (lon, lat) = (
                    lon.as_f64()
                        .ok_or_else(|| format!("{at}[{j}]: a longitude must be a number"))?,
                    lat.as_f64()
                        .ok_or_else(|| format!("{at}[{j}]: a latitude must be a number"))?,
                );
                check_point(lat, lon).map_err(|e| format!("{at}[{j}]: {e}"))?;
                Ok((lon, lat))
            }
            _ => Err(format!(
                "{at}[{j}]: a position must be [longitude, latitude]"
            )),
        })
        .collect()
}

fn show((x, y): (f64, f64)) -> String {
    format!("[{x}, {y}]")
}

/// Why a closed ring (first position = last) is not a simple ring with an
/// area, if it is not.
pub fn check_ring(closed: &[(f64, f64)]) -> Result<(), String> {
    for (j, &(lon, lat)) in closed.iter().enumerate() {
        check_point(lat, lon).map_err(|e| format!("position {j}: {e}"))?;
    }
    let v = vertices(closed);
    if v.len() < 3 {
        return Err(format!(
            "a ring needs at least three distinct vertices, this one has {} (only repeated positions)",
            v.len()
        ));
    }
    if v.iter().all(|&p| orient(v[0], v[1], p) == 0.0) {
        return Err("the ring encloses no area: its vertices lie on one line".into());
    }
    if let Some((i, j)) = crossing(&v) {
        let n = v.len();
        return Err(format!(
            "the ring crosses itself: its edge {} → {} meets its edge {} → {}",
            show(v[i]),
            show(v[(i + 1) % n]),
            show(v[j]),
            show(v[(j + 1) % n])
        ));
    }
    let area = signed_area(&v).abs();
    if area < MIN_RING_AREA {
        return Err(format!(
            "the ring encloses no area ({area:e} square degrees)"
        ));
    }
    Ok(())
}

/// The ring's vertices: without the closing position and without
/// consecutive repeats (which GeoJSON allows and which change nothing).
fn vertices(closed: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let open = &closed[..closed.len().saturating_sub(1)];
    let mut v: Vec<(f64, f64)> = Vec::with_capacity(open.len());
    for &p in open {
        if v.last() != Some(&p) {
            v.push(p);
        }
    }
    while v.len() > 1 && v.first() == v.last() {
        v.pop();
    }
    v
}

/// Twice the cross product of `b - a` and `c - a`: > 0 when a, b, c turn
/// left, < 0 right, 0 on one line.
fn orient(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> f64 {
    (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
}

fn signed_area(v: &[(f64, f64)]) -> f64 {
    let n = v.len();
    (0..n)
        .map(|i| {
            let (a, b) = (v[i], v[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        / 2.0
}

/// `p`, on the line through `a` and `b`, lies between them.
fn on_segment(a: (f64, f64), b: (f64, f64), p: (f64, f64)) -> bool {
    a.0.min(b.0) <= p.0 && p.0 <= a.0.max(b.0) && a.1.min(b.1) <= p.1 && p.1 <= a.1.max(b.1)
}

/// The closed segments `p1 p2` and `q1 q2` have a point in common.
fn segments_meet(p1: (f64, f64), p2: (f64, f64), q1: (f64, f64), q2: (f64, f64)) -> bool {
    let (d1, d2) = (orient(q1, q2, p1), orient(q1, q2, p2));
    let (d3, d4) = (orient(p1, p2, q1), orient(p1, p2, q2));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on_segment(q1, q2, p1))
        || (d2 == 0.0 && on_segment(q1, q2, p2))
        || (d3 == 0.0 && on_segment(p1, p2, q1))
        || (d4 == 0.0 && on_segment(p1, p2, q2))
}

/// Edges `i` and `i + 1` (sharing vertex `i + 1`) run back over each
/// other: on one line, both leaving the shared vertex the same way.
fn folds_back(a: (f64, f64), shared: (f64, f64), c: (f64, f64)) -> bool {
    orient(a, shared, c) == 0.0
        && (a.0 - shared.0) * (c.0 - shared.0) + (a.1 - shared.1) * (c.1 - shared.1) > 0.0
}

/// Two edges of the ring (edge `i` runs from vertex `i` to `i + 1`) that
/// meet other than neighbours at their shared vertex, if any: a sweep over
/// the edges by longitude, so that only edges whose longitudes overlap are
/// compared.
fn crossing(v: &[(f64, f64)]) -> Option<(usize, usize)> {
    let n = v.len();
    let edge = |i: usize| (v[i], v[(i + 1) % n]);
    for i in 0..n {
        if folds_back(v[i], v[(i + 1) % n], v[(i + 2) % n]) {
            return Some((i, (i + 1) % n));
        }
    }
    // Each edge's box: min and max longitude, min and max latitude.
    let boxes: Vec<[f64; 4]> = (0..n)
        .map(|i| {
            let (a, b) = edge(i);
            [a.0.min(b.0), a.0.max(b.0), a.1.min(b.1), a.1.max(b.1)]
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| boxes[a][0].total_cmp(&boxes[b][0]));
    let mut active: Vec<usize> = Vec::new();
    for &i in &order {
        let [x0, _, y0, y1] = boxes[i];
        active.retain(|&j| boxes[j][1] >= x0);
        for &j in &active {
            let [_, _, v0, v1] = boxes[j];
            if v1 < y0 || v0 > y1 {
                continue;
            }
            let neighbours = (i + 1) % n == j || (j + 1) % n == i;
            if neighbours {
                continue;
            }
            let ((p1, p2), (q1, q2)) = (edge(i), edge(j));
            if segments_meet(p1, p2, q1, q2) {
                return Some((i.min(j), i.max(j)));
            }
        }
        active.push(i);
    }
    None
}

/// Even-odd ray casting.
fn inside(ring: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = ring.len() - 1;
    for i in 0..ring.len() {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Value {
        json!([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    }

    fn polygon_of(ring: &[(f64, f64)]) -> Value {
        let ring: Vec<Value> = ring.iter().map(|&(x, y)| json!([x, y])).collect();
        json!({"type": "Polygon", "coordinates": [ring]})
    }

    fn closed(mut v: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
        v.push(v[0]);
        v
    }

    #[test]
    fn points_inside_outside_and_in_holes() {
        let b = Boundary::from_geojson(&json!({
            "type": "Polygon",
            "coordinates": [square(113.0, 22.0, 115.0, 23.0), square(113.5, 22.2, 113.8, 22.4)]
        }))
        .unwrap();
        assert!(b.contains(22.5, 114.0));
        assert!(!b.contains(22.3, 113.6), "in the hole");
        assert!(!b.contains(31.2, 121.5), "Shanghai is not in the square");
        let multi = Boundary::from_geojson(&json!({
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": [
                [square(0.0, 0.0, 1.0, 1.0)], [square(10.0, 10.0, 11.0, 11.0)]
            ]}
        }))
        .unwrap();
        assert!(multi.contains(10.5, 10.5) && multi.contains(0.5, 0.5));
        assert!(!multi.contains(5.0, 5.0));
        assert_eq!(
            Boundary::from_stored(
                &json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 1.0, 1.0)]})
            )
            .unwrap(),
            Boundary::from_geojson(
                &json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 1.0, 1.0)]})
            )
            .unwrap()
        );
    }

    #[test]
    fn refuses_geometries_that_are_not_boundaries() {
        for (g, says) in [
            (
                json!({"type": "Point", "coordinates": [1, 2]}),
                "Polygon or MultiPolygon",
            ),
            (json!({"type": "Polygon"}), "coordinates"),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}),
                "ring coordinates[0] (the outer ring): a ring needs at least four positions, this one has 3",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
                "ring coordinates[0] (the outer ring): a ring must end where it starts, this one starts at [0, 0] and ends at [0, 1]",
            ),
            (
                json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 200.0, 1.0)]}),
                "coordinates[0][1]: longitude 200 is outside -180..180",
            ),
            (
                json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 1.0, 91.0)]}),
                "coordinates[0][2]: latitude 91 is outside -90..90",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[["a", 0]]]}),
                "coordinates[0][0]: a longitude must be a number",
            ),
            (json!({"coordinates": []}), "type"),
            (
                json!({"type": "Polygon", "coordinates": [[[1, 1], [1, 1], [1, 1], [1, 1]]]}),
                "ring coordinates[0] (the outer ring): a ring needs at least three distinct vertices, this one has 1",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 1], [0, 0], [0, 0]]]}),
                "three distinct vertices, this one has 2",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]}),
                "ring coordinates[0] (the outer ring): the ring encloses no area",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1e-7, 0], [0, 1e-7], [0, 0]]]}),
                "encloses no area",
            ),
            (
                // A bow-tie.
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
                "ring coordinates[0] (the outer ring): the ring crosses itself",
            ),
            (
                // A hole that is a bow-tie, in the second polygon.
                json!({"type": "MultiPolygon", "coordinates": [
                    [square(0.0, 0.0, 1.0, 1.0)],
                    [square(10.0, 10.0, 20.0, 20.0), [[11, 11], [12, 12], [12, 11], [11, 12], [11, 11]]]
                ]}),
                "ring coordinates[1][1] (a hole): the ring crosses itself",
            ),
            (
                // Two loops touching at one vertex.
                json!({"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [1, 1], [2, 2], [0, 2], [1, 1], [0, 0]]]}),
                "crosses itself",
            ),
            (
                // A spike running back along its own edge.
                json!({"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [2, 1], [0, 0]]]}),
                "crosses itself",
            ),
        ] {
            let e = Boundary::from_geojson(&g).unwrap_err();
            assert!(e.contains(says), "{g}: {e}");
        }
    }

    #[test]
    fn non_finite_coordinates_are_refused() {
        for (lat, lon) in [
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
            (f64::NEG_INFINITY, 0.0),
            (0.0, f64::NAN),
        ] {
            assert!(check_point(lat, lon).is_err(), "{lat} {lon}");
        }
        assert!(check_ring(&[(0.0, 0.0), (f64::NAN, 1.0), (1.0, 1.0), (0.0, 0.0)]).is_err());
    }

    #[test]
    fn caps_vertices_per_polygon_and_per_boundary() {
        // A circle of 10,000 positions (9,999 vertices and the closing one).
        let circle = |n: usize, cx: f64| {
            let v: Vec<(f64, f64)> = (0..n - 1)
                .map(|i| {
                    let a = i as f64 / (n - 1) as f64 * std::f64::consts::TAU;
                    (cx + a.cos(), a.sin())
                })
                .collect();
            closed(v)
        };
        let ok = polygon_of(&circle(MAX_POLYGON_VERTICES, 0.0));
        assert!(Boundary::from_geojson(&ok).is_ok());
        let big = polygon_of(&circle(MAX_POLYGON_VERTICES + 1, 0.0));
        let e = Boundary::from_geojson(&big).unwrap_err();
        assert!(
            e.contains(
                "coordinates: a polygon may have at most 10000 vertices, this one has 10001"
            ),
            "{e}"
        );
        let ring = |cx| {
            circle(7_000, cx)
                .into_iter()
                .map(|(x, y)| json!([x, y]))
                .collect::<Vec<_>>()
        };
        let three = json!({"type": "MultiPolygon", "coordinates": [[ring(0.0)], [ring(10.0)], [ring(20.0)]]});
        let e = Boundary::from_geojson(&three).unwrap_err();
        assert!(
            e.contains("at most 20000 vertices, this one has 21000"),
            "{e}"
        );
    }

    /// Every pair of edges, compared: what [`crossing`] must agree with.
    fn crossing_naive(v: &[(f64, f64)]) -> bool {
        let n = v.len();
        (0..n).any(|i| folds_back(v[i], v[(i + 1) % n], v[(i + 2) % n]))
            || (0..n).any(|i| {
                (i + 1..n).any(|j| {
                    let neighbours = (i + 1) % n == j || (j + 1) % n == i;
                    !neighbours && segments_meet(v[i], v[(i + 1) % n], v[j], v[(j + 1) % n])
                })
            })
    }

    /// A star-shaped ring around (cx, cy): angles in order, less than half
    /// a turn apart, each with a radius; simple by construction.
    fn star() -> impl Strategy<Value = Vec<(f64, f64)>> {
        (
            -170.0..170.0f64,
            -80.0..80.0f64,
            prop::collection::vec((0.0..0.8f64, 0.01..5.0f64), 4..60),
        )
            .prop_map(|(cx, cy, spokes)| {
                let n = spokes.len() as f64;
                spokes
                    .iter()
                    .enumerate()
                    .map(|(i, &(jitter, r))| {
                        let a = (i as f64 + jitter) / n * std::f64::consts::TAU;
                        (cx + r * a.cos(), cy + r * a.sin())
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn star_shaped_rings_are_accepted_either_way_round(v in star()) {
            let forward = closed(v.clone());
            prop_assert_eq!(check_ring(&forward), Ok(()));
            let mut back = v.clone();
            back.reverse();
            prop_assert_eq!(check_ring(&closed(back)), Ok(()));
            // Repeating a vertex changes nothing.
            let mut doubled = v.clone();
            doubled.insert(1, v[1]);
            prop_assert_eq!(check_ring(&closed(doubled)), Ok(()));
            // Through GeoJSON too, from any starting vertex.
            let k = v.len() / 2;
            let rotated: Vec<_> = v[k..].iter().chain(&v[..k]).copied().collect();
            prop_assert!(Boundary::from_geojson(&polygon_of(&closed(rotated))).is_ok());
        }

        #[test]
        fn a_ring_with_two_vertices_swapped_into_a_bow_tie_is_refused(
            x in -170.0..170.0f64, y in -80.0..80.0f64, w in 0.001..5.0f64, h in 0.001..5.0f64,
        ) {
            let bow_tie = closed(vec![(x, y), (x + w, y + h), (x + w, y), (x, y + h)]);
            let e = check_ring(&bow_tie).unwrap_err();
            prop_assert!(e.contains("crosses itself"), "{}", e);
        }

        #[test]
        fn the_sweep_finds_exactly_the_crossings_of_every_pair(
            v in prop::collection::vec((0i8..6, 0i8..6), 3..12),
        ) {
            // Small integer grids make touching and collinear edges common.
            let v: Vec<(f64, f64)> = v.into_iter().map(|(x, y)| (x as f64, y as f64)).collect();
            let v = vertices(&closed(v));
            prop_assume!(v.len() >= 3);
            prop_assert_eq!(crossing(&v).is_some(), crossing_naive(&v));
        }

        #[test]
        fn any_ring_is_accepted_or_refused_with_a_reason_never_a_panic(
            v in prop::collection::vec((-200.0..200.0f64, -100.0..100.0f64), 0..20),
            close in any::<bool>(),
        ) {
            let mut ring: Vec<Value> = v.iter().map(|&(x, y)| json!([x, y])).collect();
            if close && !ring.is_empty() {
                ring.push(ring[0].clone());
            }
            let g = json!({"type": "Polygon", "coordinates": [ring]});
            match Boundary::from_geojson(&g) {
                Ok(b) => {
                    let out_of_range = v.iter().any(|&(x, y)| check_point(y, x).is_err());
                    prop_assert!(!out_of_range);
                    prop_assert_eq!(Boundary::from_stored(&g), Ok(b));
                }
                Err(e) => prop_assert!(e.contains("coordinates[0]"), "{}", e),
            }
        }
    }
}
