"""Replay evaluation: ask the logged queries again and see where today's ranking puts what shoppers chose.

    with SearchEngine.open("my-index") as engine:
        report = replay_log(engine, "search-log", after="2024-06-01")
        print(report.mrr, report.ndcg)

Each logged search that can be asked again (its text terms, weights and filters; see
``search.behaviour.judgments_from_log.replayable_terms``) and got at least one event is searched on the current
index.  Its products clicked, added to the cart or bought are the relevant ones, graded by ``EVENT_GRADES``
(the strongest event of each); products no longer in the index are left out (counted).  Reported over those
searches (each logged search counts once, so frequent queries weigh as they did in the shop):

* ``mrr``: mean of ``1 / rank`` of the first such product in today's ranking (0 past ``depth``);
* ``ndcg@k``: nDCG of today's top ``k`` with the events' grades as labels (``search.evaluation.metrics``);
* ``logged``: the same metrics of the order shown at the time, for reference (biased in its favour: shoppers
  could only click what it showed).

A shop compares two rankers by replaying the same window on each: with and without the trained re-ranker
(``rerank=False``) or on two index folders.  A query repeated many times is searched once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import QueryError
from search.behaviour.judgments_from_log import When, query_key, read_window, replayable_terms
from search.evaluation import metrics

if TYPE_CHECKING:
    from search.behaviour.log import LoggedSearch
    from search.engine import SearchEngine


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    searches: int  # in the log
    in_window: int
    with_events: int  # window searches with at least one event
    replayed: int  # searches scored
    queries: int  # distinct queries searched
    skipped: dict[str, int]  # searches with events not replayed, by reason (photo, vector, product, other, failed, gone)
    gone_products: int  # event products no longer in the index (left out)
    rerank: bool
    depth: int
    mrr: float
    ndcg: dict[str, float]
    logged: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def replay_log(engine: SearchEngine, folder: str | Path, *, before: When | None = None, after: When | None = None,
               ks: Sequence[int] = (10,), rerank: bool = True, depth: int = 100, product_terms: bool = False,
               progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Replay the log's searches made at ``after <= at < before`` on ``engine`` (see the module docstring).
    ``progress(1)`` ticks per logged search considered."""
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be positive, got {list(ks)}")
    depth = max(1, min(depth, engine.config.max_k))
    window = read_window(folder, before=before, after=after)
    chosen = [s for s in window.searches if window.outcomes.get(s.query_id)]
    wanted = sorted({p for s in chosen for p in window.outcomes[s.query_id]})
    present = set(engine.store.product_pks(wanted)) if wanted else set()
    skipped = {"photo": 0, "vector": 0, "product": 0, "other": 0, "failed": 0, "gone": 0}
    ranked_by_query: dict[str, list[str] | None] = {}
    rr: list[float] = []
    ndcg: dict[int, list[float]] = {k: [] for k in ks}
    logged_rr: list[float] = []
    logged_ndcg: dict[int, list[float]] = {k: [] for k in ks}
    gone = 0
    for search in chosen:
        if progress is not None:
            progress(1)
        grades = {p: g for p, (g, _) in window.outcomes[search.query_id].items() if p in present}
        gone += len(window.outcomes[search.query_id]) - len(grades)
        terms, reason = replayable_terms(search, product_terms=product_terms)
        if terms is None:
            skipped[reason] += 1
            continue
        if not grades:
            skipped["gone"] += 1
            continue
        key = query_key(terms, search.where)
        if key not in ranked_by_query:
            ranked_by_query[key] = _ranked(engine, search, terms, rerank=rerank, depth=depth)
        ranked_ids = ranked_by_query[key]
        if ranked_ids is None:
            skipped["failed"] += 1
            continue
        judged = list(grades.values())
        shown = [h.product_id for h in sorted(search.shown, key=lambda h: h.position)]
        for ids, rrs, ndcgs in ((ranked_ids, rr, ndcg), (shown, logged_rr, logged_ndcg)):
            labels = [grades.get(p, 0) for p in ids]
            rrs.append(metrics.reciprocal_rank(labels))
            for k in ks:
                ndcgs[k].append(metrics.ndcg_at_k(labels, judged, k))
    return ReplayReport(
        searches=window.total_searches, in_window=len(window.searches), with_events=len(chosen), replayed=len(rr),
        queries=sum(1 for r in ranked_by_query.values() if r is not None), skipped=skipped, gone_products=gone,
        rerank=rerank, depth=depth, mrr=metrics.mean(rr), ndcg={f"ndcg@{k}": metrics.mean(v) for k, v in ndcg.items()},
        logged={"mrr": metrics.mean(logged_rr), **{f"ndcg@{k}": metrics.mean(v) for k, v in logged_ndcg.items()}})


def _ranked(engine: SearchEngine, search: LoggedSearch, terms: Sequence[tuple[str, str, float]], *, rerank: bool,
            depth: int) -> list[str] | None:
    """Product ids of today's answer to a logged search; None when it cannot be asked (a filter or product gone)."""
    params = search.params or {}
    extra: dict[str, Any] = {}
    share = params.get("image_share")
    if isinstance(share, (int, float)) and not isinstance(share, bool):
        extra["image_share"] = float(share)
    exclude = params.get("exclude")
    if isinstance(exclude, list) and all(isinstance(e, str) for e in exclude):
        extra["exclude"] = exclude
    elif exclude is None and all(k == "product" for k, _, _ in terms):  # "more like this" never shows the product
        extra["exclude"] = [v for _, v, _ in terms]
    try:
        result = engine.search(terms=[(v if k == "text" else {"product": v}, w) for k, v, w in terms],
                               where=dict(search.where) if search.where else None, k=depth, rerank=rerank, **extra)
    except QueryError:
        return None
    return [h.product_id for h in result.hits]
