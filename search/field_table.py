"""The catalog's nameable fields in memory, for one commit: the vocabulary and each product's values.

Built once per commit from the products table (one pass: pk, title, category, brand, attributes) the first
time a query needs it.  Holds, per matchable field, each product's value (``None`` where it has none) in arrays
aligned with the products' pks, so scoring field evidence over a query's candidates costs no SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from search.field_match import EMPTY_VOCABULARY, Vocabulary, build_vocabulary
from search.sorted_ids import member

#: Titles read for mining synonyms (a deterministic sample beyond this many products).
SYNONYM_SAMPLE = 20_000


class FieldTable:
    """``vocabulary`` plus ``values_of(pks)``: each matchable field's value for each pk."""

    def __init__(self, rows: Iterable[tuple[int, str | None, str | None, str | None, Mapping[str, Any]]], *,
                 priors: Mapping[str, float] | None = None, synonyms: Mapping[str, tuple[str, str]] | None = None):
        pks: list[int] = []
        titles: list[str] = []
        columns: dict[str, list[object]] = {"category": [], "brand": []}
        for pk, title, category, brand, attributes in rows:
            pks.append(int(pk))
            titles.append(title or "")
            columns["category"].append(category)
            columns["brand"].append(brand)
            for name, value in (attributes or {}).items():
                column = columns.setdefault(name, [None] * (len(pks) - 1))
                column.append(value if isinstance(value, str) else None)
            for column in columns.values():
                if len(column) < len(pks):
                    column.append(None)
        order = np.argsort(np.asarray(pks, np.int64), kind="stable")
        self._pks = np.asarray(pks, np.int64)[order]
        step = max(1, len(titles) // SYNONYM_SAMPLE)
        sample = slice(None, None, step)
        self.vocabulary: Vocabulary = build_vocabulary(
            {name: column[sample] for name, column in columns.items()}, titles[sample], priors=priors, synonyms=synonyms,
        ) if pks else EMPTY_VOCABULARY
        #: Per matchable field, each product's value as an index into ``vocabulary.fields[field]`` (-1: none),
        #: in pk order; ``_names`` turns codes back into values (its last entry, for -1, is None).
        self._codes: dict[str, np.ndarray] = {}
        self._names: dict[str, np.ndarray] = {}
        #: Every value each matchable field held at build time (a refresh naming another one rebuilds).
        self._seen: dict[str, frozenset[str]] = {}
        for name, known in self.vocabulary.fields.items():
            self._seen[name] = frozenset(v.strip() for v in columns[name] if isinstance(v, str))
            index = {v: i for i, v in enumerate(known)}
            codes = [index.get(v.strip(), -1) if isinstance(v, str) else -1 for v in columns[name]]
            self._codes[name] = np.asarray(codes, np.int32)[order]
            self._names[name] = np.array([*known, None], dtype=object)

    def refreshed(self, changed: Sequence[tuple[int, str | None, str | None, str | None, Mapping[str, Any]]], *,
                  live: np.ndarray | None = None, removed: np.ndarray | None = None) -> FieldTable | None:
        """This table for a later commit: ``changed`` rows (written since) replace or join theirs; the pks in
        ``removed``, or not in ``live`` (sorted), leave.  None when a full rebuild is due instead: a changed row
        names a value the vocabulary does not know, or more than a fifth of the products changed."""
        if len(changed) > max(64, len(self._pks) // 5):
            return None
        known = {name: {v: i for i, v in enumerate(values)} for name, values in self.vocabulary.fields.items()}
        new_pks = np.asarray([int(row[0]) for row in changed], np.int64)
        new_codes: dict[str, list[int]] = {name: [] for name in known}
        for _pk, _title, category, brand, attributes in changed:
            values = {**{k: v for k, v in (attributes or {}).items()}, "category": category, "brand": brand}
            for name, index in known.items():
                value = values.get(name)
                if not isinstance(value, str) or not value.strip():
                    new_codes[name].append(-1)
                elif value.strip() in index:
                    new_codes[name].append(index[value.strip()])
                elif value.strip() in self._seen[name]:
                    new_codes[name].append(-1)  # a value the vocabulary left out at build time
                else:
                    return None
        keep = ~np.isin(self._pks, new_pks)
        if live is not None:
            keep &= member(self._pks, live)
        if removed is not None:
            keep &= ~member(self._pks, np.sort(removed))
        pks = np.concatenate([self._pks[keep], new_pks])
        order = np.argsort(pks, kind="stable")
        table = object.__new__(FieldTable)
        table.vocabulary = self.vocabulary
        table._names = self._names
        table._seen = self._seen
        table._pks = pks[order]
        table._codes = {name: np.concatenate([codes[keep], np.asarray(new_codes[name], np.int32)])[order]
                        for name, codes in self._codes.items()}
        return table

    def values_of(self, pks: Sequence[int] | np.ndarray, fields: Iterable[str] | None = None) -> dict[str, list[str | None]]:
        """Per field (all matchable ones by default), the value of each of ``pks`` (None: unknown pk or no
        nameable value)."""
        pks = np.asarray(pks, np.int64)
        pos = np.clip(np.searchsorted(self._pks, pks), 0, max(len(self._pks) - 1, 0))
        found = (self._pks[pos] == pks) if len(self._pks) else np.zeros(len(pks), bool)
        out: dict[str, list[str | None]] = {}
        for name in (self._codes if fields is None else fields):
            codes = self._codes.get(name)
            if codes is None:
                continue
            picked = np.where(found, codes[pos], -1) if len(codes) else np.full(len(pks), -1)
            out[name] = self._names[name][picked].tolist()
        return out

    def pks_with(self, field: str, values: Iterable[str]) -> np.ndarray:
        """The (sorted) pks of the products whose ``field`` holds one of ``values`` (in memory, no SQL)."""
        codes = self._codes.get(field)
        if codes is None:
            return np.empty(0, np.int64)
        index = {v: i for i, v in enumerate(self.vocabulary.fields[field])}
        wanted = [index[v] for v in values if v in index]
        return self._pks[np.isin(codes, wanted)] if wanted else np.empty(0, np.int64)


class LazyFieldTable:
    """Builds its ``FieldTable`` on first use, once, whichever thread asks first."""

    def __init__(self, load: Any):
        self._load = load
        self._table: FieldTable | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, table: FieldTable) -> LazyFieldTable:
        """One that is already built."""
        lazy = cls(lambda: table)
        lazy._table = table
        return lazy

    @property
    def built(self) -> FieldTable | None:
        """The table if some query has built it, else None (nothing is built)."""
        return self._table

    def get(self) -> FieldTable:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = self._load()
        assert self._table is not None
        return self._table
