"""Attribute values as typed, indexed rows (``attribute_values``), so a filter on an attribute is an
index lookup instead of a scan of every product's JSON.

Each scalar value becomes one row: its text (a number's shortest text form, ``true``/``false`` for a
boolean) and, when the value is a number or numeric text, its number.  ``size=42`` then matches a CSV
catalog's ``"42"`` and a JSONL catalog's ``42`` alike; null values have no row (the attribute is absent).
(The catalog stores a list or object attribute as its JSON text.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_NUMERIC_TEXT = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def typed(value: Any) -> tuple[str, float | None] | None:
    """(text, number) of a scalar attribute value; None for null and for what is not a scalar."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int):
        number = float(value) if abs(value) < 2**1023 else None
        return str(value), number
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value), None
        return (str(int(value)) if value.is_integer() and abs(value) < 2**63 else repr(value)), value
    if isinstance(value, str):
        if _NUMERIC_TEXT.match(value):
            number = float(value)
            return value, number if math.isfinite(number) else None
        return value, None
    return None


def attribute_rows(product_pk: int, attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``attribute_values`` rows of one product."""
    rows = []
    for key, value in (attributes or {}).items():
        pair = typed(value)
        if pair is not None:
            rows.append({"product_pk": product_pk, "key": key, "text": pair[0], "number": pair[1]})
    return rows
