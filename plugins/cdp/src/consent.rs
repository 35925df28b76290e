//! Consent per purpose (China's PIPL: separate consent for marketing, for
//! profiling, …), with its source and time.
//!
//! A profile keeps each purpose's latest statement (a withdrawal wins a
//! tie); every statement received, taken or not, is a `consent_log`
//! record (indexed on `person`) naming who recorded it — the audit trail.
//! A segment that names a purpose holds only persons who granted it, so a
//! withdrawal takes the person out of its audience, and out of its export,
//! in the same transaction. A change of what a purpose says emits
//! `cdp.consent_changed`.
//!
//! Statements come from the brand's systems (`setCdpConsent`, with the
//! time they were given) and from the signed-in consumer
//! (`setMyCdpConsent`, public, now).

use std::collections::BTreeMap;

use keel_cdp_core::segments::is_purpose;
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, events};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{Consent, MAX_PERSONS, instant, is_token, now, rfc3339};
use crate::segments::{Rules, change};

/// The most purposes one person holds statements for.
pub(crate) const MAX_PURPOSES: usize = 50;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Statement {
    person_id: String,
    purpose: String,
    granted: bool,
    source: String,
    /// When the person gave it; now when left out.
    at: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SetInput {
    statements: Vec<Statement>,
}

/// A `consent_log` record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Logged {
    /// Indexed.
    pub person: String,
    pub purpose: String,
    pub granted: bool,
    pub source: String,
    pub at: String,
    pub recorded_at: String,
    /// The caller that recorded it (`key:…`, `operator:…`, `consumer:…`).
    pub by: String,
    /// False when a later statement of the purpose was already held.
    pub taken: bool,
}

/// GraphQL `CdpConsent`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConsentOut {
    purpose: String,
    granted: bool,
    source: String,
    at: String,
}

/// A profile's consent as GraphQL gives it.
pub(crate) fn out(consent: &BTreeMap<String, Consent>) -> Vec<ConsentOut> {
    consent
        .iter()
        .map(|(purpose, c)| ConsentOut {
            purpose: purpose.clone(),
            granted: c.granted,
            source: c.source.clone(),
            at: c.stated_at(),
        })
        .collect()
}

/// `setCdpConsent`: records at most 1,000 statements, all or nothing (a
/// bad one is refused with its index). The number that took effect: an
/// older statement than the one held is logged, not taken.
pub(crate) fn set(ctx: &Context, i: SetInput) -> Result<u32> {
    if i.statements.is_empty() || i.statements.len() > MAX_PERSONS {
        return Err(Error::invalid(format!(
            "statements: 1-{MAX_PERSONS} statements"
        )));
    }
    let now_micros = now().timestamp_micros();
    let mut by_person: BTreeMap<String, Vec<(String, Consent)>> = BTreeMap::new();
    for (n, s) in i.statements.into_iter().enumerate() {
        let bad = |m: String| Error::invalid(format!("statements[{n}].{m}"));
        check_purpose(&s.purpose).map_err(bad)?;
        if !is_token(&s.source, 40) {
            return Err(bad("source: 1-40 letters, digits and . _ : -".into()));
        }
        // A statement dated ahead (clocks differ) counts as made now: a
        // grant dated tomorrow must not outrank a withdrawal made today.
        let at = match &s.at {
            Some(at) => instant("at", at, now_micros).map_err(bad)?.min(now_micros),
            None => now_micros,
        };
        let person = crate::model::person(&s.person_id)?.ok_or_else(|| {
            Error::NotFound(format!(
                "statements[{n}].personId: no person {}",
                s.person_id
            ))
        })?;
        by_person.entry(person.id).or_default().push((
            s.purpose,
            Consent {
                granted: s.granted,
                source: s.source,
                at,
            },
        ));
    }
    let by = ctx.caller.clone().unwrap_or_else(|| "plugin".into());
    let rules = Rules::load()?;
    let mut taken = 0;
    for (person, statements) in by_person {
        taken += apply(&rules, &person, &statements, &by)?;
    }
    rules.flush()?;
    Ok(taken)
}

fn check_purpose(p: &str) -> std::result::Result<(), String> {
    if is_purpose(p) {
        Ok(())
    } else {
        Err(format!(
            "purpose: {p:?} is not a purpose (lowercase letters, digits and _, starting with a letter, at most 40, e.g. marketing_sms)"
        ))
    }
}

/// Applies one person's statements in one profile write, logs each and
/// emits `cdp.consent_changed` for each purpose whose answer changed. The
/// number taken.
fn apply(rules: &Rules, person: &str, statements: &[(String, Consent)], by: &str) -> Result<u32> {
    let mut outcome: Vec<(bool, Option<bool>)> = Vec::new();
    let mut full = false;
    let mut logged = 0;
    let id = change(rules, person, "consent", |p| {
        outcome.clear();
        full = false;
        logged = p.statements;
        p.statements += statements.len() as u32;
        for (purpose, c) in statements {
            let held = p.consent.get(purpose);
            if held.is_none() && p.consent.len() >= MAX_PURPOSES {
                full = true;
                outcome.push((false, None));
                continue;
            }
            let before = held.map(|h| h.granted);
            if held.is_none_or(|h| c.replaces(h)) {
                p.consent.insert(purpose.clone(), c.clone());
                outcome.push((true, before));
            } else {
                outcome.push((false, before));
            }
        }
    })?;
    if full {
        return Err(Error::refused(
            "TOO_MANY_PURPOSES",
            format!("person {person}: at most {MAX_PURPOSES} consent purposes"),
        ));
    }
    let recorded_at = now();
    let mut taken = 0;
    for ((purpose, c), (took, before)) in statements.iter().zip(outcome) {
        let log = Logged {
            person: id.clone(),
            purpose: purpose.clone(),
            granted: c.granted,
            source: c.source.clone(),
            at: c.stated_at(),
            recorded_at: rfc3339(recorded_at),
            by: by.to_owned(),
            taken: took,
        };
        logged += 1;
        let key = crate::model::history_key(&id, logged);
        records::put("consent_log", &key, &log, Expect::Absent)?;
        if took {
            taken += 1;
            if before != Some(c.granted) {
                events::emit(
                    "cdp.consent_changed",
                    Some(&id),
                    &json!({"purpose": purpose, "granted": c.granted, "source": c.source}),
                    None,
                )?;
            }
        }
    }
    Ok(taken)
}

#[derive(Deserialize)]
pub(crate) struct MineInput {
    purpose: String,
    granted: bool,
}

/// `setMyCdpConsent` (public): the signed-in consumer grants or withdraws
/// consent for a purpose, now. Their consent afterwards.
pub(crate) fn set_mine(ctx: &Context, i: MineInput) -> Result<Vec<ConsentOut>> {
    check_purpose(&i.purpose).map_err(Error::invalid)?;
    let offered = consumer_purposes()?;
    if !offered.contains(&i.purpose) {
        return Err(Error::invalid(format!(
            "purpose: {} is not one a consumer states here (this brand offers: {})",
            i.purpose,
            offered.join(", ")
        )));
    }
    let person = signed_in(ctx)?;
    let rules = Rules::load()?;
    let statement = Consent {
        granted: i.granted,
        source: "consumer".into(),
        at: now().timestamp_micros(),
    };
    let by = ctx.caller.clone().unwrap_or_default();
    apply(&rules, &person, &[(i.purpose, statement)], &by)?;
    rules.flush()?;
    mine(ctx, serde_json::Value::Null)
}

/// `myCdpConsent` (public): the signed-in consumer's consent.
pub(crate) fn mine(ctx: &Context, _i: serde_json::Value) -> Result<Vec<ConsentOut>> {
    let person = signed_in(ctx)?;
    let (_, profile) = crate::model::load(&person)?;
    Ok(profile.map(|p| out(&p.data.consent)).unwrap_or_default())
}

fn signed_in(ctx: &Context) -> Result<String> {
    if ctx.consumer().is_none() {
        return Err(Error::Denied(
            "a consumer states their own consent: sign in first".into(),
        ));
    }
    Ok(keel_sdk::persons::acting_for(ctx, &[])?
        .ok_or_else(|| Error::Denied("sign in first".into()))?
        .id)
}

/// The last `limit` statements about `person`, newest first.
pub(crate) fn log(person: &str, limit: u32) -> Result<Vec<Logged>> {
    let page = records::query::<Logged>("consent_log", "person", &json!(person), None, limit)?;
    Ok(page.records.into_iter().map(|r| r.data).collect())
}

#[derive(Deserialize, Default)]
struct Config {
    consumer_purposes: Option<Vec<String>>,
}

/// The purposes a consumer may state with `setMyCdpConsent`: the
/// tenant's `consumer_purposes`, or the common marketing ones.
fn consumer_purposes() -> Result<Vec<String>> {
    let c: Config = keel_sdk::config::get().unwrap_or_default();
    Ok(c.consumer_purposes.unwrap_or_else(|| {
        [
            "marketing_sms",
            "marketing_wechat",
            "marketing_email",
            "profiling",
        ]
        .map(String::from)
        .to_vec()
    }))
}
