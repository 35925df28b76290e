"""JSON as the kernel reads it."""

import json
from typing import Any


def dumps(value: Any) -> str:
    """`value` as JSON text; NaN and infinities, which JSON cannot say,
    raise ValueError instead of producing text the kernel refuses."""
    return json.dumps(value, allow_nan=False)
