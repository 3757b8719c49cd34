"""``vitrina train-composer``: train the photo + words combiner of an index from its own catalog."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vitrina.options import INDEX_OPTION, domain_errors


def register(cli: click.Group) -> None:
    cli.add_command(train_composer_command)


@click.command("train-composer")
@INDEX_OPTION
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Passes of drawn pairs.")
@click.option("--pairs", type=click.IntRange(min=1), default=8000, show_default=True,
              help="Pairs drawn per epoch (photo of A + B's value of one field -> B, A and B of one kind).")
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True, help="Width of the hidden layer.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the draws and weights.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads (default: torch's choice).")
@click.option("--force", is_flag=True, help="Store the combiner even when it does not beat the plain sum on held-out pairs.")
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
@domain_errors
def train_composer_command(index_dir: Path, epochs: int, pairs: int, hidden: int, seed: int, threads: int | None,
                           force: bool, as_json: bool) -> None:
    """Train the learned photo + words combiner ("this but in red") from the index's own catalog.

    Products of one kind (the category) that differ in one other field make the training pairs: a photo
    of A plus the words naming B's value should find B. It is stored in INDEX/composer/ only when it beats
    the plain normalised sum of the two vectors on held-out products (or with --force), and then used by
    every search with a photo and words (without it: SearchEngine.open(..., compose=False)).

    Example:

        vitrina train-composer --index my-index --epochs 30
    """
    from indexer.config import ModelConfig
    from indexer.encoders.loading import load_encoder
    from indexer.store.reader import IndexStore
    from search.composer import save_composer
    from search.composer_train import ComposerConfig, train_composer

    config = ComposerConfig(epochs=epochs, pairs=pairs, hidden=hidden, seed=seed, threads=threads)
    with IndexStore.open(index_dir) as store:
        spec = store.model_spec
        encoder = load_encoder(ModelConfig(name=spec.get("name"), pretrained=spec.get("pretrained"), threads=threads))
        composer, report = train_composer(
            store, encoder, config=config,
            on_epoch=None if as_json else lambda epoch, loss: click.echo(f"epoch {epoch}/{epochs}: loss {loss:.3f}", err=True))
        folder = save_composer(composer, store.folder) if report.better or force else None
    if as_json:
        click.echo(json.dumps({**report.to_json(), "saved": None if folder is None else str(folder)}, indent=2))
        return
    click.echo(f"{report.pairs} pairs over {', '.join(report.fields)} (kind: {report.kind_field}), {report.seconds:.0f} s")
    click.echo(f"held-out: the best match is of the photo's kind with the named value in {report.val_accuracy} "
               f"of the queries (normalised photo + words: {report.baseline_accuracy})")
    click.echo(f"saved to {folder}" if folder else "not saved: it does not beat the plain sum (--force stores it anyway)")
