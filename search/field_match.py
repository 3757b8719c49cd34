"""Field-aware words: query words that name a value of one of the catalog's own fields.

Pure functions over plain values and numpy arrays; nothing here knows any catalog's vocabulary.

* ``tokens``: lower-case words with a small English plural stemmer, applied to catalog values and query
  words alike ("Mugs" and "mug" meet).
* ``build_vocabulary``: from the catalog's field columns (category, brand, every text attribute) the value
  phrases of each *matchable* field (2 or more distinct values, at most half as many as products: ids,
  titles and model numbers drop out), plus synonyms the catalog itself teaches: a title word that (almost)
  only occurs on products with one value of a field ("cup" on mugs, "crimson" on red ones) names that
  value, with its purity as strength.  Declared synonyms (``{"sofa": ("category", "couch")}``) join them.
* ``match_query``: greedy longest-phrase matching; "without X" / "no X" / "not X" make X negative evidence.
* ``field_evidence`` and ``photo_evidence``: per field, a strength per value, from the words or from a
  photo's nearest products; ``merge_evidence`` lets the words override the photo field by field.
* ``field_scores``: per product, ``sum_f prior_f * evidence_f[value of f]`` and each field's part.

How much a field counts (``prior``) follows how much shoppers care: the kind of product first (a field named
category, type, kind, product_type or department: 1.0), every other field 0.5; both are configurable.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")
#: Function words of query phrasings: never a field value by themselves.
STOP_WORDS = frozenset(
    "a an the this that these those one ones it its in on of for with without and or but same like please version "
    "to by from my me i want find show similar some any".split()
)
NEGATIONS = frozenset({"without", "no", "not", "non"})
KIND_FIELDS = frozenset({"category", "type", "kind", "product_type", "department"})


def stem(word: str) -> str:
    """A deliberately small plural stemmer: ``mugs`` -> ``mug``, ``dresses`` -> ``dress``, ``ties`` -> ``ty``
    (both sides go through it, so only equality matters)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("s"):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lower-case, stemmed word tokens of ``text``."""
    return [stem(w) for w in _WORD.findall(text.lower())]


def default_prior(field: str) -> float:
    """The kind of product first (1.0), every other field at half."""
    return 1.0 if field.lower() in KIND_FIELDS else 0.5


@dataclass(frozen=True, kw_only=True)
class Meaning:
    """What a phrase names: ``field`` = ``value`` with ``strength`` (1 for the value itself)."""

    field: str
    value: str
    strength: float
    source: str  # "value", "catalog-synonym" or "declared-synonym"


@dataclass(frozen=True, kw_only=True)
class Match:
    """One phrase of a query that names a field value (negative strength after "without")."""

    field: str
    value: str
    strength: float
    source: str
    words: str


@dataclass(frozen=True, kw_only=True)
class Vocabulary:
    """Phrase (tuple of stemmed tokens) -> its meanings, for the matchable fields of one catalog."""

    phrases: Mapping[tuple[str, ...], tuple[Meaning, ...]]
    fields: Mapping[str, tuple[str, ...]]  # matchable field -> its distinct values
    priors: Mapping[str, float]
    max_len: int = 1

    @property
    def empty(self) -> bool:
        return not self.phrases


EMPTY_VOCABULARY = Vocabulary(phrases={}, fields={}, priors={})


def matchable_values(column: Sequence[object], *, max_distinct_ratio: float = 0.5) -> tuple[str, ...] | None:
    """The distinct string values of a field column when it can be named by a query, else None."""
    present = [v.strip() for v in column if isinstance(v, str) and v.strip()]
    distinct = sorted(set(present))
    if len(distinct) < 2 or len(distinct) > max_distinct_ratio * len(present):
        return None
    return tuple(distinct)


def build_vocabulary(
    columns: Mapping[str, Sequence[object]],
    titles: Sequence[str],
    *,
    priors: Mapping[str, float] | None = None,
    synonyms: Mapping[str, tuple[str, str]] | None = None,
    max_distinct_ratio: float = 0.5,
    min_df: int = 4,
    min_purity: float = 0.8,
) -> Vocabulary:
    """The vocabulary of a catalog.

    ``columns`` maps each field to its value per product (None where a product has none), aligned with
    ``titles``.  A stemmed title word with document frequency >= ``min_df`` that is not part of any value
    names value v of field f when ``count(f = v and word) / (df + 1) >= min_purity``.
    """
    phrases: dict[tuple[str, ...], list[Meaning]] = defaultdict(list)
    fields: dict[str, tuple[str, ...]] = {}
    codes: dict[str, dict[str, int]] = {}
    for name, column in columns.items():
        values = matchable_values(column, max_distinct_ratio=max_distinct_ratio)
        if values is None:
            continue
        fields[name] = values
        codes[name] = {v: i for i, v in enumerate(values)}
        for value in values:
            key = tuple(tokens(value))
            if key and not (len(key) == 1 and key[0] in STOP_WORDS):
                phrases[key].append(Meaning(field=name, value=value, strength=1.0, source="value"))
    value_words = {w for key in phrases for w in key}
    documents = [set(tokens(t or "")) - STOP_WORDS for t in titles]
    df = Counter(w for words in documents for w in words)
    for name in fields:
        column = columns[name]
        joint: dict[str, Counter[str]] = defaultdict(Counter)
        for words, raw in zip(documents, column):
            if isinstance(raw, str) and raw.strip() in codes[name]:
                for w in words:
                    joint[w][raw.strip()] += 1
        for word, counts in joint.items():
            if word in value_words or df[word] < min_df or word.isdigit():
                continue
            value, count = counts.most_common(1)[0]
            purity = count / (df[word] + 1)
            if purity >= min_purity:
                phrases[(word,)].append(Meaning(field=name, value=value, strength=round(purity, 3), source="catalog-synonym"))
    for phrase, (name, value) in (synonyms or {}).items():
        key = tuple(tokens(phrase))
        if key and name in fields and value in codes[name]:
            phrases[key] = [m for m in phrases[key] if m.field != name]
            phrases[key].append(Meaning(field=name, value=value, strength=1.0, source="declared-synonym"))
    chosen = {name: float((priors or {}).get(name, default_prior(name))) for name in fields}
    return Vocabulary(phrases={k: tuple(v) for k, v in phrases.items()}, fields=fields, priors=chosen,
                      max_len=max((len(k) for k in phrases), default=1))


def match_query(texts: Iterable[str], vocabulary: Vocabulary) -> tuple[list[Match], list[str]]:
    """The field values ``texts`` name (longest phrase first), and the words left unmatched (stemmed)."""
    matches: list[Match] = []
    rest: list[str] = []
    for text in texts:
        words = tokens(text)
        i = 0
        negated = False
        while i < len(words):
            if words[i] in NEGATIONS:
                negated, i = True, i + 1
                continue
            for length in range(min(vocabulary.max_len, len(words) - i), 0, -1):
                key = tuple(words[i : i + length])
                meanings = vocabulary.phrases.get(key)
                if meanings:
                    sign = -1.0 if negated else 1.0
                    matches += [Match(field=m.field, value=m.value, strength=sign * m.strength, source=m.source,
                                      words=" ".join(key)) for m in meanings]
                    i += length
                    negated = False
                    break
            else:
                if words[i] not in STOP_WORDS:
                    rest.append(words[i])
                    negated = False
                i += 1
    return matches, rest


Evidence = dict[str, dict[str, float]]  # field -> value -> strength


def field_evidence(matches: Iterable[Match]) -> Evidence:
    """Per field, the strength of each named value (the strongest mention; a negation keeps its sign)."""
    evidence: Evidence = {}
    for m in matches:
        values = evidence.setdefault(m.field, {})
        old = values.get(m.value, 0.0)
        values[m.value] = max(old, m.strength) if m.strength > 0 else min(old, m.strength)
    return evidence


def photo_evidence(neighbour_values: Mapping[str, Sequence[str | None]]) -> Evidence:
    """Per field, the share of a photo's nearest products holding each value (a vote)."""
    evidence: Evidence = {}
    for name, values in neighbour_values.items():
        if not values:
            continue
        counts = Counter(v for v in values if v is not None)
        evidence[name] = {v: c / len(values) for v, c in counts.items()}
    return evidence


def merge_evidence(photo: Evidence, words: Evidence) -> Evidence:
    """The photo decides what the product is; the words replace it for the fields they name."""
    merged = {name: values for name, values in photo.items() if name not in words}
    merged.update(words)
    return merged


def field_scores(evidence: Evidence, product_values: Mapping[str, Sequence[str | None]],
                 priors: Mapping[str, float], n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per product (``n`` of them): ``sum_f prior_f * evidence_f[value_f]``, and each field's part.

    ``product_values`` maps a field to each product's value (None: it has none)."""
    total = np.zeros(n, np.float32)
    parts: dict[str, np.ndarray] = {}
    for name, strengths in evidence.items():
        values = product_values.get(name)
        if values is None:
            continue
        part = np.array([strengths.get(v, 0.0) if v is not None else 0.0 for v in values], np.float32)
        part *= priors.get(name, default_prior(name))
        if part.any():
            parts[name] = part
            total += part
    return total, parts


def named_values(evidence: Evidence, field: str) -> list[str]:
    """The values of ``field`` the evidence is for (positive strength), strongest first."""
    values = evidence.get(field, {})
    return [v for v, s in sorted(values.items(), key=lambda kv: -kv[1]) if s > 0]
