"""Relevance judgments: graded (query, product) labels read from JSONL or CSV, grouped by query.

One row per (query, product)::

    {"query_id": "q1", "text": "red dress", "image": "queries/q1.jpg", "kind": "text+photo",
     "product_id": "SKU-1", "label": 3, "weights": {"text": 1.0, "image": 0.5}}

``text`` and ``image`` may each be null/empty (not both); ``image`` is a path relative to the judgments file.
``kind`` (text, photo, text+photo) is derived when missing; ``weights`` (or CSV columns ``text_weight`` and
``image_weight``) are optional.  Labels are non-negative integers (0 = judged not relevant).  Every row of a
query must agree on its text, image, kind, weights, terms and where.

Optional, written by ``vitrina judgments --from-log`` (``search.behaviour.judgments_from_log``):

* ``weight``: how much the row's label counts in training (a finite number >= 0, default 1), e.g. the
  inverse propensity of a click at a rarely examined position; kept as ``JudgedQuery.label_weights``;
* ``terms``: the query as weighted terms, ``[{"text": "red dress", "weight": 1}, {"product": "SKU-1",
  "weight": 0.5}]``, asked instead of ``text``/``weights`` (``text`` then only names the query);
* ``where``: the query's filters (as ``SearchEngine.search`` takes them);
* ``logged_at``: when the query was last searched (informational);
* ``acted`` and ``examined``: the behaviour behind a logged label: in how many of the query's searches the
  shopper acted on the product, and the examination it got there (the click model's summed θ); kept as
  ``JudgedQuery.evidence``, from which ``train-reranker`` learns a product's behaviour prior
  (``search.rerank.behaviour``).

In CSV, ``terms`` and ``where`` are JSON text.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import CatalogError

KINDS = ("text", "photo", "text+photo")


class JudgmentsError(CatalogError):
    """A judgments file or one of its rows cannot be used."""


@dataclass(frozen=True, kw_only=True)
class JudgedQuery:
    """A query and the graded labels of the products judged for it."""

    query_id: str
    kind: str
    text: str | None = None
    image: Path | None = None
    weights: Mapping[str, float] | None = None
    labels: Mapping[str, int] = field(default_factory=dict)
    #: Weighted terms ``(kind, value, weight)``, kind ``text`` or ``product``: searched instead of text/image.
    terms: tuple[tuple[str, str, float], ...] | None = None
    where: Mapping[str, Any] | None = None
    #: How much each product's label counts in training (default 1 for a product not listed).
    label_weights: Mapping[str, float] = field(default_factory=dict)
    #: Logged behaviour per product: (searches acted on, examination), when the judgments come from a log.
    evidence: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def relevant(self) -> int:
        return sum(1 for v in self.labels.values() if v > 0)

    def search_args(self) -> dict[str, Any]:
        """Keyword arguments for ``SearchEngine.search`` that ask this query."""
        args: dict[str, Any] = {"text": self.text, "image": self.image}
        if self.weights:
            args["weights"] = dict(self.weights)
        if self.terms:
            args = {"terms": [(v if k == "text" else {"product": v}, w) for k, v, w in self.terms]}
        if self.where:
            args["where"] = dict(self.where)
        return args


def read_judgments(path: str | Path) -> list[JudgedQuery]:
    """The queries of a judgments file (``.jsonl``/``.json`` lines or ``.csv``), in first-seen order."""
    path = Path(path)
    if not path.is_file():
        raise JudgmentsError(f"{path}: no such judgments file")
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    return group_rows(rows, root=path.parent, source=str(path))


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JudgmentsError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise JudgmentsError(f"{path}:{number}: expected a JSON object")
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=2):
            row = {k: (v if v != "" else None) for k, v in row.items() if k}
            weights = {m: row.pop(f"{m}_weight", None) for m in ("text", "image")}
            if any(v is not None for v in weights.values()):
                row["weights"] = {m: v for m, v in weights.items() if v is not None}
            yield number, row


def _weights(value: Any, where: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= {"text", "image"}:
        raise JudgmentsError(f"{where}: weights must map text/image to numbers")
    try:
        out = {k: float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise JudgmentsError(f"{where}: weights must be numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in out.values()):
        raise JudgmentsError(f"{where}: weights must be finite")
    return out


def _json_field(value: Any, where: str, name: str) -> Any:
    if isinstance(value, str):  # a CSV cell
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise JudgmentsError(f"{where}: {name} must be JSON, got {value!r}") from None
    return value


def _terms(value: Any, where: str) -> tuple[tuple[str, str, float], ...] | None:
    value = _json_field(value, where, "terms")
    if value is None:
        return None
    out = []
    for term in value if isinstance(value, list) and value else [None]:
        kinds = [k for k in ("text", "product") if isinstance(term, dict) and isinstance(term.get(k), str) and term[k]]
        if not isinstance(term, dict) or len(kinds) != 1 or not set(term) <= {"text", "product", "weight"}:
            raise JudgmentsError(f"{where}: terms must be a list of {{\"text\" or \"product\": str, \"weight\": number}}")
        weight = term.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise JudgmentsError(f"{where}: a term's weight must be a finite number, got {weight!r}")
        out.append((kinds[0], str(term[kinds[0]]), float(weight)))
    if not any(w > 0 for _, _, w in out):
        raise JudgmentsError(f"{where}: terms need at least one positive weight")
    return tuple(out)


def _where(value: Any, where: str) -> dict[str, Any] | None:
    value = _json_field(value, where, "where")
    if value is not None and not isinstance(value, dict):
        raise JudgmentsError(f"{where}: where must be an object of filters, got {value!r}")
    return value or None


def _label_weight(value: Any, where: str) -> float | None:
    return None if value is None else _non_negative(value, where, "weight must be a finite number >= 0")


def _count(value: Any, where: str, name: str) -> float:
    """``acted`` / ``examined``: a finite number >= 0 (both are needed together)."""
    return _non_negative(value, where, f"{name} must be a finite number >= 0 (with acted and examined together)")


def _non_negative(value: Any, where: str, rule: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise JudgmentsError(f"{where}: {rule}, got {value!r}")
    return number


def _label(value: Any, where: str) -> int:
    try:
        label = int(value)
        exact = float(value) == label
    except (TypeError, ValueError):
        raise JudgmentsError(f"{where}: label must be a non-negative integer, got {value!r}") from None
    if label < 0 or not exact or isinstance(value, bool):
        raise JudgmentsError(f"{where}: label must be a non-negative integer, got {value!r}")
    return label


def group_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], *, root: Path, source: str = "judgments") -> list[JudgedQuery]:
    """Rows ``(line number, row)`` grouped into queries; images resolved against ``root``."""
    heads: dict[str, tuple[str, str | None, Path | None, dict[str, float] | None, Any, Any]] = {}
    labels: dict[str, dict[str, int]] = {}
    label_weights: dict[str, dict[str, float]] = {}
    evidence: dict[str, dict[str, tuple[float, float]]] = {}
    for number, row in rows:
        where = f"{source}:{number}"
        qid, pid = row.get("query_id"), row.get("product_id")
        if qid is None or str(qid) == "" or pid is None or str(pid) == "":
            raise JudgmentsError(f"{where}: query_id and product_id are required")
        qid, pid = str(qid), str(pid)
        text = row.get("text") or None
        image = row.get("image") or None
        if text is not None and not isinstance(text, str):
            raise JudgmentsError(f"{where}: text must be a string")
        terms = _terms(row.get("terms"), where)
        if text is None and image is None and terms is None:
            raise JudgmentsError(f"{where}: a query needs a text, an image or both (or terms)")
        derived = "text+photo" if text and image else ("photo" if image else "text")
        kind = str(row.get("kind") or derived)
        if kind not in KINDS:
            raise JudgmentsError(f"{where}: kind {kind!r}; expected one of {', '.join(KINDS)}")
        head = (kind, text, (root / str(image)) if image is not None else None, _weights(row.get("weights"), where),
                terms, _where(row.get("where"), where))
        if heads.setdefault(qid, head) != head:
            raise JudgmentsError(f"{where}: query {qid} differs from its earlier rows (text, image, kind, weights, terms or where)")
        labels.setdefault(qid, {})[pid] = _label(row.get("label"), where)
        weight = _label_weight(row.get("weight"), where)
        if weight is not None:
            label_weights.setdefault(qid, {})[pid] = weight
        if row.get("acted") is not None or row.get("examined") is not None:
            acted, examined = _count(row.get("acted"), where, "acted"), _count(row.get("examined"), where, "examined")
            evidence.setdefault(qid, {})[pid] = (acted, examined)
    return [JudgedQuery(query_id=q, kind=h[0], text=h[1], image=h[2], weights=h[3], labels=labels[q], terms=h[4],
                        where=h[5], label_weights=label_weights.get(q, {}), evidence=evidence.get(q, {}))
            for q, h in heads.items()]


def split_queries(queries: list[JudgedQuery], fraction: float, *, seed: int = 0) -> tuple[list[JudgedQuery], list[JudgedQuery]]:
    """(rest, held out): ``fraction`` of each kind's queries held out, chosen by ``seed``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be within [0, 1), got {fraction}")
    rng = random.Random(f"vitrina-judgments/{seed}")
    held: set[str] = set()
    for kind in sorted({q.kind for q in queries}):
        ids = sorted(q.query_id for q in queries if q.kind == kind)
        rng.shuffle(ids)
        held |= set(ids[: round(fraction * len(ids))])
    return [q for q in queries if q.query_id not in held], [q for q in queries if q.query_id in held]


def id_queries(product_ids: Iterable[str], n: int, *, seed: int = 0, exclude: Iterable[str] = ()) -> list[JudgedQuery]:
    """``n`` exact-id text queries (kind ``text``, id ``id:<product>``): the product id, label 3 for it."""
    left_out = set(exclude)
    pool = sorted(set(product_ids) - left_out)
    chosen = random.Random(f"vitrina-id-queries/{seed}").sample(pool, min(n, len(pool)))
    return [JudgedQuery(query_id=f"id:{pid}", kind="text", text=pid, labels={pid: 3}) for pid in chosen]
