"""Pure feature building for the fusion classifier: candidates in, float32 arrays out (numpy only).

One function, :func:`build_features`, serves training and query time alike, so a model sees the same
numbers in both.  It reads a ``search.candidates.Candidates`` by attribute (no import: this module stays pure)
and returns ``(rows, query)``:

* ``rows`` (n, len(feature_names(attributes))): per candidate: modality scores, their gaps to the query's
  best, within-query z-scores and ranks (computed from the scores, so independent of the input order), BM25,
  the best image's position, word overlap with the product's text, id / model-number / brand / category
  matches, attribute matches and mismatches with the query's words, price; then per field (category, brand,
  each listed catalog attribute) the query-word match and the "consensus": the share of the 10 best candidates
  by text, and by image, that share the candidate's value (e.g. most photo neighbours are red mugs); then per
  business field (an ``attributes`` entry ``business:NAME``: price or a numeric attribute such as popularity or
  margin) its z-score among the query's candidates (clipped to ±3, missing → 0) and a "missing" flag;
* ``query`` (len(QUERY_FEATURES),): the query's shape: which term kinds, their weights, words, the
  image share and lexical weight it was run with, how the candidate scores spread.

Attribute matching: a query word "names" a field (color, pattern, category, brand...) when it equals one of
that field's values among the candidates; a candidate matches a named field when its value has the word and
mismatches it otherwise.  Missing scores (NaN) become 0 with a ``*_missing`` flag beside them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

BASE_FEATURES: tuple[str, ...] = (
    "text", "text_missing", "image", "image_missing", "fused",
    "text_gap", "image_gap", "fused_gap", "text_z", "image_z", "fused_z",
    "lexical_norm", "lexical_log", "lexical_missing",
    "fused_rank", "text_rank", "image_rank", "lexical_rank",
    "image_position", "image_count",
    "title_overlap", "text_overlap", "id_match", "code_match", "brand_match", "category_match",
    "attr_match", "attr_mismatch", "price_log", "price_rel", "price_under",
)
#: Per field (category, brand, then each listed attribute): the query-word match (+1 / -1 / 0) and the share
#: of the best candidates by text and by image that share the candidate's value.
FIELD_STATS: tuple[str, ...] = ("match", "cons_text", "cons_image")
QUERY_FEATURES: tuple[str, ...] = (
    "q_has_text", "q_has_photo", "q_has_product", "q_text_weight", "q_image_weight", "q_negative_weight",
    "q_words", "q_image_share", "q_lexical_weight", "q_lexical_coverage", "q_lexical_best", "q_has_code",
    "q_attr_words", "q_text_spread", "q_image_spread",
)
#: The score columns the gated model weighs per query (with every field's match and image consensus).
BASE_CHANNELS: tuple[str, ...] = (
    "text_z", "image_z", "fused_z", "lexical_norm", "title_overlap", "text_overlap", "id_match", "code_match",
    "attr_match", "attr_mismatch",
)


#: An ``attributes`` entry ``business:NAME`` makes NAME (price or a numeric attribute) a business field: two
#: columns, ``z:business:NAME`` (its clipped per-query z-score, a gated channel too) and ``missing:business:NAME``.
BUSINESS_PREFIX = "business:"
BUSINESS_STATS: tuple[str, ...] = ("z", "missing")
#: Business z-scores (features and query boosts alike) are clipped to ±this.
Z_CLIP = 3.0


#: An ``attributes`` entry ``behaviour:rate`` adds one column of that name: the product's behaviour prior learnt
#: from the shop's log (``search.rerank.behaviour``), looked up by product id (``build_features(behaviour=)``;
#: a product it does not know scores 0, the mean).
BEHAVIOUR_PREFIX = "behaviour:"


def behaviour_columns(attributes: Iterable[str] = ()) -> tuple[str, ...]:
    """The behaviour columns among ``attributes`` (entries ``behaviour:NAME``)."""
    return tuple(a for a in attributes if a.startswith(BEHAVIOUR_PREFIX))


def business_fields(attributes: Iterable[str] = ()) -> tuple[str, ...]:
    """The business fields among ``attributes`` (the names after ``business:``)."""
    return tuple(a[len(BUSINESS_PREFIX):] for a in attributes if a.startswith(BUSINESS_PREFIX))


def field_names(attributes: Iterable[str] = ()) -> tuple[str, ...]:
    return ("category", "brand", *(f"attr:{a}" for a in attributes
                                   if not a.startswith(BUSINESS_PREFIX) and not a.startswith(BEHAVIOUR_PREFIX)))


def feature_names(attributes: Iterable[str] = ()) -> tuple[str, ...]:
    """The columns of ``build_features(..., attributes=attributes)`` rows."""
    attributes = tuple(attributes)
    return (BASE_FEATURES + tuple(f"{stat}:{field}" for field in field_names(attributes) for stat in FIELD_STATS)
            + tuple(f"{stat}:{BUSINESS_PREFIX}{name}" for name in business_fields(attributes) for stat in BUSINESS_STATS)
            + behaviour_columns(attributes))


def channel_names(attributes: Iterable[str] = ()) -> tuple[str, ...]:
    attributes = tuple(attributes)
    fields = field_names(attributes)
    return (BASE_CHANNELS + tuple(f"match:{f}" for f in fields) + tuple(f"cons_image:{f}" for f in fields)
            + tuple(f"z:{BUSINESS_PREFIX}{name}" for name in business_fields(attributes)) + behaviour_columns(attributes))


def channel_columns(attributes: Sequence[str] = ()) -> list[int]:
    """Positions of the gated model's channels in the rows."""
    names = feature_names(attributes)
    return [names.index(c) for c in channel_names(attributes)]


FEATURE_VERSION = 2  # 2: "fused" is the calibrated sum (z-scores, field evidence), not raw cosines
#: What :func:`product_profile` keeps of one product: (title words, all words, id words, field -> value words, price).
Profile = tuple[frozenset[str], frozenset[str], frozenset[str], dict[str, frozenset[str]], float]
#: How many of the best candidates (per score) vote in the consensus features.
CONSENSUS_K = 10

_PUNCTUATION = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})


def tokens(text: str | None) -> list[str]:
    """Lower-case alphanumeric words of ``text`` (punctuation splits)."""
    return (text or "").lower().translate(_PUNCTUATION).split()


def _numbers(texts: Iterable[str]) -> list[float]:
    """Stand-alone numbers of the query ("under 50", "$30"), not the digits of a model code."""
    out = []
    for text in texts:
        for raw in text.split():
            word = raw.strip("$€£,.;:!?()")
            try:
                out.append(float(word))
            except ValueError:
                continue
    return out


_NUMERIC_TEXT = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")  # as indexer.store.attributes


def field_number(product: Mapping[str, Any], field: str) -> float:
    """A product's ``price`` or attribute ``field`` as a number (numeric text counts, as in the index's typed
    attribute rows); NaN when missing or not a number."""
    value = product.get("price") if field == "price" else (product.get("attributes") or {}).get(field)
    if isinstance(value, str) and _NUMERIC_TEXT.match(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, int) and abs(value) >= 2**1023):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def clipped_z(values: np.ndarray, clip: float = Z_CLIP) -> np.ndarray:
    """Z-scores of ``values`` among their present (non-NaN) entries, clipped to ±``clip``; missing values and a
    field without spread score 0."""
    values = np.asarray(values, dtype=np.float64)
    z = np.zeros(len(values))
    present = ~np.isnan(values)
    if present.any():
        std = float(values[present].std())
        if std > 1e-12:
            z[present] = (values[present] - float(values[present].mean())) / std
    clipped: np.ndarray = np.clip(z, -clip, clip)
    return clipped


def _has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


def product_profile(product: Mapping[str, Any]) -> Profile:
    """What features need of one product's metadata, tokenised once: (title words, all words, id words,
    field → value words for category, brand and string attributes, price or NaN)."""
    fields: dict[str, frozenset[str]] = {}
    for name in ("category", "brand"):
        if isinstance(product.get(name), str):
            fields[name] = frozenset(tokens(product[name]))
    for name, value in (product.get("attributes") or {}).items():
        values = value if isinstance(value, list) else [value]
        words = frozenset(w for v in values if isinstance(v, str) for w in tokens(v))
        if words:
            fields[f"attr:{name}"] = words
    title = frozenset(tokens(product.get("title")))
    body = title.union(tokens(product.get("description")), *fields.values())
    price: Any = product.get("price")
    ok = isinstance(price, (int, float)) and not isinstance(price, bool) and price == price and price >= 0
    return title, body, frozenset(tokens(str(product.get("id", "")))), fields, float(price) if ok else float("nan")


def _profiles(candidates: Any, cache: dict[Any, Any] | None) -> list[Profile]:
    if cache is None:
        return [product_profile(p) for p in candidates.products]
    out = []
    for pk, p in zip(candidates.pks.tolist(), candidates.products):
        key = (pk, p.get("id"), p.get("title"), p.get("description"), p.get("category"), p.get("brand"),
               p.get("price"), repr(p.get("attributes")))
        found = cache.get(key)
        if found is None:
            found = cache[key] = product_profile(p)
        out.append(found)
    return out


def _codes(fields: list[dict[str, frozenset[str]]], names: Sequence[str]) -> dict[str, tuple[np.ndarray, int]]:
    """Per field of ``names``: a code of each candidate's value (-1 when it has none), and how many codes."""
    wanted = set(names)
    columns = {name: np.full(len(fields), -1, dtype=np.int64) for name in names}
    codes: dict[str, dict[frozenset[str], int]] = {name: {} for name in names}
    for i, product_fields in enumerate(fields):
        for name, value in product_fields.items():
            if name in wanted:
                seen = codes[name]
                columns[name][i] = seen.setdefault(value, len(seen))
    return {name: (columns[name], len(codes[name])) for name in names}


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    present = np.flatnonzero(~np.isnan(scores))
    return present[np.argsort(-scores[present], kind="stable")[:k]]


def _consensus(column: np.ndarray, n_codes: int, top: np.ndarray) -> np.ndarray:
    """Per candidate: the share of the ``top`` candidates whose value (code) equals its own."""
    if top.size == 0:
        return np.zeros(len(column))
    picked = column[top]
    counts = np.bincount(picked[picked >= 0], minlength=n_codes + 1) / top.size
    return np.where(column >= 0, counts[column], 0.0)


def _rank(scores: np.ndarray) -> np.ndarray:
    """0 for the best score, ties share the lowest rank; NaN ranks after every number."""
    filled = np.where(np.isnan(scores), -np.inf, scores)
    order = np.sort(filled)[::-1]
    return np.searchsorted(-order, -filled, side="left").astype(np.float32)


def _stats(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(filled, gap to best, within-query z-score, spread) of scores with NaN (missing) entries."""
    present = scores[~np.isnan(scores)]
    if present.size == 0:
        zeros = np.zeros(len(scores), np.float32)
        return zeros, zeros, zeros, 0.0
    low, best = float(present.min()), float(present.max())
    filled = np.where(np.isnan(scores), low, scores)
    std = float(present.std())
    z = (filled - float(present.mean())) / std if std > 1e-6 else np.zeros(len(scores))
    return filled, filled - best, z, best - float(np.median(present))


def build_features(candidates: Any, *, attributes: Sequence[str] = (), cache: dict[Any, Any] | None = None,
                   behaviour: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, query)`` feature arrays of ``candidates`` (see the module docstring).

    ``attributes`` names the catalog attributes that get per-field columns (see :func:`feature_names`);
    ``behaviour`` maps product ids to their behaviour prior (the ``behaviour:`` columns; missing: 0);
    ``cache`` (any dict, kept by the caller) memoises :func:`product_profile` per product version; the
    result is the same with or without it."""
    q = candidates.query
    n = len(candidates.pks)
    text = np.asarray(candidates.text, dtype=np.float64)
    image = np.asarray(candidates.image, dtype=np.float64)
    fused = np.asarray(candidates.fused, dtype=np.float64)
    lexical = np.asarray(candidates.lexical, dtype=np.float64)
    lexical_norm = np.asarray(candidates.lexical_norm, dtype=np.float64)
    text_f, text_gap, text_z, text_spread = _stats(text)
    image_f, image_gap, image_z, image_spread = _stats(image)
    fused_f, fused_gap, fused_z, _ = _stats(fused)

    words = [w for t in q.texts for w in tokens(t)]
    word_set = frozenset(words)
    codes = frozenset(w for w in word_set if _has_digit(w))
    numbers = _numbers(q.texts)
    profiles = _profiles(candidates, cache)
    fields = [prof[3] for prof in profiles]
    named: dict[str, set[str]] = {}  # field → the query words that are among its values
    values: frozenset[str] | None
    word_rows = np.zeros((n, 8), dtype=np.float64)
    if word_set:
        for product_fields in fields:
            for name, values in product_fields.items():
                hit = values & word_set
                if hit:
                    named.setdefault(name, set()).update(hit)
        named_items = list(named.items())
        n_named, n_words, n_codes = len(named_items), len(word_set), len(codes)
        empty: frozenset[str] = frozenset()
        rows_w = []
        for title, body, pid, product_fields, _ in profiles:
            matched = 0
            for name, hits in named_items:
                values = product_fields.get(name)
                if values is not None and not values.isdisjoint(hits):
                    matched += 1
            brand = product_fields.get("brand", empty)
            category = product_fields.get("category", empty)
            rows_w.append((
                len(word_set & title) / n_words, len(word_set & body) / n_words, float(bool(pid) and pid <= word_set),
                len(codes & body) / n_codes if n_codes else 0.0, float(bool(brand) and brand <= word_set),
                float(bool(category) and category <= word_set),
                matched / n_named if n_named else 0.0, (n_named - matched) / n_named if n_named else 0.0,
            ))
        if rows_w:
            word_rows = np.array(rows_w, dtype=np.float64)
    attr_words = set().union(*named.values()) if named else set()
    prices = np.array([prof[4] for prof in profiles], dtype=np.float64)
    known = ~np.isnan(prices)
    median = float(np.median(prices[known])) if known.any() else 0.0
    price_log = np.where(known, np.log1p(np.where(known, prices, 0.0)), 0.0)
    price_rel = np.where(known & (median > 0), np.log((np.where(known, prices, 0.0) + 1.0) / (median + 1.0)), 0.0)
    if numbers and known.any():
        under = np.where(known, np.where(np.where(known, prices, 0.0) <= max(numbers), 1.0, -1.0), 0.0)
    else:
        under = np.zeros(n)
    per_field = []
    top_text, top_image = _top(text, CONSENSUS_K), _top(image, CONSENSUS_K)
    names = field_names(attributes)
    coded = _codes(fields, names)
    for name in names:
        column, n_codes = coded[name]
        if name in named:
            hits = named[name]
            per_field.append(np.array([(1.0 if not f[name].isdisjoint(hits) else -1.0) if name in f else -1.0
                                       for f in fields]))
        else:
            per_field.append(np.zeros(n))
        per_field += [_consensus(column, n_codes, top_text), _consensus(column, n_codes, top_image)]
    for field in business_fields(attributes):
        business = np.array([field_number(p, field) for p in candidates.products], dtype=np.float64)
        per_field += [clipped_z(business), np.isnan(business)]
    for _ in behaviour_columns(attributes):
        priors = behaviour or {}
        per_field.append(np.array([float(priors.get(str(p.get("id")), 0.0)) for p in candidates.products]))

    position = np.asarray(candidates.image_position, dtype=np.float64)
    count = np.asarray(candidates.image_count, dtype=np.float64)
    columns = [
        text_f, np.isnan(text), image_f, np.isnan(image), fused_f,
        text_gap, image_gap, fused_gap, text_z, image_z, fused_z,
        np.nan_to_num(lexical_norm, nan=0.0), np.log1p(np.maximum(np.nan_to_num(lexical, nan=0.0), 0.0)), np.isnan(lexical),
        np.log1p(_rank(fused)), np.log1p(_rank(text)), np.log1p(_rank(image)), np.log1p(_rank(lexical)),
        np.log1p(np.maximum(position, 0.0)), np.log1p(count),
        *word_rows.T, price_log, price_rel, under, *per_field,
    ]
    rows = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1) if n else np.zeros((0, len(feature_names(attributes))))

    positive = [(k, w) for k, w in zip(q.kinds, q.weights) if w > 0]
    query = np.array([
        float(any(k == "text" for k, _ in positive)), float(any(k == "image" for k, _ in positive)),
        float(any(k == "product" for k, _ in positive)), q.weight_of("text"), q.weight_of("image"),
        -sum(w for w in q.weights if w < 0), np.log1p(len(words)), q.image_share, q.lexical_weight,
        float((~np.isnan(lexical)).mean()) if n else 0.0,
        float(np.log1p(max(np.nanmax(lexical), 0.0))) if n and (~np.isnan(lexical)).any() else 0.0,
        float(bool(codes)), len(attr_words) / len(word_set) if word_set else 0.0, text_spread, image_spread,
    ], dtype=np.float64)
    return rows.astype(np.float32), query.astype(np.float32)
