"""Training the photo + words combiner (``search.composer``) from the catalog itself.

Pairs come from products of one kind that differ in a field: a photo of A plus the words naming B's value of
that field ("in red", "but in leather") should land on B.  The kind is the field that counts most
(``search.field_match``'s priors: category first); among the products of A's kind with another value of the
field, B is one that shares the most of A's other fields.  The words are embedded by the index's own model
in a few phrasings.  The loss is InfoNCE against the batch's targets (B's photos), every target of A's kind
with the named value counting as a positive; on a held-out share of the products it reports how often the
product with the best-matching photo is of A's kind with the named value ("accuracy"), beside the same for
the plain normalised sum of the two vectors, the training-free combination.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from indexer.encoders.base import Encoder
from indexer.errors import ModelError
from indexer.store.reader import IndexStore

from search.composer import Composer, composer_meta, forward
from search.field_table import FieldTable
from search.trained_files import index_identity


@dataclass(frozen=True, kw_only=True)
class ComposerConfig:
    """How ``vitrina train-composer`` trains; every default is here."""

    hidden: int = 256
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    temperature: float = 0.05
    #: Pairs drawn per epoch (each product and field gives at most one pair per draw).
    pairs: int = 8000
    val_fraction: float = 0.1
    seed: int = 0
    phrasings: tuple[str, ...] = ("in {v}", "but in {v}", "this one in {v}", "{v}", "the same in {v}")
    threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class ComposerReport:
    pairs: int
    val_pairs: int
    fields: tuple[str, ...]
    kind_field: str | None
    val_accuracy: float | None
    baseline_accuracy: float | None  # normalise(photo + words), the untrained combination

    @property
    def better(self) -> bool:
        """Whether the trained combiner beat the plain sum on the held-out pairs."""
        return self.val_accuracy is not None and self.baseline_accuracy is not None and \
            self.val_accuracy > self.baseline_accuracy
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Pair:
    anchor: int  # row of A
    target: int  # row of B
    field: str
    value: str


def kind_field(priors: dict[str, float]) -> str | None:
    """The field that names what a product is: the highest prior, ``category`` on ties."""
    if not priors:
        return None
    return max(priors, key=lambda name: (priors[name], name == "category"))


def draw_pairs(values: dict[str, list[str | None]], kind: str, rows: Sequence[int], rng: random.Random) -> list[Pair]:
    """One pair per (product in ``rows``, field other than ``kind``) where a product of the same kind has
    another value of that field; B shares as many of A's other fields as any such product."""
    fields = [f for f in values if f != kind]
    by_kind: dict[str, list[int]] = {}
    for row in range(len(values[kind])):
        k = values[kind][row]
        if k is not None:
            by_kind.setdefault(k, []).append(row)
    allowed = set(rows)
    pairs: list[Pair] = []
    for a in rows:
        k = values[kind][a]
        if k is None:
            continue
        peers = [b for b in by_kind[k] if b != a and b in allowed]
        for f in fields:
            mine = values[f][a]
            others = [b for b in peers if values[f][b] is not None and values[f][b] != mine]
            if not others:
                continue
            shared = [sum(values[g][b] == values[g][a] for g in fields if g != f) for b in others]
            best = max(shared)
            b = rng.choice([o for o, s in zip(others, shared) if s == best])
            value = values[f][b]
            assert value is not None
            pairs.append(Pair(anchor=a, target=b, field=f, value=value))
    return pairs


def train_composer(store: IndexStore, encoder: Encoder, *, config: ComposerConfig = ComposerConfig(),
                   on_epoch: Callable[[int, float], None] | None = None) -> tuple[Composer, ComposerReport]:
    """Train a combiner for ``store``'s index with the encoder it was built with."""
    import torch

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    rows = store.field_rows()
    table = FieldTable(rows)
    kind = kind_field(dict(table.vocabulary.priors))
    if kind is None or len(table.vocabulary.fields) < 2:
        raise ModelError(f"{store.folder}: the catalog has no two nameable fields (a kind and another, such as a "
                         "colour) to learn photo + words from")
    pks = np.array(sorted(int(r[0]) for r in rows), np.int64)
    stored = store.vectors_of(pks.tolist())
    first_image = np.full(len(pks), -1, np.int64)
    for row in range(len(stored["image_owner"]) - 1, -1, -1):
        first_image[stored["image_owner"][row]] = row
    with_photo = [int(r) for r in np.flatnonzero(first_image >= 0)]
    values = table.values_of(pks)
    rng.shuffle(with_photo)
    n_val = max(1, int(len(with_photo) * config.val_fraction))
    val_rows, train_rows = sorted(with_photo[:n_val]), sorted(with_photo[n_val:])
    pool = draw_pairs(values, kind, train_rows, rng)
    val = draw_pairs(values, kind, val_rows + train_rows, random.Random(config.seed + 1))
    val = [p for p in val if p.anchor in set(val_rows)][:2000]
    if not pool:
        raise ModelError(f"{store.folder}: no two products of one {kind} differ in another field; nothing to learn from")
    phrases = sorted({ph.format(v=p.value) for p in pool + val for ph in config.phrasings})
    phrase_vectors = dict(zip(phrases, encoder.encode_texts(phrases)))
    images = np.asarray(stored["images"], np.float32)
    dim = images.shape[1]

    def batch_arrays(batch: Sequence[Pair], phrasing: Callable[[Pair], str]) -> tuple[np.ndarray, ...]:
        photo = images[first_image[[p.anchor for p in batch]]]
        words = np.stack([phrase_vectors[phrasing(p)] for p in batch])
        target = images[first_image[[p.target for p in batch]]]
        return photo, words, target

    params = _init(dim, config.hidden, torch)
    optimiser = torch.optim.Adam(params.values(), lr=config.lr)
    for epoch in range(1, config.epochs + 1):
        drawn = [rng.choice(pool) for _ in range(min(config.pairs, 4 * len(pool)))]
        total = 0.0
        for start in range(0, len(drawn), config.batch_size):
            batch = drawn[start : start + config.batch_size]
            photo, words, target = (torch.from_numpy(x) for x in batch_arrays(
                batch, lambda p: rng.choice(config.phrasings).format(v=p.value)))
            q = _torch_forward(params, photo, words, torch)
            logits = q @ target.T / config.temperature
            positive = torch.from_numpy(_positives(batch, values, kind))
            loss = (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~positive, -1e9), dim=1)).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        if on_epoch is not None:
            on_epoch(epoch, total / max(len(drawn), 1))
    trained = {k: v.detach().numpy().astype(np.float32) for k, v in params.items()}
    catalog = (images, np.asarray(stored["image_owner"], np.int64))
    accuracy = baseline = None
    if val:
        val_photo, val_words, _ = batch_arrays(val, lambda p: config.phrasings[0].format(v=p.value))
        accuracy = _accuracy(forward(trained, val_photo, val_words), catalog, val, values, kind)
        summed = val_photo + val_words
        baseline = _accuracy(summed / np.linalg.norm(summed, axis=1, keepdims=True), catalog, val, values, kind)
    report = ComposerReport(pairs=len(pool), val_pairs=len(val), fields=tuple(table.vocabulary.fields), kind_field=kind,
                            val_accuracy=accuracy, baseline_accuracy=baseline,
                            seconds=round(time.perf_counter() - started, 1))
    meta = composer_meta(dim=dim, hidden=config.hidden, identity=index_identity(store), trained={
        "config": asdict(config), **report.to_json(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return Composer(trained, meta), report


def _init(dim: int, hidden: int, torch: Any) -> dict[str, Any]:
    def weight(rows: int, cols: int, scale: float) -> Any:
        return (torch.randn(rows, cols) * scale).requires_grad_()

    return {"w1": weight(2 * dim, hidden, (1.0 / dim) ** 0.5), "b1": torch.zeros(hidden, requires_grad=True),
            "wg": weight(hidden, dim, 0.01), "bg": torch.full((dim,), 2.0, requires_grad=True),  # gate starts open
            "wr": weight(hidden, dim, 0.01), "br": torch.zeros(dim, requires_grad=True)}


def _torch_forward(params: dict[str, Any], photo: Any, words: Any, torch: Any) -> Any:
    h = torch.relu(torch.cat([photo, words], dim=1) @ params["w1"] + params["b1"])
    q = torch.sigmoid(h @ params["wg"] + params["bg"]) * photo + h @ params["wr"] + params["br"]
    return torch.nn.functional.normalize(q, dim=1)


def _positives(batch: Sequence[Pair], values: dict[str, list[str | None]], kind: str) -> np.ndarray:
    """``[i, j]``: target j is of pair i's kind and holds the value pair i names."""
    targets = [p.target for p in batch]
    target_kinds = np.array([values[kind][t] for t in targets], dtype=object)
    target_values = {f: np.array([values[f][t] for t in targets], dtype=object) for f in {p.field for p in batch}}
    return np.stack([(target_kinds == values[kind][p.anchor]) & (target_values[p.field] == p.value) for p in batch])


def _accuracy(queries: np.ndarray, catalog: tuple[np.ndarray, np.ndarray], pairs: Sequence[Pair],
              values: dict[str, list[str | None]], kind: str) -> float:
    """Share of queries whose best-matching product (by its best photo) is of the anchor's kind and holds
    the named value."""
    images, owner = catalog
    n = int(owner.max()) + 1
    hits = 0
    for q, pair in zip(queries, pairs):
        best = np.full(n, -np.inf, np.float32)
        np.maximum.at(best, owner, images @ q)
        top = int(np.argmax(best))
        hits += int(values[kind][top] == values[kind][pair.anchor] and values[pair.field][top] == pair.value)
    return round(hits / max(len(pairs), 1), 4)
