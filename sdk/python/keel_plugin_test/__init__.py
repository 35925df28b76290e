"""A client of `keel plugin harness` for a Python plugin's pytest tests.

The harness is the kernel `keel serve` runs (the same SDL merge, output
validation and limits) on a throwaway SQLite database with one tenant,
driven over JSON lines on stdin and stdout. This module needs nothing but
the standard library::

    from keel_plugin_test import Harness

    def test_greets():
        with Harness.start() as keel:
            plugin = keel.plugin(".", {"greeting": "Hi"})
            assert keel.call(plugin, "greet", {"name": "Ann"})["count"] == 1

Operations and `plugin` raise the kernel's refusals as `CallError`, since
tests assert on them; the fixtures and readers (`person`, `emit`,
`events`, …) raise `HarnessError` when the harness refuses.
"""

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: The Keel release this client came with.
VERSION = "0.1.0"


class CallError(Exception):
    """A refusal of an operation (the plugin's own error, a limit, an output
    that does not match its GraphQL type) or of the harness (a build that
    failed, a manifest that does not validate: code ``HARNESS``)."""

    def __init__(self, code: str, message: str, field: Optional[str] = None):
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        #: As GraphQL clients see it in `extensions.code`.
        self.code = code
        self.message = message
        #: The input field at fault, when the refusal names one.
        self.field = field


class HarnessError(AssertionError):
    """The harness refused a fixture or a reader."""


@dataclass(frozen=True)
class Plugin:
    """A plugin enabled in the harness."""

    name: str
    version: str


class Harness:
    """A kernel for a plugin's tests: a `keel plugin harness` process of
    ``KEEL_BIN`` (else `keel` on PATH; `keel plugin test` sets ``KEEL_BIN``
    to itself). It stops when closed, or at the end of a ``with`` block."""

    def __init__(self, process: subprocess.Popen, http: str):
        self._process = process
        self._lock = threading.Lock()
        self._http = http

    @classmethod
    def start(cls, bin: Optional[str] = None) -> "Harness":
        """Starts the harness and waits until its kernel is ready."""
        bin = bin or os.environ.get("KEEL_BIN") or "keel"
        try:
            process = subprocess.Popen(
                [bin, "plugin", "harness"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as e:
            raise CallError(
                "HARNESS",
                f"could not start `{bin} plugin harness` ({e}): run the tests with "
                "`keel plugin test`, put `keel` on PATH, or set KEEL_BIN to the keel binary",
            ) from None
        # The harness's log lines reach the test's output.
        threading.Thread(target=_relay, args=(process.stderr,), daemon=True).start()
        harness = cls(process, "")
        try:
            ready = harness._read()
        except CallError:
            harness.close()
            raise
        if "ready" not in ready:
            harness.close()
            raise CallError("HARNESS", f"the harness did not start: {ready}")
        ready = ready["ready"]
        if ready.get("keel") != VERSION:
            print(
                f"warning: this plugin's keel_plugin_test came with Keel {VERSION}, the harness "
                f"is Keel {ready.get('keel')}: `keel plugin sdk` refreshes the plugin's copy "
                "of the SDK",
                file=sys.stderr,
            )
        harness._http = ready.get("http", "")
        return harness

    def close(self) -> None:
        """Stops the harness (closing its stdin ends it)."""
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout:
            self._process.stdout.close()

    def __enter__(self) -> "Harness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # A harness never closed stops with the test process anyway.
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()

    def _read(self) -> Dict[str, Any]:
        line = self._process.stdout.readline()
        if not line:
            try:
                code = self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = "still running"
            raise CallError("HARNESS", f"the harness exited ({code}); its log is above")
        try:
            return json.loads(line)
        except ValueError:
            raise CallError("HARNESS", f"the harness answered something not JSON: {line[:200]!r}") from None

    def request(self, request: Dict[str, Any]) -> Any:
        """Sends one request and returns its answer, or raises `CallError`."""
        with self._lock:
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            except (BrokenPipeError, ValueError):
                raise CallError("HARNESS", "the harness is gone; its log is above") from None
            answer = self._read()
        if "ok" in answer:
            return answer["ok"]
        e = answer.get("error") or {}
        raise CallError(e.get("code", "HARNESS"), e.get("message", json.dumps(answer)), e.get("field"))

    def _fixture(self, request: Dict[str, Any]) -> Any:
        try:
            return self.request(request)
        except CallError as e:
            raise HarnessError(f"the harness refused {request['op']!r}: {e}") from None

    def plugin(self, dir: str, config: Optional[Dict[str, Any]] = None) -> Plugin:
        """Builds the plugin project in `dir`, installs it and enables it with
        everything its manifest requests and `config`, checked as
        `enablePlugin` checks. A plugin asking for HTTP to hosts the tenant
        names (``http_hosts = ["*"]``) is granted `http_url`'s host. The same
        plugin again is enabled anew with the new config, its data kept."""
        out = self.request({"op": "plugin", "dir": os.path.abspath(dir), "config": config or {}})
        return Plugin(out["name"], out["version"])

    def call(self, plugin: Plugin, operation: str, input: Optional[Dict[str, Any]] = None) -> Any:
        """Calls an operation as the tenant's operator (an owner key), with
        the gateway's checks: an answer that does not match the type the
        plugin's SDL declares raises ``PLUGIN_INVALID_OUTPUT``."""
        return self.request({"op": "call", "plugin": plugin.name, "operation": operation,
                             "input": input or {}})

    def call_public(self, plugin: Plugin, operation: str, input: Optional[Dict[str, Any]] = None) -> Any:
        """Calls an operation as an anonymous client: only operations the
        manifest lists as public answer."""
        return self.request({"op": "call", "plugin": plugin.name, "operation": operation,
                             "input": input or {}, "as": "public"})

    def events(self, event_type: str) -> List[Dict[str, Any]]:
        """The events of a type in the tenant's stream, oldest first: `id`,
        `type`, `personId`, `payload`, `producer`, `occurredAt`."""
        return self._fixture({"op": "events", "type": event_type})

    def counter(self, plugin: Plugin, key: str) -> int:
        """A counter of the plugin (0 when never written)."""
        return self._fixture({"op": "counter", "plugin": plugin.name, "key": key}) or 0

    def record(self, plugin: Plugin, collection: str, key: str) -> Optional[Dict[str, Any]]:
        """A record of the plugin's (its data), or None."""
        return self._fixture({"op": "record", "plugin": plugin.name, "collection": collection,
                              "key": key})

    def deliver_events(self) -> int:
        """Runs the handlers of the events due to subscribers, once; returns
        how many deliveries were handled. In the harness a handler has one
        attempt: one that fails is a dead letter at once."""
        return self._fixture({"op": "deliver"})["handled"]

    def dead_letters(self) -> List[Dict[str, Any]]:
        """Deliveries whose handler failed: `eventType`, `subscriber`, `error`."""
        return self._fixture({"op": "dead_letters"})

    def person(self, identifiers: Sequence[Tuple[str, str]], attributes: Optional[Dict[str, Any]] = None) -> str:
        """The id of the person behind these (kind, value) identifiers, made
        if new, with `attributes` merged into the profile."""
        ids = [{"kind": k, "value": v} for k, v in identifiers]
        out = self._fixture({"op": "person", "identifiers": ids, "attributes": attributes or {}})
        return out["id"]

    def emit(self, producer: str, event_type: str, payload: Any,
             person: Optional[str] = None) -> Dict[str, Any]:
        """Appends an event as `producer` (another plugin's name, e.g.
        ``rewards``) would have emitted it and queues it for subscribers:
        `deliver_events` then runs their handlers. Returns the event."""
        return self._fixture({"op": "emit", "producer": producer, "type": event_type,
                              "person": person, "payload": payload})

    def set_clock(self, at: str) -> None:
        """Fixes the wall clock plugins read (RFC 3339, e.g.
        ``2026-12-31T23:59:00+08:00``)."""
        self._fixture({"op": "clock", "at": at})

    def reset_clock(self) -> None:
        """Gives plugins the system's clock again."""
        self._fixture({"op": "clock", "at": None})

    def stub_call(self, plugin: str, operation: str, output: Any) -> None:
        """Calls the plugin makes to `plugin`'s `operation` answer `output`
        from now on, without that plugin enabled: the caller's side of the
        call is checked as in production, and `stubbed_calls` shows it."""
        self._fixture({"op": "stub", "plugin": plugin, "operation": operation, "output": output})

    def stub_error(self, plugin: str, operation: str, code: str, message: str) -> None:
        """Calls to `plugin`'s `operation` fail with `code` (``NOT_FOUND``, …,
        or the callee's own, e.g. ``INSUFFICIENT_POINTS``) and `message`."""
        self._fixture({"op": "stub", "plugin": plugin, "operation": operation,
                       "error": {"code": code, "message": message}})

    def stubbed_calls(self) -> List[Dict[str, Any]]:
        """The calls stubs answered, oldest first: `plugin`, `operation`,
        `input`, `caller`."""
        return self._fixture({"op": "stubbed_calls"})

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``: the harness's HTTP endpoint, to give a
        plugin as the address of the service it calls."""
        return self._http

    def respond(self, method: str, path: str, status: int, body: Any) -> None:
        """Scripts the endpoint's answer to `method` `path`: `body` is sent as
        JSON, or as is when a string. Answers scripted for the same route
        are given in order, the last one repeated."""
        self._fixture({"op": "respond", "method": method, "path": path, "status": status,
                       "body": body})

    def http_requests(self) -> List[Dict[str, Any]]:
        """The requests the endpoint received, oldest first: `method`, `path`,
        `query`, `headers`, `body` (text)."""
        return self._fixture({"op": "requests"})


def _relay(stream) -> None:
    # Always drained, whatever happens to the test's stderr: a pipe left
    # full would block the harness.
    for line in stream:
        try:
            sys.stderr.write(f"[keel] {line}")
        except Exception:
            pass
    stream.close()
