//! What a computed trait keeps per person.
//!
//! A [`Part`] is the aggregate of some events: a count, an exact sum, the
//! least and greatest value, the earliest and latest value stamped with
//! `(time, event id)`, and the distinct values (the [`MAX_DISTINCT`]
//! least of them, as JSON text: the least of a union are the least of the
//! parts' least, so this too folds in any order). Combining parts is associative and commutative, so
//! a profile reaches the same state whatever order its events arrive in,
//! and two persons' states fold into one on a merge. Sums are exact: each
//! number is kept in ten-thousandths ([`SCALE`]) as an integer.
//!
//! A trait with a window keeps one part per UTC day and reads the days of
//! its window; days that have left every window are dropped
//! ([`TraitState::prune`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::traits::{Agg, TraitDef};

/// Numbers are kept in units of 1/SCALE: four decimal places, the rest
/// rounded half away from zero.
pub const SCALE: i128 = 10_000;
/// The largest magnitude of a number a trait takes; larger numbers do not
/// count.
pub const MAX_NUMBER: f64 = 1e15;

/// The most distinct values a part keeps: a `distinct` trait counts up to
/// this many (and says this many for more).
pub const MAX_DISTINCT: usize = 100;

/// A value with the time and id of the event that carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// Microseconds since 1970.
    pub at: i64,
    /// The event's id: ties in time are broken by it.
    pub id: String,
    pub v: Value,
}

impl Stamp {
    fn key(&self) -> (i64, &str) {
        (self.at, &self.id)
    }
}

/// The aggregate of some events (see the module's docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    #[serde(default)]
    pub n: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sum: i128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Stamp>,
    /// The distinct values seen, as JSON text, at most [`MAX_DISTINCT`].
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub distinct: BTreeSet<String>,
}

fn is_zero(v: &i128) -> bool {
    *v == 0
}

/// A JSON number in units of 1/[`SCALE`]; `None` for anything else, and
/// for numbers beyond ±[`MAX_NUMBER`].
pub fn scaled(v: &Value) -> Option<i128> {
    if let Some(i) = v.as_i64() {
        return (i.unsigned_abs() as f64 <= MAX_NUMBER).then(|| i128::from(i) * SCALE);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f.abs() <= MAX_NUMBER).then(|| (f * SCALE as f64).round() as i128)
}

/// A scaled number as JSON: an integer when it is whole.
pub fn unscaled(v: i128) -> Value {
    if v % SCALE == 0
        && let Ok(i) = i64::try_from(v / SCALE)
    {
        return Value::from(i);
    }
    serde_json::Number::from_f64(v as f64 / SCALE as f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

impl Part {
    /// One event, counted.
    pub fn one() -> Part {
        Part {
            n: 1,
            ..Part::default()
        }
    }

    /// One event carrying a number (scaled).
    pub fn number(v: i128) -> Part {
        Part {
            n: 1,
            sum: v,
            min: Some(v),
            max: Some(v),
            ..Part::default()
        }
    }

    /// One event carrying a value for `first` and `last`.
    pub fn stamped(s: Stamp) -> Part {
        Part {
            n: 1,
            first: Some(s.clone()),
            last: Some(s),
            ..Part::default()
        }
    }

    /// One event carrying a value to count once.
    pub fn distinct(v: String) -> Part {
        Part {
            n: 1,
            distinct: BTreeSet::from([v]),
            ..Part::default()
        }
    }

    /// Folds `other` in.
    pub fn combine(&mut self, other: &Part) {
        self.n = self.n.saturating_add(other.n);
        self.sum = self.sum.saturating_add(other.sum);
        self.min = pick(self.min, other.min, std::cmp::min);
        self.max = pick(self.max, other.max, std::cmp::max);
        if let Some(o) = &other.first
            && self.first.as_ref().is_none_or(|s| o.key() < s.key())
        {
            self.first = Some(o.clone());
        }
        if let Some(o) = &other.last
            && self.last.as_ref().is_none_or(|s| o.key() > s.key())
        {
            self.last = Some(o.clone());
        }
        if !other.distinct.is_empty() {
            self.distinct.extend(other.distinct.iter().cloned());
            while self.distinct.len() > MAX_DISTINCT {
                self.distinct.pop_last();
            }
        }
    }

    /// The trait's value for these events.
    pub fn value(&self, agg: Agg) -> Value {
        match agg {
            Agg::Count => Value::from(self.n),
            Agg::Sum => unscaled(self.sum),
            Agg::Min => self.min.map(unscaled).unwrap_or(Value::Null),
            Agg::Max => self.max.map(unscaled).unwrap_or(Value::Null),
            Agg::First => self
                .first
                .as_ref()
                .map(|s| s.v.clone())
                .unwrap_or(Value::Null),
            Agg::Last => self
                .last
                .as_ref()
                .map(|s| s.v.clone())
                .unwrap_or(Value::Null),
            Agg::Distinct => Value::from(self.distinct.len()),
        }
    }
}

fn pick(a: Option<i128>, b: Option<i128>, f: fn(i128, i128) -> i128) -> Option<i128> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// One trait's state for one person.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraitState {
    /// All time (a trait without a window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Part>,
    /// Per UTC day, as days since 1970 (a trait with a window).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<i32, Part>,
}

impl TraitState {
    /// Adds what one event (of `day`) contributes.
    pub fn add(&mut self, def: &TraitDef, day: i32, part: Part) {
        self.fold(def, day, &part);
    }

    fn fold(&mut self, def: &TraitDef, day: i32, part: &Part) {
        match def.window_days {
            None => self.all.get_or_insert_with(Part::default).combine(part),
            Some(_) => self.days.entry(day).or_default().combine(part),
        }
    }

    /// Folds another person's state of the same trait in (a merge).
    pub fn merge(&mut self, def: &TraitDef, other: &TraitState) {
        if let Some(all) = &other.all {
            self.fold(def, 0, all);
        }
        for (day, part) in &other.days {
            self.fold(def, *day, part);
        }
    }

    /// Drops the days no window reaches any more, as of `today`.
    pub fn prune(&mut self, def: &TraitDef, today: i32) {
        if let Some(w) = def.window_days {
            let oldest = today - w as i32 + 1;
            self.days.retain(|d, _| *d >= oldest);
        }
    }

    /// The events the trait counts as of `today` (days since 1970).
    pub fn part(&self, def: &TraitDef, today: i32) -> Part {
        match def.window_days {
            None => self.all.clone().unwrap_or_default(),
            Some(w) => {
                let mut total = Part::default();
                for (_, p) in self.days.range(today - w as i32 + 1..=today) {
                    total.combine(p);
                }
                total
            }
        }
    }

    /// The trait's value as of `today`.
    pub fn value(&self, def: &TraitDef, today: i32) -> Value {
        self.part(def, today).value(def.agg)
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.days.is_empty()
    }
}
