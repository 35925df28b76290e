"""The tenant's product catalogue, owned by the kernel and shared by every
plugin: products (SPU) and their SKUs. Reading needs the `catalog-read`
capability, writing `catalog-write`::

    found = catalog.find_sku(gtin="6901234567892")
    if found is not None:
        product, sku = found
        log.info(f"{product.name} / {sku.name}")
"""

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from wit_world.imports import catalog as _wit
from wit_world.imports import types as _types

from ._json import dumps as _dumps
from .errors import host

#: The most products one `list_products` page or `upsert_products` call takes.
MAX_BATCH = 1000


@dataclass(frozen=True)
class ExternalId:
    """An object's id in another system (an ERP, a mall)."""

    #: e.g. ``kingdee``.
    system: str
    #: e.g. ``MAT-0001``.
    id: str


#: An `ExternalId`, or its (system, id).
ExternalIdLike = Union[ExternalId, Tuple[str, str]]


@dataclass(frozen=True)
class Sku:
    """A sellable variant of a product."""

    #: The kernel's id (``sku_…``).
    id: str
    product_id: str
    #: The brand's own SKU code, unique in the tenant.
    code: str
    #: GTIN-8, -12, -13 or -14, check digit verified, as 14 digits.
    gtin: Optional[str]
    name: str
    #: ``active`` or ``inactive``.
    status: str
    #: The SKU's JSON object (size, flavour, pack…).
    attributes: Dict[str, Any]
    external_ids: List[ExternalId]


@dataclass(frozen=True)
class Product:
    """A product (SPU) and its SKUs."""

    #: The kernel's id (``prd_…``).
    id: str
    #: The brand's own product code, unique in the tenant.
    code: str
    name: str
    category: Optional[str]
    #: The unit a consumer buys, e.g. ``bottle``.
    unit: str
    #: ``active`` or ``inactive``.
    status: str
    #: The product's JSON object.
    attributes: Dict[str, Any]
    external_ids: List[ExternalId]
    skus: List[Sku]
    #: RFC 3339.
    updated_at: str


@dataclass(frozen=True)
class ProductPage:
    products: List[Product]
    #: Pass back as `after` for the next page; None after the last.
    next: Optional[str]


def _external_from_wit(e) -> ExternalId:
    return ExternalId(e.system, e.id)


def _external_to_wit(e: ExternalIdLike):
    if isinstance(e, ExternalId):
        return _types.ExternalId(e.system, e.id)
    system, id = e
    return _types.ExternalId(system, id)


def _one_key(what: str, keys: Dict[str, Tuple[Any, Callable[[Any], Any]]]):
    """The WIT key of the one given value of `keys` (name → (value, the
    WIT variant's constructor)); an external id is converted first."""
    given = [(k, v, make) for k, (v, make) in keys.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"{what}: name it by exactly one of {', '.join(keys)}, not {len(given)}")
    kind, value, make = given[0]
    return make(_external_to_wit(value) if kind == "external" else value)


def _sku(s) -> Sku:
    return Sku(s.id, s.product_id, s.code, s.gtin, s.name, s.status, json.loads(s.attributes),
               [_external_from_wit(e) for e in s.external_ids])


def _product(p) -> Product:
    return Product(p.id, p.code, p.name, p.category, p.unit, p.status, json.loads(p.attributes),
                   [_external_from_wit(e) for e in p.external_ids], [_sku(s) for s in p.skus],
                   p.updated_at)


def get_product(*, id: Optional[str] = None, code: Optional[str] = None,
                external: Optional[ExternalIdLike] = None) -> Optional[Product]:
    """The product named by exactly one of its kernel `id`, its `code` or an
    `external` id, or None: ``catalog.get_product(code="P-100")``."""
    key = _one_key("get_product", {"id": (id, _wit.ProductKey_Id),
                                   "code": (code, _wit.ProductKey_Code),
                                   "external": (external, _wit.ProductKey_External)})
    p = host(_wit.get_product, key)
    return None if p is None else _product(p)


def find_sku(*, id: Optional[str] = None, code: Optional[str] = None, gtin: Optional[str] = None,
             external: Optional[ExternalIdLike] = None) -> Optional[Tuple[Product, Sku]]:
    """The SKU named by exactly one of its kernel `id`, its `code`, its
    `gtin` or an `external` id, with the product it belongs to, or None:
    ``product, sku = catalog.find_sku(gtin="6901234567892")``."""
    key = _one_key("find_sku", {"id": (id, _wit.SkuKey_Id), "code": (code, _wit.SkuKey_Code),
                                "gtin": (gtin, _wit.SkuKey_Gtin),
                                "external": (external, _wit.SkuKey_External)})
    found = host(_wit.find_sku, key)
    if found is None:
        return None
    p, s = found
    return _product(p), _sku(s)


def list_products(after: Optional[str] = None, limit: int = 100) -> ProductPage:
    """Products in code order; `limit` at most `MAX_BATCH`."""
    page = host(_wit.list_products, after, limit)
    return ProductPage([_product(p) for p in page.products], page.next)


def upsert_products(products: Sequence[Any]) -> int:
    """Creates or updates products by code, with their SKUs by code (needs
    `catalog-write`, and a caller who may write the catalogue): each item
    is the JSON object GraphQL's `ProductInput` takes (``code``, ``name``,
    ``unit``, ``skus``: [{``code``, ``name``, ``gtin``}], …), at most
    `MAX_BATCH`. Idempotent; one invalid item raises `InvalidInput` naming
    it, and changes nothing. Returns how many products changed."""
    return host(_wit.upsert_products, _dumps(list(products)))
