"""The fusion classifier's training configuration: typed, frozen, keyword-only, with its defaults in one place
(``vitrina train-reranker``'s options map onto it).  ``search.rerank.model`` trains with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ARCHITECTURES", "OBJECTIVES", "RESIDUAL_SKIP", "SPARSE_WEIGHT_DECAY", "WEIGHT_DECAY", "RerankerConfig"]

ARCHITECTURES = ("concat", "gated")
#: ``unjudged="skip"`` marks sparse, noisy judgments (a search log's: only the shown products are judged, by
#: clicks): the loss sees a few candidates of each query, so the defaults then restrain the model: a bounded
#: correction of the fused order (``residual``), weights averaged over the epochs (``average``) and a
#: stronger weight decay.  On the simulated shop (``python -m bench shop-sim``) a free network promoted the
#: unjudged candidates it was never trained on (seed 929: held-out nDCG@10 0.77 after 4 epochs, 0.11 after
#: 40) and the epoch picked on the noisy validation clicks varied by points; the values were set on the
#: tuning seed 616.
RESIDUAL_SKIP = 1.0
WEIGHT_DECAY = 1e-4
SPARSE_WEIGHT_DECAY = 0.2
OBJECTIVES = ("pairwise", "pointwise")


@dataclass(frozen=True, kw_only=True)
class RerankerConfig:
    """How ``train-reranker`` trains: architecture, objective, schedule, data handling."""

    arch: str = "concat"
    #: Hidden units of the concat MLP (0: linear) or of the gated model's gate network.
    hidden: int = 32
    objective: str = "pairwise"
    epochs: int = 40
    lr: float = 0.01
    #: Decoupled weight decay (AdamW); None: ``WEIGHT_DECAY``, or ``SPARSE_WEIGHT_DECAY`` with ``unjudged="skip"``.
    weight_decay: float | None = None
    #: Queries per optimisation step.
    batch_queries: int = 16
    seed: int = 0
    #: Share of the training queries held out (per kind) to pick the best epoch.
    val_fraction: float = 0.2
    #: Candidates re-ranked per query; None: the engine's ``SearchConfig.rerank_depth``.
    depth: int | None = None
    #: Candidates the judgments do not mention: ``zero`` (label 0; the demo judgments list every relevant
    #: product) or ``skip`` (left out of the loss; for sparsely judged data).
    unjudged: str = "zero"
    #: Exact-id queries (a product's id, label 3) added to the training queries; 0 adds none.
    id_queries: int = 100
    #: Catalog attributes that get their own match / consensus features; None: the index's attribute
    #: fields (the first ``max_attributes`` in name order).
    attributes: tuple[str, ...] | None = None
    max_attributes: int = 8
    #: Weigh each query kind (text, photo, text+photo) equally in the loss, however many queries it has.
    balance_kinds: bool = True
    #: Torch threads while training (restored afterwards).
    threads: int = 1
    #: A bounded correction of the fused order: the concat score becomes ``fused_z + residual * tanh(net)``
    #: (``fused_z``: the fused score's within-query z-score), so a product moves at most ``residual``
    #: standard deviations of the query's fused scores.  None: ``RESIDUAL_SKIP`` with ``unjudged="skip"``
    #: (the loss then sees only the judged candidates, and a free network extrapolates to the others at
    #: will), off with ``unjudged="zero"``; 0: off.
    residual: float | None = None
    #: Score each epoch with the running mean of the weights of every epoch so far (Polyak averaging), and
    #: keep the best such mean: steadier than one epoch's weights when the labels are noisy (clicks).  None:
    #: on with ``unjudged="skip"`` (sparse, logged judgments), off with ``unjudged="zero"``.
    average: bool | None = None

    @property
    def decay(self) -> float:
        """The weight decay in use (see ``weight_decay``)."""
        if self.weight_decay is not None:
            return self.weight_decay
        return SPARSE_WEIGHT_DECAY if self.unjudged == "skip" else WEIGHT_DECAY

    @property
    def averaging(self) -> bool:
        """Whether the weights are averaged over the epochs (see ``average``)."""
        return self.average if self.average is not None else self.unjudged == "skip"

    @property
    def residual_bound(self) -> float:
        """The residual bound in use (0: a free score)."""
        if self.residual is not None:
            return self.residual
        return RESIDUAL_SKIP if self.unjudged == "skip" and self.arch == "concat" else 0.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.unjudged not in ("zero", "skip"):
            raise ValueError(f"unjudged must be 'zero' or 'skip', got {self.unjudged!r}")
        if self.epochs < 1 or self.hidden < 0 or self.batch_queries < 1 or self.lr <= 0 or self.id_queries < 0 or self.threads < 1:
            raise ValueError("epochs, batch_queries and threads must be positive; hidden, id_queries non-negative; lr > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be within [0, 1), got {self.val_fraction}")
        if self.depth is not None and self.depth < 2:
            raise ValueError(f"depth must be at least 2, got {self.depth}")
        if self.weight_decay is not None and (not np.isfinite(self.weight_decay) or self.weight_decay < 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.residual is not None and (not np.isfinite(self.residual) or self.residual < 0 or
                                          (self.residual > 0 and self.arch != "concat")):
            raise ValueError(f"residual must be a finite number >= 0 (and 0 unless arch is concat), got {self.residual}")
