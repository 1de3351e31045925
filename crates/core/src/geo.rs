//! WGS84 polygons: validity and point containment, in plain lat/lon degrees.
//!
//! Zones are small (a sector of a contact line, a crossing point), so planar
//! geometry on (lon, lat) is accurate enough and, above all, deterministic:
//! the server and every auditor must reach the same containment verdict.
//! Invariant: a polygon that passes [`check_polygon`] is simple (no
//! self-intersection), has non-zero area and does not cross the antimeridian.

/// Most vertices in one zone boundary; keeps the O(n^2) self-intersection
/// check and every containment test cheap (512^2 / 2 segment pairs ~ 130k).
pub const MAX_POLYGON_VERTICES: usize = 512;

/// A point in decimal degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

/// Checks that a coordinate is a finite WGS84 latitude/longitude.
pub fn check_point(point: Point) -> Result<(), String> {
    if !point.lat.is_finite() || !point.lon.is_finite() {
        return Err(format!(
            "coordinates must be finite numbers, got lat {} lon {}",
            point.lat, point.lon
        ));
    }
    if !(-90.0..=90.0).contains(&point.lat) {
        return Err(format!("latitude {} is outside [-90, 90]", point.lat));
    }
    if !(-180.0..=180.0).contains(&point.lon) {
        return Err(format!("longitude {} is outside [-180, 180]", point.lon));
    }
    Ok(())
}

/// Checks that `vertices` (not closed: the last joins the first) form a simple
/// polygon with non-zero area.
pub fn check_polygon(vertices: &[Point]) -> Result<(), String> {
    if vertices.len() < 3 {
        return Err(format!(
            "a polygon needs at least 3 vertices, got {}",
            vertices.len()
        ));
    }
    if vertices.len() > MAX_POLYGON_VERTICES {
        return Err(format!(
            "a polygon may have at most {MAX_POLYGON_VERTICES} vertices, got {}",
            vertices.len()
        ));
    }
    for (index, vertex) in vertices.iter().enumerate() {
        check_point(*vertex).map_err(|reason| format!("vertex {index}: {reason}"))?;
    }
    let (min_lon, max_lon) = vertices.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| {
        (lo.min(v.lon), hi.max(v.lon))
    });
    if max_lon - min_lon > 180.0 {
        return Err("a polygon may not span more than 180 degrees of longitude".into());
    }
    let n = vertices.len();
    for i in 0..n {
        for j in (i + 1)..n {
            if vertices[i] == vertices[j] {
                return Err(format!("vertices {i} and {j} are the same point"));
            }
        }
    }
    for i in 0..n {
        let a = (vertices[i], vertices[(i + 1) % n]);
        for j in (i + 1)..n {
            // Adjacent edges share a vertex; that is not an intersection.
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue;
            }
            let b = (vertices[j], vertices[(j + 1) % n]);
            if segments_intersect(a, b) {
                return Err(format!("the polygon intersects itself (edges {i} and {j})"));
            }
        }
    }
    // After the intersection check: a bow tie's halves cancel out to zero area.
    if signed_area(vertices).abs() < 1e-12 {
        return Err("the polygon is degenerate: its area is zero".into());
    }
    Ok(())
}

/// Whether `point` lies inside or on the boundary of `vertices`.
pub fn contains(vertices: &[Point], point: Point) -> bool {
    let n = vertices.len();
    let mut inside = false;
    for i in 0..n {
        let a = vertices[i];
        let b = vertices[(i + 1) % n];
        if on_segment(a, b, point) {
            return true;
        }
        if (a.lat > point.lat) != (b.lat > point.lat) {
            let crossing_lon = a.lon + (point.lat - a.lat) / (b.lat - a.lat) * (b.lon - a.lon);
            if point.lon < crossing_lon {
                inside = !inside;
            }
        }
    }
    inside
}

fn signed_area(vertices: &[Point]) -> f64 {
    let n = vertices.len();
    (0..n)
        .map(|i| {
            let a = vertices[i];
            let b = vertices[(i + 1) % n];
            a.lon * b.lat - b.lon * a.lat
        })
        .sum::<f64>()
        / 2.0
}

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a.lon - o.lon) * (b.lat - o.lat) - (a.lat - o.lat) * (b.lon - o.lon)
}

fn on_segment(a: Point, b: Point, p: Point) -> bool {
    cross(a, b, p) == 0.0
        && p.lon >= a.lon.min(b.lon)
        && p.lon <= a.lon.max(b.lon)
        && p.lat >= a.lat.min(b.lat)
        && p.lat <= a.lat.max(b.lat)
}

fn segments_intersect((p1, p2): (Point, Point), (q1, q2): (Point, Point)) -> bool {
    let d1 = cross(q1, q2, p1);
    let d2 = cross(q1, q2, p2);
    let d3 = cross(p1, p2, q1);
    let d4 = cross(p1, p2, q2);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> Point {
        Point { lat, lon }
    }

    fn square() -> Vec<Point> {
        vec![p(48.0, 37.0), p(48.0, 38.0), p(49.0, 38.0), p(49.0, 37.0)]
    }

    #[test]
    fn a_square_is_valid_and_contains_its_centre_not_outside() {
        assert!(check_polygon(&square()).is_ok());
        assert!(contains(&square(), p(48.5, 37.5)));
        assert!(
            contains(&square(), p(48.0, 37.5)),
            "boundary counts as inside"
        );
        assert!(!contains(&square(), p(47.9, 37.5)));
        assert!(!contains(&square(), p(48.5, 38.1)));
    }

    #[test]
    fn bow_tie_degenerate_and_out_of_range_polygons_are_refused() {
        let bow_tie = vec![p(48.0, 37.0), p(49.0, 38.0), p(48.0, 38.0), p(49.0, 37.0)];
        assert!(check_polygon(&bow_tie)
            .unwrap_err()
            .contains("intersects itself"));
        let line = vec![p(48.0, 37.0), p(48.5, 37.5), p(49.0, 38.0)];
        assert!(check_polygon(&line).unwrap_err().contains("degenerate"));
        assert!(check_polygon(&square()[..2]).is_err());
        let mut bad = square();
        bad[1].lat = 91.0;
        assert!(check_polygon(&bad).unwrap_err().contains("latitude"));
        bad[1].lat = f64::NAN;
        assert!(check_polygon(&bad).unwrap_err().contains("finite"));
        let mut repeated = square();
        repeated[2] = repeated[0];
        assert!(check_polygon(&repeated).is_err());
    }
}
