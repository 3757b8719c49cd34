"""Gathering and scoring one query's candidates, inside the query's read snapshot.

Candidates: the ANN neighbours of the combined query vector, the best BM25 matches of the words no field match
used up, and — when too few of them are of the kind the words name — the ANN neighbours among that kind's
products.  They are scored by ``search.scoring`` and ordered by the fused score; metadata is read for the
ones that can be shown or re-ranked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from indexer.config import SearchConfig
from indexer.errors import QueryError
from indexer.store.reader import IndexStore

from search import fusion
from search.candidates import Candidates, QueryInfo
from search.field_match import named_values
from search.field_table import FieldTable
from search.query import Term
from search.results import no_candidates
from search.scoring import QueryFields, Weights, score
from search.sorted_ids import member
from search.vector_view import VectorView


def gather_candidates(store: IndexStore, config: SearchConfig, view: VectorView, terms: list[Term],
                      vectors: np.ndarray, clauses: list[Any], *, info: QueryInfo, fields: QueryFields, weights: Weights,
                      table: FieldTable | None, depth: int, exclude: Sequence[str], timings: dict[str, float],
                      rerank_depth: int = 0, keep_lexical: int = 0, product_pks: Sequence[int] = (),
                      value_vectors: Callable[[], Mapping[str, tuple[Sequence[str], np.ndarray]]] | None = None,
                      boost: Callable[[np.ndarray], np.ndarray] | None = None) -> Candidates:
    """The best ``depth`` candidates by fused score, with metadata; ``timings`` gets the stages.

    ``rerank_depth`` of them (and ``keep_lexical`` BM25 matches) are marked as the head a re-ranker re-scores;
    ``product_pks`` are the query's stored-product terms; ``value_vectors`` embeds the field values on demand;
    ``boost`` (``search.business``) adds to each scored candidate's fused score (by pk) before the cut."""
    try:
        query = fusion.combine_terms(vectors, np.array(weights.term_weights, dtype=np.float32))
    except fusion.FusionError as exc:
        raise QueryError(str(exc)) from None
    needed = depth + len(exclude)
    n_candidates = max(config.min_candidates, config.candidate_factor * needed)
    t = time.perf_counter()
    allowed = None
    if clauses:
        allowed = _allowed(store, view, clauses)
        if len(allowed[0]) == 0:
            timings["sqlite"] = _ms(t)
            return no_candidates(info)
    words = list(fields.bm25_words) if info.lexical_weight > 0 else []
    counts = store.word_counts(words) if words else {}
    limit = config.lexical_max_docs
    if words and limit is not None and view.products > limit:
        words = [w for w in words if counts.get(w, 0) <= limit]
    lexical_pks, lexical_raw = store.lexical(words, allowed=None if allowed is None else allowed[0],
                                             limit=config.lexical_candidates)
    kind_allowed = _kind_allowed(fields, weights, view, table, allowed)
    timings["sqlite"] = _ms(t)
    t = time.perf_counter()
    if allowed is not None and (not view.exact and len(allowed[0]) <= config.exact_scan_limit):
        pks = allowed[0]  # small allowed set on an approximate index: score all of them exactly
    else:
        pks = view.ann_candidates(query, n_candidates, allowed, ef_search=config.ef_search, nprobe=config.nprobe,
                                    threads=config.faiss_threads)
        if allowed is not None and not view.exact and len(pks) < min(needed, len(allowed[0])):
            pks = allowed[0]  # the approximate search came up short: top up exactly
    if kind_allowed is not None and len(kind_allowed[0]) and \
            int(member(pks, kind_allowed[0]).sum()) < min(needed, len(kind_allowed[0])):
        # too few of the named kind among the neighbours: search among that kind's products as well
        pks = np.union1d(pks, view.ann_candidates(query, n_candidates, kind_allowed, ef_search=config.ef_search,
                                                  nprobe=config.nprobe, threads=config.faiss_threads))
    pks = np.union1d(np.asarray(pks, dtype=np.int64), lexical_pks)
    if exclude:
        pks = np.setdiff1d(pks, np.fromiter(store.product_pks(exclude).values(), dtype=np.int64))
    pks = pks[view.known(pks)]  # a snapshot newer than the view (being loaded by another query) may name others
    stored = view.vectors_of(pks)
    reference = view.reference(config.reference_sample)
    photos = [i for i, term in enumerate(terms) if term.kind == "image" and term.weight > 0]
    timings["ann"] = _ms(t)
    t = time.perf_counter()
    scored = score(pks=pks, stored=stored, query=query, term_vectors=vectors, weights=weights, reference=reference,
                   lexical_pks=lexical_pks, lexical_raw=lexical_raw,
                   lexical_matches=max([len(lexical_pks), *counts.values()]), products=view.products,
                   fields=fields, table=table, photo_terms=photos, product_pks=product_pks,
                   value_vectors=value_vectors() if value_vectors is not None and photos and fields.evidence else None,
                   config=config)
    fused = scored.parts.fused
    lift = boost(pks) if boost is not None else None
    if lift is not None:
        fused = (fused + lift).astype(np.float32)
    order = fusion.top_k(pks, fused, depth)
    head = min(rerank_depth, len(order))
    if keep_lexical and head:  # the best word matches reach the re-ranker even when their vectors rank them low
        extra = np.setdiff1d(np.flatnonzero(np.isin(pks, lexical_pks[:keep_lexical])), order[:head])
        extra = extra[np.argsort(-fused[extra], kind="stable")]
        order = np.concatenate([order[:head], extra, order[head:][~np.isin(order[head:], extra)]])
        head += len(extra)
    best = scored.best_image
    position = np.full(len(pks), -1, dtype=np.int64)
    position[best >= 0] = stored["image_position"][best[best >= 0]]
    timings["fuse"] = _ms(t)
    t = time.perf_counter()
    meta = store.products(pks[order].tolist())
    if len(meta) < len(order):  # gone in this snapshot: the view is of an older commit (see above)
        present = np.fromiter((int(pk) in meta for pk in pks[order]), dtype=bool, count=len(order))
        head -= int((~present[:head]).sum())
        order = order[present]
    timings["sqlite"] += _ms(t)
    parts = {"image": scored.parts.image, "text": scored.parts.text, "lexical": scored.parts.lexical,
             "field": scored.parts.field, **{f"field:{name}": part for name, part in scored.field_parts.items()},
             **({"boost": lift} if lift is not None else {})}
    return Candidates(
        pks=pks[order], text=scored.text_cosine[order], image=scored.image_cosine[order], image_position=position[order],
        image_count=np.bincount(stored["image_owner"], minlength=len(pks))[order].astype(np.int64),
        lexical=scored.lexical_raw[order], lexical_norm=scored.lexical_norm[order], fused=fused[order],
        parts={name: part[order] for name, part in parts.items()},
        products=[meta[int(pk)] for pk in pks[order]], query=info, extra={"scored": len(pks), "rerank_head": head},
    )


def _allowed(store: IndexStore, view: VectorView, clauses: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(product pks, image pks) the filter allows: the products from SQL (index lookups), their images from the
    view's maps (no SQL); kept per commit for the filters shops repeat (category pages, in stock), when the
    query's snapshot is the view's own commit."""
    compiled = [clause.compile() for clause in clauses]
    key = tuple((str(c), repr(sorted(c.params.items(), key=lambda item: item[0]))) for c in compiled)
    cache: dict[Any, tuple[np.ndarray, np.ndarray]] = view.derived.setdefault("allowed", {})
    found = cache.get(key)
    if found is not None:
        return found
    products = store.allowed_products(clauses)
    allowed = products, view.images_of(products)
    if int(store.read_commit().get("generation", 0)) == view.generation:
        if len(cache) >= 256:
            cache.clear()
        cache[key] = allowed
    return allowed


def _kind_allowed(fields: QueryFields, weights: Weights, view: VectorView, table: FieldTable | None,
                  allowed: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The products (and their images) of the kind the words name — the values of the field that counts
    most — so the best of them join the candidates even when the query vector ranks other kinds first.
    From the in-memory field table, cached per commit; within ``allowed`` when the query has filters."""
    if table is None:
        return None
    named = {name: named_values(fields.evidence, name) for name in fields.evidence}
    named = {name: values for name, values in named.items() if values}
    if not named:
        return None
    top = max(named, key=lambda name: (weights.field_priors.get(name, 0.0), name == "category"))
    key = ("kind", top, tuple(sorted(named[top])))
    cache: dict[Any, tuple[np.ndarray, np.ndarray]] = view.derived.setdefault("kind_allowed", {})
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        products = table.pks_with(top, named[top])
        cache[key] = (products, view.images_of(products))
    products, images = cache[key]
    if allowed is not None:
        products, images = np.intersect1d(products, allowed[0]), np.intersect1d(images, allowed[1])
    return products, images


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
