"""Filter expressions → SQLAlchemy clauses over allow-listed fields, bound parameters only.

A filter is a mapping of field → condition::

    {"category": "shoes", "price": {"lt": 50}, "brand": {"in": ["A", "B"]}, "color": {"ne": "red"}}

Fields: ``id``, ``price``, ``category``, ``brand`` and the catalog's attributes.
Operators: ``eq``, ``ne``, ``lt``, ``lte``, ``gt``, ``gte``, ``in``, ``nin``.
``parse_where`` turns the CLI's ``price<50`` / ``brand=A,B`` / JSON forms into that mapping.

Values are strings, numbers, booleans or null (``eq`` / ``ne`` only); ranges take a number or a string.
An attribute holds whatever the catalog had: a CSV catalog's ``size`` is the text ``"42"``, a JSONL
one's may be the number ``42``; a number or numeric text in a filter matches both, and ranges compare
numeric text as numbers.  Integers beyond 64 bits are compared as floats; text must be valid Unicode.
Attribute filters are lookups in the typed, indexed ``attribute_values`` table (``indexer.store.attributes``),
never a scan of the products.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import ColumnElement, not_, or_, select

from indexer.errors import QueryError
from indexer.store.attributes import typed
from indexer.store.schema import AttributeValue, Product

COLUMNS = {"id": Product.id, "price": Product.price, "category": Product.category, "brand": Product.brand}
OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "nin")
_MAX_IN = 10_000
_EXPRESSION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$", re.S)
_CLI_OPERATORS = {"=": "eq", "!=": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def compile_where(where: Mapping[str, Any] | None, *, attribute_fields: Collection[str]) -> list[ColumnElement[bool]]:
    """Clauses for ``where``; unknown fields or operators raise ``QueryError`` naming them."""
    if not where:
        return []
    if not isinstance(where, Mapping):
        raise QueryError(f"where must be a mapping of field to condition, got {type(where).__name__}")
    clauses: list[ColumnElement[bool]] = []
    for field, condition in where.items():
        column = _column(field, attribute_fields)
        conditions = condition if isinstance(condition, Mapping) else {"eq": condition}
        if not conditions:
            raise QueryError(f"filter on {field!r} has no condition")
        for op, value in conditions.items():
            clauses.append(_clause(field, column, op, value))
    return clauses


def _column(field: Any, attribute_fields: Collection[str]) -> Any:
    if not isinstance(field, str):
        raise QueryError(f"filter field names are strings, got {field!r}")
    if field in COLUMNS:
        return COLUMNS[field]
    if field in attribute_fields:
        return field
    known = ", ".join(list(COLUMNS) + sorted(attribute_fields))
    raise QueryError(f"unknown filter field {field!r}; filterable fields: {known}")


def _clause(field: str, column: Any, op: Any, value: Any) -> ColumnElement[bool]:
    if not isinstance(op, str) or op not in OPERATORS:
        raise QueryError(f"unknown operator {op!r} on {field!r}; use one of {', '.join(OPERATORS)}")
    if field not in COLUMNS:
        return _attribute_clause(field, op, value)
    if op in ("in", "nin"):
        values = [_scalar(field, v) for v in _listed(field, op, value)]
        return column.in_(values) if op == "in" else or_(column.is_(None), not_(column.in_(values)))
    value = _scalar(field, value)
    if op in ("lt", "lte", "gt", "gte"):
        _check_range(field, op, value)
        compared: ColumnElement[bool] = {"lt": column < value, "lte": column <= value, "gt": column > value, "gte": column >= value}[op]
        return compared
    if value is None:
        missing: ColumnElement[bool] = column.is_(None) if op == "eq" else column.is_not(None)
        return missing
    return column == value if op == "eq" else or_(column.is_(None), column != value)


def _attribute_clause(field: str, op: str, value: Any) -> ColumnElement[bool]:
    """``Product.pk IN / NOT IN`` the products with a matching row in ``attribute_values`` (an index lookup)."""
    rows = AttributeValue.__table__.c
    owners = select(rows.product_pk).where(rows.key == field)
    if op in ("in", "nin"):
        matches = or_(*(_equal(rows, _scalar(field, v)) for v in _listed(field, op, value)))
        return Product.pk.in_(owners.where(matches)) if op == "in" else Product.pk.not_in(owners.where(matches))
    value = _scalar(field, value)
    if op in ("lt", "lte", "gt", "gte"):
        _check_range(field, op, value)
        text, number = typed(value) or ("", None)  # numbers and numeric text compare as numbers; other text as text
        column, bound = (rows.number, number) if number is not None else (rows.text, text)
        compared = {"lt": column < bound, "lte": column <= bound, "gt": column > bound, "gte": column >= bound}[op]
        return Product.pk.in_(owners.where(compared, rows.number.is_(None) if number is None else rows.number.is_not(None)))
    if value is None:  # null: the attribute is absent
        return Product.pk.not_in(owners) if op == "eq" else Product.pk.in_(owners)
    matching = owners.where(_equal(rows, value))
    return Product.pk.in_(matching) if op == "eq" else Product.pk.not_in(matching)


def _equal(rows: Any, value: Any) -> ColumnElement[bool]:
    """A typed value's match: numbers (and numeric text) by number, anything else by its text."""
    text, number = typed(value) or ("", None)
    equal: ColumnElement[bool] = rows.number == number if number is not None else rows.text == text
    return equal


def _listed(field: str, op: str, value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)) or not value:
        raise QueryError(f"{field!r} {op} needs a non-empty list of values")
    if len(value) > _MAX_IN:
        raise QueryError(f"{field!r} {op} takes at most {_MAX_IN} values")
    return list(value)


def _check_range(field: str, op: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        raise QueryError(f"{field!r} {op} needs a number or a string, got {json.dumps(value)}")
    if field == "price" and not isinstance(value, (int, float)):
        raise QueryError(f"price {op} needs a number, got {value!r}")


def _scalar(field: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise QueryError(f"filter value for {field!r} is not valid Unicode text (a lone surrogate)") from None
        return value
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value
        try:
            return float(value)  # SQLite binds 64-bit integers only; it stores larger ones as REAL anyway
        except OverflowError:
            raise QueryError(f"filter value for {field!r} is out of range (an integer of {len(str(abs(value)))} digits)") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"filter value for {field!r} must be finite, got {value!r}")
        return value
    raise QueryError(f"filter value for {field!r} must be a string, number or boolean, got {type(value).__name__}")


_INT64 = (-(2**63), 2**63 - 1)
def parse_where(expressions: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Merge CLI filter expressions into one mapping.

    Each is JSON (``{"price": {"lt": 50}}``) or ``FIELD OP VALUE`` with OP one of
    ``= != < <= > >=``; ``brand=A,B`` means IN; numbers are parsed as numbers.
    """
    where: dict[str, Any] = {}
    for text in expressions:
        if text.lstrip().startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise QueryError(f"--where {text!r}: invalid JSON ({exc.msg})") from None
            if not isinstance(parsed, dict):
                raise QueryError(f"--where {text!r}: JSON filters must be an object")
            for field, condition in parsed.items():
                _merge(where, field, condition if isinstance(condition, dict) else {"eq": condition})
            continue
        match = _EXPRESSION.match(text)
        if not match:
            raise QueryError(f"--where {text!r}: expected FIELD OP VALUE (e.g. price<50, category=shoes, brand=A,B) or JSON")
        field, symbol, raw = match.groups()
        op = _CLI_OPERATORS[symbol]
        if "," in raw and op in ("eq", "ne"):
            _merge(where, field, {"in" if op == "eq" else "nin": [_cli_value(v) for v in raw.split(",")]})
        else:
            _merge(where, field, {op: _cli_value(raw)})
    return where


def _merge(where: dict[str, Any], field: str, condition: dict[str, Any]) -> None:
    where.setdefault(field, {}).update(condition)


def _cli_value(raw: str) -> Any:
    raw = raw.strip()
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw
