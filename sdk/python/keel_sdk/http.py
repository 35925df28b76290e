"""Outbound HTTP, only to hosts the tenant allowed when enabling the
plugin (another host raises `Denied`)."""

import json
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from wit_world.imports import http as _wit

from ._json import dumps as _dumps
from .errors import host


@dataclass(frozen=True)
class Response:
    status: int
    headers: List[Tuple[str, str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(method: str, url: str, headers: Sequence[Tuple[str, str]] = (),
          body: Optional[bytes] = None) -> Response:
    r = host(_wit.fetch, _wit.Request(method, url, list(headers), body))
    return Response(r.status, r.headers, bytes(r.body))


def post_json(url: str, body: Any, headers: Sequence[Tuple[str, str]] = ()) -> Response:
    """A POST of a JSON body (with its content-type unless `headers` has one)."""
    headers = list(headers)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", "application/json"))
    return fetch("POST", url, headers, _dumps(body).encode())
