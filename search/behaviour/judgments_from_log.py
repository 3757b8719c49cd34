"""Judgments from the shop's search log: what shoppers clicked, carted and bought, corrected for position bias.

    rows = judgments_from_log("search-log", before="2024-06-01")       # train on the older searches
    write_judgments(rows, "judgments-from-log.jsonl")                  # vitrina train-reranker --judgments ...

One row per (query, shown product), in the format ``search.evaluation.judgments`` reads:

* **the query**: searches asking the same words with the same weights and filters are one query (their
  impressions pooled); its ``query_id`` is a stable hash of that key.  Only queries that can be asked again
  are judged: text terms (and, with ``product_terms=True``, stored products such as "more like this").  A
  photo or vector query is logged as a hash only, so it is skipped (and counted).
Shoppers look at the top of a page more than at its bottom, so a click at position 8 says more than a click
at position 1.  A position-based click model is fitted to every impression in the window by EM
(``search.behaviour.click_model``; photo queries count here too, as queries known by their hash): θ_pos, how
often a position is looked at.  Two ways to label (``labels``):

* ``"rate"`` (the default): the product's click-through rate for the query, corrected for where it was
  shown: searches in which the shopper acted on it (a click, or more) over the examination it got, the sum of
  θ over the positions it was shown at -- the click model's attractiveness estimate (``correct_bias=False``:
  over its impressions).  Label ``ceil(3 * min(1, rate))``, 0 when never acted on; every weight 1.  On the
  simulated shop (``python -m bench shop-sim``, with the re-ranker's restraints for sparse judgments, see
  ``search.rerank.model``) this beat the uncorrected rate by +2.3% to +5.6% nDCG@10 on seeds 515, 929, 1201
  and 2402, each 95% interval above 0.
* ``"event"``: the strongest event the product got from any of the query's searches (``EVENT_GRADES``:
  click 1, add to cart 2, purchase 3; 0 when shown and nothing happened), a positive weighted ``1 / θ_pos``
  of the position it got that event at (the mean over its searches), clipped at ``max_weight`` -- inverse
  propensity scoring for clicks as in Joachims et al. 2017; a product shown and not clicked weighs 1
  (``correct_bias=False``: every weight 1).  Pooled over many searches, "ever clicked" hardly depends on the
  position any more, so these weights did not help there before those restraints (-0.7%, seed 515); with
  them they did (+2.5% to +10.1% over unweighted event labels), and on seeds 929, 1201 and 2402 the
  weighted event labels beat the rate labels by 3.7-4.5% (seed 515: -0.7%, interval across 0).

``before`` / ``after`` (datetimes, ISO dates or epoch seconds) keep the searches made at ``after <= at <
before`` (with their events): a shop trains on older searches and evaluates on newer ones.

Every row also carries its evidence: ``acted`` (the searches in which the shopper acted on the product) and
``examined`` (the examination it got, summed θ; ``correct_bias=False``: its impressions).  ``train-reranker``
pools them per product across queries into a behaviour prior (``search.rerank.behaviour``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from search.behaviour.click_model import fit_pbm, ips_weights
from search.behaviour.log import EVENT_GRADES, LoggedEvent, LoggedSearch, read_log
from search.behaviour.log import SearchLogError as SearchLogError  # re-exported: the error its readers raise
from search.evaluation.judgments import JudgmentsError

When = datetime | float | int | str
Term = tuple[str, str, float]
_GRADE_NAMES = {grade: kind for kind, grade in EVENT_GRADES.items()}


def parse_when(value: When) -> float:
    """Epoch seconds of a datetime, an ISO date or datetime (``2024-06-01``, ``2024-06-01T12:00``) or a number
    of epoch seconds; a date or datetime without a time zone is taken as UTC."""
    if isinstance(value, bool):
        raise ValueError(f"not a date: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise ValueError(f"not a date: {text!r} (use e.g. 2024-06-01, 2024-06-01T12:00 or epoch seconds)") from None
    if not isinstance(value, datetime):
        raise ValueError(f"not a date: {value!r}")
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


# -- reading a window of the log ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LogWindow:
    """The searches of a log made within a time window, and the strongest event per shown product."""

    searches: list[LoggedSearch]
    #: query id -> product id -> (strongest grade, the position it happened at or None)
    outcomes: dict[str, dict[str, tuple[int, int | None]]]
    total_searches: int
    events: int
    #: events whose search is not in the log (rotated away, or never logged)
    orphan_events: int


def read_window(log: str | Path, *, before: When | None = None, after: When | None = None) -> LogWindow:
    """The searches of the log (a folder or a PostgreSQL URL, ``search.behaviour.log.read_log``) made at
    ``after <= at < before``, with their events."""
    searches, events = read_log(log)
    low = parse_when(after) if after is not None else -np.inf
    high = parse_when(before) if before is not None else np.inf
    kept = [s for s in searches if low <= s.at < high]
    shown = {s.query_id: {h.product_id: h.position for h in s.shown} for s in kept}
    known = {s.query_id for s in searches}
    outcomes: dict[str, dict[str, tuple[int, int | None]]] = {}
    counted = 0
    for event in events:
        grade = EVENT_GRADES.get(event.kind)
        if event.query_id not in shown or grade is None:
            continue
        counted += 1
        _record(outcomes.setdefault(event.query_id, {}), event, grade, shown[event.query_id])
    return LogWindow(searches=kept, outcomes=outcomes, total_searches=len(searches), events=counted,
                     orphan_events=sum(1 for e in events if e.query_id not in known))


def _record(found: dict[str, tuple[int, int | None]], event: LoggedEvent, grade: int, shown: Mapping[str, int]) -> None:
    position = event.position if event.position is not None and event.position >= 1 else shown.get(event.product_id)
    if event.product_id not in found or grade > found[event.product_id][0]:
        found[event.product_id] = (grade, position)


# -- which searches can be asked again ------------------------------------------------------------------------
def replayable_terms(search: LoggedSearch, *, product_terms: bool = False) -> tuple[list[Term] | None, str]:
    """The search's terms as ``(kind, value, weight)`` (kind ``text`` or ``product``) and ``""``, or ``None``
    and why it cannot be asked again: ``photo``, ``vector``, ``product`` (product terms not asked for) or
    ``other``."""
    out: list[Term] = []
    for term in search.terms:
        if "image_sha256" in term:
            return None, "photo"
        if "vector_sha256" in term or "vector_dims" in term:
            return None, "vector"
        kinds = [k for k in ("text", "product") if isinstance(term.get(k), str) and term[k]]
        if len(kinds) != 1:
            return None, "other"
        if kinds[0] == "product" and not product_terms:
            return None, "product"
        weight = term.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight):
            return None, "other"
        out.append((kinds[0], str(term[kinds[0]]), float(weight)))
    if not any(w > 0 for _, _, w in out):
        return None, "other"
    return out, ""


def query_key(terms: Sequence[Any], where: Mapping[str, Any] | None) -> str:
    """A stable id of a query: its terms (in any order) and filters."""
    canonical = json.dumps({"terms": sorted(json.dumps(t, sort_keys=True) for t in terms), "where": where or None},
                           sort_keys=True)
    return "log-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def query_fields(terms: Sequence[Term], where: Mapping[str, Any] | None) -> dict[str, Any]:
    """The judgments-row fields that ask ``terms`` with ``where``: text (and weights), or terms."""
    out: dict[str, Any]
    if len(terms) == 1 and terms[0][0] == "text":
        out = {"text": terms[0][1], **({"weights": {"text": terms[0][2]}} if terms[0][2] != 1.0 else {})}
    else:
        words = " ".join(v for k, v, w in terms if k == "text" and w > 0)
        out = {**({"text": words} if words else {}), "terms": [{k: v, "weight": w} for k, v, w in terms]}
    return {**out, **({"where": dict(where)} if where else {})}


# -- judgments ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LogJudgments:
    """Judgment rows from a log, and what went into them."""

    rows: list[dict[str, Any]]
    searches: int  # in the log
    in_window: int  # made within before / after
    replayable: int
    skipped: dict[str, int]  # searches not judged, by reason (photo, vector, product, other)
    events: int  # events of the window's searches
    orphan_events: int
    queries: int  # distinct judged queries
    positives: dict[str, int]  # judged pairs by their strongest event
    impressions: int  # shown products the click model saw
    theta: list[float]  # examination per position, position 1 = 1
    bias_corrected: bool
    log_likelihood: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("rows")
        out["judged_pairs"] = len(self.rows)
        return out


def judgments_from_log(folder: str | Path, *, correct_bias: bool = True, before: When | None = None,
                       after: When | None = None, min_impressions: int = 1, max_weight: float = 10.0,
                       product_terms: bool = False, labels: str = "rate") -> list[dict[str, Any]]:
    """Judgment rows (see the module docstring) from the search log in ``folder``."""
    return collect_judgments(folder, correct_bias=correct_bias, before=before, after=after, min_impressions=min_impressions,
                             max_weight=max_weight, product_terms=product_terms, labels=labels).rows


#: How a judged product is labelled (see the module docstring).
LABELS = ("rate", "event")


def collect_judgments(folder: str | Path, *, correct_bias: bool = True, before: When | None = None,
                      after: When | None = None, min_impressions: int = 1, max_weight: float = 10.0,
                      product_terms: bool = False, labels: str = "rate") -> LogJudgments:
    """``judgments_from_log`` with its counts and the estimated click model."""
    if min_impressions < 1:
        raise ValueError(f"min_impressions must be at least 1, got {min_impressions}")
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    window = read_window(folder, before=before, after=after)
    theta, likelihood, impressions = _position_bias(window)
    skipped = {"photo": 0, "vector": 0, "product": 0, "other": 0}
    heads: dict[str, dict[str, Any]] = {}
    # query id -> product id -> [impressions, best grade, weights at the best grade, last seen, examination, acted on]
    pooled: dict[str, dict[str, list[Any]]] = {}
    for search in window.searches:
        terms, reason = replayable_terms(search, product_terms=product_terms)
        if terms is None:
            skipped[reason] += 1
            continue
        qid = query_key(terms, search.where)
        heads.setdefault(qid, query_fields(terms, search.where))
        outcomes = window.outcomes.get(search.query_id, {})
        seen = {h.product_id: h.position for h in search.shown} | {p: o[1] or 0 for p, o in outcomes.items()}
        for pid, position in seen.items():
            grade, at = outcomes.get(pid, (0, position))
            weight = 1.0
            if grade > 0 and correct_bias and at:
                weight = float(ips_weights(theta, [at], max_weight=max_weight)[0])
            entry = pooled.setdefault(qid, {}).setdefault(pid, [0, -1, [], search.at, 0.0, 0])
            entry[0] += 1
            entry[4] += float(theta[min(position, len(theta)) - 1]) if position and position >= 1 else 1.0
            entry[5] += grade > 0
            if grade > entry[1]:
                entry[1], entry[2] = grade, []
            if grade == entry[1]:
                entry[2].append(weight)
            entry[3] = max(entry[3], search.at)
    rows: list[dict[str, Any]] = []
    positives = {kind: 0 for kind in EVENT_GRADES}
    for qid, products in pooled.items():
        for pid, (count, grade, weights, last, examined, acted) in products.items():
            if count < min_impressions:
                continue
            if grade > 0:
                positives[_GRADE_NAMES[grade]] += 1
            if labels == "rate":
                rate = acted / max(examined if correct_bias else count, 1e-9)
                label, weight = (int(np.ceil(3 * min(1.0, rate))) if acted else 0), 1.0
            else:
                label, weight = grade, round(float(np.mean(weights)), 6) if grade > 0 else 1.0
            exposure = examined if correct_bias else float(count)
            rows.append({"query_id": qid, **heads[qid], "product_id": pid, "label": label, "weight": weight,
                         "acted": int(acted), "examined": round(float(exposure), 4),
                         "logged_at": datetime.fromtimestamp(last, timezone.utc).isoformat(timespec="seconds")})
    replayable = len(window.searches) - sum(skipped.values())
    return LogJudgments(rows=rows, searches=window.total_searches, in_window=len(window.searches),
                        replayable=replayable, skipped=skipped, events=window.events, orphan_events=window.orphan_events,
                        queries=len({r["query_id"] for r in rows}), positives=positives, impressions=impressions,
                        theta=[round(float(t), 4) for t in theta], bias_corrected=correct_bias, log_likelihood=likelihood)


def _position_bias(window: LogWindow) -> tuple[np.ndarray, float | None, int]:
    """θ per position fitted to every impression of the window (photo queries included, known by their hash)."""
    pair_ids: dict[tuple[str, str], int] = {}
    pairs, positions, clicks = [], [], []
    for search in window.searches:
        key = query_key([dict(t) for t in search.terms], search.where)
        outcomes = window.outcomes.get(search.query_id, {})
        for hit in search.shown:
            if hit.position < 1:
                continue
            pairs.append(pair_ids.setdefault((key, hit.product_id), len(pair_ids)))
            positions.append(hit.position)
            clicks.append(hit.product_id in outcomes)
    if not pairs or not any(clicks):
        return np.ones(max(positions, default=1)), None, len(pairs)
    # a (query, product) seen once or twice gets its own attractiveness that explains its click whatever its
    # position, which pulls θ toward 1 (measured: θ_2 1.0 for a true 0.5); fit on the well-seen pairs when
    # there are enough of them
    counts = np.bincount(np.asarray(pairs))
    seen = counts[np.asarray(pairs)] >= FIT_MIN_IMPRESSIONS
    arrays = np.asarray(pairs), np.asarray(positions), np.asarray(clicks)
    if seen.sum() >= FIT_MIN_ROWS and arrays[2][seen].any():
        kept = arrays[0][seen]
        arrays = np.unique(kept, return_inverse=True)[1], arrays[1][seen], arrays[2][seen]  # pairs numbered 0..J-1 again
    model = fit_pbm(*arrays, n_positions=max(positions))
    return model.theta, model.log_likelihood, len(pairs)


#: Impressions a (query, product) pair needs to take part in fitting θ, and the rows that must remain for it.
FIT_MIN_IMPRESSIONS = 10
FIT_MIN_ROWS = 1000


def write_judgments(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write judgment rows as JSON lines (the format ``read_judgments`` reads)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        raise JudgmentsError(f"{path}: judgments from the log are written as JSON lines; name the file .jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
