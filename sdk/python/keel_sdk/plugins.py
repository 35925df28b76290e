"""Calls to other plugins of the same tenant: only the operations they
offer, declared under `calls` in the manifest and granted by the tenant.
The callee runs inside this call's transaction: both commit or neither."""

import json
from typing import Any

from wit_world.imports import plugins as _wit

from ._json import dumps as _dumps
from .errors import host


def call(plugin: str, operation: str, input: Any) -> Any:
    """Runs `operation` of `plugin` with `input` (a JSON object) and returns
    its output; the callee's errors are raised as they are."""
    return json.loads(host(_wit.call, plugin, operation, _dumps(input)))
