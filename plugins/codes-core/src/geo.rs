//! Region boundaries: GeoJSON `Polygon` and `MultiPolygon` geometries (a
//! bare geometry, or a `Feature` holding one), and point-in-region tests.
//! Coordinates are `[longitude, latitude]`, as GeoJSON says.

use serde_json::Value;

/// A validated boundary: polygons, each an outer ring and holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

/// Most vertices a boundary may have (keeps each scan's test cheap).
pub const MAX_VERTICES: usize = 20_000;

impl Boundary {
    /// Reads and checks a GeoJSON geometry; the error names what is wrong.
    pub fn from_geojson(v: &Value) -> Result<Boundary, String> {
        let geometry = match v.get("type").and_then(Value::as_str) {
            Some("Feature") => v.get("geometry").ok_or("a Feature needs a geometry")?,
            _ => v,
        };
        let coords = geometry
            .get("coordinates")
            .ok_or("a geometry needs coordinates")?;
        let polygons = match geometry.get("type").and_then(Value::as_str) {
            Some("Polygon") => vec![polygon(coords)?],
            Some("MultiPolygon") => coords
                .as_array()
                .ok_or("MultiPolygon coordinates must be an array of polygons")?
                .iter()
                .map(polygon)
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

fn polygon(v: &Value) -> Result<Vec<Vec<(f64, f64)>>, String> {
    let rings = v
        .as_array()
        .ok_or("polygon coordinates must be an array of rings")?;
    if rings.is_empty() {
        return Err("a polygon needs an outer ring".into());
    }
    rings
        .iter()
        .map(|ring| {
            let points = ring
                .as_array()
                .ok_or("a ring must be an array of [longitude, latitude] positions")?
                .iter()
                .map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([lon, lat, ..]) => {
                        let (lon, lat) = (
                            lon.as_f64().ok_or("a longitude must be a number")?,
                            lat.as_f64().ok_or("a latitude must be a number")?,
                        );
                        check_point(lat, lon)?;
                        Ok((lon, lat))
                    }
                    _ => Err("a position must be [longitude, latitude]".to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?;
            if points.len() < 4 || points.first() != points.last() {
                return Err(
                    "a ring needs at least four positions and must end where it starts".into(),
                );
            }
            Ok(points)
        })
        .collect()
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
    use serde_json::json;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Value {
        json!([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
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
                "four positions",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
                "end where it starts",
            ),
            (
                json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 200.0, 1.0)]}),
                "longitude",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[["a", 0]]]}),
                "number",
            ),
            (json!({"coordinates": []}), "type"),
        ] {
            let e = Boundary::from_geojson(&g).unwrap_err();
            assert!(e.contains(says), "{g}: {e}");
        }
    }
}
