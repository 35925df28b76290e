"""Awards by member tier: a subscriber to the rewards plugin's
`rewards.awarded`, with a GraphQL query over what it counted."""

from datetime import datetime, timezone

from keel_sdk import (
    Context, Event, InvalidInput, NotFound, Refused,
    config, counters, event, http, operation, persons, plugins, records,
)


def tier_of(person: str) -> str:
    """The member's tier as their profile says, `none` without one."""
    profile = persons.get(person)
    if profile is None:
        raise NotFound("no such person")
    tier = profile.attributes.get("tier")
    return tier if isinstance(tier, str) else "none"


@event("rewards.awarded")
def on_awarded(e: Event) -> None:
    # Only the rewards plugin emits `rewards.*` (the kernel enforces it);
    # what is read from the event is its ids, never an amount.
    if e.producer != "rewards" or e.person_id is None:
        return
    award = e.payload.get("award")
    if not isinstance(award, str):
        raise InvalidInput("payload.award is missing")
    tier = tier_of(e.person_id)
    # Once per award, however often the event is delivered.
    counters.add(f"tier:{tier}", 1, min=0, idempotency_key=award)
    seen_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records.put("last_award", e.person_id, {"award": award, "tier": tier, "seenAt": seen_at})
    cfg = config.get()
    bonus = cfg.get("gold_bonus_points")
    if bonus and tier == "gold":
        # In this delivery's transaction: a refusal undoes the count too,
        # and the retry (same idempotency key) credits once.
        plugins.call("rewards", "creditPoints", {
            "personId": e.person_id, "points": bonus, "reason": "gold bonus",
            "idempotencyKey": f"gold-bonus:{award}"})
    crm = cfg.get("crm_url")
    if crm:
        res = http.post_json(f"{crm}/awards", {"person": e.person_id, "tier": tier, "award": award},
                             [("idempotency-key", award)])
        if not 200 <= res.status < 300:
            # A failed delivery is retried by the kernel (and, in the end,
            # kept as a dead letter to replay).
            raise Refused("CRM_FAILED", f"the CRM answered {res.status}")


@operation("awardsByTier")
def awards_by_tier(ctx: Context, input: dict) -> int:
    tier = input["tier"]
    if not 1 <= len(tier) <= 64:
        raise InvalidInput("tier: 1 to 64 characters")
    return counters.get(f"tier:{tier}")


@operation("lastAward")
def last_award(ctx: Context, input: dict):
    record = records.get("last_award", input["person"])
    return None if record is None else record.data
