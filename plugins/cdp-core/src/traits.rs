//! Computed-trait definitions: data (JSON), declared by the brand, checked
//! on save, applied to every event a person's profile takes in.
//!
//! ```json
//! [
//!   {"name": "scans_30d", "event": "code.scanned", "agg": "count", "windowDays": 30},
//!   {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"},
//!   {"name": "last_store", "event": "order.paid", "agg": "last", "property": "store.code",
//!    "filter": {"channel": "store"}}
//! ]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Part, Stamp, scaled};

/// The most traits a tenant declares.
pub const MAX_TRAITS: usize = 100;
/// The longest window, in days.
pub const MAX_WINDOW_DAYS: u32 = 400;
/// The most day buckets a profile keeps over all windowed traits: the sum
/// of their `windowDays`, with `first`/`last` (which keep a value a day)
/// counting four times. It bounds a profile's size.
pub const MAX_WINDOW_BUDGET: u32 = 4000;
/// The most conditions of one filter.
pub const MAX_FILTER: usize = 10;
/// The longest `first`/`last` value kept, in bytes of JSON: longer values
/// are not kept (the event does not count for that trait).
pub const MAX_KEPT_VALUE: usize = 256;

/// How a trait folds the events it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    /// How many events.
    Count,
    /// The sum of a numeric property.
    Sum,
    /// The least value of a numeric property.
    Min,
    /// The greatest value of a numeric property.
    Max,
    /// The property's value in the earliest event (by time, then event id).
    First,
    /// The property's value in the latest event (by time, then event id).
    Last,
    /// How many different values of the property (up to
    /// [`crate::aggregate::MAX_DISTINCT`]), e.g. the provinces a person
    /// scanned in today.
    Distinct,
}

impl Agg {
    fn numeric(self) -> bool {
        matches!(self, Agg::Sum | Agg::Min | Agg::Max)
    }
}

/// One computed trait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraitDef {
    /// `[a-z][a-z0-9_]{0,39}`, unique in the tenant.
    pub name: String,
    /// The event type it takes, e.g. `code.scanned`.
    pub event: String,
    pub agg: Agg,
    /// The property read (dots for nesting: `store.code`); required except
    /// for `count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// Properties (dots for nesting) that must equal these scalar values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, Value>,
    /// Only events of the last N days (the tenant's UTC days, today
    /// included); all time when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
}

/// A definition refused, with the place of the mistake (`traits[2].agg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for DefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for DefError {}

fn refuse(path: impl Into<String>, message: impl Into<String>) -> DefError {
    DefError {
        path: path.into(),
        message: message.into(),
    }
}

/// An event as a trait sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub event_type: &'a str,
    /// Unique per event: ties in time are broken by it.
    pub id: &'a str,
    pub at_micros: i64,
    pub properties: &'a Value,
}

impl Observed<'_> {
    /// The UTC day of the event, as days since 1970-01-01.
    pub fn day(&self) -> i32 {
        day_of(self.at_micros)
    }
}

/// Days since 1970-01-01 of an instant in microseconds.
pub fn day_of(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

/// A name the brand gives (a trait, a tier level, a consent purpose):
/// `[a-z][a-z0-9_]{0,39}`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 40
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// An event type: dotted lowercase words, e.g. `code.scanned`.
pub fn is_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        })
}

/// Property names (letters, digits, `_` and `-`) joined by dots.
pub fn is_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        })
}

/// The value at a dotted path of an object.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Parses and checks a tenant's whole list of traits.
pub fn parse_all(v: &Value) -> Result<Vec<TraitDef>, DefError> {
    let items = v
        .as_array()
        .ok_or_else(|| refuse("traits", "expected a list of trait definitions"))?;
    if items.len() > MAX_TRAITS {
        return Err(refuse(
            "traits",
            format!("at most {MAX_TRAITS} traits, got {}", items.len()),
        ));
    }
    let mut defs: Vec<TraitDef> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let def = TraitDef::parse(item).map_err(|e| DefError {
            path: format!("traits[{i}]{}", e.path),
            message: e.message,
        })?;
        if defs.iter().any(|d| d.name == def.name) {
            return Err(refuse(
                format!("traits[{i}].name"),
                format!("{:?} is declared twice", def.name),
            ));
        }
        defs.push(def);
    }
    check_budget(&defs, "traits")?;
    Ok(defs)
}

/// The day buckets `defs` keep together: the sum of their windows, with
/// `first`/`last` counting four a day and `distinct` eight.
pub fn window_budget<'a>(defs: impl IntoIterator<Item = &'a TraitDef>) -> u32 {
    defs.into_iter()
        .filter_map(|d| {
            // A day of first/last keeps two values; of distinct, up to
            // MAX_DISTINCT small ones.
            let weight = match d.agg {
                Agg::First | Agg::Last => 4,
                Agg::Distinct => 8,
                _ => 1,
            };
            d.window_days.map(|w| w * weight)
        })
        .sum()
}

/// Refuses, at `path`, traits whose windows keep more than
/// [`MAX_WINDOW_BUDGET`] day buckets together.
pub fn check_budget<'a>(
    defs: impl IntoIterator<Item = &'a TraitDef>,
    path: &str,
) -> Result<(), DefError> {
    let budget = window_budget(defs);
    if budget > MAX_WINDOW_BUDGET {
        return Err(refuse(
            path,
            format!(
                "windows too long together: {budget} day buckets (first/last count 4 a day, distinct 8), at most {MAX_WINDOW_BUDGET}"
            ),
        ));
    }
    Ok(())
}

impl TraitDef {
    /// Parses and checks one definition; the error's path is relative
    /// (`.agg`, or empty for the whole item).
    pub fn parse(v: &Value) -> Result<TraitDef, DefError> {
        let def: TraitDef =
            serde_json::from_value(v.clone()).map_err(|e| refuse("", e.to_string()))?;
        def.check()?;
        Ok(def)
    }

    fn check(&self) -> Result<(), DefError> {
        if !is_name(&self.name) {
            return Err(refuse(
                ".name",
                format!(
                    "{:?}: lowercase letters, digits and _, starting with a letter, at most 40",
                    self.name
                ),
            ));
        }
        if !is_event_type(&self.event) {
            return Err(refuse(
                ".event",
                format!("{:?}: an event type such as code.scanned", self.event),
            ));
        }
        match (&self.property, self.agg) {
            (None, Agg::Count) => {}
            (None, agg) => {
                return Err(refuse(
                    ".property",
                    format!("{agg:?} needs the property it reads").to_lowercase(),
                ));
            }
            (Some(p), _) if !is_path(p) => {
                return Err(refuse(
                    ".property",
                    format!("{p:?}: property names (letters, digits, _ and -) joined by dots"),
                ));
            }
            (Some(_), _) => {}
        }
        if self.filter.len() > MAX_FILTER {
            return Err(refuse(
                ".filter",
                format!("at most {MAX_FILTER} conditions"),
            ));
        }
        for (path, want) in &self.filter {
            if !is_path(path) {
                return Err(refuse(
                    format!(".filter.{path}"),
                    "property names (letters, digits, _ and -) joined by dots",
                ));
            }
            if !(want.is_string() || want.is_number() || want.is_boolean()) {
                return Err(refuse(
                    format!(".filter.{path}"),
                    "a string, number or boolean the property must equal",
                ));
            }
        }
        if let Some(days) = self.window_days
            && !(1..=MAX_WINDOW_DAYS).contains(&days)
        {
            return Err(refuse(
                ".windowDays",
                format!("1..={MAX_WINDOW_DAYS} days, got {days}"),
            ));
        }
        Ok(())
    }

    /// What one event adds to this trait, or `None` when the trait does not
    /// take it (another type, the filter fails, the property is missing or
    /// of the wrong kind).
    pub fn observe(&self, e: &Observed<'_>) -> Option<Part> {
        if e.event_type != self.event {
            return None;
        }
        for (path, want) in &self.filter {
            if !lookup(e.properties, path).is_some_and(|got| equal(got, want)) {
                return None;
            }
        }
        let value = match &self.property {
            Some(p) => Some(lookup(e.properties, p)?),
            None => None,
        };
        let stamp = |v: &Value| Stamp {
            at: e.at_micros,
            id: e.id.to_owned(),
            v: v.clone(),
        };
        Some(match (self.agg, value) {
            (Agg::Count, _) => Part::one(),
            (agg, Some(v)) if agg.numeric() => Part::number(scaled(v)?),
            (Agg::First | Agg::Last | Agg::Distinct, Some(v)) => {
                if !(v.is_string() || v.is_number() || v.is_boolean())
                    || v.to_string().len() > MAX_KEPT_VALUE
                {
                    return None;
                }
                match self.agg {
                    Agg::Distinct => Part::distinct(v.to_string()),
                    _ => Part::stamped(stamp(v)),
                }
            }
            _ => return None,
        })
    }
}

/// Filter equality: numbers by value (`1` equals `1.0`).
fn equal(got: &Value, want: &Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => got == want,
    }
}
