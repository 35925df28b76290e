"""The tenant's event stream. Emitted events commit with the call that
emitted them, and vanish if it fails."""

from dataclasses import dataclass
from typing import Any, List, Optional

from wit_world.imports import events as _wit

from ._json import dumps as _dumps
from .errors import host


def emit(event_type: str, payload: Any, person_id: Optional[str] = None,
         idempotency_key: Optional[str] = None) -> str:
    """Emits an event of a type the manifest declares under `emits`; the
    payload must match its schema. Returns the event's id (the first
    one's, for a repeated idempotency key)."""
    return host(_wit.emit, event_type, person_id, _dumps(payload), idempotency_key)


@dataclass
class NewEvent:
    event_type: str
    payload: Any
    person_id: Optional[str] = None
    idempotency_key: Optional[str] = None


def emit_batch(events: List[NewEvent]) -> List[str]:
    """Emits up to 1,000 events in order; one invalid event fails the
    batch, naming its index."""
    return host(_wit.emit_batch, [
        _wit.NewEvent(e.event_type, e.person_id, _dumps(e.payload), e.idempotency_key)
        for e in events
    ])
