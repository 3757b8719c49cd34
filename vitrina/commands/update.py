"""`vitrina update`: apply a partial feed (some fields of some stored products) to an index."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from indexer.config import FetchPolicy, IndexConfig

from vitrina.options import DB_OPTION, INDEX_OPTION, domain_errors, model_options, query_model
from vitrina.output import Progress, count_catalog_rows

if TYPE_CHECKING:
    from indexer.encoders.base import Encoder
    from indexer.feed import FeedReport


@click.command("update")
@click.argument("feed", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@INDEX_OPTION
@DB_OPTION
@model_options
@click.option("--batch-size", default=IndexConfig().batch_size, show_default=True, type=click.IntRange(min=1),
              help="Feed rows applied per batch.")
@click.option("--commit-every", default=IndexConfig().commit_every, show_default=True, type=click.IntRange(min=0),
              help="Make progress durable and searchable every N changed products (0: only at the end).")
@click.option("--allow-outside-root", is_flag=True, help="Accept local image paths outside the feed's folder.")
@click.option("--allow-network", "allow_networks", multiple=True, metavar="CIDR",
              help="Let image URLs reach this otherwise refused network (e.g. 10.1.0.0/16); repeatable.")
@click.option("--report", "report_file", type=click.Path(path_type=Path), help="Also write the run report as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a summary.")
@domain_errors
def update_command(feed: Path, index_dir: Path, database: str | None, model: str | None, pretrained: str | None, threads: int | None, device: str,
                   batch_size: int, commit_every: int, allow_outside_root: bool, allow_networks: tuple[str, ...],
                   report_file: Path | None, as_json: bool) -> None:
    """Update some fields of stored products from a partial feed (CSV or JSONL).

    Each row names a product already in the index by `id` and carries only the fields to
    change. Price, category, brand and attributes are rewritten in place: no model is
    loaded and no vector is recomputed, so a price or stock feed of any size takes seconds.
    A changed title, description or images re-embeds that product (the index's model is
    loaded only then). Attributes merge per key: `stock` changes `stock` and keeps the
    others; an empty value (an empty CSV cell, JSON null) clears that field or removes that
    attribute. Unknown ids, rows with only an id and bad values are reported with their row
    numbers and change nothing.

    Example (prices.csv holds rows of id,price,stock):

        vitrina update prices.csv --index my-index
    """
    from indexer.feed import apply_feed
    from indexer.store.reader import IndexStore

    try:
        fetch = FetchPolicy(allow_networks=allow_networks)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-network") from None
    config = IndexConfig(batch_size=batch_size, commit_every=commit_every, allow_outside_root=allow_outside_root, fetch=fetch,
                         database=database)

    def encoder_factory() -> Encoder:  # only called when a row changes a title, description or images
        from indexer.encoders.loading import load_encoder

        with IndexStore.open(index_dir, database=database) as store:
            spec = store.model_spec
        return load_encoder(query_model(spec, model=model, pretrained=pretrained, threads=threads, device=device),
                            batch_size=batch_size)

    with Progress("updating", unit="rows", total=count_catalog_rows(feed), quiet=as_json) as progress:
        report = apply_feed(feed, index_dir, encoder_factory=encoder_factory, config=config, progress=progress.update)
    data = report.to_json()
    if report_file:
        report_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(summary(report, index_dir))
        for problem in report.problems[:20]:
            click.echo(f"  {problem}", err=True)
        if len(report.problems) > 20:
            click.echo(f"  ... and {len(report.problems) - 20} more (see --report FILE)", err=True)
    if not report.updated + report.unchanged:
        raise click.ClickException(nothing_updated(report.rows, report.problems))


def summary(report: FeedReport, index_dir: Path) -> str:
    """The one-line account of a run."""
    return (f"{report.updated} updated ({report.fields_only} fields only, {report.reembedded} re-embedded), "
            f"{report.unchanged} unchanged, {report.skipped} skipped, {report.failed} failed of {report.rows} rows; "
            f"{report.seconds:.1f}s -> {index_dir}")


def nothing_updated(rows: int, problems: Sequence[object]) -> str:
    """Why a feed changed nothing: it has no rows, or the first reasons its rows were refused."""
    if not rows:
        return "nothing updated: the feed has no rows"
    first = "; ".join(str(p) for p in problems[:3])
    return f"nothing updated: none of its {rows} row(s) could be applied" + (f" ({first}{'; ...' if len(problems) > 3 else ''})" if first else "")


def register(cli: click.Group) -> None:
    cli.add_command(update_command)
