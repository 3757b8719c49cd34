"""Contrastive training (or fine-tuning) of an open_clip model on a product catalog.

``train_model(catalog, out_dir, config=TrainConfig(...))`` reads the catalog, caches every photo at the
model's input size, and trains image/text pairs (a random photo of each product per epoch, one of its
text variants) with open_clip's ``ClipLoss`` and a learnable temperature.  After each epoch it measures
retrieval on held-out products.  The result is a model folder that ``load_encoder`` opens
(``--model DIR``), with ``MODEL_CARD.md`` and ``model_card.json`` saying how to make it again.

The same arguments and seed give the same weights on the same machine and thread count.
"""

from __future__ import annotations

import json
import math
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .encoder import CONFIG_FILE
from .errors import CatalogError, ModelError
from .model_folder import WEIGHTS_FILE, save_model_folder
from .train_data import (
    TEXT_VARIANT_WEIGHTS, Augmentation, SkipCounts, TrainData, attribute_vocab, augment, load_train_data,
    read_products, training_text, uint8_transform,
)

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


def train_model(
    catalog: str | Path,
    out_dir: str | Path,
    *,
    config: TrainConfig = TrainConfig(),
    progress: Callable[[TrainEvent], None] | None = None,
) -> TrainReport:
    """Train a model on ``catalog`` and write it as a model folder to ``out_dir``."""
    import open_clip
    import torch

    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: exists and is not a folder; choose another --out")
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    name, pretrained, model_cfg = resolve_architecture(config)
    try:
        model = open_clip.create_model(name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # open_clip raises RuntimeError, ValueError, OSError, hub errors...
        raise ModelError(_create_failure(name, pretrained, exc)) from exc
    preprocess_cfg = {k: v for k, v in open_clip.get_model_preprocess_cfg(model).items()}
    to_uint8, mean, std = uint8_transform(preprocess_cfg)

    records, skipped = read_products(catalog, max_products=config.max_products)
    data = load_train_data(records, transform=to_uint8, skipped=skipped)
    train_idx, val_idx = split_products(len(data.products), config.val_fraction, config.seed)

    loop = _Loop(model=model, tokenizer=tokenizer, data=data, config=config, mean=mean, std=std)
    metrics = loop.run(train_idx, val_idx, progress)
    seconds = time.perf_counter() - started

    save_model_folder(model.eval(), model_cfg, out, preprocess_cfg=_jsonable(preprocess_cfg), half=config.half)
    report = TrainReport(out_dir=out, products=len(train_idx), val_products=len(val_idx), skipped=data.skipped,
                         steps=loop.steps, seconds=seconds, metrics=tuple(metrics),
                         command=reproduce_command(catalog, out, config))
    write_model_card(report, catalog=catalog, config=config, name=name, model_cfg=model_cfg, model=model,
                     images=int(data.pixels.shape[0]))
    return report


def resolve_architecture(config: TrainConfig) -> tuple[str, str | None, dict[str, Any]]:
    """(open_clip model name, pretrained tag or file, model config) for ``config``, or ``ModelError``."""
    import open_clip

    if config.init is not None and Path(config.init).expanduser().is_dir():
        folder = Path(config.init).expanduser().resolve()
        if not (folder / CONFIG_FILE).is_file():
            raise ModelError(f"{folder}: not a model folder (no {CONFIG_FILE} in it)")
        if not (folder / WEIGHTS_FILE).is_file():
            raise ModelError(f"{folder}: the model folder has no weights ({WEIGHTS_FILE})")
        name = f"local-dir:{folder}"
        return name, None, open_clip.get_model_config(name)
    _register_tiny_config()
    name = TINY_CONFIG_NAME if config.model == TINY_MODEL else config.model
    if name not in open_clip.list_models():
        raise ModelError(f"unknown model {config.model!r}: use 'tiny', an open_clip architecture "
                         "(see open_clip.list_models()) or --init with a model folder")
    pretrained = None
    if config.init is not None:
        path = Path(config.init).expanduser()
        if path.is_file():
            pretrained = str(path.resolve())
        elif open_clip.get_pretrained_cfg(name, config.init):
            pretrained = config.init
        else:
            tags = ", ".join(t for m, t in open_clip.list_pretrained() if m == name) or "none known"
            raise ModelError(f"--init {config.init!r} is neither a model folder, a checkpoint file nor a "
                             f"pretrained tag of {name} (known: {tags})")
    return name, pretrained, open_clip.get_model_config(name)


def _create_failure(name: str, pretrained: str | None, exc: Exception) -> str:
    if pretrained and not Path(pretrained).is_file():
        return (f"--init {pretrained}: the pretrained weights of {name} are not available offline (not in the "
                "local cache, and they could not be downloaded): download them once on a machine with network "
                "access (they are cached under ~/.cache/huggingface), or pass a checkpoint file or model folder "
                f"to --init ({type(exc).__name__}: {exc})")
    what = f"{name} with weights {pretrained}" if pretrained else name
    return f"cannot create model {what}: {type(exc).__name__}: {exc}"


def split_products(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``n`` products into training and held-out indices (>= 2 kept for training)."""
    if n < 2:
        raise CatalogError(f"only {n} usable product: contrastive training needs at least 2")
    order = list(range(n))
    random.Random(f"vitrina-train/{seed}/split").shuffle(order)
    n_val = min(int(round(n * val_fraction)), n - 2)
    n_val = n_val if n_val >= 2 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


class _Loop:
    """One training run: optimizer, schedule, epochs, validation."""

    def __init__(self, *, model: Any, tokenizer: Any, data: TrainData, config: TrainConfig,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        import open_clip
        import torch

        self.torch, self.model, self.tokenizer, self.data, self.config = torch, model, tokenizer, data, config
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.loss_fn = open_clip.ClipLoss()
        self.generator = torch.Generator().manual_seed(config.seed)
        self.aug = Augmentation()
        self.variant_weights = torch.tensor(TEXT_VARIANT_WEIGHTS)
        self.vocab = attribute_vocab(data.products) if config.attribute_loss > 0 else None
        decay = [p for n, p in model.named_parameters() if p.requires_grad and not _no_decay(n, p)]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and _no_decay(n, p)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6)
        self.steps = 0
        self.memory: Any = None  # the last photo embedding of each training product, for hard batches
        self.seen: Any = None

    def _remember(self, positions: list[int], features: Any) -> None:
        if not self.config.hard_groups:
            return
        if self.memory is None:
            n = len(self.train_idx)
            self.memory = self.torch.zeros(n, features.shape[1])
            self.seen = self.torch.zeros(n, dtype=self.torch.bool)
        index = self.torch.tensor(positions)
        self.memory[index] = features.detach().float()
        self.seen[index] = True

    def run(self, train_idx: list[int], val_idx: list[int],
            progress: Callable[[TrainEvent], None] | None) -> list[EpochMetrics]:
        torch, config = self.torch, self.config
        self.train_idx = train_idx
        per_epoch = _steps_per_epoch(len(train_idx), config.batch_size)
        total = per_epoch * config.epochs
        warm = int(total * config.warmup)
        history: list[EpochMetrics] = []
        for epoch in range(1, config.epochs + 1):
            began = time.perf_counter()
            self.model.train()
            losses = []
            if config.hard_groups and self.memory is not None and bool(self.seen.all()):
                order = hard_batch_order(self.memory, config.hard_groups, self.generator)
            else:
                order = torch.randperm(len(train_idx), generator=self.generator).tolist()
            for start in range(0, per_epoch * config.batch_size, config.batch_size):
                positions = order[start:start + config.batch_size]
                lr = _lr_at(self.steps, total, warm, config.learning_rate)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = self._step(positions, [train_idx[i] for i in positions])
                self.steps += 1
                losses.append(loss)
                if progress:
                    progress(TrainEvent(kind="step", epoch=epoch, epochs=config.epochs, step=self.steps,
                                        total_steps=total, loss=loss))
            scores = self.validate(val_idx) if val_idx else {}
            metrics = EpochMetrics(epoch=epoch, loss=sum(losses) / max(1, len(losses)),
                                   seconds=time.perf_counter() - began, **scores)
            history.append(metrics)
            if progress:
                progress(TrainEvent(kind="epoch", epoch=epoch, epochs=config.epochs, step=self.steps,
                                    total_steps=total, loss=metrics.loss, metrics=metrics))
        return history

    def _step(self, positions: list[int], batch: list[int]) -> float:
        torch, g, config = self.torch, self.generator, self.config
        products = [self.data.products[i] for i in batch]
        counts = torch.tensor([len(p.image_rows) for p in products])
        first = (torch.rand(len(batch), generator=g) * counts).long()
        rows = [p.image_rows[k] for p, k in zip(products, first.tolist())]
        if config.image_pairs > 0:  # a second, different photo of each product (the same one if it has one)
            shift = 1 + (torch.rand(len(batch), generator=g) * (counts - 1).clamp(min=1)).long()
            second = torch.where(counts > 1, (first + shift) % counts, first)
            rows += [p.image_rows[k] for p, k in zip(products, second.tolist())]
        pixels = self.data.pixels[rows].float().div_(255.0)
        if config.augment:
            pixels = augment(pixels, generator=g, aug=self.aug)
            variants = torch.multinomial(self.variant_weights, len(batch), replacement=True, generator=g).tolist()
            coins = torch.rand(len(batch), 6, generator=g).tolist()
        else:
            variants, coins = [0] * len(batch), [[0.0] * 6] * len(batch)
        texts = [training_text(p, v, c) for p, v, c in zip(products, variants, coins)]
        image_features = self.model.encode_image((pixels - self.mean) / self.std, normalize=True)
        text_features = self.model.encode_text(self.tokenizer(texts), normalize=True)
        scale = self.model.logit_scale.exp()
        if config.image_pairs > 0:
            a, b = image_features[: len(batch)], image_features[len(batch):]
            loss = 0.5 * (self.loss_fn(a, text_features, scale) + self.loss_fn(b, text_features, scale))
            loss = loss + config.image_pairs * self.loss_fn(a, b, scale)
        else:
            loss = self.loss_fn(image_features, text_features, scale)
        if self.vocab is not None:
            indexed_text = torch.tensor(variants) == 0
            loss = loss + config.attribute_loss * self._attribute_loss(
                batch, image_features[: len(batch)], text_features, indexed_text, scale)
        self._remember(positions, image_features[: len(batch)])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return float(loss.detach())

    def _attribute_loss(self, batch: list[int], images: Any, texts: Any, indexed_text: Any, scale: Any) -> Any:
        """Cross-entropy of photos (and indexed texts) against the embedded names of each attribute's values."""
        import torch.nn.functional as F

        vocab = self.vocab
        names = self.model.encode_text(self.tokenizer(vocab.texts), normalize=True)
        labels = vocab.labels[self.torch.tensor(batch)]
        terms, offset = [], 0
        for col, values in enumerate(vocab.values):
            weights = names[offset:offset + len(values)]
            offset += len(values)
            target = labels[:, col]
            known = target >= 0
            if bool(known.any()):
                terms.append(F.cross_entropy(scale * images[known] @ weights.T, target[known]))
            known_text = known & indexed_text
            if bool(known_text.any()):
                terms.append(F.cross_entropy(scale * texts[known_text] @ weights.T, target[known_text]))
        return sum(terms) / max(1, len(terms))

    def validate(self, val_idx: list[int]) -> dict[str, float | None]:
        """Retrieval among held-out products: text → first photo (R@1, R@10), second photo → first (R@10)."""
        torch = self.torch
        products = [self.data.products[i] for i in val_idx]
        self.model.eval()
        with torch.inference_mode():
            first = self._encode_rows([p.image_rows[0] for p in products])
            texts = self._encode_texts([p.text for p in products])
            second_of = [i for i, p in enumerate(products) if len(p.image_rows) > 1]
            second = self._encode_rows([products[i].image_rows[1] for i in second_of]) if second_of else None
        self.model.train()
        text_r1, text_r10 = _recall(texts @ first.T, list(range(len(products))), (1, 10))
        image_r10 = _recall(second @ first.T, second_of, (10,))[0] if second is not None else None
        return {"text_r1": text_r1, "text_r10": text_r10, "image_r10": image_r10}

    def _encode_rows(self, rows: list[int], chunk: int = 256) -> Any:
        parts = []
        for start in range(0, len(rows), chunk):
            pixels = self.data.pixels[rows[start:start + chunk]].float().div_(255.0)
            parts.append(self.model.encode_image((pixels - self.mean) / self.std, normalize=True))
        return self.torch.cat(parts)

    def _encode_texts(self, texts: list[str], chunk: int = 256) -> Any:
        parts = [self.model.encode_text(self.tokenizer(texts[s:s + chunk]), normalize=True)
                 for s in range(0, len(texts), chunk)]
        return self.torch.cat(parts)


def hard_batch_order(features: Any, group: int, generator: Any) -> list[int]:
    """A visiting order whose consecutive runs of ``group`` rows are near neighbours of each other.

    Seeds are taken in random order; each claims itself and its ``group - 1`` most similar unclaimed rows.
    Batches cut from this order mix a few such groups, so their negatives differ in detail, not just colour.
    """
    import torch

    sims = features @ features.T
    free = torch.ones(len(features), dtype=torch.bool)
    order: list[int] = []
    for seed in torch.randperm(len(features), generator=generator).tolist():
        if not free[seed]:
            continue
        row = sims[seed].masked_fill(~free, float("-inf"))
        row[seed] = float("inf")
        take = torch.topk(row, min(group, int(free.sum()))).indices
        free[take] = False
        order.extend(take.tolist())
    return order


def _recall(scores: Any, targets: list[int], ks: tuple[int, ...]) -> list[float]:
    """Fraction of query rows whose target column ranks within the top k (ties count against)."""
    import torch

    target_scores = scores[torch.arange(len(targets)), torch.tensor(targets)]
    ranks = (scores > target_scores[:, None]).sum(dim=1)
    return [float((ranks < k).float().mean()) for k in ks]


def _steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches, plus the last partial one when it holds at least 2 products."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


def _lr_at(step: int, total: int, warm: int, base: float) -> float:
    if step < warm:
        return base * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _no_decay(name: str, param: Any) -> bool:
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


_registered = False


def _register_tiny_config() -> None:
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODEL_CONFIG_DIR / f"{TINY_CONFIG_NAME}.json")
        _registered = True


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def reproduce_command(catalog: str | Path, out_dir: str | Path, config: TrainConfig) -> str:
    """The ``vitrina train`` command line that repeats this run (non-default options only, plus the basics)."""
    args = ["vitrina", "train", "--catalog", str(catalog), "--out", str(out_dir)]
    defaults = TrainConfig()
    always = {"model", "epochs", "batch_size", "seed"}
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name not in always and value == getattr(defaults, f.name):
            continue
        flag = "--config" if f.name == "model" else "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return shlex.join(args)


def write_model_card(report: TrainReport, *, catalog: str | Path, config: TrainConfig, name: str,
                     model_cfg: dict[str, Any], model: Any, images: int) -> None:
    """``model_card.json`` (everything) and ``MODEL_CARD.md`` (the same, for people) in the model folder."""
    import open_clip
    import torch

    out = report.out_dir
    card = {
        "model": {"architecture": name, "model_cfg": model_cfg,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "weights_bytes": (out / WEIGHTS_FILE).stat().st_size, "dtype": "float16" if config.half else "float32"},
        "data": {"catalog": str(Path(catalog).resolve()), "products": report.products + report.val_products,
                 "train_products": report.products, "val_products": report.val_products, "images": images,
                 "skipped": asdict(report.skipped)},
        "config": asdict(config),
        "training": {"epochs": config.epochs, "steps": report.steps, "seconds": round(report.seconds, 1),
                     "learning_rate": config.learning_rate, "threads": torch.get_num_threads(),
                     "torch": torch.__version__, "open_clip": open_clip.__version__},
        "validation": [asdict(m) for m in report.metrics],
        "command": report.command,
    }
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# vitrina model card", "",
        f"Contrastive image-text model ({name}), trained by `vitrina train` "
        f"{'from scratch' if config.init is None else 'from ' + config.init}.", "",
        "## Reproduce", "", "```", report.command, "```", "",
        f"Same seed and thread count give the same weights. Training took {report.seconds / 60:.1f} min "
        f"on {torch.get_num_threads()} CPU threads ({report.steps} steps, {config.epochs} epochs).", "",
        "## Data", "",
        f"- catalog: `{card['data']['catalog']}`",
        f"- products: {report.products} trained, {report.val_products} held out for validation, {images} photos",
        f"- skipped: {report.skipped.bad_rows} bad rows, {report.skipped.no_text} without text, "
        f"{report.skipped.no_images} without a usable photo, {report.skipped.bad_images} unreadable photos", "",
        "## Validation (held-out products)", "",
        "| epoch | loss | text→photo R@1 | text→photo R@10 | photo→photo R@10 |", "|---|---|---|---|---|",
    ]
    lines += [f"| {m.epoch} | {m.loss:.3f} | {_pct(m.text_r1)} | {_pct(m.text_r10)} | {_pct(m.image_r10)} |"
              for m in report.metrics]
    lines += ["", "## Configuration", "", "```json", json.dumps(card["config"], indent=2),
              json.dumps(model_cfg, indent=2), "```", ""]
    (out / CARD_MD).write_text("\n".join(lines), encoding="utf-8")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def tqdm_progress(**bar_options: Any) -> Callable[[TrainEvent], None]:
    """A ``progress`` callback drawing a tqdm bar with the loss, and one line of validation per epoch."""
    from tqdm import tqdm

    bar = None

    def report(event: TrainEvent) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=event.total_steps, unit="step", **bar_options)
        if event.kind == "step":
            bar.update(1)
            bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.loss:.3f}")
        elif event.metrics is not None:
            m = event.metrics
            bar.write(f"epoch {m.epoch}/{event.epochs}: loss {m.loss:.3f}, text→product R@1 {_pct(m.text_r1)} "
                      f"R@10 {_pct(m.text_r10)}, photo→product R@10 {_pct(m.image_r10)} ({m.seconds:.0f}s)")
            if event.epoch == event.epochs:
                bar.close()

    return report
