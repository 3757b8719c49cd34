"""Read a product catalog (CSV or JSONL) into validated ``ProductRecord`` objects.

A bad row never stops the read: it is handed to ``on_error`` with its row number and
the reason, and the next row is read.  Row numbers are 1-based and count data rows
(the CSV header is not a row; in JSONL every line is a row, blank lines included).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import CatalogError

#: Fields with a meaning of their own; every other field is kept as an attribute.
KNOWN_FIELDS = ("id", "title", "description", "image", "images", "price", "category", "brand")
CSV_IMAGE_SEPARATOR = "|"
MAX_ID_CHARS = 256
#: Longer text is truncated (with a warning): embeddings see ~77 tokens anyway.
MAX_FIELD_CHARS = {"title": 1000, "description": 20_000}
MAX_ATTRIBUTE_CHARS = 2000
#: A CSV cell may be this long before the row is refused (Python's csv stops at 131,072 characters by
#: default; longer text is truncated to the limits above, so only the reading needs room).
MAX_CSV_FIELD_CHARS = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ProductRecord:
    """One valid catalog row.  ``images`` holds absolute local paths or http(s) URLs."""

    id: str
    row: int
    title: str = ""
    description: str = ""
    images: tuple[str, ...] = ()
    price: float | None = None
    category: str | None = None
    brand: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text embedded for this product: title first, then the description."""
        parts = [p for p in (self.title.strip(), self.description.strip()) if p]
        return ". ".join(parts)


@dataclass(frozen=True, kw_only=True)
class RowError:
    """A catalog row that could not be used (``fatal``), or was used with a change (a warning)."""

    row: int
    reason: str
    product_id: str | None = None
    fatal: bool = True

    def __str__(self) -> str:
        who = f" (id {self.product_id!r})" if self.product_id else ""
        return f"row {self.row}{who}: {self.reason}"


def catalog_format(path: Path) -> str:
    """``"csv"`` or ``"jsonl"`` from the file name; anything else is a ``CatalogError``."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise CatalogError(f"{path}: unknown catalog format {suffix!r}; use .csv or .jsonl")


def iter_products(
    path: str | Path, *, on_error: Callable[[RowError], None] | None = None, allow_outside_root: bool = False
) -> Iterator[ProductRecord]:
    """Yield every valid product of the catalog at ``path``.

    Invalid rows (missing or duplicate id, bad price, unreadable JSON, text that is not
    UTF-8...) go to ``on_error``; the first row with a given id wins.  Rows that are used
    with a change (text truncated, an image path outside the catalog's folder dropped)
    go there too, with ``fatal=False``.  Local image paths must stay inside the catalog's
    folder (after resolving ``..`` and symlinks) unless ``allow_outside_root``.  Raises
    ``CatalogError`` only when the file itself cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    fmt = catalog_format(path)
    root = path.resolve().parent
    seen: set[str] = set()
    report = on_error or (lambda error: None)
    rows = _csv_rows(path) if fmt == "csv" else _jsonl_rows(path)
    for row_number, raw in rows:
        if isinstance(raw, RowError):
            report(raw)
            continue
        warnings: list[str] = []
        try:
            record = parse_row(raw, row=row_number, root=root, csv_row=fmt == "csv", warnings=warnings,
                               allow_outside_root=allow_outside_root)
        except CatalogError as exc:
            report(RowError(row=row_number, reason=str(exc), product_id=_raw_id(raw)))
            continue
        except (ValueError, TypeError, OverflowError, RecursionError, OSError) as exc:  # a row never stops the read
            report(RowError(row=row_number, reason=f"unusable row ({type(exc).__name__}: {_printable(str(exc))})",
                            product_id=_raw_id(raw)))
            continue
        if record.id in seen:
            report(RowError(row=row_number, reason="duplicate id (the first row wins)", product_id=record.id))
            continue
        seen.add(record.id)
        for warning in warnings:
            report(RowError(row=row_number, reason=warning, product_id=record.id, fatal=False))
        yield record


def parse_row(
    raw: dict[str, Any], *, row: int, root: Path, csv_row: bool = False,
    warnings: list[str] | None = None, allow_outside_root: bool = False,
) -> ProductRecord:
    """Validate one raw row (a dict of field → value) into a ``ProductRecord``.

    Changes made to keep the row (truncation, dropped images) are appended to ``warnings``.
    """
    if not isinstance(raw, dict):
        raise CatalogError(f"expected an object, got {type(raw).__name__}")
    warnings = warnings if warnings is not None else []
    values = checked_values({k.strip(): v for k, v in raw.items() if isinstance(k, str) and not _blank(v)}, warnings)
    product_id = _parse_id(values.get("id"))
    images = _parse_images(values, root=root, csv_row=csv_row)
    if not allow_outside_root:
        images = _inside_root(images, root, warnings)
    record = ProductRecord(
        id=product_id,
        row=row,
        title=_truncated(values, "title", MAX_FIELD_CHARS["title"], warnings),
        description=_truncated(values, "description", MAX_FIELD_CHARS["description"], warnings),
        images=images,
        price=_parse_price(values.get("price")),
        category=_optional_text(values, "category"),
        brand=_optional_text(values, "brand"),
        attributes={k: _attribute(k, v, warnings) for k, v in values.items()
                    if k not in KNOWN_FIELDS and k and attribute_name_ok(k, warnings)},
    )
    if not record.text and not record.images:
        raise CatalogError("no title, description or image: nothing to index")
    return record


def checked_values(values: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """``values`` refused when a key or value is not valid UTF-8 text (``CatalogError`` naming the field), and
    without NUL characters (PostgreSQL stores none; a warning names the field; an id or an image path with one
    is refused later)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if _has_surrogates(key) or _has_surrogates(value):
            raise CatalogError(f"field {_printable(key)!r} is not valid UTF-8 text (a lone surrogate or an undecodable byte)")
        kept_as_is = key in ("id", "image", "images")  # refused later if they hold one: a path must not change
        clean_key, clean = (key, value) if kept_as_is else (_without_nul(key), _without_nul(value))
        if (clean_key, clean) != (key, value):
            warnings.append(f"field {_printable(clean_key)!r}: NUL characters removed")
        out[clean_key] = clean
    return out


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def encodable(text: str) -> bool:
    """False for text holding a surrogate code point (an undecodable byte kept by ``surrogateescape``, or a
    lone ``\\ud800``-``\\udfff`` escape from JSON): no database or UTF-8 output can store or print it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_surrogates(value: Any) -> bool:
    """True when ``value`` (a string, or text nested in a list or dict) is not ``encodable``."""
    if isinstance(value, str):
        return not encodable(value)
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_surrogates(v) for v in value)
    return False


def _printable(text: str) -> str:
    """``text`` safe to print or store (surrogates shown as escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _truncated(values: dict[str, Any], name: str, limit: int, warnings: list[str]) -> str:
    text = _text(values, name)
    if len(text) > limit:
        warnings.append(f"{name} of {len(text)} characters truncated to {limit}")
        return text[:limit]
    return text


def _inside_root(images: tuple[str, ...], root: Path, warnings: list[str]) -> tuple[str, ...]:
    kept = []
    real_root = os.path.realpath(root)
    for location in images:
        if location.lower().startswith(("http://", "https://")):
            kept.append(location)
            continue
        real = os.path.realpath(location)
        if os.path.commonpath([real_root, real]) != real_root:
            warnings.append(f"image {location} is outside the catalog's folder {root}; refused (allow it with --allow-outside-root)")
            continue
        kept.append(location)
    return tuple(kept)


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    if csv.field_size_limit() < MAX_CSV_FIELD_CHARS:  # only ever raised, never lowered: safe for other readers
        csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    try:
        handle = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
        with handle:
            reader = csv.DictReader(handle)
            try:
                fieldnames = reader.fieldnames
            except csv.Error as exc:
                raise CatalogError(f"{path}: unreadable CSV header ({exc})") from None
            if not fieldnames or "id" not in [f.strip() for f in fieldnames]:
                raise CatalogError(f"{path}: the CSV header must have an 'id' column")
            number = 0
            while True:
                number += 1
                try:
                    raw = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # e.g. a cell over MAX_CSV_FIELD_CHARS
                    # the parser stopped inside a cell: where the next row begins cannot be known (a quoted
                    # cell may span lines), so the rows read so far are kept and the read ends here
                    yield number, RowError(row=number, reason=f"unreadable CSV row ({exc}); the rows after it were not read")
                    return
                if None in raw:
                    yield number, RowError(row=number, reason="more cells than header columns", product_id=raw.get("id"))
                    continue
                yield number, raw
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)  # a byte-order mark is not part of the first row
            if not line.strip():
                continue
            try:
                raw = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield number, RowError(row=number, reason=f"not UTF-8 text ({exc.reason})")
                continue
            except json.JSONDecodeError as exc:
                yield number, RowError(row=number, reason=f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            except ValueError:  # Python refuses integers of more than 4300 digits
                yield number, RowError(row=number, reason="unreadable JSON: a number of thousands of digits")
                continue
            except RecursionError:
                yield number, RowError(row=number, reason="unreadable JSON: nested too deep")
                continue
            if not isinstance(raw, dict):
                yield number, RowError(row=number, reason=f"expected a JSON object, got {type(raw).__name__}")
                continue
            yield number, raw


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return str(value) if value is not None and not isinstance(value, (dict, list)) else None


def _parse_id(value: Any) -> str:
    if value is None:
        raise CatalogError("missing id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CatalogError(f"id must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        raise CatalogError(f"id longer than {MAX_ID_CHARS} characters")
    if any(ord(ch) < 32 for ch in text):
        raise CatalogError("id contains control characters")
    return text


def _text(values: dict[str, Any], name: str) -> str:
    value = values.get(name)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise CatalogError(f"{name} must be text, got {type(value).__name__}")
    return str(value).strip()


def _optional_text(values: dict[str, Any], name: str) -> str | None:
    return _text(values, name) or None


def _parse_price(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise CatalogError(f"price must be a number, got {value!r}")
    try:
        price = float(str(value).strip().replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of 400 digits
        raise CatalogError(f"price must be a number no larger than {sys.float_info.max:.3g}, got {_short(value)}") from None
    if math.isnan(price) or math.isinf(price):
        raise CatalogError(f"price must be a finite number, got {_short(value)}")
    if price < 0:
        raise CatalogError(f"price must not be negative, got {_short(value)}")
    return price


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"an integer of {len(str(value))} digits"
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_images(values: dict[str, Any], *, root: Path, csv_row: bool) -> tuple[str, ...]:
    raw: list[Any] = []
    for key in ("image", "images"):
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, list):
            raw.extend(value)
        elif isinstance(value, str):
            raw.extend(value.split(CSV_IMAGE_SEPARATOR) if csv_row or key == "images" else [value])
        else:
            raise CatalogError(f"{key} must be a path, a URL or a list of them, got {type(value).__name__}")
    images: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise CatalogError(f"image entries must be strings, got {type(item).__name__}")
        location = item.strip()
        if not location:
            continue
        resolved = resolve_image_location(location, root=root)
        if resolved not in images:
            images.append(resolved)
    return tuple(images)


def resolve_image_location(location: str, *, root: Path) -> str:
    """An http(s) URL as it is; a local path made absolute against ``root``."""
    lowered = location.lower()
    if "\x00" in location:
        raise CatalogError(f"image {_printable(location)!r}: a NUL character in a path or URL")
    if lowered.startswith(("http://", "https://")):
        return location
    if "://" in lowered or lowered.startswith(("data:", "file:")):
        raise CatalogError(f"image {location!r}: only local paths and http(s) URLs are supported")
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else (root / path))


def attribute_name_ok(name: str, warnings: list[str]) -> bool:
    """Whether an attribute may be kept under ``name``: names longer than ``MAX_ID_CHARS`` are dropped (a warning)."""
    if len(name) <= MAX_ID_CHARS:
        return True
    warnings.append(f"attribute name of {len(name)} characters (over {MAX_ID_CHARS}): attribute dropped")
    return False


def _attribute(name: str, value: Any, warnings: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        warnings.append(f"attribute {name!r} is {value!r}; stored as text")
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        warnings.append(f"attribute {name!r} is an integer of {len(str(abs(value)))} digits, beyond 64 bits; stored as text")
        return str(value)[:MAX_ATTRIBUTE_CHARS]
    if not isinstance(value, (str, int, float, bool)):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, str):
        value = value.strip()
        if len(value) > MAX_ATTRIBUTE_CHARS:
            warnings.append(f"attribute {name!r} of {len(value)} characters truncated to {MAX_ATTRIBUTE_CHARS}")
            value = value[:MAX_ATTRIBUTE_CHARS]
    return value
