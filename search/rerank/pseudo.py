"""Pseudo-queries: judged queries drawn from the catalog itself, for training the fusion classifier without
judgments.

    queries = pseudo_queries(engine.store, count=1500, seed=0)
    reranker, report = train_reranker(engine, queries)

Nothing here knows any particular catalog: the fields come from ``search.field_table.FieldTable`` (category,
brand and every text attribute with 2 .. n/2 distinct values: the fields a query can name).  Five kinds of
query, each anchored on a sampled product A:

* ``title`` (kind ``text``): A's title;
* ``code`` (kind ``text``): a word of A's title that looks like a model number or SKU (:func:`code_words`),
  alone or after A's brand;
* ``fields`` (kind ``text``): A's own values of the kind field and of 0-3 other fields, e.g. "red striped mug";
* ``photo`` (kind ``photo``): one of A's stored photos (local files only; URLs are skipped);
* ``photo+field`` (kind ``text+photo``): a photo of A and "in <v>", where v is another product's value of a
  field f among the products of A's kind ("this one but in red"); f is drawn first (uniformly), then v.

Grading (:func:`grade`, pure): the query's intent is a list of (field, value) pairs in priority order, the kind
first.  A product's label is the length of the intent's prefix it matches, capped at 3: wrong kind 0, the right
kind only 1, the kind and the next field 2, the kind and the next two fields 3.  So a product that gets the kind
right always outranks one that does not, whatever else matches.  Per query kind:

* fields: the intent is the named fields (kind, then the others in priority order);
* title and photo: the intent is all of A's fields; A itself is 3 and every other product at most 2;
* code: A itself is 3, the other products of its kind 1;
* photo+field: the intent is the kind, f = v, then A's other fields; A itself is 0 (the shopper asked for
  a change of it).

Which field is the kind (:func:`kind_field`): the first matchable field named category, type, kind,
product_type or department (case-insensitive, in that order); without one, the matchable field with the most
distinct values (ties by name).  The priority of the others (:func:`field_priority`): fields named like colour,
pattern or material (colour, color, pattern, print, material, fabric, in that order), then the other
attributes by name, the brand last.  Both can be given instead.

``JudgedQuery.labels`` lists every product with a label above 0 (unlisted products are 0, so train with
``unjudged="zero"``; nDCG's ideal sees them all), at most ``max_labels`` (default 1,000) per query: when more
qualify, whole label levels are dropped from the lowest, so the labels kept stay consistent (a dropped level
counts as 0 for that query, in training and in its ideal); when even the top level is larger, a seeded sample
of it is kept.  With the default this happens only where one kind holds more than 1,000 products (a kind-only
level); ``grade`` itself is unbounded.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from indexer.store.reader import IndexStore
from search.evaluation.judgments import JudgedQuery
from search.field_table import FieldTable

__all__ = ["DEFAULT_MIX", "KIND_NAMES", "PRIORITY_HINTS", "capped_labels", "code_words", "field_priority", "grade",
           "grade_columns", "kind_field", "local_image", "pseudo_queries"]

#: Field names that say "what kind of product", most specific meaning first.
KIND_NAMES: tuple[str, ...] = ("category", "type", "kind", "product_type", "department")
#: Field names a shopper names right after the kind, in this order.
PRIORITY_HINTS: tuple[str, ...] = ("colour", "color", "pattern", "print", "material", "fabric")
#: Share of each query kind among the pseudo-queries.
DEFAULT_MIX: Mapping[str, float] = {"title": 0.13, "code": 0.07, "fields": 0.30, "photo": 0.25, "photo+field": 0.25}
_JUDGED_KIND = {"title": "text", "code": "text", "fields": "text", "photo": "photo", "photo+field": "text+photo"}
_NO_FIELDS_NEEDED = ("title", "code", "photo")
_CHANGE_PHRASES = ("in {v}", "but in {v}", "this in {v}", "same in {v}")
#: How often a ``fields`` query names 0, 1, 2, 3 fields beside the kind (more: weight 1 each).
_SIZE_WEIGHTS = {0: 1, 1: 2, 2: 2, 3: 1}
_CHUNK = 900  # ids per SQL lookup (below SQLite's bound-parameter limit)


# -- pure rules -------------------------------------------------------------------------------------------------
def kind_field(fields: Mapping[str, Sequence[str]]) -> str | None:
    """The field that says what kind of product it is, among the matchable ``fields`` (field -> distinct values)."""
    lowered = {name.lower(): name for name in sorted(fields)}
    for hint in KIND_NAMES:
        if hint in lowered:
            return lowered[hint]
    if not fields:
        return None
    return min(fields, key=lambda name: (-len(fields[name]), name))


def field_priority(fields: Mapping[str, Sequence[str]], *, kind: str | None = None) -> list[str]:
    """The matchable ``fields`` in grading priority: the kind, the colour/pattern/material-like ones, the other
    attributes by name, the brand last."""
    kind = kind if kind is not None else kind_field(fields)
    rest = sorted(name for name in fields if name != kind)
    hinted = [name for hint in PRIORITY_HINTS for name in rest if name.lower() == hint]
    others = [name for name in rest if name not in hinted and name != "brand"]
    first = [kind] if kind is not None and kind in fields else []
    return first + hinted + others + (["brand"] if "brand" in rest else [])


def grade(intent: Sequence[tuple[str, str]], values: Mapping[str, str | None], *, cap: int = 3) -> int:
    """The label of a product with field ``values`` for a query whose ``intent`` is (field, value) pairs in
    priority order (the kind first): how many of the intent's leading pairs it matches, at most ``cap``."""
    label = 0
    for name, value in intent:
        if values.get(name) != value:
            break
        label += 1
    return min(label, cap)


def grade_columns(intent: Sequence[tuple[str, str]], columns: Mapping[str, np.ndarray], n: int, *,
                  cap: int = 3) -> np.ndarray:
    """:func:`grade` for ``n`` products at once; ``columns`` maps a field to every product's value (object
    array, None where it has none)."""
    alive = np.ones(n, dtype=bool)
    label = np.zeros(n, dtype=np.int64)
    for name, value in intent:
        column = columns.get(name)
        alive &= np.zeros(n, dtype=bool) if column is None else np.asarray(column == value, dtype=bool)
        label += alive
    return np.minimum(label, cap)


def capped_labels(ids: Sequence[str], labels: np.ndarray, max_labels: int, rng: random.Random) -> dict[str, int]:
    """The products with a label above 0, at most ``max_labels`` of them: whole levels from the top while they
    fit; a seeded sample of the top level when even it does not."""
    out: dict[str, int] = {}
    for level in sorted((int(v) for v in np.unique(labels[labels > 0])), reverse=True):
        members = [ids[int(i)] for i in np.flatnonzero(labels == level)]
        if len(out) + len(members) > max_labels:
            if not out:
                out = {pid: level for pid in rng.sample(sorted(members), max_labels)}
            break
        out.update((pid, level) for pid in members)
    return out


def code_words(titles: Sequence[str]) -> list[list[str]]:
    """Per title, the words that look like a model number or SKU: 3+ characters with a digit, in no other title
    (case-insensitive; punctuation around a word is dropped, inside it kept: "AUR-123")."""
    words = [list(dict.fromkeys(w for w in (raw.strip(".,;:!?()[]{}\"'") for raw in t.split())
                                if len(w) >= 3 and any(c.isdigit() for c in w))) for t in titles]
    df = Counter(w.lower() for ws in words for w in {x.lower() for x in ws})
    return [[w for w in ws if df[w.lower()] == 1] for ws in words]


def local_image(location: str) -> Path | None:
    """A stored image location as a local file path (absolute paths and file:// URLs), else None."""
    if "://" in location:
        parsed = urlparse(location)
        if parsed.scheme != "file":
            return None
        location = unquote(parsed.path)
    path = Path(location)
    return path if path.is_absolute() and path.is_file() else None


# -- the catalog, in memory -------------------------------------------------------------------------------------
class _Catalog:
    """Ids, titles and the matchable field columns of every product, aligned; photos fetched on demand."""

    def __init__(self, store: IndexStore, *, kind: str | None, priority: Sequence[str] | None):
        rows = sorted(store.field_rows(), key=lambda r: r[0])
        self.store = store
        self.pks = [int(r[0]) for r in rows]
        self.titles = [(r[1] or "").strip() for r in rows]
        self.brands = [(r[3] or "").strip() for r in rows]
        self.codes = code_words(self.titles)
        id_of: dict[int, str] = {}
        all_ids = sorted(store.product_ids())
        for start in range(0, len(all_ids), _CHUNK):
            id_of.update((pk, pid) for pid, pk in store.product_pks(all_ids[start:start + _CHUNK]).items())
        self.ids = [id_of.get(pk, "") for pk in self.pks]
        table = FieldTable(rows)
        fields = dict(table.vocabulary.fields)
        self.kind = kind if kind is not None else kind_field(fields)
        if self.kind is not None and self.kind not in fields:
            matchable = ", ".join(fields) or "none"
            raise ValueError(f"kind field {self.kind!r} is not a matchable field of this catalog ({matchable})")
        self.priority = list(priority) if priority is not None else field_priority(fields, kind=self.kind)
        if self.kind is not None and self.priority[:1] != [self.kind]:
            self.priority = [self.kind, *(f for f in self.priority if f != self.kind)]
        self.priority = [f for f in self.priority if f in fields]
        values = table.values_of(self.pks, self.priority)
        self.columns = {name: np.array(values[name], dtype=object) for name in self.priority}
        self.n = len(self.pks)
        self._photos: dict[int, list[Path]] = {}

    def values(self, i: int) -> dict[str, str]:
        return {name: str(col[i]) for name, col in self.columns.items() if col[i] is not None}

    def intent(self, i: int, *, skip: str | None = None) -> list[tuple[str, str]]:
        """All of product ``i``'s fields in priority order (less ``skip``)."""
        own = self.values(i)
        return [(name, own[name]) for name in self.priority if name in own and name != skip]

    def photos(self, i: int) -> list[Path]:
        pk = self.pks[i]
        if pk not in self._photos:
            meta = self.store.products([pk]).get(pk, {})
            self._photos[pk] = [p for p in (local_image(str(loc)) for loc in meta.get("images", [])) if p is not None]
        return self._photos[pk]

    def alternatives(self, i: int) -> list[tuple[str, str]]:
        """(field, value) pairs that another product of ``i``'s kind has and ``i`` does not."""
        if self.kind is None or self.columns[self.kind][i] is None:
            return []
        same_kind = self.columns[self.kind] == self.columns[self.kind][i]
        out = []
        for name in self.priority[1:]:
            own = self.columns[name][i]
            if own is None:
                continue
            others = {v for v in self.columns[name][same_kind] if v is not None and v != own}
            out += [(name, v) for v in sorted(others)]
        return out


# -- drawing queries --------------------------------------------------------------------------------------------
def pseudo_queries(store: IndexStore, *, count: int, seed: int = 0, mix: Mapping[str, float] = DEFAULT_MIX,
                   max_labels: int = 1000, kind: str | None = None, priority: Sequence[str] | None = None,
                   max_fields: int = 3) -> list[JudgedQuery]:
    """Up to ``count`` graded queries drawn from ``store``'s catalog, the same for the same seed (fewer when the
    catalog has fewer distinct ones).

    ``mix`` weighs the query kinds (title, code, fields, photo, photo+field); kinds the catalog cannot make (no
    matchable fields, no local photos) give way to the others.  ``max_fields`` bounds the fields a ``fields``
    query names beside the kind.  Query ids are ``pseudo:<n>``.
    """
    if count < 0 or max_labels < 10 or max_fields < 0:
        raise ValueError(f"need count >= 0, max_labels >= 10, max_fields >= 0; got {count}, {max_labels}, {max_fields}")
    unknown = set(mix) - set(_JUDGED_KIND)
    if unknown or any(w < 0 for w in mix.values()):
        raise ValueError(f"mix takes non-negative weights for {', '.join(_JUDGED_KIND)}; got {dict(mix)}")
    catalog = _Catalog(store, kind=kind, priority=priority)
    if count == 0 or catalog.n == 0:
        return []
    rng = random.Random(f"vitrina-pseudo/{seed}")
    kinds = {k: w for k, w in sorted(mix.items()) if w > 0 and (catalog.kind is not None or k in _NO_FIELDS_NEEDED)}
    order = list(range(catalog.n))
    rng.shuffle(order)
    out: list[JudgedQuery] = []
    seen: set[tuple[str, str | None, Path | None]] = set()
    misses = dict.fromkeys(kinds, 0)  # consecutive anchors a kind could not use
    for attempt in range(20 * count + 100):
        if len(out) >= count or not kinds:
            break
        what = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        anchor = order[attempt % catalog.n]
        made = _draw(what, anchor, catalog, rng, max_fields=max_fields)
        if made is None:
            misses[what] += 1
            if misses[what] >= min(catalog.n, 200):  # e.g. no local photos: this catalog cannot make the kind
                kinds.pop(what)
            continue
        misses[what] = 0
        text, image, labels = made
        if (what, text, image) in seen:
            continue
        seen.add((what, text, image))
        out.append(JudgedQuery(query_id=f"pseudo:{len(out)}", kind=_JUDGED_KIND[what], text=text, image=image,
                               labels=capped_labels(catalog.ids, labels, max_labels, rng)))
    return out


def _draw(what: str, a: int, catalog: _Catalog, rng: random.Random, *,
          max_fields: int) -> tuple[str | None, Path | None, np.ndarray] | None:
    """One query of kind ``what`` anchored on product ``a``: (text, image, label per product), or None."""
    columns, n = catalog.columns, catalog.n
    if what in ("title", "photo"):
        text = catalog.titles[a] if what == "title" else None
        photos = catalog.photos(a) if what == "photo" else []
        if (what == "title" and not text) or (what == "photo" and not photos):
            return None
        labels = grade_columns(catalog.intent(a), columns, n, cap=2)
        labels[a] = 3
        return text, (rng.choice(photos) if photos else None), labels
    own = catalog.values(a)
    kind = catalog.kind
    if what == "code":
        if not catalog.codes[a]:
            return None
        code, brand = rng.choice(catalog.codes[a]), catalog.brands[a]
        text = f"{brand} {code}" if brand and rng.random() < 0.5 else code
        labels = grade_columns([(kind, own[kind])] if kind is not None and kind in own else [], columns, n, cap=1)
        labels[a] = 3
        return text, None, labels
    if kind is None or kind not in own:
        return None
    if what == "fields":
        others = [name for name in catalog.priority[1:] if name in own]
        sizes = range(min(len(others), max_fields) + 1)
        chosen = set(rng.sample(others, rng.choices(sizes, weights=[_SIZE_WEIGHTS.get(k, 1) for k in sizes])[0]))
        intent = [(kind, own[kind])] + [(name, own[name]) for name in others if name in chosen]
        words = [own[name] for name, _ in intent[1:]]
        before = rng.random() < 0.7  # "red striped mug", else "mug red striped"
        text = " ".join([*words, own[kind]] if before else [own[kind], *words])
        return text, None, grade_columns(intent, columns, n)
    photos = catalog.photos(a)  # photo+field
    options = catalog.alternatives(a)
    if not photos or not options:
        return None
    name = rng.choice(sorted({f for f, _ in options}))  # the field first, so many-valued fields do not crowd out
    value = rng.choice([v for f, v in options if f == name])
    intent = [(kind, own[kind]), (name, value)] + catalog.intent(a, skip=name)[1:]
    labels = grade_columns(intent, columns, n)
    labels[a] = 0
    return rng.choice(_CHANGE_PHRASES).format(v=value), rng.choice(photos), labels
