//! Targeting rules: data (JSON), validated on save, evaluated per claim.
//!
//! ```json
//! {"all": [
//!   {"product": ["WINE-750"]},
//!   {"region": ["CN-GD"]},
//!   {"first_scan": true},
//!   {"not": {"profile": {"path": "tags", "contains": "blocked"}}},
//!   {"any": [{"tier": ["gold", "platinum"]}, {"segment": ["vip_shenzhen"]}]}
//! ]}
//! ```
//!
//! `tier` and `segment` read the person's member facts, which the rewards
//! plugin asks of the `cdp` plugin only when an open campaign needs them.

use keel_codes_core::geo::Boundary;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One condition, or a combination of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Every rule holds (true when empty).
    All(Vec<Rule>),
    /// At least one rule holds.
    Any(Vec<Rule>),
    /// The rule does not hold.
    Not(Box<Rule>),
    /// The product's SKU is one of these.
    Product(Vec<String>),
    /// The lot is one of these.
    Lot(Vec<String>),
    /// The code's batch (`B12`) is one of these.
    Batch(Vec<String>),
    /// The code's serial lies in a range of a batch.
    Serials { batch: String, from: u32, to: u32 },
    /// The scan happened in (or under) one of these regions, e.g. `CN-GD`.
    Region(Vec<String>),
    /// The scan's location lies inside this GeoJSON Polygon/MultiPolygon.
    Within(Value),
    /// The scan happened in `[from, to)`, RFC 3339.
    Between { from: String, to: String },
    /// The scan's local time of day is in `[from, to)` (`HH:MM`), at
    /// `utc_offset_minutes` (480 for China); a window may wrap midnight.
    Hours {
        from: String,
        to: String,
        #[serde(default = "china")]
        utc_offset_minutes: i32,
    },
    /// The scan is (or is not) the code's first genuine scan.
    FirstScan(bool),
    /// The scan is the person's N-th, within `min..=max` (either may be left out).
    NthScan {
        #[serde(default)]
        min: Option<u64>,
        #[serde(default)]
        max: Option<u64>,
    },
    /// A test on the person's One ID profile attribute at `path` (dots for
    /// nesting: `loyalty.tier`).
    Profile {
        path: String,
        #[serde(flatten)]
        test: ProfileTest,
    },
    /// The person's member tier (the `cdp` plugin's ladder) is one of
    /// these levels.
    Tier(Vec<String>),
    /// The person is in one of these segments of the `cdp` plugin.
    Segment(Vec<String>),
}

fn china() -> i32 {
    480
}

/// What a profile attribute must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileTest {
    Equals(Value),
    OneOf(Vec<Value>),
    /// The attribute is an array holding this value.
    Contains(Value),
    Gte(f64),
    Lte(f64),
    Exists(bool),
}

/// What a rule sees of a scan and its person.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub sku: String,
    pub lot: String,
    pub batch: String,
    pub serial: u32,
    pub region: Option<String>,
    pub location: Option<(f64, f64)>,
    /// Microseconds since 1970 (UTC).
    pub at_micros: i64,
    pub first_scan: bool,
    /// The person's scan count including this one; `None` without a person.
    pub person_scan_n: Option<u64>,
    /// The person's profile attributes (a JSON object), if any.
    pub profile: Option<Value>,
    /// The person's member facts, when a rule reads them and the `cdp`
    /// plugin answered.
    pub member: Option<Member>,
}

/// What the `cdp` plugin says of a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    pub tier: Option<String>,
    pub segments: Vec<String>,
}

/// Most conditions in one rule, and its deepest nesting.
pub const MAX_NODES: usize = 200;
pub const MAX_DEPTH: usize = 12;

impl Rule {
    /// Reads a rule from JSON, with a message naming the place of a mistake.
    pub fn parse(v: &Value) -> Result<Rule, String> {
        Self::read(v, true)
    }

    /// Reads a rule that [`Rule::parse`] accepted when it was saved: the
    /// same, but a geofence's rings are not checked again (see
    /// `keel_codes_core::geo::Boundary::from_stored`).
    pub fn parse_stored(v: &Value) -> Result<Rule, String> {
        Self::read(v, false)
    }

    fn read(v: &Value, strict: bool) -> Result<Rule, String> {
        let rule: Rule = serde_json::from_value(v.clone()).map_err(|e| format!("rule: {e}"))?;
        let mut nodes = 0;
        rule.check("rule", 0, &mut nodes, strict)?;
        Ok(rule)
    }

    fn check(&self, at: &str, depth: usize, nodes: &mut usize, strict: bool) -> Result<(), String> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(format!("rule: more than {MAX_NODES} conditions"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("{at}: nested deeper than {MAX_DEPTH}"));
        }
        let non_empty = |name: &str, list: &[String]| {
            if list.is_empty() || list.iter().any(|s| s.trim().is_empty()) {
                Err(format!("{at}.{name}: needs at least one non-empty value"))
            } else {
                Ok(())
            }
        };
        match self {
            Rule::All(rules) | Rule::Any(rules) => {
                let name = if matches!(self, Rule::All(_)) {
                    "all"
                } else {
                    "any"
                };
                if rules.is_empty() && name == "any" {
                    return Err(format!("{at}.any: needs at least one rule"));
                }
                for (i, r) in rules.iter().enumerate() {
                    r.check(&format!("{at}.{name}[{i}]"), depth + 1, nodes, strict)?;
                }
                Ok(())
            }
            Rule::Not(r) => r.check(&format!("{at}.not"), depth + 1, nodes, strict),
            Rule::Product(l) => non_empty("product", l),
            Rule::Lot(l) => non_empty("lot", l),
            Rule::Batch(l) => non_empty("batch", l),
            Rule::Region(l) => non_empty("region", l),
            Rule::Tier(l) => non_empty("tier", l),
            Rule::Segment(l) => non_empty("segment", l),
            Rule::Serials { batch, from, to } => {
                if batch.is_empty() || *from < 1 || to < from {
                    return Err(format!("{at}.serials: needs a batch and 1 <= from <= to"));
                }
                Ok(())
            }
            Rule::Within(g) => if strict {
                Boundary::from_geojson(g)
            } else {
                Boundary::from_stored(g)
            }
            .map(|_| ())
            .map_err(|e| format!("{at}.within: {e}")),
            Rule::Between { from, to } => {
                let (f, t) = (micros(from), micros(to));
                match (f, t) {
                    (Some(f), Some(t)) if f < t => Ok(()),
                    (Some(_), Some(_)) => Err(format!("{at}.between: from must be before to")),
                    _ => Err(format!("{at}.between: from and to must be RFC 3339 times")),
                }
            }
            Rule::Hours {
                from,
                to,
                utc_offset_minutes,
            } => {
                if minute_of_day(from).is_none() || minute_of_day(to).is_none() {
                    return Err(format!("{at}.hours: from and to must be HH:MM"));
                }
                if from == to {
                    return Err(format!("{at}.hours: an empty window"));
                }
                if utc_offset_minutes.abs() > 14 * 60 {
                    return Err(format!(
                        "{at}.hours: utc_offset_minutes must be within ±840"
                    ));
                }
                Ok(())
            }
            Rule::FirstScan(_) => Ok(()),
            Rule::NthScan { min, max } => match (min, max) {
                (None, None) => Err(format!("{at}.nth_scan: needs min or max")),
                (Some(a), Some(b)) if a > b => Err(format!("{at}.nth_scan: min above max")),
                (Some(0), _) => Err(format!("{at}.nth_scan: scans count from 1")),
                _ => Ok(()),
            },
            Rule::Profile { path, test } => {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(format!(
                        "{at}.profile: path must be like tier or loyalty.tier"
                    ));
                }
                if let ProfileTest::OneOf(l) = test
                    && l.is_empty()
                {
                    return Err(format!("{at}.profile.one_of: needs at least one value"));
                }
                Ok(())
            }
        }
    }

    /// True when the rule holds for `f`.
    pub fn eval(&self, f: &Facts) -> bool {
        let any_of = |list: &[String], v: &str| list.iter().any(|x| x == v);
        match self {
            Rule::All(rules) => rules.iter().all(|r| r.eval(f)),
            Rule::Any(rules) => rules.iter().any(|r| r.eval(f)),
            Rule::Not(r) => !r.eval(f),
            Rule::Product(l) => any_of(l, &f.sku),
            Rule::Lot(l) => any_of(l, &f.lot),
            Rule::Batch(l) => any_of(l, &f.batch),
            Rule::Serials { batch, from, to } => {
                *batch == f.batch && (*from..=*to).contains(&f.serial)
            }
            Rule::Region(l) => f.region.as_deref().is_some_and(|r| {
                l.iter().any(|outer| {
                    r == outer
                        || r.strip_prefix(outer.as_str())
                            .is_some_and(|rest| rest.starts_with('-'))
                })
            }),
            // Checked in full when the campaign was saved.
            Rule::Within(g) => match (f.location, Boundary::from_stored(g)) {
                (Some((lat, lon)), Ok(b)) => b.contains(lat, lon),
                _ => false,
            },
            Rule::Between { from, to } => match (micros(from), micros(to)) {
                (Some(a), Some(b)) => (a..b).contains(&f.at_micros),
                _ => false,
            },
            Rule::Hours {
                from,
                to,
                utc_offset_minutes,
            } => {
                let (Some(a), Some(b)) = (minute_of_day(from), minute_of_day(to)) else {
                    return false;
                };
                let local =
                    (f.at_micros / 60_000_000 + *utc_offset_minutes as i64).rem_euclid(1440);
                if a < b {
                    (a..b).contains(&local)
                } else {
                    local >= a || local < b
                }
            }
            Rule::FirstScan(want) => f.first_scan == *want,
            Rule::Tier(l) => f
                .member
                .as_ref()
                .and_then(|m| m.tier.as_ref())
                .is_some_and(|t| l.contains(t)),
            Rule::Segment(l) => f
                .member
                .as_ref()
                .is_some_and(|m| m.segments.iter().any(|s| l.contains(s))),
            Rule::NthScan { min, max } => f
                .person_scan_n
                .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
            Rule::Profile { path, test } => {
                let v = f
                    .profile
                    .as_ref()
                    .and_then(|p| path.split('.').try_fold(p, |v, key| v.get(key)));
                match test {
                    ProfileTest::Exists(want) => v.is_some_and(|v| !v.is_null()) == *want,
                    ProfileTest::Equals(x) => v == Some(x),
                    ProfileTest::OneOf(xs) => v.is_some_and(|v| xs.contains(v)),
                    ProfileTest::Contains(x) => {
                        v.and_then(Value::as_array).is_some_and(|a| a.contains(x))
                    }
                    ProfileTest::Gte(x) => v.and_then(Value::as_f64).is_some_and(|n| n >= *x),
                    ProfileTest::Lte(x) => v.and_then(Value::as_f64).is_some_and(|n| n <= *x),
                }
            }
        }
    }
}

impl Rule {
    /// Whether it reads the member tier (a `tier` leaf anywhere).
    pub fn reads_tier(&self) -> bool {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().any(Rule::reads_tier),
            Rule::Not(r) => r.reads_tier(),
            Rule::Tier(_) => true,
            _ => false,
        }
    }

    /// The segments it names, and whether it reads member facts at all
    /// (`tier` or `segment`).
    pub fn member_needs(&self, segments: &mut Vec<String>) -> bool {
        match self {
            Rule::All(rs) | Rule::Any(rs) => {
                // Every child, so that every segment named is collected.
                let mut needs = false;
                for r in rs {
                    needs |= r.member_needs(segments);
                }
                needs
            }
            Rule::Not(r) => r.member_needs(segments),
            Rule::Segment(l) => {
                for s in l {
                    if !segments.contains(s) {
                        segments.push(s.clone());
                    }
                }
                true
            }
            Rule::Tier(_) => true,
            _ => false,
        }
    }
}

fn minute_of_day(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && s.len() == 5).then_some(h * 60 + m)
}

/// Microseconds since 1970 of an RFC 3339 time.
pub fn micros(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}
