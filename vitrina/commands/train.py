"""``vitrina train``: contrastive training / fine-tuning of an open_clip model on a catalog."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from indexer.errors import VitrinaError

if TYPE_CHECKING:
    from indexer.train.run import TrainConfig


def register(cli: click.Group) -> None:
    cli.add_command(train_command)


def _defaults() -> TrainConfig:
    from indexer.train.run import TrainConfig

    return TrainConfig()


@click.command("train")
@click.option("--catalog", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Catalog (CSV or JSONL) whose photos and texts are the training pairs.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (open_clip config + weights + model card); load it with --model DIR.")
@click.option("--config", "model", default="tiny", show_default=True,
              help="Architecture: 'tiny' (vitrina's small config, from scratch) or an open_clip name (ViT-B-32...).")
@click.option("--init", help="Start from: a pretrained tag, a checkpoint file or a model folder (fine-tuning).")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the catalog [default: the recipe's].")
@click.option("--batch-size", type=click.IntRange(min=2), help="Pairs per contrastive batch [default: the recipe's].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate [default: 1e-3 from scratch, 1e-5 fine-tuning].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed: same seed and threads, same weights.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), help="Products held out for per-epoch validation recall.")
@click.option("--image-pairs", type=click.FloatRange(min=0), help="Weight of the photo-to-photo loss (0: image-text only).")
@click.option("--attribute-loss", type=click.FloatRange(min=0),
              help="Weight of classifying photos and texts against the catalog's attribute names (0: off).")
@click.option("--hard-groups", type=click.IntRange(min=0),
              help="Mix batches from groups of this many look-alike products after epoch 1 (0: random batches).")
@click.option("--max-products", type=click.IntRange(min=2), help="Train on the first N products only.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads.")
@click.option("--augment/--no-augment", default=None, help="Photo augmentation and text variants [default: on].")
@click.option("--half/--no-half", default=None, help="Store fp16 weights [default: on].")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="AdamW weight decay.")
@click.option("--warmup", type=click.FloatRange(0, 1, max_open=True), help="Fraction of steps with linear warm-up.")
def train_command(catalog: Path, out_dir: Path, model: str, init: str | None, **options: Any) -> None:
    """Train (or fine-tune) a CLIP model on a catalog's photo/text pairs.

    Uses open_clip's model classes and its contrastive loss (ClipLoss), with photo
    augmentation; prints the loss and a validation recall per epoch; deterministic
    for a given seed. The output folder loads with `--model DIR` everywhere.

    Example (the bundled demo model):

        vitrina demo-catalog --out demo-train --products 2000 --seed 7
        vitrina train --catalog demo-train/catalog.jsonl --out data/demo-model --seed 0 --threads 2
    """
    from indexer.train.run import TrainConfig, train_model, tqdm_progress

    given = {k: v for k, v in options.items() if v is not None}
    try:
        config = TrainConfig(model=model, init=init, **given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        report = train_model(catalog, out_dir, config=config, progress=tqdm_progress(file=sys.stderr, dynamic_ncols=True))
    except VitrinaError as exc:
        raise click.ClickException(str(exc)) from None
    final = report.final
    click.echo(f"trained on {report.products} products ({report.val_products} held out) in {report.seconds / 60:.1f} min, "
               f"{report.steps} steps -> {report.out_dir}")
    if final is not None and final.text_r10 is not None:
        click.echo(f"validation: text→product R@1 {final.text_r1:.3f}, R@10 {final.text_r10:.3f}; "
                   f"photo→product R@10 {final.image_r10:.3f}")
    click.echo(f"reproduce: {report.command}")
