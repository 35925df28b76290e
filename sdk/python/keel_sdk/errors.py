"""The errors an operation raises, and host calls raise to it.

Each class is one case of the contract's `error` variant; the kernel maps
it to the GraphQL `extensions.code` shown with each class. Raise them from
an operation or an event handler: the call's writes and events are rolled
back, and the caller sees the code and the message.
"""

from componentize_py_types import Err
from wit_world.imports import types as _wit


class KeelError(Exception):
    """A refusal the caller sees: `code` is its `extensions.code`."""

    code = "INTERNAL"

    def __init__(self, message: str):
        message = str(message)
        super().__init__(message)
        self.message = message

    def _to_wit(self):
        return _wit.Error_Internal(self.message)


class NotFound(KeelError):
    """NOT_FOUND: the named thing does not exist."""

    code = "NOT_FOUND"

    def _to_wit(self):
        return _wit.Error_NotFound(self.message)


class Conflict(KeelError):
    """CONFLICT: a stale version, a duplicate, a reused idempotency key."""

    code = "CONFLICT"

    def _to_wit(self):
        return _wit.Error_Conflict(self.message)


class InvalidInput(KeelError):
    """BAD_USER_INPUT: malformed input; say which field."""

    code = "BAD_USER_INPUT"

    def _to_wit(self):
        return _wit.Error_InvalidInput(self.message)


class Denied(KeelError):
    """FORBIDDEN: a capability this plugin was not granted."""

    code = "FORBIDDEN"

    def _to_wit(self):
        return _wit.Error_Denied(self.message)


class Internal(KeelError):
    """INTERNAL: the host failed. Raised by a plugin (or any other
    exception it lets escape), the caller sees PLUGIN_FAILED with the
    message, and the log the traceback."""


class Refused(KeelError):
    """The plugin's own refusal, with an UPPER_SNAKE_CASE code of its
    choice: ``raise Refused("SOLD_OUT", "no stock left")``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = str(code)

    def __str__(self):
        return f"{self.code}: {self.message}"

    def _to_wit(self):
        return _wit.Error_Refused(_wit.Refusal(self.code, self.message))


_FROM_WIT = {
    _wit.Error_NotFound: NotFound,
    _wit.Error_Conflict: Conflict,
    _wit.Error_InvalidInput: InvalidInput,
    _wit.Error_Denied: Denied,
    _wit.Error_Internal: Internal,
}


def from_wit(error) -> KeelError:
    """The exception for a contract `error` value."""
    if isinstance(error, _wit.Error_Refused):
        return Refused(error.value.code, error.value.message)
    return _FROM_WIT.get(type(error), Internal)(str(error.value))


def host(function, *args):
    """Calls a generated binding (`wit_world.imports.…`) and raises its
    error as a `KeelError`: what every module of this SDK does, and the way
    to a function of the contract it does not wrap, e.g.
    ``host(org.is_within, node_id, region_id)`` after
    ``from wit_world.imports import org``."""
    try:
        return function(*args)
    except Err as e:
        raise from_wit(e.value) from None
