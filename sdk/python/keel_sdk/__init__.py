"""Write Keel plugins in Python.

A plugin is a module that registers its functions with the decorators::

    from keel_sdk import Context, Refused, counters, events, operation

    @operation("greet")
    def greet(ctx: Context, input: dict) -> dict:
        n = counters.add("greeted", 1).value
        events.emit("hello.greeted", {"name": input["name"], "count": n})
        return {"text": f"Hello, {input['name']}!", "count": n}

`keel plugin build` turns it into a component with componentize-py and the
WIT of the `keel` binary; `keel plugin test` runs its pytest tests against
`keel plugin harness`. Operations take the GraphQL field's arguments as a
dict and return the field's value; writes and emitted events commit when
the function returns and vanish when it raises. The tenant is never an
argument: every capability acts in the tenant of the call.

One module per capability: records, events, persons, counters, config,
http, log, plugins, catalog (products and SKUs), org (the organisation
tree) and crypto (hashes of many messages, in native code); `paging`
checks a page size a caller asks for, and `Context.covers` and
`Context.require_within` enforce a caller limited to an org node. The
clock is Python's (`time.time()`, `datetime.now(timezone.utc)`),
randomness is `secrets` (both come from the kernel through WASI). `host`
calls a generated binding (`wit_world.imports.…`) directly, raising its
errors as this SDK's exceptions.
"""

#: The contract this SDK builds for: `wit` in `keel-plugin.toml`.
WIT_VERSION = "0.2.0"

from .errors import (  # noqa: E402
    Conflict,
    Denied,
    Internal,
    InvalidInput,
    KeelError,
    NotFound,
    Refused,
    host,
)
from .plugin import Context, Event, event, on_enable, operation  # noqa: E402
from . import (  # noqa: E402
    catalog,
    config,
    counters,
    crypto,
    events,
    http,
    log,
    org,
    paging,
    persons,
    plugins,
    records,
)

__all__ = [
    "WIT_VERSION", "Context", "Event", "operation", "event", "on_enable",
    "KeelError", "NotFound", "Conflict", "InvalidInput", "Denied", "Internal", "Refused", "host",
    "catalog", "config", "counters", "crypto", "events", "http", "log", "org", "paging", "persons",
    "plugins", "records",
]
