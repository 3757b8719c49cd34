"""A query: weighted terms (text, image or stored product), validated on construction."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from indexer.catalog import encodable
from indexer.errors import QueryError

TermKind = Literal["text", "image", "product"]
ImageInput = Image.Image | bytes | Path
#: The largest term weight in magnitude: vectors and scores are float32, and a weight of 1e39 (finite in
#: Python) became inf there and every score NaN.  Weights are relative, so this never limits a query.
MAX_WEIGHT = 1e6


@dataclass(frozen=True, kw_only=True)
class Term:
    """One part of a query: ``kind`` says what ``value`` is; ``weight`` may be negative."""

    kind: TermKind
    value: Any
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or not math.isfinite(self.weight):
            raise QueryError(f"term weight must be a finite number, got {self.weight!r}")
        if abs(self.weight) > MAX_WEIGHT:
            raise QueryError(f"term weight must be within [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}], got {self.weight!r}")
        if self.kind == "text":
            if not isinstance(self.value, str) or not self.value.strip():
                raise QueryError("a text term must be a non-empty string")
            if not encodable(self.value):
                raise QueryError("a text term must be valid Unicode (it holds a lone surrogate)")
        elif self.kind == "product":
            if not isinstance(self.value, str) or not self.value:
                raise QueryError("a product term needs a product id")
        elif self.kind == "image":
            if not isinstance(self.value, (Image.Image, bytes, bytearray, Path)):
                raise QueryError(f"an image term takes a PIL image, bytes or a pathlib.Path, not {type(self.value).__name__}")
        else:
            raise QueryError(f"unknown term kind {self.kind!r}; use text, image or product")

    def describe(self) -> str:
        if self.kind == "text":
            what = repr(self.value)
        elif self.kind == "product":
            what = f"product {self.value}"
        else:
            what = f"image {self.value}" if isinstance(self.value, Path) else "image"
        return f"{what} x {self.weight:g}"


def term_from(item: Any, weight: float = 1.0) -> Term:
    """A ``Term`` from the API's loose forms: ``str`` → text, image-like → image,
    ``{"product": id}`` → product, ``{"text"|"image"|"product": value, "weight": w}``."""
    if isinstance(item, Term):
        return item
    if isinstance(item, str):
        return Term(kind="text", value=item, weight=weight)
    if isinstance(item, (Image.Image, bytes, bytearray, Path)):
        return Term(kind="image", value=item, weight=weight)
    if isinstance(item, Mapping):
        kinds: list[TermKind] = [k for k in ("text", "image", "product") if k in item]
        unknown = set(item) - {"text", "image", "product", "weight"}
        if len(kinds) != 1 or unknown:
            raise QueryError(f"a term mapping needs exactly one of text, image, product (and optionally weight); got {sorted(item)}")
        value = item[kinds[0]]
        if kinds[0] == "image" and isinstance(value, str):
            value = Path(value)
        return Term(kind=kinds[0], value=value, weight=item.get("weight", weight))
    raise QueryError(f"cannot make a query term from {type(item).__name__}; use str, a PIL image, bytes, Path or {{'product': id}}")


def build_terms(
    *,
    text: str | None = None,
    image: Any = None,
    weights: Mapping[str, float] | None = None,
    terms: Sequence[Any] | None = None,
) -> list[Term]:
    """Terms from ``search``'s keyword arguments (``text``/``image`` with ``weights``, and/or ``terms``)."""
    weights = dict(weights or {})
    unknown = set(weights) - {"text", "image"}
    if unknown:
        raise QueryError(f"weights take the keys 'text' and 'image', not {sorted(unknown)}")
    out: list[Term] = []
    if text is not None:
        out.append(Term(kind="text", value=text, weight=weights.get("text", 1.0)))
    if image is not None:
        value = Path(image) if isinstance(image, str) else image
        out.append(Term(kind="image", value=value, weight=weights.get("image", 1.0)))
    for item in terms or ():
        if isinstance(item, tuple):
            if len(item) != 2:
                raise QueryError(f"a term tuple is (value, weight), got {len(item)} items")
            out.append(term_from(item[0], item[1]))
        else:
            out.append(term_from(item))
    if not out:
        raise QueryError("empty query: give text, an image or terms")
    if not any(t.weight > 0 for t in out):
        raise QueryError("a query needs at least one term with a positive weight")
    return out


_WORD = re.compile(r"\w+")
MAX_QUERY_WORDS = 32


def query_words(terms: list[Term]) -> list[str]:
    """Distinct lower-case words of the positively weighted text terms (for BM25)."""
    words: dict[str, None] = {}
    for term in terms:
        if term.kind == "text" and term.weight > 0:
            for word in _WORD.findall(term.value.lower()):
                words.setdefault(word, None)
    return list(words)[:MAX_QUERY_WORDS]
