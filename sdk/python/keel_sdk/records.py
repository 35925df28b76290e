"""Records of the plugin's own collections (declared under `[collections]`
in the manifest), with optimistic versions. Writes commit with the call."""

import json
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, Union

from wit_world.imports import records as _wit

from ._json import dumps as _dumps
from .errors import host


@dataclass(frozen=True)
class Record:
    collection: str
    key: str
    #: 1 on creation, +1 on every write.
    version: int
    #: The record's JSON object.
    data: Any


@dataclass(frozen=True)
class Page:
    records: List[Record]
    #: Pass back as `after` for the next page; None after the last.
    next: Optional[str]


def _record(r) -> Record:
    return Record(r.collection, r.key, r.version, json.loads(r.data))


def _page(p) -> Page:
    return Page([_record(r) for r in p.records], p.next)


def _expect(expect) -> Any:
    if expect == "any":
        return _wit.Expect_Any()
    if expect == "absent":
        return _wit.Expect_Absent()
    if isinstance(expect, int) and not isinstance(expect, bool):
        return _wit.Expect_Version(expect)
    raise ValueError(f'expect: "any", "absent" or a version number, not {expect!r}')


def get(collection: str, key: str) -> Optional[Record]:
    r = host(_wit.get, collection, key)
    return None if r is None else _record(r)


def put(collection: str, key: str, data: Any, expect: Union[str, int] = "any") -> Record:
    """Writes `data` (a JSON object). `expect`: "any" (create or
    overwrite), "absent" (create only) or the version to update; another
    state raises `Conflict`."""
    return _record(host(_wit.put, collection, key, _dumps(data), _expect(expect)))


def insert_batch(collection: str, items: List[Tuple[str, Any]]) -> int:
    """Creates many records at once; raises `Conflict` (changing nothing)
    if any key exists."""
    return host(_wit.insert_batch, collection, [(k, _dumps(v)) for k, v in items])


def delete(collection: str, key: str, expect_version: Optional[int] = None) -> bool:
    """Deletes a record; False if there was none."""
    return host(_wit.delete, collection, key, expect_version)


def query(collection: str, field: str, value: Any, after: Optional[str] = None, limit: int = 100) -> Page:
    """Records whose indexed `field` equals `value` (a JSON scalar), in key
    order; `limit` at most 1,000."""
    return _page(host(_wit.query, collection, field, _dumps(value), after, limit))


def scan(collection: str, after: Optional[str] = None, limit: int = 100) -> Page:
    """All records of a collection in key order."""
    return _page(host(_wit.scan, collection, after, limit))
