"""The tenant's organisation tree, owned by the kernel: headquarters, sales
regions, distributors, stores and warehouses, and the staff attached to
them. Reading needs the `org-read` capability, writing `org-write`.

A plugin reads the whole tenant's tree; a caller limited to a node
(`Context.scope`) is enforced by the plugin on its own data, with
`Context.covers` and `Context.require_within`::

    ctx.require_within(campaign["region"])  # Denied (FORBIDDEN) outside the caller's node
"""

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, List, Optional, Sequence

from wit_world.imports import org as _wit

from ._json import dumps as _dumps
from .catalog import ExternalId, ExternalIdLike, _external_from_wit, _one_key
from .errors import host

#: The most nodes one `children` page or `upsert_nodes` call takes.
MAX_BATCH = 1000


class NodeKind(str, Enum):
    """What a node of the tree is; equal to its name as the kernel writes
    it, e.g. ``node.kind == "store"``."""

    HEADQUARTERS = "headquarters"
    REGION = "region"
    DISTRIBUTOR = "distributor"
    STORE = "store"
    WAREHOUSE = "warehouse"


@dataclass(frozen=True)
class GeoPoint:
    """A point on the earth, WGS-84 degrees."""

    lat: float
    lng: float


@dataclass(frozen=True)
class Node:
    """A node of the organisation tree."""

    #: The kernel's id (``org_…``).
    id: str
    kind: NodeKind
    #: The brand's own code, unique in the tenant (e.g. ``CN-GD``).
    code: str
    name: str
    parent_id: Optional[str]
    #: ``active`` or ``inactive``.
    status: str
    address: Optional[str]
    location: Optional[GeoPoint]
    #: A region's boundary: a GeoJSON Polygon or MultiPolygon, decoded.
    boundary: Optional[Dict[str, Any]]
    #: The node's JSON object.
    attributes: Dict[str, Any]
    external_ids: List[ExternalId]


@dataclass(frozen=True)
class NodePage:
    nodes: List[Node]
    #: Pass back as `after` for the next page; None after the last.
    next: Optional[str]


@dataclass(frozen=True)
class Staff:
    """A person who works at a node: a shopping guide, a salesperson."""

    person_id: str
    node_id: str
    #: e.g. ``guide``, ``salesperson``, ``manager``.
    role: str


_KINDS = {
    _wit.NodeKind.HEADQUARTERS: NodeKind.HEADQUARTERS,
    _wit.NodeKind.REGION: NodeKind.REGION,
    _wit.NodeKind.DISTRIBUTOR: NodeKind.DISTRIBUTOR,
    _wit.NodeKind.STORE: NodeKind.STORE,
    _wit.NodeKind.WAREHOUSE: NodeKind.WAREHOUSE,
}


def _node(n) -> Node:
    return Node(
        n.id, _KINDS[n.kind], n.code, n.name, n.parent_id, n.status, n.address,
        None if n.location is None else GeoPoint(n.location.lat, n.location.lng),
        None if n.boundary is None else json.loads(n.boundary),
        json.loads(n.attributes),
        [_external_from_wit(e) for e in n.external_ids],
    )


def _staff(staff) -> List[Staff]:
    return [Staff(s.person_id, s.node_id, s.role) for s in staff]


def get_node(*, id: Optional[str] = None, code: Optional[str] = None,
             external: Optional[ExternalIdLike] = None) -> Optional[Node]:
    """The node named by exactly one of its kernel `id`, its `code` or an
    `external` id, or None: ``org.get_node(code="CN-GD")``."""
    key = _one_key("get_node", {"id": (id, _wit.NodeKey_Id), "code": (code, _wit.NodeKey_Code),
                                "external": (external, _wit.NodeKey_External)})
    n = host(_wit.get_node, key)
    return None if n is None else _node(n)


def ancestors(id: str) -> List[Node]:
    """The node's ancestors, the root first, ending with its parent; raises
    `NotFound` for a node the tenant does not have."""
    return [_node(n) for n in host(_wit.ancestors, id)]


def children(parent_id: Optional[str] = None, after: Optional[str] = None,
             limit: int = 100) -> NodePage:
    """Direct children of a node (or the roots, for None), in code order;
    `limit` 1 to `MAX_BATCH`."""
    page = host(_wit.children, parent_id, after, limit)
    return NodePage([_node(n) for n in page.nodes], page.next)


def is_within(id: str, ancestor_id: str) -> bool:
    """True when `id` is `ancestor_id` or lies under it; raises `NotFound`
    when either is not a node of the tenant. The check behind a scoped
    caller: see `Context.covers`."""
    return host(_wit.is_within, id, ancestor_id)


def regions_at(point: GeoPoint) -> List[Node]:
    """The region nodes whose boundary contains the point, innermost first."""
    return [_node(n) for n in host(_wit.regions_at, _wit.GeoPoint(point.lat, point.lng))]


def staff_of_node(node_id: str) -> List[Staff]:
    """The staff of a node."""
    return _staff(host(_wit.staff_of_node, node_id))


def staff_of_person(person_id: str) -> List[Staff]:
    """The nodes a person works at, with their roles."""
    return _staff(host(_wit.staff_of_person, person_id))


def upsert_nodes(nodes: Sequence[Any]) -> int:
    """Creates or updates nodes by code (needs `org-write`, and a caller who
    may write the tree; a scoped caller's nodes stay under its node): each
    item is the JSON object GraphQL's `OrgNodeInput` takes (``code``,
    ``kind``, ``name``, ``parentCode``, ``location``: {``lat``, ``lng``},
    ``boundary``, …), at most `MAX_BATCH`, parents before children or
    already stored. Idempotent; one invalid item raises `InvalidInput`
    naming it, and changes nothing. Returns how many nodes changed."""
    return host(_wit.upsert_nodes, _dumps(list(nodes)))
