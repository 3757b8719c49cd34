"""A query: weighted terms (text, image, stored product or a precomputed vector), validated on construction."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from indexer.catalog import encodable
from indexer.errors import QueryError

TermKind = Literal["text", "image", "product", "vector"]
TERM_KINDS: tuple[TermKind, ...] = ("text", "image", "product", "vector")
ImageInput = Image.Image | bytes | Path
#: The largest term weight in magnitude: vectors and scores are float32, and a weight of 1e39 (finite in
#: Python) became inf there and every score NaN.  Weights are relative, so this never limits a query.
MAX_WEIGHT = 1e6
#: The most dimensions a vector term may have (a guard against absurd input; a model's is far fewer).
MAX_VECTOR_DIMS = 8192


@dataclass(frozen=True, kw_only=True)
class Term:
    """One part of a query: ``kind`` says what ``value`` is; ``weight`` may be negative.

    A ``vector`` term's value (a 1-D list or array of finite numbers, not all zeros) is kept as a read-only
    float32 unit vector; its dimension is checked against the index's model when searched."""

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
        elif self.kind == "vector":
            object.__setattr__(self, "value", unit_vector(self.value))
        else:
            raise QueryError(f"unknown term kind {self.kind!r}; use text, image, product or vector")

    def describe(self) -> str:
        if self.kind == "text":
            what = repr(self.value)
        elif self.kind == "product":
            what = f"product {self.value}"
        elif self.kind == "vector":
            what = f"vector ({len(self.value)} dims)"
        else:
            what = f"image {self.value}" if isinstance(self.value, Path) else "image"
        return f"{what} x {self.weight:g}"


def term_from(item: Any, weight: float = 1.0) -> Term:
    """A ``Term`` from the API's loose forms: ``str`` → text, image-like → image, a numpy array → vector,
    ``{"product": id}`` → product, ``{"text"|"image"|"product"|"vector": value, "weight": w}``."""
    if isinstance(item, Term):
        return item
    if isinstance(item, str):
        return Term(kind="text", value=item, weight=weight)
    if isinstance(item, (Image.Image, bytes, bytearray, Path)):
        return Term(kind="image", value=item, weight=weight)
    if isinstance(item, np.ndarray):
        return Term(kind="vector", value=item, weight=weight)
    if isinstance(item, Mapping):
        kinds: list[TermKind] = [k for k in TERM_KINDS if k in item]
        unknown = set(item) - {*TERM_KINDS, "weight"}
        if len(kinds) != 1 or unknown:
            raise QueryError(f"a term mapping needs exactly one of text, image, product, vector (and optionally weight); "
                             f"got {sorted(map(str, item))}")
        value = item[kinds[0]]
        if kinds[0] == "image" and isinstance(value, str):
            value = Path(value)
        return Term(kind=kinds[0], value=value, weight=item.get("weight", weight))
    raise QueryError(f"cannot make a query term from {type(item).__name__}; use str, a PIL image, bytes, Path, "
                     f"a numpy vector, {{'product': id}} or {{'vector': [...]}}")


def build_terms(
    *,
    text: str | None = None,
    image: Any = None,
    weights: Mapping[str, float] | None = None,
    terms: Sequence[Any] | None = None,
    vector: Any = None,
) -> list[Term]:
    """Terms from ``search``'s keyword arguments (``text``/``image``/``vector`` with ``weights``, and/or ``terms``)."""
    weights = dict(weights or {})
    unknown = set(weights) - {"text", "image", "vector"}
    if unknown:
        raise QueryError(f"weights take the keys 'text', 'image' and 'vector', not {sorted(map(str, unknown))}")
    out: list[Term] = []
    if text is not None:
        out.append(Term(kind="text", value=text, weight=weights.get("text", 1.0)))
    if image is not None:
        value = Path(image) if isinstance(image, str) else image
        out.append(Term(kind="image", value=value, weight=weights.get("image", 1.0)))
    if vector is not None:
        out.append(Term(kind="vector", value=vector, weight=weights.get("vector", 1.0)))
    for item in terms or ():
        if isinstance(item, tuple):
            if len(item) != 2:
                raise QueryError(f"a term tuple is (value, weight), got {len(item)} items")
            out.append(term_from(item[0], item[1]))
        else:
            out.append(term_from(item))
    if not out:
        raise QueryError("empty query: give text, an image, a vector or terms")
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


def unit_vector(value: Any) -> np.ndarray:
    """A vector term's value checked (1-D numbers, finite, not all zeros) and scaled to unit length: float32, read-only."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, (Sequence, np.ndarray)):
        raise QueryError(f"a vector term takes a 1-D list or array of numbers, not {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise QueryError("a vector term takes a 1-D list or array of numbers (this one is ragged)") from None
    if array.dtype.kind not in "fiu" or array.ndim != 1 or not 0 < array.size <= MAX_VECTOR_DIMS:
        raise QueryError(f"a vector term takes a 1-D list or array of 1 to {MAX_VECTOR_DIMS} numbers, "
                         f"got shape {array.shape} of {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise QueryError("a vector term must hold finite numbers (no NaN or infinity)")
    scale = float(np.abs(array).max())  # scaled first: a finite vector's norm may overflow
    if scale == 0.0:
        raise QueryError("a vector term must not be all zeros")
    array /= scale
    unit: np.ndarray = (array / np.linalg.norm(array)).astype(np.float32)
    unit.setflags(write=False)
    return unit


def fill_vector_terms(terms: Sequence[Term], vectors: np.ndarray) -> None:
    """Write each vector term's value into its row of ``vectors`` (``(t, d)``, d the index's model dimension);
    ``QueryError`` naming both dimensions when a vector term has another."""
    dim = vectors.shape[1]
    for i, term in enumerate(terms):
        if term.kind == "vector":
            if len(term.value) != dim:
                raise QueryError(f"a vector term has {len(term.value)} dimensions; the index's model has {dim}")
            vectors[i] = term.value
