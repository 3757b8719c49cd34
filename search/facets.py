"""Facet counts over the top results of one query: category, brand, attributes and price buckets.

Pure functions over product dicts (the ``product`` of a hit); nothing here reads the index.
Counting the top-N relevant results rather than the whole catalog keeps facets about *this*
query::

    count_facets([hit.product for hit in engine.search("red", k=200)], ["category", "price"])
    {"category": [{"value": "dress", "count": 41}, ...],
     "price": [{"value": "0-50", "min": 0, "max": 50, "count": 80}, ...]}

A price bucket holds ``min <= price < max``; ``min``/``max`` is ``None`` for an open end.
Without fixed edges the buckets are round numbers (1, 2, 2.5, 5 x 10^n wide) spanning the
prices seen.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

#: Fields counted from the product's own columns; any other name is read from ``attributes``.
COLUMN_FIELDS = ("category", "brand")
PRICE_FIELD = "price"


def count_facets(products: Sequence[Mapping[str, Any]], fields: Sequence[str], *,
                 price_edges: Sequence[float] | None = None, buckets: int = 5, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Counts of each field in ``fields`` over ``products``, most frequent first (``limit`` values each)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for field in dict.fromkeys(fields):
        if field == PRICE_FIELD:
            prices = [p.get("price") for p in products]
            out[field] = price_buckets([x for x in prices if _is_number(x)], edges=price_edges, buckets=buckets)
        else:
            out[field] = value_counts(products, field, limit=limit)
    return out


def value_counts(products: Sequence[Mapping[str, Any]], field: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """``[{"value", "count"}]`` of a column or attribute, by count then value; missing values are skipped."""
    counts: Counter[Any] = Counter()
    for product in products:
        value = product.get(field) if field in COLUMN_FIELDS else (product.get("attributes") or {}).get(field)
        if isinstance(value, (str, int, float, bool)) and value != "":
            counts[value] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return [{"value": value, "count": count} for value, count in ranked[:limit]]


def price_buckets(prices: Sequence[float], *, edges: Sequence[float] | None = None, buckets: int = 5) -> list[dict[str, Any]]:
    """Non-empty price buckets in price order: ``{"value": label, "min", "max", "count"}``."""
    if not prices:
        return []
    if edges:
        bounds: list[float | None] = [None, *sorted(edges), None]
    else:
        bounds = list(nice_edges(min(prices), max(prices), buckets=buckets))
    out = []
    for low, high in itertools.pairwise(bounds):
        count = sum(1 for x in prices if (low is None or x >= low) and (high is None or x < high))
        if count:
            out.append({"value": _label(low, high), "min": low, "max": high, "count": count})
    return out


def nice_edges(low: float, high: float, *, buckets: int = 5) -> list[float]:
    """Round bucket edges from below ``low`` to above ``high``, about ``buckets`` buckets."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    span = high - low if high > low else max(abs(high), 1.0)
    raw = span / buckets
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step)
    edges = [_tidy(first * step)]
    while edges[-1] <= high:
        edges.append(_tidy((first + len(edges)) * step))
    return edges


def _label(low: float | None, high: float | None) -> str:
    if low is None:
        return f"under {_fmt(high)}"
    if high is None:
        return f"{_fmt(low)} and up"
    return f"{_fmt(low)}-{_fmt(high)}"


def _fmt(x: float | None) -> str:
    return "" if x is None else (f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}")


def _tidy(x: float) -> float:
    rounded = round(x, 6)
    return int(rounded) if float(rounded).is_integer() else rounded


def _is_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
