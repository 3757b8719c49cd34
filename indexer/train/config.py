"""Settings and results of ``vitrina train``: ``TrainConfig`` (the recipe, defaults in one place), the
per-epoch ``EpochMetrics``, the ``TrainEvent`` progress callbacks get, and the final ``TrainReport``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from indexer.train.data import SkipCounts

#: ``TrainConfig(model="tiny")``: the small from-scratch architecture in ``model_configs/vitrina-tiny.json``.
TINY_MODEL = "tiny"
TINY_CONFIG_NAME = "vitrina-tiny"
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
LR_SCRATCH = 1e-3
LR_FINETUNE = 1e-5
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train; the defaults are the recipe of the bundled demo model."""

    model: str = TINY_MODEL  # "tiny" or an open_clip architecture name (ignored when ``init`` is a model folder)
    init: str | None = None  # None: from scratch; a pretrained tag, a checkpoint file or a model folder
    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None  # None: 1e-3 from scratch, 1e-5 when fine-tuning
    weight_decay: float = 0.1
    warmup: float = 0.05  # fraction of all steps with a linear warm-up
    seed: int = 0
    val_fraction: float = 0.05  # products held out for the per-epoch validation
    threads: int | None = None  # torch threads; None leaves torch's default
    augment: bool = True  # photo augmentation and text variants
    image_pairs: float = 1.0  # weight of the photo-photo loss (two photos of one product); 0 = image-text only
    hard_groups: int = 16  # batches mix groups of this many look-alike products (after epoch 1); 0 = random
    attribute_loss: float = 3.0  # weight of classifying photos and texts against attribute names; 0 = off
    max_products: int | None = None
    half: bool = True  # store fp16 weights

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            problems.append(f"batch_size must be >= 2 (contrastive pairs need negatives), got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.attribute_loss < 0:
            problems.append(f"attribute_loss must be >= 0, got {self.attribute_loss}")
        if self.hard_groups < 0:
            problems.append(f"hard_groups must be >= 0, got {self.hard_groups}")
        if self.image_pairs < 0:
            problems.append(f"image_pairs must be >= 0, got {self.image_pairs}")
        if self.weight_decay < 0 or not 0 <= self.warmup < 1 or not 0 <= self.val_fraction < 1:
            problems.append("weight_decay must be >= 0, warmup and val_fraction in [0, 1)")
        if self.max_products is not None and self.max_products < 2:
            problems.append(f"max_products must be >= 2, got {self.max_products}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (LR_SCRATCH if self.init is None else LR_FINETUNE)


@dataclass(frozen=True, kw_only=True)
class EpochMetrics:
    """Mean training loss of an epoch and retrieval on the held-out products (None without any)."""

    epoch: int
    loss: float
    text_r1: float | None = None  # product text → its photo among held-out products' photos
    text_r10: float | None = None
    image_r10: float | None = None  # another photo of the product → its first photo
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TrainEvent:
    """What ``progress`` is told: ``kind`` is "step" after each step, "epoch" after each epoch."""

    kind: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    metrics: EpochMetrics | None = None


@dataclass(frozen=True, kw_only=True)
class TrainReport:
    out_dir: Path
    products: int  # trained on
    val_products: int
    skipped: SkipCounts
    steps: int
    seconds: float
    metrics: tuple[EpochMetrics, ...] = field(default_factory=tuple)
    command: str = ""

    @property
    def final(self) -> EpochMetrics | None:
        return self.metrics[-1] if self.metrics else None
