//! Segment rules: data (JSON) in the `all`/`any`/`not` style of the rewards
//! rules, checked on save with the place of each mistake, evaluated on a
//! person's profile.
//!
//! ```json
//! {"all": [
//!   {"trait": {"name": "spend_total", "op": "gte", "value": 1000}},
//!   {"any": [{"tag": "vip"}, {"attribute": {"path": "city", "op": "eq", "value": "深圳"}}]},
//!   {"not": {"tag": "blocked"}},
//!   {"tier": {"atLeast": "gold"}},
//!   {"consent": "marketing_sms"},
//!   {"event": {"type": "code.scanned", "where": {"province": "广东"}, "withinDays": 30, "atLeast": 3}}
//! ]}
//! ```
//!
//! An `event` leaf counts the person's events of a type (matching `where`,
//! of the last `withinDays` days or all time) and compares the count with
//! `atLeast` (1 unless given) and `atMost`. It is compiled into a hidden
//! count trait ([`Rule::history`]) named after what it counts, so equal
//! leaves of any segments share one, and a rule reads only the profile.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::traits::{
    Agg, DefError, MAX_FILTER, MAX_WINDOW_DAYS, TraitDef, is_event_type, is_path, lookup,
};

/// The deepest nesting of a rule.
pub const MAX_DEPTH: usize = 8;
/// The most nodes of a rule: conditions and `all`/`any`/`not` alike.
pub const MAX_NODES: usize = 100;

/// A comparison of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    /// The value is present and not null (the leaf's `value` is left out).
    Exists,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    /// Whether `got` (null when absent) compares so with `want`: numbers by
    /// value, text and booleans for (in)equality, text also in order.
    pub fn test(self, got: Option<&Value>, want: &Value) -> bool {
        let got = got.filter(|v| !v.is_null());
        if self == Op::Exists {
            return got.is_some();
        }
        let Some(got) = got else {
            return self == Op::Ne;
        };
        let ord = match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => match (got.as_str(), want.as_str()) {
                (Some(a), Some(b)) => Some(a.cmp(b)),
                _ => (got == want).then_some(std::cmp::Ordering::Equal),
            },
        };
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ord == Some(Equal),
            Op::Ne => ord != Some(Equal),
            Op::Gt => ord == Some(Greater),
            Op::Gte => matches!(ord, Some(Greater | Equal)),
            Op::Lt => ord == Some(Less),
            Op::Lte => matches!(ord, Some(Less | Equal)),
            Op::Exists => unreachable!("handled above"),
        }
    }
}

/// One condition, or a combination of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every rule holds (true when empty).
    All(Vec<Rule>),
    /// At least one rule holds.
    Any(Vec<Rule>),
    Not(Box<Rule>),
    /// A computed trait's value, as of today.
    Trait {
        name: String,
        op: Op,
        value: Value,
    },
    /// The person holds the tag.
    Tag(String),
    /// The kernel's profile attribute at a dotted path.
    Attribute {
        path: String,
        op: Op,
        value: Value,
    },
    /// The person's tier is this level (`is`) or above it (`atLeast`),
    /// by rank on the ladder the rule was parsed against.
    Tier {
        id: String,
        rank: usize,
        at_least: bool,
    },
    /// The person granted consent for this purpose.
    Consent(String),
    /// The person is in another segment (evaluated before this one; no
    /// cycles).
    Segment(String),
    /// How many of the person's events a hidden count trait counted, within
    /// `at_least..=at_most`.
    Event {
        count: TraitDef,
        at_least: u64,
        at_most: Option<u64>,
    },
}

/// The prefix of hidden traits' names: a brand's trait names start with a
/// letter, so they never meet.
pub const HIDDEN: &str = "_e";
/// The largest count an `event` leaf compares with.
pub const MAX_COUNT: u64 = 1_000_000_000;

/// What a rule may name: the tenant's traits and its ladder's levels,
/// lowest first.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub traits: BTreeSet<String>,
    pub tiers: Vec<String>,
    /// The tenant's segment ids (a rule may name one, itself excepted).
    pub segments: BTreeSet<String>,
    /// Rule-based tags: each tag a segment's members hold, with that
    /// segment's id. A `tag` leaf naming one reads the segment.
    pub rule_tags: BTreeMap<String, String>,
}

/// What a rule reads of one person.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    pub traits: &'a BTreeMap<String, Value>,
    pub tags: &'a BTreeSet<String>,
    pub attributes: &'a Map<String, Value>,
    /// The rank of the person's tier on the ladder, if any.
    pub tier: Option<usize>,
    /// The purposes the person granted consent for.
    pub consent: &'a BTreeSet<String>,
    /// The segments the person is in, of those evaluated before.
    pub segments: &'a BTreeSet<String>,
}

const LEAVES: &str = "one of all, any, not, trait, tag, attribute, tier, consent, segment, event";

/// A consent purpose: `[a-z][a-z0-9_]{0,39}` (e.g. `marketing_sms`).
pub fn is_purpose(s: &str) -> bool {
    crate::traits::is_name(s)
}

fn refuse(path: &str, message: impl Into<String>) -> DefError {
    DefError {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl Rule {
    /// Parses and checks a rule against what the tenant declared.
    pub fn parse(v: &Value, known: &Known) -> Result<Rule, DefError> {
        parse_at(v, "rule", 0, known, &mut 0)
    }

    /// Whether the person matches.
    pub fn eval(&self, p: &Person<'_>) -> bool {
        match self {
            Rule::All(rs) => rs.iter().all(|r| r.eval(p)),
            Rule::Any(rs) => rs.iter().any(|r| r.eval(p)),
            Rule::Not(r) => !r.eval(p),
            Rule::Trait { name, op, value } => op.test(p.traits.get(name), value),
            Rule::Tag(t) => p.tags.contains(t),
            Rule::Attribute { path, op, value } => {
                let root = p.attributes;
                let mut parts = path.splitn(2, '.');
                let first = parts.next().unwrap_or_default();
                let got = root
                    .get(first)
                    .and_then(|v| parts.next().map_or(Some(v), |rest| lookup(v, rest)));
                op.test(got, value)
            }
            Rule::Tier { rank, at_least, .. } => match p.tier {
                Some(r) if *at_least => r >= *rank,
                Some(r) => r == *rank,
                None => false,
            },
            Rule::Consent(purpose) => p.consent.contains(purpose),
            Rule::Segment(id) => p.segments.contains(id),
            Rule::Event {
                count,
                at_least,
                at_most,
            } => {
                let n = p
                    .traits
                    .get(&count.name)
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                n >= *at_least && at_most.is_none_or(|m| n <= m)
            }
        }
    }

    /// The hidden count traits its `event` leaves read, each once.
    pub fn history(&self, out: &mut Vec<TraitDef>) {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| r.history(out)),
            Rule::Not(r) => r.history(out),
            Rule::Event { count, .. } if !out.iter().any(|d| d.name == count.name) => {
                out.push(count.clone());
            }
            _ => {}
        }
    }

    /// The segments it names.
    pub fn segments(&self, out: &mut BTreeSet<String>) {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| r.segments(out)),
            Rule::Not(r) => r.segments(out),
            Rule::Segment(id) => {
                out.insert(id.clone());
            }
            _ => {}
        }
    }

    /// The tier levels it names.
    pub fn tiers(&self, out: &mut BTreeSet<String>) {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| r.tiers(out)),
            Rule::Not(r) => r.tiers(out),
            Rule::Tier { id, .. } => {
                out.insert(id.clone());
            }
            _ => {}
        }
    }

    /// The trait names it reads.
    pub fn traits(&self, out: &mut BTreeSet<String>) {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| r.traits(out)),
            Rule::Not(r) => r.traits(out),
            Rule::Trait { name, .. } => {
                out.insert(name.clone());
            }
            _ => {}
        }
    }

    /// Whether it reads the kernel's attributes.
    pub fn reads_attributes(&self) -> bool {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().any(Rule::reads_attributes),
            Rule::Not(r) => r.reads_attributes(),
            Rule::Attribute { .. } => true,
            _ => false,
        }
    }
}

fn parse_at(
    v: &Value,
    path: &str,
    depth: usize,
    known: &Known,
    nodes: &mut usize,
) -> Result<Rule, DefError> {
    if depth > MAX_DEPTH {
        return Err(refuse(path, format!("nested deeper than {MAX_DEPTH}")));
    }
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(refuse(
            "rule",
            format!("at most {MAX_NODES} nodes (conditions, all, any, not)"),
        ));
    }
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| refuse(path, LEAVES))?;
    let (kind, body) = obj.iter().next().expect("one entry");
    let here = format!("{path}.{kind}");
    let list = |body: &Value, nodes: &mut usize| -> Result<Vec<Rule>, DefError> {
        body.as_array()
            .ok_or_else(|| refuse(&here, "a list of rules"))?
            .iter()
            .enumerate()
            .map(|(i, r)| parse_at(r, &format!("{here}[{i}]"), depth + 1, known, nodes))
            .collect()
    };
    match kind.as_str() {
        "all" => Ok(Rule::All(list(body, nodes)?)),
        "any" => Ok(Rule::Any(list(body, nodes)?)),
        "not" => Ok(Rule::Not(Box::new(parse_at(
            body,
            &here,
            depth + 1,
            known,
            nodes,
        )?))),
        "tag" => {
            let t = body
                .as_str()
                .filter(|t| !t.is_empty() && t.chars().count() <= 40)
                .ok_or_else(|| refuse(&here, "a tag, 1-40 characters"))?;
            Ok(match known.rule_tags.get(t) {
                Some(segment) => Rule::Segment(segment.clone()),
                None => Rule::Tag(t.to_owned()),
            })
        }
        "tier" => {
            let b = body
                .as_object()
                .filter(|b| b.len() == 1)
                .ok_or_else(|| refuse(&here, "{\"atLeast\": level} or {\"is\": level}"))?;
            let (how, level) = b.iter().next().expect("one entry");
            if how != "atLeast" && how != "is" {
                return Err(refuse(&format!("{here}.{how}"), "atLeast or is"));
            }
            let id = level.as_str().unwrap_or_default();
            let rank = known.tiers.iter().position(|t| t == id).ok_or_else(|| {
                refuse(
                    &format!("{here}.{how}"),
                    format!("no tier level {level} is declared"),
                )
            })?;
            Ok(Rule::Tier {
                id: id.to_owned(),
                rank,
                at_least: how == "atLeast",
            })
        }
        "segment" => {
            let id = body
                .as_str()
                .ok_or_else(|| refuse(&here, "a segment's id"))?;
            if !known.segments.contains(id) {
                return Err(refuse(&here, format!("no segment {id:?}")));
            }
            Ok(Rule::Segment(id.to_owned()))
        }
        "consent" => {
            let purpose = body.as_str().filter(|p| is_purpose(p)).ok_or_else(|| {
                refuse(
                    &here,
                    "a purpose: lowercase letters, digits and _, starting with a letter, at most 40",
                )
            })?;
            Ok(Rule::Consent(purpose.to_owned()))
        }
        "trait" | "attribute" => {
            let b = body
                .as_object()
                .ok_or_else(|| refuse(&here, "an object: {name or path, op, value}"))?;
            let key = if kind == "trait" { "name" } else { "path" };
            for k in b.keys() {
                if ![key, "op", "value"].contains(&k.as_str()) {
                    return Err(refuse(&format!("{here}.{k}"), "unknown field"));
                }
            }
            let target = b
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| refuse(&format!("{here}.{key}"), "required text"))?;
            if kind == "trait" && !known.traits.contains(target) {
                return Err(refuse(
                    &format!("{here}.name"),
                    format!("no trait {target:?} is declared"),
                ));
            }
            if kind == "attribute"
                && (target.is_empty() || target.len() > 100 || target.split('.').any(str::is_empty))
            {
                return Err(refuse(
                    &format!("{here}.path"),
                    "attribute names joined by dots",
                ));
            }
            let op = b
                .get("op")
                .and_then(Value::as_str)
                .and_then(Op::parse)
                .ok_or_else(|| {
                    refuse(
                        &format!("{here}.op"),
                        "one of eq, ne, gt, gte, lt, lte, exists",
                    )
                })?;
            let value = b.get("value").cloned().unwrap_or(Value::Null);
            let scalar = value.is_string() || value.is_number() || value.is_boolean();
            match (op, scalar) {
                (Op::Exists, _) if !value.is_null() => {
                    return Err(refuse(&format!("{here}.value"), "exists takes no value"));
                }
                (Op::Exists, _) => {}
                (_, false) => {
                    return Err(refuse(
                        &format!("{here}.value"),
                        "a string, number or boolean to compare with",
                    ));
                }
                _ => {}
            }
            let target = target.to_owned();
            Ok(if kind == "trait" {
                Rule::Trait {
                    name: target,
                    op,
                    value,
                }
            } else {
                Rule::Attribute {
                    path: target,
                    op,
                    value,
                }
            })
        }
        "event" => event(body, &here),
        other => Err(refuse(&format!("{path}.{other}"), LEAVES)),
    }
}

/// An `event` leaf: `{type, where, withinDays, atLeast, atMost}`.
fn event(body: &Value, here: &str) -> Result<Rule, DefError> {
    let b = body.as_object().ok_or_else(|| {
        refuse(
            here,
            "an object: {type, where, withinDays, atLeast, atMost}",
        )
    })?;
    for k in b.keys() {
        if !["type", "where", "withinDays", "atLeast", "atMost"].contains(&k.as_str()) {
            return Err(refuse(&format!("{here}.{k}"), "unknown field"));
        }
    }
    let event = b
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| is_event_type(t))
        .ok_or_else(|| {
            refuse(
                &format!("{here}.type"),
                "an event type such as code.scanned",
            )
        })?;
    let mut filter = BTreeMap::new();
    if let Some(w) = b.get("where") {
        let w = w
            .as_object()
            .ok_or_else(|| refuse(&format!("{here}.where"), "an object of property: value"))?;
        if w.len() > MAX_FILTER {
            return Err(refuse(
                &format!("{here}.where"),
                format!("at most {MAX_FILTER} conditions"),
            ));
        }
        for (k, v) in w {
            let at = format!("{here}.where.{k}");
            if !is_path(k) {
                return Err(refuse(
                    &at,
                    "property names (letters, digits, _ and -) joined by dots",
                ));
            }
            if !(v.is_string() || v.is_number() || v.is_boolean()) {
                return Err(refuse(
                    &at,
                    "a string, number or boolean the property must equal",
                ));
            }
            filter.insert(k.clone(), v.clone());
        }
    }
    let window_days = match b.get("withinDays") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| (1..=u64::from(MAX_WINDOW_DAYS)).contains(d))
                .ok_or_else(|| {
                    refuse(
                        &format!("{here}.withinDays"),
                        format!("1..={MAX_WINDOW_DAYS} days"),
                    )
                })? as u32,
        ),
    };
    let bound = |k: &str| -> Result<Option<u64>, DefError> {
        b.get(k)
            .map(|v| {
                v.as_u64().filter(|n| *n <= MAX_COUNT).ok_or_else(|| {
                    refuse(&format!("{here}.{k}"), format!("a count, 0..={MAX_COUNT}"))
                })
            })
            .transpose()
    };
    let at_most = bound("atMost")?;
    let at_least = bound("atLeast")?.unwrap_or(if at_most.is_some() { 0 } else { 1 });
    if at_most.is_some_and(|m| m < at_least) {
        return Err(refuse(&format!("{here}.atMost"), "at least atLeast"));
    }
    let mut count = TraitDef {
        name: String::new(),
        event: event.to_owned(),
        agg: Agg::Count,
        property: None,
        filter,
        window_days,
    };
    count.name = hidden_name(&count);
    Ok(Rule::Event {
        count,
        at_least,
        at_most,
    })
}

/// The hidden trait's name: [`HIDDEN`] and a 64-bit FNV-1a digest of what
/// it counts (its type, filter and window, as canonical JSON: object keys
/// sorted), so the same count has the same name in every rule.
fn hidden_name(count: &TraitDef) -> String {
    let canonical = serde_json::to_string(count).unwrap_or_default();
    let digest = canonical.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{HIDDEN}{digest:016x}")
}

/// An order to evaluate segments in, each after the segments it names:
/// indices into `deps` (each segment's id and the ids its rule names).
/// A cycle is refused with its path (`a → b → a`); names of unknown
/// segments are ignored.
pub fn order(deps: &[(String, BTreeSet<String>)]) -> Result<Vec<usize>, String> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    fn visit(
        i: usize,
        deps: &[(String, BTreeSet<String>)],
        state: &mut [u8],
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), String> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|p| *p == i).unwrap_or(0);
                let mut names: Vec<&str> =
                    path[from..].iter().map(|p| deps[*p].0.as_str()).collect();
                names.push(&deps[i].0);
                return Err(format!("segments in a cycle: {}", names.join(" → ")));
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for name in &deps[i].1 {
            if let Some(j) = deps.iter().position(|(id, _)| id == name) {
                visit(j, deps, state, path, out)?;
            }
        }
        path.pop();
        state[i] = 2;
        out.push(i);
        Ok(())
    }
    let mut state = vec![0u8; deps.len()];
    let mut out = Vec::with_capacity(deps.len());
    for i in 0..deps.len() {
        visit(i, deps, &mut state, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}
