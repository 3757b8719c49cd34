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
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from indexer.encoders.base import CONFIG_FILE
from indexer.errors import CatalogError, ModelError
from indexer.encoders.model_folder import WEIGHTS_FILE, save_model_folder
from indexer.train.data import load_train_data, read_products, uint8_transform
from indexer.train.loop import TrainLoop, hard_batch_order
from indexer.train.config import (
    CARD_JSON, CARD_MD, LR_FINETUNE, LR_SCRATCH, MAX_LOGIT_SCALE, MODEL_CONFIG_DIR, TINY_CONFIG_NAME, TINY_MODEL,
    EpochMetrics, TrainConfig, TrainEvent, TrainReport,
)

__all__ = [
    "CARD_JSON", "CARD_MD", "LR_FINETUNE", "LR_SCRATCH", "MAX_LOGIT_SCALE", "MODEL_CONFIG_DIR", "TINY_CONFIG_NAME",
    "TINY_MODEL", "EpochMetrics", "TrainConfig", "TrainEvent", "TrainReport", "hard_batch_order", "reproduce_command",
    "resolve_architecture", "split_products", "tqdm_progress", "train_model", "write_model_card",
]


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

    loop = TrainLoop(model=model, tokenizer=tokenizer, data=data, config=config, mean=mean, std=std)
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
    card: dict[str, Any] = {
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
