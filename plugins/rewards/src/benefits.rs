//! Member benefits: campaigns with the `TIER_UP` trigger award a member
//! who moves up the `cdp` plugin's tier ladder — a coupon for reaching
//! gold, bonus points for platinum — once per person per campaign.
//!
//! The CDP's `tier.changed` (its owner only; a copy from anyone else is
//! ignored) says that someone moved up. What they are given is decided
//! as a claim decides it, on the tier the CDP holds now (`memberFacts`,
//! through the campaign's `tier` rule), with the same reservations of
//! stock, budget and per-person limits: never on the event's payload.

use keel_sdk::{Event, Result, log, persons};

pub(crate) fn on_tier_changed(e: Event) -> Result<()> {
    if e.producer != "cdp" {
        log::warn(&format!(
            "tier.changed {} from {} ignored",
            e.id, e.producer
        ));
        return Ok(());
    }
    // Downgrades give nothing; who moved up is the event's person, whose
    // tier the campaign's rule reads from the CDP itself.
    if e.payload.get("direction").and_then(|d| d.as_str()) != Some("up") {
        return Ok(());
    }
    let Some(id) = e.person_id.as_deref() else {
        return Ok(());
    };
    let Some(person) = persons::get(id)? else {
        return Ok(());
    };
    crate::claim::judge_tier_up(&e.id, &person)
}
