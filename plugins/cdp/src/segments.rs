//! Segments: rules over traits, tags and attributes (keel-cdp-core's
//! `segments`), with membership kept on each profile and beside it.
//!
//! Every profile write goes through [`change`]: it applies the change,
//! re-evaluates the person's segments from the profile it writes, and, in
//! the same transaction, records the difference — `members/{segment}|{person}`
//! (indexed on `segment`), the size counters `segment:{id}`, and
//! `segment.entered` / `segment.left` for segments that emit them. The
//! profile's versioned write orders concurrent changes of one person, so
//! every difference is taken against the membership it replaces.
//!
//! What changes without an event — a windowed trait's days passing, an
//! attribute written elsewhere, a rule saved — is caught by the recompute
//! (`recompute`), nightly and after each save.

use std::collections::{BTreeMap, BTreeSet};

use keel_cdp_core::segments::{Known, Person, Rule, is_purpose, order};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, counters, events};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::definitions::{self, Declared, DeclaredLadder};
use crate::model::{Profile, is_token, now, rfc3339, today, update};
use crate::track::tidy;

/// The id a preview's rule is evaluated under: no segment's id holds `|`.
const PREVIEW: &str = "|preview";

/// The most segments of a tenant.
pub(crate) const MAX_SEGMENTS: usize = 100;

/// A segment as stored (`segments/{id}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Segment {
    pub id: String,
    pub name: String,
    pub rule: Value,
    pub emit_events: bool,
    /// A consent purpose: only persons who granted it are members (a
    /// marketing audience honours opt-outs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Members are blocked from rewards (the blocklist by rule).
    #[serde(default)]
    pub blocks: bool,
    /// A rule-based tag: members hold it while they match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub updated_at: String,
}

/// What evaluating a profile needs, loaded once per call, and the size
/// counters' changes the call makes.
///
/// The changes are added up and applied once per counter at the end of the
/// call ([`Rules::flush`]), in key order: on PostgreSQL every call then takes
/// the counters' row locks in the same order, last, and holds them briefly
/// (two calls taking `profiles` and `segment:a` in opposite orders would
/// deadlock).
pub(crate) struct Rules {
    pub defs: Vec<Declared>,
    /// The last revision of each dropped trait.
    pub retired: BTreeMap<String, u32>,
    pub ladder: Option<DeclaredLadder>,
    segments: Vec<(Segment, Rule)>,
    attributes: bool,
    today: i32,
    deltas: std::cell::RefCell<BTreeMap<String, i64>>,
}

impl Rules {
    pub(crate) fn load() -> Result<Rules> {
        let loaded = definitions::load()?;
        let stored = all()?;
        let names = known(&loaded, &stored);
        let mut segments = Vec::new();
        for s in stored {
            // A rule is checked on save; one that no longer parses (a trait
            // it read was dropped meanwhile) matches nobody.
            let rule = Rule::parse(&s.rule, &names).unwrap_or(Rule::Any(vec![]));
            segments.push((s, rule));
        }
        // Each segment after those it names. Saves refuse cycles; one made
        // by two saves at once is evaluated in stored order.
        if let Ok(o) = order(&dependencies(&segments)) {
            let mut slots: Vec<Option<(Segment, Rule)>> = segments.into_iter().map(Some).collect();
            segments = o.into_iter().filter_map(|i| slots[i].take()).collect();
        }
        let mut defs = loaded.traits;
        defs.extend(loaded.history);
        Ok(Rules {
            attributes: segments.iter().any(|(_, r)| r.reads_attributes()),
            defs,
            retired: loaded.retired,
            ladder: loaded.ladder,
            segments,
            today: today(),
            deltas: Default::default(),
        })
    }

    /// True when the state key `{name}@{revision}` is of a trait, or a
    /// revision, declared after these rules were loaded.
    pub(crate) fn newer(&self, state_key: &str) -> bool {
        let Some((name, rev)) = state_key.rsplit_once('@') else {
            return false;
        };
        let rev: u32 = rev.parse().unwrap_or(0);
        match self.defs.iter().find(|d| d.def.name == name) {
            Some(d) => rev > d.revision,
            None => self.retired.get(name).is_none_or(|last| rev > *last),
        }
    }

    /// Adds `delta` to the size counter `key` when the call ends.
    pub(crate) fn count(&self, key: String, delta: i64) {
        *self.deltas.borrow_mut().entry(key).or_default() += delta;
    }

    /// Applies the counted changes, in key order. Every operation that
    /// changes profiles calls it last.
    pub(crate) fn flush(&self) -> Result<()> {
        for (key, delta) in std::mem::take(&mut *self.deltas.borrow_mut()) {
            if delta == 0 {
                continue;
            }
            if let counters::Outcome::LimitReached(at) =
                counters::add(&key, delta, 0, i64::MAX, None)?
            {
                keel_sdk::log::warn(&format!(
                    "counter {key} at {at} cannot move by {delta}: it has drifted; the recompute does not repair sizes"
                ));
            }
        }
        Ok(())
    }

    /// The segments the profile matches.
    fn evaluate(&self, p: &Profile, attributes: &Map<String, Value>) -> BTreeSet<String> {
        self.evaluate_from(p, attributes, BTreeSet::new())
    }

    /// [`Rules::evaluate`], with `segment` leaves also reading `inside`
    /// (a preview: the profile's stored membership).
    fn evaluate_from(
        &self,
        p: &Profile,
        attributes: &Map<String, Value>,
        mut inside: BTreeSet<String>,
    ) -> BTreeSet<String> {
        if self.segments.is_empty() {
            return inside;
        }
        let traits: BTreeMap<String, Value> = self
            .defs
            .iter()
            .map(|d| {
                let state = p.traits.get(&d.state_key()).cloned().unwrap_or_default();
                (d.def.name.clone(), state.value(&d.def, self.today))
            })
            .collect();
        let consent = p.granted();
        let tier = p
            .tier
            .as_ref()
            .and_then(|h| self.ladder.as_ref()?.ladder.rank(&h.id));
        // In dependency order: a `segment` leaf reads the membership this
        // evaluation already settled.
        for (s, r) in &self.segments {
            let hit = s.purpose.as_ref().is_none_or(|p| consent.contains(p))
                && r.eval(&Person {
                    traits: &traits,
                    tags: &p.tags,
                    attributes,
                    tier,
                    consent: &consent,
                    segments: &inside,
                });
            if hit {
                inside.insert(s.id.clone());
            }
        }
        inside
    }

    fn blocks(&self, id: &str) -> bool {
        self.segments.iter().any(|(s, _)| s.id == id && s.blocks)
    }

    fn emits(&self, id: &str) -> bool {
        self.segments
            .iter()
            .any(|(s, _)| s.id == id && s.emit_events)
    }
}

/// Changes the profile of `person` (or its survivor) with `change`, re-
/// evaluates its segments in the same write and records the difference;
/// `reason` says why (`event`, `tag`, `merge`, `recompute`). The id of the
/// profile written.
pub(crate) fn change(
    rules: &Rules,
    person: &str,
    reason: &str,
    change: impl FnMut(&mut Profile),
) -> Result<String> {
    change_from(rules, person, None, reason, change)
}

/// [`change`], starting from `first`: the live profile's record the
/// caller has just read (the recompute's page).
pub(crate) fn change_from(
    rules: &Rules,
    person: &str,
    first: Option<records::Record<Profile>>,
    reason: &str,
    mut change: impl FnMut(&mut Profile),
) -> Result<String> {
    let attributes = if rules.attributes {
        crate::model::person(person)?
            .map(|p| p.attributes)
            .unwrap_or_default()
    } else {
        Map::new()
    };
    let mut diff = (BTreeSet::new(), BTreeSet::new());
    let mut tier = None;
    let mut stale = false;
    let (id, created) = update(person, first, |p, new| {
        // Rebuilt for a trait these rules do not know: what this call adds
        // would miss it (crate::history). The call fails and is retried.
        stale = p.filled.iter().any(|k| rules.newer(k));
        // A new profile's person has no timeline before it: every trait is
        // complete from here (a merge then keeps only what both had).
        if new {
            p.filled = rules
                .defs
                .iter()
                .filter(|d| d.backfill)
                .map(Declared::state_key)
                .collect();
        }
        change(p);
        tidy(p, rules, rules.today);
        tier = crate::tiers::settle(p, rules.ladder.as_ref(), rules.today);
        let now_in = rules.evaluate(p, &attributes);
        p.blocked_by = now_in.iter().find(|s| rules.blocks(s)).cloned();
        diff = (p.segments.clone(), now_in.clone());
        p.segments = now_in;
    })?;
    if stale {
        return Err(Error::Conflict(format!(
            "profile {id}: the traits changed during this call; retry"
        )));
    }
    if created {
        rules.count("profiles".into(), 1);
    }
    if let Some(t) = tier {
        crate::tiers::record(&id, &t, reason)?;
    }
    let (before, after) = diff;
    for s in after.difference(&before) {
        enter(rules, s, &id, reason)?;
    }
    for s in before.difference(&after) {
        leave(rules, s, &id, reason)?;
    }
    Ok(id)
}

fn member_key(segment: &str, person: &str) -> String {
    format!("{segment}|{person}")
}

#[derive(Serialize, Deserialize)]
struct Member {
    /// Indexed.
    segment: String,
    person: String,
    since: String,
}

fn enter(rules: &Rules, segment: &str, person: &str, reason: &str) -> Result<()> {
    let m = Member {
        segment: segment.to_owned(),
        person: person.to_owned(),
        since: rfc3339(now()),
    };
    records::put("members", &member_key(segment, person), &m, Expect::Any)?;
    rules.count(format!("segment:{segment}"), 1);
    if rules.emits(segment) {
        events::emit(
            "segment.entered",
            Some(person),
            &json!({"segment": segment, "reason": reason}),
            None,
        )?;
    }
    Ok(())
}

/// Takes `person` out of `segment` (a change, or a merge's tombstone).
pub(crate) fn leave(rules: &Rules, segment: &str, person: &str, reason: &str) -> Result<()> {
    drop_member(rules, segment, person)?;
    if rules.emits(segment) {
        events::emit(
            "segment.left",
            Some(person),
            &json!({"segment": segment, "reason": reason}),
            None,
        )?;
    }
    Ok(())
}

/// Takes `person` out of `segment` without an event (an erasure).
pub(crate) fn drop_member(rules: &Rules, segment: &str, person: &str) -> Result<()> {
    records::delete("members", &member_key(segment, person), None)?;
    rules.count(format!("segment:{segment}"), -1);
    Ok(())
}

fn all() -> Result<Vec<Segment>> {
    Ok(
        records::scan::<Segment>("segments", None, MAX_SEGMENTS as u32 + 1)?
            .records
            .into_iter()
            .map(|r| r.data)
            .collect(),
    )
}

/// GraphQL `CdpSegment`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentOut {
    #[serde(flatten)]
    segment: Segment,
    size: i64,
}

fn out(s: Segment) -> Result<SegmentOut> {
    Ok(SegmentOut {
        size: counters::get(&format!("segment:{}", s.id))?,
        segment: s,
    })
}

pub(crate) fn list(_ctx: &Context, _i: Value) -> Result<Vec<SegmentOut>> {
    all()?.into_iter().map(out).collect()
}

#[derive(Deserialize)]
pub(crate) struct SaveArgs {
    input: SaveInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SaveInput {
    id: String,
    name: String,
    rule: Value,
    emit_events: Option<bool>,
    purpose: Option<String>,
    blocks: Option<bool>,
    tag: Option<String>,
}

/// What a rule may name in the tenant's definitions and segments.
fn known(d: &definitions::Definitions, segments: &[Segment]) -> Known {
    Known {
        traits: d.traits.iter().map(|t| t.def.name.clone()).collect(),
        tiers: d
            .ladder
            .iter()
            .flat_map(|l| l.ladder.levels.iter().map(|l| l.id.clone()))
            .collect(),
        segments: segments.iter().map(|s| s.id.clone()).collect(),
        rule_tags: segments
            .iter()
            .filter_map(|s| Some((s.tag.clone()?, s.id.clone())))
            .collect(),
    }
}

/// The rule-based tags, by the id of the segment whose members hold them.
pub(crate) fn rule_tags() -> Result<BTreeMap<String, String>> {
    Ok(all()?
        .into_iter()
        .filter_map(|s| Some((s.id, s.tag?)))
        .collect())
}

/// Refuses a manual tag that is a rule-based one.
pub(crate) fn check_manual(tag: &str) -> Result<()> {
    if let Some((segment, _)) = rule_tags()?.into_iter().find(|(_, t)| t == tag) {
        return Err(Error::invalid(format!(
            "tag: {tag} is held by the members of segment {segment} (a rule-based tag); it is not set by hand"
        )));
    }
    Ok(())
}

/// Each segment's id and the segments its rule names.
fn dependencies(segments: &[(Segment, Rule)]) -> Vec<(String, BTreeSet<String>)> {
    segments
        .iter()
        .map(|(s, r)| {
            let mut named = BTreeSet::new();
            r.segments(&mut named);
            (s.id.clone(), named)
        })
        .collect()
}

/// Checks the rule of segment `id` (`None` for a preview), which holds
/// the rule-based `tag` if given: what it names exists, and saving it
/// makes no cycle of segments (a `tag` leaf naming a rule-based tag reads
/// its segment).
fn check_rule(rule: &Value, id: Option<&str>, tag: Option<&str>) -> Result<Rule> {
    let stored = all()?;
    let mut names = known(&definitions::load()?, &stored);
    if let Some(id) = id {
        names.segments.insert(id.to_owned());
        names.rule_tags.retain(|_, s| s.as_str() != id);
        if let Some(t) = tag {
            names.rule_tags.insert(t.to_owned(), id.to_owned());
        }
    }
    let parsed = Rule::parse(rule, &names).map_err(|e| Error::invalid(e.to_string()))?;
    if let Some(id) = id {
        let mut all: Vec<(Segment, Rule)> = stored
            .into_iter()
            .filter(|s| s.id != id)
            .filter_map(|s| Rule::parse(&s.rule, &names).ok().map(|r| (s, r)))
            .collect();
        let me = Segment {
            id: id.to_owned(),
            ..Segment::default()
        };
        // First, so that a cycle is named from the segment being saved.
        all.insert(0, (me, parsed.clone()));
        order(&dependencies(&all)).map_err(|e| Error::invalid(format!("rule: {e}")))?;
    }
    Ok(parsed)
}

/// `saveSegment`: creates or replaces a segment, then starts a recompute
/// that brings every profile's membership up to date.
pub(crate) fn save(ctx: &Context, args: SaveArgs) -> Result<SegmentOut> {
    let i = args.input;
    if !is_token(&i.id, 40) || i.id.contains(['|', ':', '.']) {
        return Err(Error::invalid("id: 1-40 letters, digits, _ and -"));
    }
    let name = i.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name: 1-100 characters"));
    }
    if let Some(t) = &i.tag {
        check_rule_tag(t, &i.id)?;
    }
    // Another rule's `tag` leaf reads this segment's tag: it may not be
    // renamed or dropped under it.
    if let Some(old) = records::get::<Segment>("segments", &i.id)?.and_then(|s| s.data.tag)
        && i.tag.as_deref() != Some(old.as_str())
        && let Some(reader) = all()?
            .iter()
            .find(|s| s.id != i.id && names_tag(&s.rule, &old))
    {
        return Err(Error::invalid(format!(
            "tag: segment {} reads the tag {old}; change it first",
            reader.id
        )));
    }
    check_rule(&i.rule, Some(&i.id), i.tag.as_deref())?;
    if let Some(p) = &i.purpose
        && !is_purpose(p)
    {
        return Err(Error::invalid(
            "purpose: a consent purpose (lowercase letters, digits and _, starting with a letter, at most 40)",
        ));
    }
    let found = records::get::<Segment>("segments", &i.id)?;
    if found.is_none() && all()?.len() >= MAX_SEGMENTS {
        return Err(Error::refused(
            "TOO_MANY_SEGMENTS",
            format!("a tenant keeps at most {MAX_SEGMENTS} segments"),
        ));
    }
    let s = Segment {
        id: i.id.clone(),
        name: name.to_owned(),
        rule: i.rule,
        emit_events: i.emit_events.unwrap_or(false),
        purpose: i.purpose,
        blocks: i.blocks.unwrap_or(false),
        tag: i.tag,
        updated_at: rfc3339(now()),
    };
    let expect = found.map_or(Expect::Absent, |r| Expect::Version(r.version));
    records::put("segments", &i.id, &s, expect)?;
    sync_history()?;
    crate::recompute::start(ctx, "saved")?;
    out(s)
}

/// True when a rule (JSON) has a `tag` leaf naming `tag`.
fn names_tag(rule: &Value, tag: &str) -> bool {
    match rule {
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| (k == "tag" && v.as_str() == Some(tag)) || names_tag(v, tag)),
        Value::Array(a) => a.iter().any(|v| names_tag(v, tag)),
        _ => false,
    }
}

/// Checks that `tag` may be segment `id`'s rule-based tag: a tag's name,
/// no other segment's, and not a manual tag anyone holds.
fn check_rule_tag(tag: &str, id: &str) -> Result<()> {
    crate::model::check_tag(tag)?;
    if let Some((other, _)) = rule_tags()?.into_iter().find(|(s, t)| t == tag && s != id) {
        return Err(Error::invalid(format!(
            "tag: {tag} is already segment {other}'s"
        )));
    }
    let held = counters::get(&format!("tag:{tag}"))?;
    if held > 0 {
        return Err(Error::invalid(format!(
            "tag: {tag} is a manual tag {held} persons hold; untag them first or choose another name"
        )));
    }
    Ok(())
}

/// Declares the hidden traits the saved segments' `event` leaves read,
/// and retires those none reads ([`crate::history::sync`]).
fn sync_history() -> Result<()> {
    let stored = all()?;
    let names = known(&definitions::load()?, &stored);
    let rules: Vec<Rule> = stored
        .iter()
        .filter_map(|s| Rule::parse(&s.rule, &names).ok())
        .collect();
    crate::history::sync(&rules)?;
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct DeleteInput {
    id: String,
}

/// `deleteSegment`: removes a segment, then starts the recompute that
/// takes every member out of it (their membership records go, its size
/// falls to 0; no `segment.left` is emitted for a segment that no longer
/// exists). A rewards campaign naming it no longer matches anyone.
pub(crate) fn delete(ctx: &Context, i: DeleteInput) -> Result<crate::recompute::Job> {
    let found = records::get::<Segment>("segments", &i.id)?
        .ok_or_else(|| Error::NotFound(format!("id: no segment {}", i.id)))?;
    let stored = all()?;
    let names = known(&definitions::load()?, &stored);
    for s in &stored {
        let mut named = BTreeSet::new();
        if let Ok(rule) = Rule::parse(&s.rule, &names) {
            rule.segments(&mut named);
        }
        if s.id != i.id && named.contains(&i.id) {
            return Err(Error::invalid(format!(
                "id: segment {} reads {}; change it first",
                s.id, i.id
            )));
        }
    }
    records::delete("segments", &i.id, Some(found.version))?;
    sync_history()?;
    crate::recompute::start(ctx, "deleted")
}

#[derive(Deserialize)]
pub(crate) struct PreviewInput {
    rule: Value,
    sample: Option<i64>,
}

/// GraphQL `CdpSegmentPreview`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Preview {
    scanned: u32,
    matched: u32,
    profiles: i64,
    estimate: i64,
    person_ids: Vec<String>,
}

/// `previewSegment`: evaluates a rule, unsaved, on up to `sample` profiles
/// (1,000 unless set, at most 5,000) and scales the share that matches to
/// every profile. Writes nothing.
pub(crate) fn preview(_ctx: &Context, i: PreviewInput) -> Result<Preview> {
    let rule = check_rule(&i.rule, None, None)?;
    let sample = keel_sdk::paging::limit(i.sample, 1000, 5000)?;
    let mut rules = Rules::load()?;
    rules.attributes = rule.reads_attributes();
    // The counts its `event` leaves read: declared ones by their state,
    // the rest counted from the timeline for each profile sampled.
    let mut counts = Vec::new();
    rule.history(&mut counts);
    let counts: Vec<Declared> = counts
        .into_iter()
        .map(|def| {
            let found = rules.defs.iter().find(|d| d.def.name == def.name);
            found.cloned().unwrap_or(Declared {
                def,
                revision: 0,
                since: String::new(),
                backfill: true,
            })
        })
        .collect();
    for c in &counts {
        if !rules.defs.iter().any(|d| d.def.name == c.def.name) {
            rules.defs.push(c.clone());
        }
    }
    rules.segments = vec![(
        Segment {
            id: PREVIEW.into(),
            name: String::new(),
            rule: i.rule.clone(),
            emit_events: false,
            purpose: None,
            blocks: false,
            tag: None,
            updated_at: String::new(),
        },
        rule,
    )];
    let (mut scanned, mut matched, mut person_ids) = (0u32, 0u32, Vec::new());
    let mut after: Option<String> = None;
    while scanned < sample {
        let page =
            records::scan::<Profile>("profiles", after.as_deref(), (sample - scanned).min(500))?;
        for mut r in page.records {
            if r.data.merged_into.is_some() {
                continue;
            }
            scanned += 1;
            let missing: Vec<&keel_cdp_core::traits::TraitDef> = counts
                .iter()
                .filter(|c| !r.data.filled.contains(&c.state_key()))
                .map(|c| &c.def)
                .collect();
            if !missing.is_empty() {
                let (mut states, _) = crate::history::states(&r.key, &r.data, &missing)?;
                for c in &counts {
                    if let Some(state) = states.remove(&c.def.name) {
                        r.data.traits.insert(c.state_key(), state);
                    }
                }
            }
            let attributes = if rules.attributes {
                crate::model::person(&r.key)?
                    .map(|p| p.attributes)
                    .unwrap_or_default()
            } else {
                Map::new()
            };
            let stored = r.data.segments.clone();
            if rules
                .evaluate_from(&r.data, &attributes, stored)
                .contains(PREVIEW)
            {
                matched += 1;
                if person_ids.len() < 20 {
                    person_ids.push(r.key);
                }
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let profiles = counters::get("profiles")?;
    let estimate = if scanned == 0 {
        0
    } else {
        (profiles as f64 * f64::from(matched) / f64::from(scanned)).round() as i64
    };
    Ok(Preview {
        scanned,
        matched,
        profiles,
        estimate,
        person_ids,
    })
}

#[derive(Deserialize)]
pub(crate) struct MembersInput {
    id: String,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MembersPage {
    person_ids: Vec<String>,
    next: Option<String>,
}

/// `segmentMembers`: the members, in pages.
pub(crate) fn members(_ctx: &Context, i: MembersInput) -> Result<MembersPage> {
    let limit = keel_sdk::paging::limit(i.limit, 100, 1000)?;
    if records::get::<Segment>("segments", &i.id)?.is_none() {
        return Err(Error::NotFound(format!("id: no segment {}", i.id)));
    }
    let page = records::query::<Member>(
        "members",
        "segment",
        &json!(i.id),
        i.after.as_deref(),
        limit,
    )?;
    Ok(MembersPage {
        person_ids: page.records.into_iter().map(|r| r.data.person).collect(),
        next: page.next,
    })
}

/// True when a segment reads the trait `name` (which then cannot be
/// dropped).
pub(crate) fn uses_trait(name: &str) -> Result<Option<String>> {
    let stored = all()?;
    let names = known(&definitions::load()?, &stored);
    for s in stored {
        if let Ok(rule) = Rule::parse(&s.rule, &names) {
            let mut read = BTreeSet::new();
            rule.traits(&mut read);
            if read.contains(name) {
                return Ok(Some(s.id));
            }
        }
    }
    Ok(None)
}

/// The tier levels each segment's rule names, by segment id.
pub(crate) fn tiers_read() -> Result<Vec<(String, BTreeSet<String>)>> {
    let stored = all()?;
    let names = known(&definitions::load()?, &stored);
    let mut out = Vec::new();
    for s in stored {
        if let Ok(rule) = Rule::parse(&s.rule, &names) {
            let read = crate::tiers::named(&rule);
            if !read.is_empty() {
                out.push((s.id, read));
            }
        }
    }
    Ok(out)
}
