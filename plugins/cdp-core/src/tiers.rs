//! Member tiers (会员等级): a ladder of levels by what a person earned or
//! spent over a calendar period, declared by the brand as data.
//!
//! ```json
//! {"basis": {"event": "order.paid", "agg": "sum", "property": "total"},
//!  "period": "year",
//!  "levels": [
//!    {"id": "member", "name": "会员 Member", "min": 0},
//!    {"id": "silver", "name": "银卡 Silver", "min": 1000, "multiplier": 1.2},
//!    {"id": "gold", "name": "金卡 Gold", "min": 5000, "multiplier": 1.5}
//!  ]}
//! ```
//!
//! A person's level is the highest whose `min` the basis reached **in the
//! current period or the one before it**: reaching a level upgrades at
//! once, and a level is kept through the whole next period, so a
//! downgrade happens only when a period ends (to what the period that just
//! ended earned). The level is a pure function of two period totals, so it
//! is the same whatever order events arrive in, and after a merge (the
//! totals combine). Periods are UTC calendar months, quarters or years.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Part, SCALE, scaled};
use crate::traits::{Agg, DefError, Observed, TraitDef, is_name};

/// The most levels of a ladder.
pub const MAX_LEVELS: usize = 10;
/// The greatest points multiplier a level grants.
pub const MAX_MULTIPLIER: f64 = 10.0;

/// A calendar period, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Month,
    Quarter,
    Year,
}

/// What a ladder counts: a `count` or a `sum` of an event type's property,
/// with an optional filter (as a computed trait's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Basis {
    pub event: String,
    pub agg: Agg,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, Value>,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Level {
    /// `[a-z][a-z0-9_]{0,39}`, unique in the ladder.
    pub id: String,
    /// Shown to people: 1-40 characters, any script.
    pub name: String,
    /// The basis a period must reach (≥ 0, ascending along the ladder).
    pub min: Value,
    /// Points the rewards plugin awards are multiplied by this (1-10, at
    /// most two decimals; 1 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

impl Level {
    /// The multiplier in hundredths (`150` for 1.5).
    pub fn multiplier_hundredths(&self) -> u32 {
        (self.multiplier.unwrap_or(1.0) * 100.0).round() as u32
    }
}

/// A tenant's ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ladder {
    pub basis: Basis,
    pub period: Period,
    pub levels: Vec<Level>,
}

fn refuse(path: impl Into<String>, message: impl Into<String>) -> DefError {
    DefError {
        path: path.into(),
        message: message.into(),
    }
}

impl Ladder {
    /// Parses and checks a ladder; an error names its place
    /// (`tiers.levels[1].min`).
    pub fn parse(v: &Value) -> Result<Ladder, DefError> {
        let ladder: Ladder =
            serde_json::from_value(v.clone()).map_err(|e| refuse("tiers", e.to_string()))?;
        ladder.check()?;
        Ok(ladder)
    }

    fn check(&self) -> Result<(), DefError> {
        if !matches!(self.basis.agg, Agg::Count | Agg::Sum) {
            return Err(refuse("tiers.basis.agg", "count or sum"));
        }
        self.basis_trait()
            .check_as_basis()
            .map_err(|e| refuse(format!("tiers.basis{}", e.path), e.message))?;
        if self.levels.is_empty() || self.levels.len() > MAX_LEVELS {
            return Err(refuse(
                "tiers.levels",
                format!("1-{MAX_LEVELS} levels, got {}", self.levels.len()),
            ));
        }
        let mut below: Option<i128> = None;
        for (i, l) in self.levels.iter().enumerate() {
            let at = format!("tiers.levels[{i}]");
            if !is_name(&l.id) {
                return Err(refuse(
                    format!("{at}.id"),
                    format!(
                        "{:?}: lowercase letters, digits and _, starting with a letter, at most 40",
                        l.id
                    ),
                ));
            }
            if self.levels[..i].iter().any(|o| o.id == l.id) {
                return Err(refuse(
                    format!("{at}.id"),
                    format!("{:?} is declared twice", l.id),
                ));
            }
            let n = l.name.trim().chars().count();
            if n == 0 || n > 40 || l.name.chars().any(char::is_control) {
                return Err(refuse(
                    format!("{at}.name"),
                    "1-40 characters, no control characters",
                ));
            }
            let min = scaled(&l.min)
                .filter(|m| *m >= 0)
                .ok_or_else(|| refuse(format!("{at}.min"), "a number ≥ 0"))?;
            if below.is_some_and(|b| min <= b) {
                return Err(refuse(
                    format!("{at}.min"),
                    "greater than the level below it's",
                ));
            }
            below = Some(min);
            if let Some(m) = l.multiplier
                && !((1.0..=MAX_MULTIPLIER).contains(&m)
                    && ((m * 100.0).round() - m * 100.0).abs() < 1e-9)
            {
                return Err(refuse(
                    format!("{at}.multiplier"),
                    format!("1-{MAX_MULTIPLIER}, at most two decimals"),
                ));
            }
        }
        Ok(())
    }

    /// The basis as a computed trait (all time), to observe events with.
    fn basis_trait(&self) -> TraitDef {
        TraitDef {
            name: "tier".into(),
            event: self.basis.event.clone(),
            agg: self.basis.agg,
            property: self.basis.property.clone(),
            filter: self.basis.filter.clone(),
            window_days: None,
        }
    }

    /// What one event adds to the basis, if it counts.
    pub fn observe(&self, e: &Observed<'_>) -> Option<Part> {
        self.basis_trait().observe(e)
    }

    /// The index of `day`'s period (days since 1970, UTC).
    pub fn period_of(&self, day: i32) -> i32 {
        let (y, m, _) = civil(day);
        match self.period {
            Period::Year => y,
            Period::Quarter => y * 4 + (m as i32 - 1) / 3,
            Period::Month => y * 12 + (m as i32 - 1),
        }
    }

    /// The first day of period `index`.
    pub fn period_start(&self, index: i32) -> i32 {
        let (y, m) = match self.period {
            Period::Year => (index, 1),
            Period::Quarter => (index.div_euclid(4), index.rem_euclid(4) as u32 * 3 + 1),
            Period::Month => (index.div_euclid(12), index.rem_euclid(12) as u32 + 1),
        };
        days_from_civil(y, m, 1)
    }

    /// A period total in the basis's units, scaled (as a level's `min`).
    fn total(&self, p: &Part) -> i128 {
        match self.basis.agg {
            Agg::Count => i128::from(p.n) * SCALE,
            _ => p.sum,
        }
    }

    /// The rank (index into `levels`) a period total reaches, if any.
    fn rank_of(&self, total: i128) -> Option<usize> {
        self.levels
            .iter()
            .rposition(|l| scaled(&l.min).is_some_and(|m| total >= m))
    }

    /// The rank of the level `id`.
    pub fn rank(&self, id: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.id == id)
    }
}

/// What a profile keeps for its tier: the basis's total per period, for
/// the current period and the one before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub periods: BTreeMap<i32, Part>,
}

/// Where a person stands on the ladder as of a day.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// The level held (its rank), if the person reached any.
    pub rank: Option<usize>,
    /// The basis so far this period, unscaled.
    pub this_period: Value,
    /// The rank the current period alone has reached.
    pub earned: Option<usize>,
    /// The first day of the next period: when a level not earned again
    /// this period is lost.
    pub period_ends: i32,
}

impl TierState {
    /// Adds what one event (of `day`) contributes.
    pub fn add(&mut self, ladder: &Ladder, day: i32, part: &Part) {
        self.periods
            .entry(ladder.period_of(day))
            .or_default()
            .combine(part);
    }

    /// Folds another person's state in (a merge).
    pub fn merge(&mut self, other: &TierState) {
        for (i, p) in &other.periods {
            self.periods.entry(*i).or_default().combine(p);
        }
    }

    /// Drops the periods before the previous one, as of `today`.
    pub fn prune(&mut self, ladder: &Ladder, today: i32) {
        let previous = ladder.period_of(today) - 1;
        self.periods.retain(|i, _| *i >= previous);
    }

    /// Where the person stands as of `today`.
    pub fn standing(&self, ladder: &Ladder, today: i32) -> Standing {
        let current = ladder.period_of(today);
        let total = |i: i32| self.periods.get(&i).map_or(0, |p| ladder.total(p));
        let now = total(current);
        let earned = ladder.rank_of(now);
        Standing {
            rank: earned.max(ladder.rank_of(total(current - 1))),
            this_period: crate::aggregate::unscaled(now),
            earned,
            period_ends: ladder.period_start(current + 1),
        }
    }
}

impl TraitDef {
    /// The checks of a definition that apply to a tier's basis (its name
    /// and window are the ladder's own).
    fn check_as_basis(&self) -> Result<(), DefError> {
        TraitDef::parse(&serde_json::to_value(self).map_err(|e| refuse("", e.to_string()))?)
            .map(|_| ())
    }
}

/// `(year, month, day)` of a day since 1970 (proleptic Gregorian, UTC).
pub fn civil(day: i32) -> (i32, u32, u32) {
    // Howard Hinnant's `civil_from_days`.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

/// The day since 1970 of a date (proleptic Gregorian, UTC).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    // Howard Hinnant's `days_from_civil`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
