"""Business signals in the ranking: sort by a field, boost by fields, keep what is in stock.

A *field* here is ``price`` or a numeric catalog attribute: one with at least one value that is a number or
numeric text (a CSV catalog's ``"120"``), such as popularity, stock, margin or days since release.  A product
whose value is missing or not a number has none.  Per query (``SearchEngine.search(sort=, boost=, in_stock=)``,
the HTTP body, ``vitrina search --sort --boost --in-stock``):

* ``sort="price"`` / ``sort="-popularity"`` (``-`` descending): the query's ``SearchConfig.sort_depth`` most
  relevant candidates (by fused score, or by the re-ranker's when it ran) are ordered by the field, products
  without a value last, ties in relevance order; deeper hits follow in relevance order.  Every page and every
  ``k`` of one query come from that one ordering.
* ``boost={"margin": 0.5}``: each scored candidate's fused score gains ``weight x z``, z being the field's
  z-score among the query's scored candidates (missing: 0; clipped to ±3), before the cut to the best
  candidates and before the re-ranker; hits show the sum as ``scores["boost"]`` (``fused`` includes it).
* ``in_stock=True``: only products whose ``SearchConfig.stock_field`` (``stock``) is > 0: the filter
  ``{"stock": {"gt": 0}}`` beside the query's ``where``.

Unknown or non-numeric fields, and ``in_stock`` over a catalog without the stock field, are ``QueryError``s
naming what is there.  Field values come from one statement per field and query
(``IndexStore.field_numbers``) or from the metadata already read for the candidates, never a statement per
product.  :func:`boost_scores` and :func:`sort_order` are pure numpy; the re-ranker's business features
(``search.rerank.features``, ``vitrina train-reranker --business-fields``) use the same z-scores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.errors import QueryError

from search.candidates import Candidates
from search.filters import compile_where
from search.rerank.features import BUSINESS_PREFIX, Z_CLIP, clipped_z, field_number
from search.results import Hit, hits_from

if TYPE_CHECKING:
    from indexer.store.reader import IndexStore
    from search.vector_view import VectorView

__all__ = ["Business", "boost_scores", "business_info", "parse_boost", "reranker_attributes", "sort_order",
           "sortable_fields"]

#: The most fields one query may boost by, and the largest weight (in z units, like ``field_weight``).
MAX_BOOST_FIELDS = 16
MAX_BOOST = 100.0


# -- pure functions --------------------------------------------------------------------------------------------
def boost_scores(values: Mapping[str, np.ndarray], weights: Mapping[str, float], clip: float = Z_CLIP) -> np.ndarray:
    """Per candidate: the sum over fields of ``weights[field]`` x the field's z-score among ``values[field]``
    (NaN: missing, scoring 0; z-scores clipped to ±``clip``)."""
    n = len(next(iter(values.values()))) if values else 0
    total = np.zeros(n, dtype=np.float64)
    for field, weight in weights.items():
        total += float(weight) * clipped_z(values[field], clip)
    return total.astype(np.float32)


def sort_order(values: np.ndarray, scores: np.ndarray, *, descending: bool = False) -> np.ndarray:
    """Positions of ``values`` ordered by value (ascending, or ``descending``), NaN (missing) last, ties by
    ``scores`` (higher first), then by position."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    key = np.where(missing, 0.0, -values if descending else values)
    order: np.ndarray = np.lexsort((np.arange(len(values)), -np.asarray(scores, dtype=np.float64), key, missing))
    return order


def parse_boost(texts: Iterable[str]) -> dict[str, float]:
    """``["margin=0.5", "popularity=0.2,stock=-1"]`` (or one JSON object) → ``{"margin": 0.5, ...}``."""
    boost: dict[str, float] = {}
    for text in texts:
        if text.lstrip().startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise QueryError(f"boost {text!r}: invalid JSON ({exc.msg})") from None
            if not isinstance(parsed, dict):
                raise QueryError(f"boost {text!r}: JSON boosts must be an object of field to weight")
            boost.update(parsed)
            continue
        for part in filter(None, (p.strip() for p in text.split(","))):
            field, _, raw = part.rpartition("=")
            try:
                weight = float(raw)
            except ValueError:
                weight = math.nan
            if not field.strip() or not math.isfinite(weight):
                raise QueryError(f"boost {part!r}: expected FIELD=WEIGHT, e.g. margin=0.5")
            boost[field.strip()] = weight
    return boost


# -- one query's signals ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Business:
    """A query's sort, boosts and in-stock filter, checked (``parse``), then applied by the engine."""

    sort: str | None = None
    descending: bool = False
    boost: tuple[tuple[str, float], ...] = ()
    in_stock: bool = False
    stock_field: str = "stock"
    sort_depth: int = 100

    @classmethod
    def parse(cls, sort: Any = None, boost: Any = None, in_stock: Any = None, *, stock_field: str = "stock",
              sort_depth: int = 100) -> Business:
        """The signals of a query; ``QueryError`` for a malformed one (fields are checked by ``clauses``)."""
        field, descending = None, False
        if sort is not None:
            if not isinstance(sort, str) or not sort.strip().lstrip("+-").strip():
                raise QueryError(f"sort takes a field name (price, or a numeric attribute; -FIELD for descending), got {sort!r}")
            text = sort.strip()
            descending, field = text.startswith("-"), text.lstrip("+-").strip()
        weights: list[tuple[str, float]] = []
        if boost is not None:
            if not isinstance(boost, Mapping):
                raise QueryError(f"boost takes a mapping of field to weight, got {type(boost).__name__}")
            if len(boost) > MAX_BOOST_FIELDS:
                raise QueryError(f"boost takes at most {MAX_BOOST_FIELDS} fields, got {len(boost)}")
            for name, weight in boost.items():
                if not isinstance(name, str) or not name:
                    raise QueryError(f"boost field names are non-empty strings, got {name!r}")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not abs(weight) <= MAX_BOOST:
                    raise QueryError(f"boost weight of {name!r} must be a number within [-{MAX_BOOST:g}, {MAX_BOOST:g}], got {weight!r}")
                if weight:
                    weights.append((name, float(weight)))
        if in_stock is not None and not isinstance(in_stock, bool):
            raise QueryError(f"in_stock must be true or false, got {in_stock!r}")
        if isinstance(sort_depth, bool) or not isinstance(sort_depth, int) or sort_depth < 1:
            raise QueryError(f"SearchConfig.sort_depth must be a positive integer, got {sort_depth!r}")
        return cls(sort=field, descending=descending, boost=tuple(weights), in_stock=bool(in_stock),
                   stock_field=stock_field, sort_depth=sort_depth)

    @property
    def depth(self) -> int:
        """How many of the best candidates the query needs with metadata (to sort them)."""
        return self.sort_depth if self.sort is not None else 0

    def check(self, attribute_fields: Collection[str], sortable: Callable[[], Collection[str]]) -> None:
        """``QueryError`` unless the sort and boost fields are among ``sortable()`` (price and the numeric
        attributes) and, with ``in_stock``, the stock field is among the catalog's ``attribute_fields``."""
        wanted = ([self.sort] if self.sort is not None else []) + [f for f, _ in self.boost]
        fields = sortable() if wanted else ()
        for field in wanted:
            if field not in fields:
                what = "has no numeric values" if field in attribute_fields else "is not a field of this catalog"
                use = "sort" if field == self.sort else "boost"
                raise QueryError(f"cannot {use} by {field!r}: it {what}; sortable fields (price and numeric "
                                 f"attributes): {', '.join(sorted(fields))}")
        if self.in_stock and self.stock_field not in attribute_fields:
            raise QueryError(f"in_stock needs a {self.stock_field!r} field holding stock levels, and this catalog has "
                             "none (SearchConfig.stock_field names it)")

    def clauses(self, store: IndexStore, view: VectorView) -> list[Any]:
        """Check the fields against the catalog of the view's commit; the in-stock filter's clauses."""
        self.check(view.attribute_fields, lambda: sortable_fields(store, view))
        if not self.in_stock:
            return []
        return compile_where({self.stock_field: {"gt": 0}}, attribute_fields=view.attribute_fields)

    def booster(self, store: IndexStore) -> Callable[[np.ndarray], np.ndarray] | None:
        """The boost of each scored candidate (by pk), read in one statement per field; None without boosts."""
        if not self.boost:
            return None
        weights = dict(self.boost)
        return lambda pks: boost_scores({f: store.field_numbers(f, pks.tolist()) for f in weights}, weights)

    def sorted(self, candidates: Candidates) -> Candidates:
        """The ``sort_depth`` first candidates ordered by the sort field (see the module docstring)."""
        if self.sort is None or len(candidates) < 2:
            return candidates
        n = min(self.sort_depth, len(candidates))
        values = np.array([field_number(p, self.sort) for p in candidates.products[:n]], dtype=np.float64)
        order = sort_order(values, candidates.score[:n], descending=self.descending)
        return candidates.take(np.concatenate([order, np.arange(n, len(candidates))]))

    def hits(self, page: Candidates) -> list[Hit]:
        """The page's hits; with boosts, each hit's ``scores`` has the ``boost`` part (before ``fused``)."""
        hits = hits_from(page)
        if "boost" not in page.parts:
            return hits
        return [replace(hit, scores=_with_boost(hit.scores, float(page.parts["boost"][i]))) for i, hit in enumerate(hits)]


def _with_boost(scores: dict[str, float | None], boost: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, value in scores.items():
        if name == "fused":
            out["boost"] = boost
        out[name] = value
    out.setdefault("boost", boost)
    return out


# -- the catalog's fields --------------------------------------------------------------------------------------
def sortable_fields(store: IndexStore, view: VectorView) -> frozenset[str]:
    """``price`` and the numeric attributes of the view's commit (looked up once per commit)."""
    found = view.derived.get("numeric_fields")
    if found is None:
        found = view.derived["numeric_fields"] = frozenset(store.numeric_fields(view.attribute_fields))
    return frozenset({"price"}) | found


def business_info(store: IndexStore, view: VectorView, stock_field: str) -> dict[str, Any]:
    """What ``SearchEngine.info`` says of the signals: the sortable fields and the stock field (None: absent)."""
    return {"sort_fields": sorted(sortable_fields(store, view)),
            "stock_field": stock_field if stock_field in view.attribute_fields else None}


def reranker_attributes(store: IndexStore, fields: Sequence[str], *, attributes: Collection[str] | None = None,
                        max_attributes: int = 8) -> tuple[str, ...]:
    """A re-ranker's ``attributes`` with ``fields`` as business features (``business:NAME``) after the catalog
    attributes (``attributes``, or the index's first ``max_attributes``); ``QueryError`` for a field that is not
    ``price`` or a numeric attribute."""
    catalog = store.attribute_fields()
    sortable = {"price", *store.numeric_fields(catalog)}
    unknown = [f for f in fields if f not in sortable]
    if unknown:
        raise QueryError(f"business field {unknown[0]!r} is not price or a numeric attribute of this index; "
                         f"numeric fields: {', '.join(sorted(sortable))}")
    plain = tuple(attributes) if attributes is not None else tuple(catalog[:max_attributes])
    return (*plain, *(f"{BUSINESS_PREFIX}{f}" for f in dict.fromkeys(fields)))
