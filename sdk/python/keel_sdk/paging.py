"""Page sizes a caller asks for."""

from typing import Any

from .errors import InvalidInput


def limit(limit: Any, default: int, max: int) -> int:
    """Checks a page size a caller sent as `limit` (e.g. ``input.get("limit")``):
    None is `default`, otherwise an integer from 1 to `max`; anything else
    raises `InvalidInput`."""
    if limit is None:
        return default
    if isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= max:
        return limit
    raise InvalidInput(f"limit: must be 1..={max}, got {limit!r}")
