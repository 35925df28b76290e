//! Events the CDP takes from Keel's own plugins, delivered through the
//! outbox (at least once): `code.scanned` from `codes`, `rewards.awarded`
//! from `rewards`. Each is taken in once, under `keel:{eventId}`, for the
//! person the kernel names (a merged person's survivor), with its payload
//! as the properties traits read (`scans_30d`, `points_total`).
//!
//! Only the producer that owns the type counts: another plugin's copy, or
//! an event without a person, is ignored.

use keel_sdk::{Error, Event, Result, log};

use crate::track::{Incoming, take_in};

/// The producer each type is taken from.
const OWNERS: &[(&str, &str)] = &[("code.scanned", "codes"), ("rewards.awarded", "rewards")];

pub(crate) fn on_event(e: Event) -> Result<()> {
    let owner = OWNERS
        .iter()
        .find(|(t, _)| *t == e.event_type)
        .map(|(_, p)| *p);
    if owner != Some(e.producer.as_str()) {
        log::warn(&format!(
            "{} {} from {} ignored: the CDP takes it only from its owner",
            e.event_type, e.id, e.producer
        ));
        return Ok(());
    }
    let Some(person) = &e.person_id else {
        return Ok(());
    };
    // The kernel's person may have been merged since: write to the survivor.
    let Some(person) = crate::model::person(person)? else {
        return Ok(());
    };
    let at = chrono::DateTime::parse_from_rfc3339(&e.occurred_at)
        .map_err(|err| Error::invalid(format!("occurredAt: {err}")))?
        .timestamp_micros();
    let incoming = Incoming {
        source: "keel".into(),
        message_id: e.id.clone(),
        event_type: e.event_type.clone(),
        at_micros: at,
        properties: e.payload,
    };
    take_in(&[(person.id, incoming)])?;
    Ok(())
}
