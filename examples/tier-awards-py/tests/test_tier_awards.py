"""The plugin's tests, against `keel plugin harness`: a person with a tier,
an award injected as the rewards plugin would emit it, a fixed clock, a
scripted CRM on the harness's HTTP endpoint and a stubbed call to the
rewards plugin (the same as the Rust twin's)."""

import json
import pathlib

import pytest
from keel_plugin_test import CallError, Harness

PLUGIN = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def keel():
    with Harness.start() as harness:
        yield harness


def award(keel, producer, person, award_id):
    keel.emit(producer, "rewards.awarded", {
        "award": award_id, "campaign": "c1", "prize": "p1", "kind": "POINTS", "points": 10,
        "amountCents": None, "scanId": "s1", "codeId": "B1/1", "region": "CN-31",
    }, person=person)


def test_an_award_counts_under_the_winners_tier_once_and_reaches_the_crm(keel):
    plugin = keel.plugin(PLUGIN, {"crm_url": f"{keel.http_url}/crm"})
    keel.respond("POST", "/crm/awards", 202, {"ok": True})
    keel.set_clock("2026-12-31T23:59:00+08:00")
    ann = keel.person([("phone", "+8613800000001")], {"tier": "gold"})

    award(keel, "rewards", ann, "A1")
    assert keel.deliver_events() == 1
    assert keel.call(plugin, "awardsByTier", {"tier": "gold"}) == 1
    assert keel.call(plugin, "awardsByTier", {"tier": "none"}) == 0
    assert keel.call(plugin, "lastAward", {"person": ann}) == {
        "award": "A1", "tier": "gold", "seenAt": "2026-12-31T15:59:00.000000Z"}
    sent = keel.http_requests()
    assert len(sent) == 1, sent
    assert sent[0]["path"] == "/crm/awards"
    assert sent[0]["headers"]["idempotency-key"] == "A1"
    assert json.loads(sent[0]["body"]) == {"person": ann, "tier": "gold", "award": "A1"}

    # The same award delivered again is not counted twice.
    award(keel, "rewards", ann, "A1")
    keel.deliver_events()
    assert keel.call(plugin, "awardsByTier", {"tier": "gold"}) == 1
    assert keel.dead_letters() == []


def test_an_award_not_from_the_rewards_plugin_is_ignored(keel):
    plugin = keel.plugin(PLUGIN)
    bob = keel.person([("phone", "+8613800000002")], {"tier": "gold"})
    award(keel, "key:someone", bob, "A9")
    assert keel.deliver_events() == 1, "delivered, and ignored by the handler"
    assert keel.dead_letters() == []
    assert keel.call(plugin, "awardsByTier", {"tier": "gold"}) == 0


def test_a_crm_that_fails_leaves_a_dead_letter_with_its_answer(keel):
    plugin = keel.plugin(PLUGIN, {"crm_url": f"{keel.http_url}/crm"})
    keel.respond("POST", "/crm/awards", 503, "down")
    cy = keel.person([("phone", "+8613800000003")])
    award(keel, "rewards", cy, "A2")
    keel.deliver_events()
    dead = keel.dead_letters()
    assert len(dead) == 1, dead
    assert dead[0]["subscriber"] == "tier-awards-py"
    assert "CRM_FAILED" in dead[0]["error"] and "503" in dead[0]["error"]
    # The failed handler's writes vanished with it.
    assert keel.call(plugin, "awardsByTier", {"tier": "none"}) == 0
    assert keel.call(plugin, "lastAward", {"person": cy}) is None


def test_bad_input_and_bad_config_are_refused(keel):
    plugin = keel.plugin(PLUGIN)
    for tier in ["", "x" * 65]:
        with pytest.raises(CallError) as refused:
            keel.call(plugin, "awardsByTier", {"tier": tier})
        assert refused.value.code == "BAD_USER_INPUT"
    assert keel.call(plugin, "lastAward", {"person": "P-nobody"}) is None
    # The counts are public; a person's last award is not.
    assert keel.call_public(plugin, "awardsByTier", {"tier": "gold"}) == 0
    with pytest.raises(CallError) as refused:
        keel.call_public(plugin, "lastAward", {"person": "P-nobody"})
    assert refused.value.code == "FORBIDDEN"
    with Harness.start() as fresh:
        with pytest.raises(CallError) as refused:
            fresh.plugin(PLUGIN, {"crm_url": "ftp://x"})
        assert "crm_url" in str(refused.value)


def test_arguments_are_checked_as_graphql_checks_them_before_the_plugin_runs(keel):
    plugin = keel.plugin(PLUGIN)
    # `awardsByTier(tier: String!)`: a missing, mistyped or unknown argument
    # is the client's error, as over GraphQL; the plugin never sees it.
    for bad, says in [({}, "tier"), ({"tier": 5}, "String"), ({"tier": "gold", "x": 1}, '"x"')]:
        with pytest.raises(CallError) as refused:
            keel.call(plugin, "awardsByTier", bad)
        assert refused.value.code == "BAD_USER_INPUT", refused.value
        assert says in refused.value.message, refused.value
    # A check of the plugin's own comes after GraphQL's.
    with pytest.raises(CallError) as refused:
        keel.call(plugin, "awardsByTier", {"tier": ""})
    assert refused.value.code == "BAD_USER_INPUT", refused.value
    assert "1 to 64 characters" in refused.value.message, refused.value


def test_a_gold_member_earns_bonus_points_through_the_rewards_plugin(keel):
    plugin = keel.plugin(PLUGIN, {"gold_bonus_points": 5})
    # The rewards plugin is not enabled here: its operation is stubbed.
    keel.stub_call("rewards", "creditPoints", {"balance": 5})
    ann = keel.person([("phone", "+8613800000004")], {"tier": "gold"})
    bob = keel.person([("phone", "+8613800000005")], {"tier": "silver"})
    award(keel, "rewards", ann, "A4")
    award(keel, "rewards", bob, "A5")
    assert keel.deliver_events() == 2
    calls = keel.stubbed_calls()
    assert len(calls) == 1, f"only the gold member: {calls}"
    assert calls[0]["operation"] == "creditPoints"
    assert calls[0]["caller"] == "tier-awards-py"
    assert calls[0]["input"] == {
        "personId": ann, "points": 5, "reason": "gold bonus", "idempotencyKey": "gold-bonus:A4"}

    # A refused credit fails the delivery, and its count goes with it.
    keel.stub_error("rewards", "creditPoints", "NOT_FOUND", "personId: no person")
    award(keel, "rewards", ann, "A6")
    keel.deliver_events()
    dead = keel.dead_letters()
    assert len(dead) == 1 and "no person" in dead[0]["error"], dead
    assert keel.call(plugin, "awardsByTier", {"tier": "gold"}) == 1, "A4 only"
