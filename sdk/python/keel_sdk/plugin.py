"""Routing the kernel's calls to the plugin's functions.

The decorators register functions when the plugin's module is imported,
which componentize-py does once, while it builds the component: a module
that registers two operations under one name fails the build. Host
capabilities cannot be called at import time, only inside a call.
"""

import json
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log as _log
from wit_world.imports import types as _wit

from . import org as _org
from ._json import dumps as _dumps
from .errors import Denied, KeelError, NotFound

_operations: Dict[str, Callable] = {}
_events: Dict[str, Callable] = {}
_on_enable: list = []


@dataclass(frozen=True)
class Context:
    """Who is calling an operation."""

    #: ``key:…`` or ``operator:…`` for an API key or an operator;
    #: ``consumer:{kind}:{value}`` for a signed-in consumer of a public
    #: operation (verified by the kernel); None for an anonymous public call.
    caller: Optional[str]
    #: The client's address, for public operations.
    client_address: Optional[str]
    #: The request id, for correlating logs.
    request_id: str
    #: The org node (its id) a scoped operator or key is limited to, or
    #: None for the whole tenant: the plugin enforces it on its own data,
    #: with `covers` and `require_within`.
    scope: Optional[str]
    #: The plugin calling this operation through `plugins.call`, if any.
    calling_plugin: Optional[str]
    #: The schedule that started this call, if any (then `caller` is None).
    schedule: Optional[str]

    def consumer(self) -> Optional[Tuple[str, str]]:
        """The signed-in consumer of a public call: (kind, value) of the
        identifier the kernel verified, e.g. ("wechat_openid", "o-123")."""
        if self.caller is None or not self.caller.startswith("consumer:"):
            return None
        kind, sep, value = self.caller[len("consumer:"):].partition(":")
        return (kind, value) if sep else None

    def is_public(self) -> bool:
        """True for a public call: anonymous, or by a signed-in consumer."""
        return self.caller is None or self.consumer() is not None

    def covers(self, node_id: str) -> bool:
        """True when the caller may act on `node_id` (an org node's id): the
        caller is not limited to a node (`scope` is None), or `node_id` is
        its node or lies under it. A node the tenant does not have is never
        covered by a scope. A scoped caller costs one `org.is_within` host
        call (the plugin needs `org-read`), unless `node_id` is the scope
        itself. Decide yourself what an object that belongs to no node
        means for a scoped caller: usually that it is the tenant's, and out
        of reach."""
        if self.scope is None or node_id == self.scope:
            return True
        try:
            return _org.is_within(node_id, self.scope)
        except NotFound:
            # A node the tenant does not have lies under nothing.
            return False

    def require_within(self, node_id: str) -> None:
        """Returns when the caller may act on `node_id` (`covers`), otherwise
        raises `Denied` (FORBIDDEN) naming the node and the caller's scope::

            ctx.require_within(campaign["region"])
        """
        if not self.covers(node_id):
            raise Denied(
                f"this caller is limited to org node {self.scope} and may not act on org node "
                f"{node_id}, which is not at or under it")


@dataclass(frozen=True)
class Event:
    """An event delivered to a subscriber. Trust what the database says,
    not amounts in a payload: read the records the event names."""

    id: str
    event_type: str
    #: RFC 3339.
    occurred_at: str
    person_id: Optional[str]
    #: The payload, decoded from JSON.
    payload: Any
    #: The plugin (or `kernel`) that emitted it.
    producer: str


def operation(name: str):
    """Registers ``f(ctx: Context, input: dict) -> JSON value`` as the
    operation `name`: a GraphQL field of the manifest's SDL (its arguments
    are `input`), an operation offered to other plugins, or one a schedule
    names. The return value must match the field's GraphQL type."""

    def register(f):
        _register(_operations, "operation", name, f)
        return f

    return register


def event(event_type: str):
    """Registers ``f(event: Event) -> None`` for an event type the manifest
    subscribes to. Raising makes the delivery fail: it is retried, then
    dead-lettered."""

    def register(f):
        _register(_events, "event handler", event_type, f)
        return f

    return register


def on_enable(f):
    """Registers ``f(config: dict) -> None``, called when a tenant enables
    or upgrades the plugin: raise `InvalidInput` to refuse a config."""
    if _on_enable:
        raise ValueError(f"on_enable is already {_on_enable[0].__name__}")
    _on_enable.append(f)
    return f


def _register(table, what, name, f):
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string, not {name!r}")
    if name in table:
        raise ValueError(f"{what} {name!r} is registered twice")
    table[name] = f


def _run(f, *args):
    try:
        return f(*args)
    except KeelError as e:
        raise Err(e._to_wit()) from None
    except Err:
        raise
    except Exception as e:
        # A bug in the plugin: the caller sees INTERNAL, the log the trace.
        _log.log(_log.Level.ERROR, traceback.format_exc())
        raise Err(_wit.Error_Internal(f"{type(e).__name__}: {e}")) from None


def _decode(text, what):
    try:
        return json.loads(text)
    except ValueError as e:
        raise Err(_wit.Error_InvalidInput(f"{what}: {e}")) from None


class Handler(exports.Handler):
    """The component's export: componentize-py calls it; plugins do not."""

    def handle_operation(self, name: str, input: str, context) -> str:
        f = _operations.get(name)
        if f is None:
            raise Err(_wit.Error_NotFound(f"no operation {name!r}"))
        ctx = Context(
            caller=context.caller,
            client_address=context.client_address,
            request_id=context.request_id,
            scope=context.scope,
            calling_plugin=context.calling_plugin,
            schedule=context.schedule,
        )
        out = _run(f, ctx, _decode(input, "input"))
        try:
            return _dumps(out)
        except (TypeError, ValueError) as e:
            raise Err(_wit.Error_Internal(f"output of {name!r}: {e}")) from None

    def handle_event(self, event) -> None:
        f = _events.get(event.event_type)
        if f is None:
            # Subscribed in the manifest without a handler: acknowledged.
            return None
        _run(
            f,
            Event(
                id=event.id,
                event_type=event.event_type,
                occurred_at=event.occurred_at,
                person_id=event.person_id,
                payload=_decode(event.payload, "payload"),
                producer=event.producer,
            ),
        )

    def on_enable(self, config: str) -> None:
        if _on_enable:
            _run(_on_enable[0], _decode(config, "config"))
