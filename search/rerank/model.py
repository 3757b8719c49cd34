"""The fusion classifier's two architectures: a numpy forward for query time, a torch twin for training.

* ``concat``: ``[normalised candidate features, normalised query features]`` → MLP (``hidden`` units, ReLU)
  → one score; ``hidden=0`` makes it linear.
* ``gated``: a small network reads only the query features and predicts attention weights (softmax) over
  the score channels (``rerank_features.channel_names``: text, image, BM25, word and attribute matches...);
  the score is the query-adaptive weighted sum ``sum_c gate_c(query) * scale_c * channel_c``.

Training (:func:`fit`) is torch on padded per-query tensors, with a pairwise (RankNet, pairs weighted by their
gain difference ``2**a - 2**b``) or pointwise (binary cross-entropy on ``label / max_label``) objective,
averaged per query and then over queries (each kind weighing the same with ``balance_kinds``); the epoch with
the best validation nDCG@10 (mean over kinds) is kept (with ``average``: the best running mean of the epochs'
weights).  With ``residual`` the concat score is a bounded correction of the fused order.  A candidate's label
weight (``QueryData.weights``, e.g. the inverse propensity of a logged click) multiplies its loss, or its
pairs' when it is the better one.
Query time needs only numpy (:func:`forward`), and a test holds the two forwards equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from search.evaluation import metrics
# the configuration lives in search.rerank.config; its names stay importable from here
from search.rerank.config import ARCHITECTURES as ARCHITECTURES
from search.rerank.config import OBJECTIVES as OBJECTIVES
from search.rerank.config import RESIDUAL_SKIP as RESIDUAL_SKIP
from search.rerank.config import SPARSE_WEIGHT_DECAY as SPARSE_WEIGHT_DECAY
from search.rerank.config import WEIGHT_DECAY as WEIGHT_DECAY
from search.rerank.config import RerankerConfig as RerankerConfig
from search.rerank.features import QUERY_FEATURES, channel_columns, feature_names

if TYPE_CHECKING:  # torch is imported lazily, only to train
    import torch
    from torch import nn

@dataclass(frozen=True, kw_only=True)
class QueryData:
    """One training query: feature arrays, labels of the candidates, every judged label, a loss mask."""

    rows: np.ndarray  # (n, F)
    query: np.ndarray  # (G,)
    labels: np.ndarray  # (n,) graded label per candidate (0 when unjudged)
    mask: np.ndarray  # (n,) True where the candidate counts in the loss
    judged: np.ndarray  # every judged label of the query (for nDCG's ideal)
    fused: np.ndarray  # (n,) the fused scores (the baseline order)
    kind: str = "text"
    #: (n,) how much each candidate's label counts (a pair counts its better candidate's); None: all 1.
    weights: np.ndarray | None = None


@dataclass(frozen=True, kw_only=True)
class Normaliser:
    row_mean: np.ndarray
    row_std: np.ndarray
    query_mean: np.ndarray
    query_std: np.ndarray

    @classmethod
    def fit(cls, data: Sequence[QueryData]) -> Normaliser:
        rows = np.concatenate([d.rows for d in data]).astype(np.float64)
        queries = np.stack([d.query for d in data]).astype(np.float64)
        std: Callable[[np.ndarray], np.ndarray] = lambda a: np.where(a.std(axis=0) > 1e-6, a.std(axis=0), 1.0).astype(np.float32)  # noqa: E731
        return cls(row_mean=rows.mean(axis=0).astype(np.float32), row_std=std(rows),
                   query_mean=queries.mean(axis=0).astype(np.float32), query_std=std(queries))

    def to_json(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).astype(float).tolist() for k in ("row_mean", "row_std", "query_mean", "query_std")}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> Normaliser:
        return cls(**{k: np.asarray(data[k], dtype=np.float32) for k in ("row_mean", "row_std", "query_mean", "query_std")})


def forward(arch: str, params: dict[str, np.ndarray], norm: Normaliser, rows: np.ndarray, query: np.ndarray,
            channels: Sequence[int] = ()) -> np.ndarray:
    """Scores of one query's candidates (numpy; the query-time path); ``channels``: the gated model's columns."""
    x = (rows - norm.row_mean) / norm.row_std
    q = (query - norm.query_mean) / norm.query_std
    if arch == "concat":
        z = np.concatenate([x, np.broadcast_to(q, (len(x), len(q)))], axis=1)
        if "w1" in params:
            z = np.maximum(z @ params["w1"] + params["b1"], 0.0)
        out = (z @ params["w2"] + params["b2"]).reshape(-1)
        if "residual" in params:  # [bound, column of fused_z]: a bounded correction of the fused order
            bound, column = float(params["residual"][0]), int(params["residual"][1])
            out = rows[:, column] + bound * np.tanh(out)
        scores: np.ndarray = np.asarray(out, dtype=np.float32)
        return scores
    h = np.maximum(q @ params["g1"] + params["c1"], 0.0)
    logits = h @ params["g2"] + params["c2"]
    gate = np.exp(logits - logits.max())
    gate /= gate.sum()
    gated: np.ndarray = (x[:, list(channels)] @ (gate * params["scale"])).astype(np.float32)
    return gated


def _torch_model(arch: str, hidden: int, attributes: Sequence[str], *, residual: float = 0.0,
                 norm: Normaliser | None = None) -> nn.Module:
    import torch
    from torch import nn

    column = feature_names(attributes).index("fused_z")
    shift = float(norm.row_mean[column]) if norm is not None else 0.0
    spread = float(norm.row_std[column]) if norm is not None else 1.0

    n_rows, n_query, n_channels = len(feature_names(attributes)), len(QUERY_FEATURES), len(channel_columns(attributes))

    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            width = n_rows + n_query
            if hidden:
                self.w1 = nn.Parameter(torch.randn(width, hidden) * (2.0 / width) ** 0.5)
                self.b1 = nn.Parameter(torch.zeros(hidden))
            self.w2 = nn.Parameter(torch.randn(hidden or width, 1) * (1.0 / (hidden or width)) ** 0.5)
            self.b2 = nn.Parameter(torch.zeros(1))
            if residual:
                self.register_buffer("residual", torch.tensor([residual, float(column)]))

        def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # (B, N, F), (B, G) -> (B, N)
            z = torch.cat([x, q[:, None, :].expand(-1, x.shape[1], -1)], dim=2)
            if hidden:
                z = torch.relu(z @ self.w1 + self.b1)
            out = (z @ self.w2 + self.b2).squeeze(-1)
            if residual:  # the raw fused_z (un-normalised) plus the bounded correction
                out = x[:, :, column] * spread + shift + residual * torch.tanh(out)
            return out

    class Gated(nn.Module):
        channels: torch.Tensor  # the buffer registered below

        def __init__(self) -> None:
            super().__init__()
            width = hidden or 16
            self.g1 = nn.Parameter(torch.randn(n_query, width) * (2.0 / n_query) ** 0.5)
            self.c1 = nn.Parameter(torch.zeros(width))
            self.g2 = nn.Parameter(torch.randn(width, n_channels) * 0.01)
            self.c2 = nn.Parameter(torch.zeros(n_channels))
            self.scale = nn.Parameter(torch.full((n_channels,), 0.1))
            self.register_buffer("channels", torch.tensor(channel_columns(attributes), dtype=torch.long))

        def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            gate = torch.softmax(torch.relu(q @ self.g1 + self.c1) @ self.g2 + self.c2, dim=-1)  # (B, C)
            return (x[:, :, self.channels] * (gate * self.scale)[:, None, :]).sum(-1)

    return Concat() if arch == "concat" else Gated()


def _pad(data: Sequence[QueryData], norm: Normaliser) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    n = max(len(d.labels) for d in data)
    x = np.zeros((len(data), n, data[0].rows.shape[1]), np.float32)
    y = np.zeros((len(data), n), np.float32)
    m = np.zeros((len(data), n), bool)
    for i, d in enumerate(data):
        x[i, : len(d.labels)] = (d.rows - norm.row_mean) / norm.row_std
        y[i, : len(d.labels)] = d.labels
        m[i, : len(d.labels)] = d.mask
    q = np.stack([(d.query - norm.query_mean) / norm.query_std for d in data]).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(q), torch.from_numpy(y), torch.from_numpy(m)


def _pad_weights(data: Sequence[QueryData]) -> torch.Tensor | None:
    """The candidates' label weights, padded like ``_pad``'s labels; None when no query has any."""
    import torch

    if all(d.weights is None for d in data):
        return None
    w = np.ones((len(data), max(len(d.labels) for d in data)), np.float32)
    for i, d in enumerate(data):
        if d.weights is not None:
            w[i, : len(d.labels)] = d.weights
    return torch.from_numpy(w)


def _loss(objective: str, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
          max_label: float, label_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-query losses (each query's pairs or candidates averaged), then their ``weights``-weighted mean.
    ``label_weights`` (B, N) multiply each candidate's loss (pointwise) or each pair's by its better candidate's
    weight (pairwise); the normalisers stay unweighted, so weights of 1 change nothing."""
    import torch
    import torch.nn.functional as F

    if objective == "pointwise":
        target = labels / max(max_label, 1.0)
        losses = F.binary_cross_entropy_with_logits(scores, target, reduction="none") * mask
        weighted = losses if label_weights is None else losses * label_weights
        per_query = weighted.sum(1) / mask.sum(1).clamp(min=1)
    else:
        gain = torch.pow(2.0, labels) - 1.0
        pair = (gain[:, :, None] - gain[:, None, :]).clamp(min=0) * (mask[:, :, None] & mask[:, None, :])
        diff = scores[:, :, None] - scores[:, None, :]
        terms = pair * F.softplus(-diff)
        if label_weights is not None:  # pair (i, j) counts when i is better: i's weight
            terms = terms * label_weights[:, :, None]
        per_query = terms.sum((1, 2)) / pair.sum((1, 2)).clamp(min=1e-9)
    return (per_query * weights).sum() / weights.sum().clamp(min=1e-9)


class _AdamW:
    """AdamW (decoupled weight decay), written out: ``torch.optim`` pulls in torch._dynamo, seconds of import."""

    def __init__(self, params: list[nn.Parameter], *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        import torch

        self.params, self.lr, self.weight_decay, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.t += 1
        b1, b2 = self.betas
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                p.mul_(1.0 - self.lr * self.weight_decay)
                m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = (v / (1.0 - b2 ** self.t)).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / (1.0 - b1 ** self.t))


def query_weights(data: Sequence[QueryData], *, balance: bool) -> np.ndarray:
    """1 per query, or (``balance``) each kind's queries sharing an equal total weight; mean 1."""
    if not balance:
        return np.ones(len(data), np.float32)
    kinds = [d.kind for d in data]
    counts = {k: kinds.count(k) for k in set(kinds)}
    weights = np.array([1.0 / counts[k] for k in kinds], np.float32)
    balanced: np.ndarray = weights * len(data) / weights.sum()
    return balanced


def ndcg(data: Sequence[QueryData], scores: Sequence[np.ndarray], k: int = 10, *, balanced: bool = False) -> float:
    """Mean nDCG@k of the candidates ordered by ``scores`` (ties keep the fused order); ``balanced``: the
    mean over query kinds of each kind's mean (so a small kind counts as much as a large one)."""
    values: dict[str, list[float]] = {}
    for d, s in zip(data, scores):
        order = np.lexsort((np.arange(len(s)), -np.asarray(s, dtype=np.float64)))
        values.setdefault(d.kind if balanced else "", []).append(metrics.ndcg_at_k(d.labels[order], d.judged, k))
    return metrics.mean([metrics.mean(v) for v in values.values()]) if balanced else metrics.mean(values.get("", []))


@dataclass(frozen=True, kw_only=True)
class EpochReport:
    epoch: int
    loss: float
    val_ndcg: float | None
    seconds: float


@dataclass(frozen=True, kw_only=True)
class FitResult:
    params: dict[str, np.ndarray]
    norm: Normaliser
    best_epoch: int
    epochs: list[EpochReport] = field(default_factory=list)


def fit(train: Sequence[QueryData], val: Sequence[QueryData], config: RerankerConfig, *, attributes: Sequence[str] = (),
        progress: Callable[[EpochReport], None] | None = None) -> FitResult:
    """Train on ``train``; keep the epoch with the best nDCG@10 on ``val`` (the last when ``val`` is empty)."""
    import torch

    if not train:
        raise ValueError("no training queries with candidates")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)  # small matrices: one thread is fastest, and immune to busy neighbours
    try:
        return _fit(train, val, config, attributes=attributes, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _fit(train: Sequence[QueryData], val: Sequence[QueryData], config: RerankerConfig, *, attributes: Sequence[str],
         progress: Callable[[EpochReport], None] | None) -> FitResult:
    import time

    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    norm = Normaliser.fit(train)
    weights = query_weights(train, balance=config.balance_kinds)
    model = _torch_model(config.arch, config.hidden, attributes, residual=config.residual_bound, norm=norm)
    channels = channel_columns(attributes)
    optimiser = _AdamW(list(model.parameters()), lr=config.lr, weight_decay=config.decay)
    max_label = float(max(d.judged.max(initial=0) for d in train))
    best: tuple[float, int, dict[str, np.ndarray]] | None = None
    running: dict[str, np.ndarray] | None = None
    reports = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(train))
        total, steps = 0.0, 0
        for start in range(0, len(order), config.batch_queries):
            picked = order[start : start + config.batch_queries]
            batch = [train[i] for i in picked]
            x, q, y, m = _pad(batch, norm)
            loss = _loss(config.objective, model(x, q), y, m, torch.from_numpy(weights[picked]), max_label, _pad_weights(batch))
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            optimiser.step()
            total, steps = total + float(loss.detach()), steps + 1
        params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if k != "channels"}
        if config.averaging:  # the running mean of every epoch's weights so far (Polyak averaging)
            mean = params if running is None else {k: running[k] + (v - running[k]) / epoch for k, v in params.items()}
            running = params = mean
        val_scores = [forward(config.arch, params, norm, d.rows, d.query, channels) for d in val]
        val_ndcg = ndcg(val, val_scores) if val else None
        report = EpochReport(epoch=epoch, loss=total / max(steps, 1), val_ndcg=val_ndcg, seconds=time.perf_counter() - started)
        reports.append(report)
        if progress is not None:
            progress(report)
        score = ndcg(val, val_scores, balanced=config.balance_kinds) if val else float(epoch)
        if best is None or score > best[0]:
            best = (score, epoch, params)
    assert best is not None
    return FitResult(params=best[2], norm=norm, best_epoch=best[1], epochs=reports)
