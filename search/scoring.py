"""Scoring one query's candidates: per-term calibrated cosines, BM25 and field evidence in one weighted sum.

The engine gathers the candidate products and their vectors; this module turns them into ``Candidates``
ordered by the fused score (``search.calibration`` has the formula).  What a query's words name in the
catalog's fields (``search.field_match``) is worked out once per query by :func:`read_fields`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.config import SearchConfig

from search import calibration, fusion
from search.field_match import (Evidence, Match, Vocabulary, field_evidence, field_scores, match_query,
                                merge_evidence, photo_evidence, stem)
from search.field_table import FieldTable
from search.query import Term



@dataclass(frozen=True, kw_only=True)
class QueryFields:
    """What the words of one query name: matches, their evidence, and the words left for BM25."""

    matches: tuple[Match, ...] = ()
    evidence: Evidence = field(default_factory=dict)
    bm25_words: tuple[str, ...] = ()

    def to_json(self) -> list[dict[str, Any]]:
        return [{"field": m.field, "value": m.value, "strength": m.strength, "source": m.source, "words": m.words}
                for m in self.matches]


def read_fields(terms: Sequence[Term], words: Sequence[str], vocabulary: Vocabulary) -> QueryFields:
    """Match the text terms against the catalog's field values; a negative term's matches count against.

    The BM25 words are the query words no match used up (a word counted by its field is not counted again)."""
    matches: list[Match] = []
    for term in terms:
        if term.kind != "text" or not term.weight:
            continue
        found, _ = match_query([term.value], vocabulary)
        sign = 1.0 if term.weight > 0 else -1.0
        matches += [Match(field=m.field, value=m.value, strength=sign * m.strength, source=m.source, words=m.words)
                    for m in found]
    used = {w for m in matches for w in m.words.split()}
    left = tuple(w for w in words if stem(w) not in used)
    return QueryFields(matches=tuple(matches), evidence=field_evidence(matches), bm25_words=left)


@dataclass(frozen=True, kw_only=True)
class Weights:
    """The weights one query was scored with (reported with its result)."""

    term_weights: tuple[float, ...]
    image_shares: tuple[float, ...]
    lexical_weight: float
    field_weight: float
    field_priors: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"terms": [{"weight": w, "image_share": a} for w, a in zip(self.term_weights, self.image_shares)],
                "lexical_weight": self.lexical_weight, "field_weight": self.field_weight,
                "field_priors": dict(self.field_priors)}


@dataclass(frozen=True, kw_only=True)
class Scored:
    """Every candidate's parts (aligned with the pks it was given), unordered."""

    text_cosine: np.ndarray  # raw cosine of the combined query vector to the product's text
    image_cosine: np.ndarray  # ... to its best image
    best_image: np.ndarray  # row of that image in the stored images, -1 if none
    lexical_raw: np.ndarray
    lexical_norm: np.ndarray
    parts: calibration.FusedParts
    field_parts: dict[str, np.ndarray]


def score(
    *,
    pks: np.ndarray,
    stored: Mapping[str, Any],
    query: np.ndarray,
    term_vectors: np.ndarray,
    weights: Weights,
    reference: Mapping[str, Any],
    lexical_pks: np.ndarray,
    lexical_raw: np.ndarray,
    lexical_matches: int,
    products: int,
    fields: QueryFields,
    table: FieldTable | None,
    photo_terms: Sequence[int],
    product_pks: Sequence[int] = (),
    value_vectors: Mapping[str, tuple[Sequence[str], np.ndarray]] | None = None,
    config: SearchConfig = SearchConfig(),
) -> Scored:
    """Score ``pks`` (their vectors in ``stored``) for one query; see ``search.calibration``."""
    text_cos, image_cos, best = fusion.modality_scores(query, stored["text"], stored["has_text"], stored["images"],
                                                       stored["image_owner"])
    term_text, term_image = calibration.side_cosines(term_vectors, stored["text"], stored["has_text"],
                                                     stored["images"], stored["image_owner"])
    ref_text, ref_image = calibration.side_cosines(term_vectors, reference["text"], reference["has_text"],
                                                   reference["images"], reference["image_owner"])
    z_text, z_image = calibration.standardise(term_text, term_image, calibration.reference_moments(ref_text, ref_image))
    bm25 = fusion.align_scores(pks, lexical_pks, lexical_raw)
    lexical = calibration.lexical_z(bm25, lexical_raw, matches=lexical_matches, products=products)
    field_total = np.zeros(len(pks), np.float32)
    field_parts: dict[str, np.ndarray] = {}
    if table is not None and (fields.evidence or product_pks):
        evidence = fields.evidence
        if photo_terms and fields.evidence:  # the photo decides what the product is; the words change what they name
            seen = _photo_evidence(term_image, photo_terms, pks, table, term_vectors, value_vectors or {}, config)
            evidence = merge_evidence(seen, evidence)
        if product_pks:  # more like this: a stored product's own values, the kind first
            evidence = merge_evidence(_stored_evidence(product_pks, table, config), evidence)
        values = table.values_of(pks, evidence)
        field_total, field_parts = field_scores(evidence, values, weights.field_priors, len(pks))
    parts = calibration.fuse_parts(z_text, z_image, np.asarray(weights.term_weights), np.asarray(weights.image_shares),
                                   lexical=lexical, lexical_weight=weights.lexical_weight,
                                   field=field_total, field_weight=weights.field_weight)
    return Scored(text_cosine=text_cos, image_cosine=image_cos, best_image=best, lexical_raw=bm25,
                  lexical_norm=fusion.normalise_lexical(bm25), parts=parts,
                  field_parts={name: weights.field_weight * part for name, part in field_parts.items()})


def _stored_evidence(product_pks: Sequence[int], table: FieldTable, config: SearchConfig) -> Evidence:
    """What stored products (query terms) are, from their own field values, at the weight of inferred evidence."""
    evidence: Evidence = {}
    for name, values in table.values_of(product_pks).items():
        named = [v for v in values if v is not None]
        if named:
            evidence[name] = {v: config.photo_evidence * named.count(v) / len(named) for v in set(named)}
    return evidence


def _photo_evidence(term_image: np.ndarray, photo_terms: Sequence[int], pks: np.ndarray, table: FieldTable,
                    term_vectors: np.ndarray, value_vectors: Mapping[str, tuple[Sequence[str], np.ndarray]],
                    config: SearchConfig) -> Evidence:
    """What the photo terms show: per field, the mean of two votes on its value.

    * the catalog's: the share of the photo's ``config.photo_neighbours`` nearest candidates holding each value;
    * the model's: zero-shot, ``softmax(config.zero_shot_scale * cos(photo, text embedding of each value))``
      (CLIP's classifier), where ``value_vectors`` has the field's values embedded.
    The first knows the catalog's look-alikes, the second what the model learnt the words to look like.  What
    is inferred counts ``config.photo_evidence`` (half) as much as what the words say outright."""
    rows = term_image[list(photo_terms)]
    closeness = np.max(np.where(np.isnan(rows), -np.inf, rows), axis=0)
    nearest = np.argsort(-closeness, kind="stable")[: config.photo_neighbours]
    votes = photo_evidence(table.values_of(pks[nearest]))
    photo = term_vectors[list(photo_terms)].mean(axis=0)
    for name, (values, vectors) in value_vectors.items():
        if not len(values):
            continue
        logits = config.zero_shot_scale * (vectors @ photo)
        shares = np.exp(logits - logits.max())
        shares /= shares.sum()
        seen = votes.get(name, {})
        votes[name] = {v: 0.5 * seen.get(v, 0.0) + 0.5 * float(s) for v, s in zip(values, shares)}
    return {name: {v: config.photo_evidence * s for v, s in values.items()} for name, values in votes.items()}
