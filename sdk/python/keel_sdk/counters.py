"""Counters with limits: budgets, stock, per-person limits. Exact under any
concurrency, across kernel processes."""

from dataclasses import dataclass
from typing import Optional

from wit_world.imports import counters as _wit

from .errors import host

MIN = -(2**63)
MAX = 2**63 - 1


@dataclass(frozen=True)
class Outcome:
    #: False when the result would have left [min, max]: nothing was added.
    applied: bool
    #: The new value, or the unchanged one when not applied.
    value: int


def add(key: str, delta: int, min: int = MIN, max: int = MAX,
        idempotency_key: Optional[str] = None) -> Outcome:
    """Adds `delta` if the result stays within [min, max]; the same
    idempotency key again answers the first outcome without adding."""
    out = host(_wit.add, key, delta, min, max, idempotency_key)
    return Outcome(isinstance(out, _wit.Outcome_Applied), out.value)


def get(key: str) -> int:
    """A counter's value (0 if never added to)."""
    return host(_wit.get, key)
