"""One ID: the tenant's persons and their profiles."""

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from wit_world.imports import persons as _wit

from ._json import dumps as _dumps
from .errors import InvalidInput, host
from .plugin import Context

#: (kind, value): phone, email, wechat_openid, wechat_unionid, member_no,
#: external:<system>.
Identifier = Tuple[str, str]


@dataclass(frozen=True)
class Person:
    id: str
    identifiers: List[Identifier]
    #: Profile attributes.
    attributes: Dict[str, Any]


def _person(p) -> Person:
    return Person(p.id, [(i.kind, i.value) for i in p.identifiers], json.loads(p.attributes))


def _ids(identifiers: Sequence[Identifier]):
    return [_wit.Identifier(kind, value) for kind, value in identifiers]


def resolve(identifiers: Sequence[Identifier]) -> Person:
    """Finds or creates the person behind these identifiers (never merges):
    ``resolve([("wechat_openid", "o-123")])``."""
    return _person(host(_wit.resolve, _ids(identifiers)))


def resolve_batch(batch: Sequence[Sequence[Identifier]]) -> List[Person]:
    """`resolve` for up to 1,000 people at once, in order."""
    return [_person(p) for p in host(_wit.resolve_batch, [_ids(ids) for ids in batch])]


def get(id: str) -> Optional[Person]:
    p = host(_wit.get, id)
    return None if p is None else _person(p)


def set_attributes(id: str, patch: Dict[str, Any]) -> Person:
    """Applies a JSON merge patch to the profile (needs `persons-write`):
    a None value removes the attribute."""
    return _person(host(_wit.set_attributes, id, _dumps(patch)))


def acting_for(ctx: Context, identifiers: Sequence[Identifier] = ()) -> Optional[Person]:
    """The person a call acts for: the signed-in consumer of a public call,
    or the person `identifiers` name when an API key or an operator calls.
    A public call cannot name its person (nobody can act as somebody else):
    `identifiers` there is refused. None for an anonymous public call and
    for a trusted caller that names nobody."""
    consumer = ctx.consumer()
    if consumer is not None:
        if identifiers:
            raise InvalidInput(
                "identifiers: a public call acts for the signed-in consumer; leave identifiers out")
        return resolve([consumer])
    if not identifiers:
        return None
    if ctx.caller is None:
        raise InvalidInput(
            "identifiers: a public call cannot name its person; the consumer signs in "
            "and the kernel says who they are")
    return resolve(identifiers)
