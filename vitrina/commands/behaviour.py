"""Learning from the shop's search log: ``vitrina judgments --from-log`` and ``vitrina eval --from-log``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vitrina.options import DB_OPTION, domain_errors

if TYPE_CHECKING:
    from search import SearchEngine

    _FloatParamType = click.ParamType[float]
    _F = TypeVar("_F", bound=Callable[..., Any])
else:  # click < 8.4: ParamType is not generic at runtime
    _FloatParamType = click.ParamType


def register(cli: click.Group) -> None:
    cli.add_command(judgments_command)


class DateParam(_FloatParamType):
    """An ISO date or datetime (UTC unless it names a zone) or epoch seconds, as epoch seconds."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from search.behaviour.judgments_from_log import parse_when

        try:
            return parse_when(value)
        except (ValueError, OverflowError, OSError) as exc:
            self.fail(str(exc), param, ctx)


DATE = DateParam()


def from_log_option(help_text: str, *, required: bool) -> Callable[[_F], _F]:
    """``--from-log [DIR|URL]``: a log folder, a PostgreSQL URL, or alone the index's own log (see ``log_location``)."""
    return click.option("--from-log", "from_log", is_flag=False, flag_value="", default=None, required=required,
                        metavar="[DIR|URL]", help=help_text)


def log_location(given: str, index_dir: Path | None, database: str | None) -> str:
    """``--log`` / ``--from-log`` as a location: a PostgreSQL URL, a folder, or (given alone, "") the log kept
    with the index: its PostgreSQL database when its metadata lives there, else ``INDEX/search-log``."""
    from search.behaviour.log import index_log_location

    if given:
        return given
    if index_dir is None:
        raise click.UsageError("--from-log without a location reads the index's own log: give --index DIR (or "
                               "$VITRINA_INDEX), or name the log: --from-log DIR|URL")
    return index_log_location(index_dir.resolve(), database)


def check_window(before: float | None, after: float | None) -> None:
    if before is not None and after is not None and after >= before:
        raise click.BadParameter("--after must be earlier than --before", param_hint="--after")


def _window(before: float | None, after: float | None) -> str:
    from datetime import datetime, timezone

    def day(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")

    parts = [f"from {day(after)}"] if after is not None else []
    return " ".join(parts + ([f"before {day(before)}"] if before is not None else []))


@click.command("judgments")
@from_log_option("The search log `vitrina serve --log` wrote: a folder (SQLite files) or a PostgreSQL URL; alone, the "
                 "log of --index (its PostgreSQL database when its metadata lives there, else INDEX/search-log).  "
                 "Example: --from-log shop-log", required=True)
@click.option("--index", "index_dir", envvar="VITRINA_INDEX", type=click.Path(path_type=Path),
              help="With --from-log alone: the index whose log to read (default: $VITRINA_INDEX).")
@DB_OPTION
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Judgments file to write (JSON lines).  Example: --out judgments-log.jsonl")
@click.option("--labels", type=click.Choice(["rate", "event"]), default="rate", show_default=True,
              help="rate: click-through rate over the examination the product got (label 0-3); event: the strongest "
                   "event (click 1, add to cart 2, purchase 3) with inverse-propensity weights.")
@click.option("--no-bias-correction", is_flag=True,
              help="rate: clicks over impressions; event: every label weighs 1 (no inverse-propensity weights).")
@click.option("--before", type=DATE, help="Only searches made before this (ISO date/datetime, UTC, or epoch seconds).")
@click.option("--after", type=DATE, help="Only searches made at or after this.  Example: --after 2024-06-01")
@click.option("--min-impressions", default=1, show_default=True, type=click.IntRange(min=1),
              help="Leave out (query, product) pairs shown fewer times.")
@click.option("--max-weight", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="Clip inverse-propensity weights at this.")
@click.option("--product-terms", is_flag=True, help="Also judge queries with product terms (\"more like this\").")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@domain_errors
def judgments_command(from_log: str, index_dir: Path | None, database: str | None, out_file: Path, labels: str, no_bias_correction: bool, before: float | None,
                      after: float | None, min_impressions: int, max_weight: float, product_terms: bool,
                      as_json: bool) -> None:
    """Write judgments from the shop's search log: what shoppers clicked, carted and bought.

    One row per (query, shown product). A position-based click model fitted to the log by EM says
    how often shoppers look at each position. Default (--labels rate): the label grows with the
    product's click-through rate corrected for where it was shown, searches where a shopper acted
    on it over the examination it got (ceil(3 x rate), 0 when never acted on). --labels event: the
    strongest event (click 1, add to cart 2, purchase 3), weighted by 1 / the examination
    probability of the position it happened at. Photo queries (logged only as hashes) are skipped.
    Train with `vitrina train-reranker --judgments FILE`.

    Example:

        vitrina judgments --from-log shop-log --before 2024-06-01 --out log.jsonl

        vitrina judgments --index my-index --from-log --out log.jsonl   # the log kept with the index
    """
    from search.behaviour.judgments_from_log import collect_judgments, write_judgments

    check_window(before, after)
    log_dir = log_location(from_log, index_dir, database)
    found = collect_judgments(log_dir, correct_bias=not no_bias_correction, before=before, after=after,
                              min_impressions=min_impressions, max_weight=max_weight, product_terms=product_terms,
                              labels=labels)
    if not found.rows:
        within = f" {_window(before, after)}" if before is not None or after is not None else ""
        raise click.ClickException(f"{log_dir}: no judged queries{within} ({found.in_window} searches, "
                                   f"{found.replayable} replayable); nothing written")
    write_judgments(found.rows, out_file)
    if as_json:
        click.echo(json.dumps({"out": str(out_file), **found.to_json()}, indent=2))
        return
    skipped = ", ".join(f"{n} {why}" for why, n in found.skipped.items() if n) or "none"
    click.echo(f"searches: {found.searches} in the log, {found.in_window} in the window, {found.replayable} replayable "
               f"(skipped: {skipped})")
    orphans = f" ({found.orphan_events} for searches not in the log)" if found.orphan_events else ""
    click.echo(f"events: {found.events}{orphans}")
    click.echo(f"judged: {len(found.rows)} pairs over {found.queries} queries; positives: "
               + ", ".join(f"{kind} {n}" for kind, n in found.positives.items()))
    theta = " ".join(f"{t:.2f}" for t in found.theta[:20]) + (" ..." if len(found.theta) > 20 else "")
    correction = f"weights 1/θ clipped at {max_weight:g}" if not no_bias_correction else "not applied"
    click.echo(f"position bias θ (position 1 = 1): {theta}; {correction}")
    click.echo(f"-> {out_file}")


def replay_eval(engine: SearchEngine, log_dir: str, *, before: float | None, after: float | None, ks: tuple[int, ...],
                rerank: bool, index_dir: Path, as_json: bool) -> None:
    """``vitrina eval --from-log``: replay the logged queries on ``engine`` and print the report."""
    from tqdm import tqdm

    from search.behaviour.replay import replay_log

    check_window(before, after)
    with tqdm(desc="replaying", unit=" searches", file=sys.stderr, disable=None) as bar:
        report = replay_log(engine, log_dir, before=before, after=after, ks=tuple(sorted(set(ks))) or (10,),
                            rerank=rerank, progress=bar.update)
    if not report.replayed:
        raise click.ClickException(f"{log_dir}: no logged search with events could be replayed "
                                   f"({report.in_window} searches in the window, {report.with_events} with events)")
    if as_json:
        click.echo(json.dumps({"index": str(index_dir), "log": str(log_dir), **report.to_json()}, indent=2))
        return
    skipped = ", ".join(f"{n} {why}" for why, n in report.skipped.items() if n) or "none"
    system = "fusion + classifier" if rerank else "fusion (no re-ranker)"
    click.echo(f"replayed {report.replayed} of {report.with_events} searches with events ({report.queries} distinct "
               f"queries; skipped: {skipped}) on {index_dir}, {system}")
    if report.gone_products:
        click.echo(f"{report.gone_products} chosen products are no longer in the index (left out)")
    names = ["MRR", *report.ndcg]
    now = [report.mrr, *report.ndcg.values()]
    then = [report.logged["mrr"], *(report.logged[n] for n in report.ndcg)]
    width = max(len(n) for n in names)
    click.echo("  ".join(["ranking".ljust(12), *(n.rjust(width) for n in names)]))
    click.echo("  ".join(["today".ljust(12), *(f"{v:.3f}".rjust(width) for v in now)]))
    click.echo("  ".join(["as logged".ljust(12), *(f"{v:.3f}".rjust(width) for v in then)]))
