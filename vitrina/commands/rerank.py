"""Commands around the fusion classifier: ``train-reranker`` and ``eval``."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from indexer.config import ModelConfig

from vitrina.commands.behaviour import DATE, from_log_option, log_location, replay_eval
from vitrina.options import DB_OPTION, domain_errors

if TYPE_CHECKING:
    from search import SearchEngine
    from search.rerank.model import EpochReport

_F = TypeVar("_F", bound=Callable[..., Any])

_SYSTEM_LABELS = {"text": "text vector", "image": "image vector", "lexical": "lexical (BM25)", "fusion": "weighted sum",
                  "fusion+rerank": "fusion + classifier"}


def register(cli: click.Group) -> None:
    cli.add_command(train_reranker_command)
    cli.add_command(eval_command)


def _common(func: _F) -> _F:
    func = click.option("--pretrained", help="Pretrained tag or checkpoint, when --model is given.")(func)
    func = click.option("--model", help="Query model (default: the one the index was built with).")(func)
    func = DB_OPTION(func)
    func = click.option("--index", "index_dir", envvar="VITRINA_INDEX", required=True, type=click.Path(path_type=Path),
                        help="Index folder (default: $VITRINA_INDEX).")(func)
    return func


def _open_engine(index_dir: Path, model: str | None, pretrained: str | None, database: str | None) -> SearchEngine:
    """The index's engine without its stored classifier (callers decide whether to load it)."""
    from search import SearchEngine

    kwargs: dict[str, Any] = {"model": ModelConfig(name=model, pretrained=pretrained) if model else None}
    if "rerank" in inspect.signature(SearchEngine.open).parameters:
        kwargs["rerank"] = False
    engine = SearchEngine.open(index_dir, database=database, **kwargs)
    engine.reranker = None
    return engine


def _judgments(*, required: bool, help_text: str) -> Callable[[_F], _F]:
    return click.option("--judgments", "judgments_file", required=required,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path), help=help_text)


@click.command("train-reranker")
@_common
@_judgments(required=False, help_text="Judgments file (JSONL or CSV): query text and/or image, product id, graded label. "
            "Without it the classifier trains on pseudo-queries drawn from the catalog; when given, these real "
            "judgments take precedence.  Example: --judgments judgments-train.jsonl")
@click.option("--pseudo-queries", "pseudo_count", type=click.IntRange(min=0),
              help="Pseudo-queries drawn from the catalog (titles, model codes, field values, photos, photo + a changed field), "
                   "graded kind first [default: 1500 without --judgments, 0 with it; with it they are added, and a "
                   "judged query wins over a pseudo-query asking the same].  Example: --pseudo-queries 3000")
@click.option("--arch", type=click.Choice(["concat", "gated"]), default="concat", show_default=True,
              help="concat: features → MLP; gated: per-query attention over the modality scores.")
@click.option("--objective", type=click.Choice(["pairwise", "pointwise"]), default="pairwise", show_default=True,
              help="pairwise: RankNet over candidate pairs, weighted by their gain difference; "
                   "pointwise: cross-entropy on label / max label.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1),
              help="Passes over the training queries (the best on the validation queries is kept).")
@click.option("--hidden", default=32, show_default=True, type=click.IntRange(min=0), help="Hidden units (0: linear concat model).")
@click.option("--lr", default=0.01, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Learning rate.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the pseudo-queries, the split, the init and the order.  Example: --seed 1")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Share of the training queries that picks the best epoch.")
@click.option("--depth", type=click.IntRange(min=2), help="Candidates re-ranked per query [default: the search config's rerank_depth].")
@click.option("--unjudged", type=click.Choice(["zero", "skip"]), default="zero", show_default=True,
              help="Candidates the judgments do not mention: label 0, or left out of the loss.")
@click.option("--id-queries", default=100, show_default=True, type=click.IntRange(min=0), help="Exact-id queries added to training.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Torch CPU threads while training.")
@click.option("--business-fields", "business_fields", metavar="FIELD,...",
              help="Business fields (price or numeric attributes) whose per-query z-scores, and whether each is missing, "
                   "become features (stored with the classifier; search.business).  Example: --business-fields popularity,margin")
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
@domain_errors
def train_reranker_command(index_dir: Path, database: str | None, judgments_file: Path | None, pseudo_count: int | None, model: str | None,
                           pretrained: str | None, arch: str, objective: str, epochs: int, hidden: int, lr: float,
                           seed: int, val_fraction: float, depth: int | None, unjudged: str, id_queries: int, threads: int,
                           as_json: bool, business_fields: str | None = None) -> None:
    """Train the fusion classifier that re-ranks an index's top candidates.

    Each judged query is run through the engine; the candidates it would re-rank are
    turned into features and the classifier learns the graded labels. The result is
    stored in INDEX/reranker/ and used by every later search (turn it off with
    --no-rerank or rerank=False).

    Without --judgments it trains on pseudo-queries drawn from the catalog itself
    (product titles, model codes, field values such as "red striped mug", catalog
    photos, a photo plus "in <value>"), every product graded with the kind of product
    first (search.rerank.pseudo). Real judgments, when given, take precedence.

    Example:

        vitrina train-reranker --index my-index --judgments demo/judgments-train.jsonl --arch gated --epochs 40

        vitrina train-reranker --index my-index --pseudo-queries 1500 --seed 0
    """
    from tqdm import tqdm

    from search.evaluation.judgments import read_judgments
    from search.rerank import RerankerConfig, save_reranker
    from search.rerank.pseudo import pseudo_queries
    from search.rerank.train import train_reranker

    config = RerankerConfig(arch=arch, objective=objective, epochs=epochs, hidden=hidden, lr=lr, seed=seed,
                            val_fraction=val_fraction, depth=depth, unjudged=unjudged, id_queries=id_queries, threads=threads)
    if pseudo_count is None:
        pseudo_count = 0 if judgments_file is not None else 1500
    if pseudo_count and unjudged == "skip":
        raise click.UsageError("--unjudged skip needs judgments alone: pseudo-queries grade every product "
                               "(unlisted means label 0); add --pseudo-queries 0")
    queries = read_judgments(judgments_file) if judgments_file is not None else []
    if judgments_file is not None and not queries:
        raise click.ClickException(f"{judgments_file}: no judged queries")

    def on_epoch(report: EpochReport) -> None:
        val = f", val nDCG@10 {report.val_ndcg:.4f}" if report.val_ndcg is not None else ""
        click.echo(f"epoch {report.epoch}/{epochs}: loss {report.loss:.4f}{val} ({report.seconds:.1f}s)", err=True)

    with _open_engine(index_dir, model, pretrained, database) as engine:
        if business_fields:  # the catalog attributes train-reranker uses by default, then the business fields
            from dataclasses import replace

            from search.business import reranker_attributes

            config = replace(config, attributes=reranker_attributes(
                engine.store, [f.strip() for f in business_fields.split(",") if f.strip()], max_attributes=config.max_attributes))
        judged = len(queries)
        if pseudo_count:
            asked = {(q.text, q.image) for q in queries}  # real judgments take precedence
            drawn = pseudo_queries(engine.store, count=pseudo_count, seed=seed)
            queries += [q for q in drawn if (q.text, q.image) not in asked]
        if not queries:
            raise click.ClickException(f"{index_dir}: no queries to train on (an empty catalog?)")
        sources = {"judged": judged, "pseudo": len(queries) - judged}
        with tqdm(total=len(queries) + id_queries, desc="collecting candidates", unit=" queries", file=sys.stderr,
                  disable=None) as bar:
            reranker, report = train_reranker(engine, queries, config=config, on_query=bar.update, on_epoch=on_epoch,
                                              sources=sources)
        folder = save_reranker(reranker, index_dir)
    if as_json:
        click.echo(json.dumps({"reranker": str(folder), "sources": sources, **report.to_json()}, indent=2))
        return
    base = f"{report.baseline_val_ndcg:.4f}" if report.baseline_val_ndcg is not None else "-"
    best = f"{report.best_val_ndcg:.4f}" if report.best_val_ndcg is not None else "-"
    click.echo(f"queries: {sources['judged']} judged, {sources['pseudo']} pseudo", err=True)
    click.echo(f"{arch} classifier: {report.train_queries} training / {report.val_queries} validation queries, best epoch "
               f"{report.best_epoch}: val nDCG@10 {best} (weighted-sum fusion {base}); {report.seconds:.0f}s -> {folder}")


@click.command("eval")
@_common
@_judgments(required=False, help_text="Judgments file (JSONL or CSV): query text and/or image, product id, graded label.  "
            "Example: --judgments judgments-heldout.jsonl")
@from_log_option("Instead of --judgments: replay the search log's queries and rank what shoppers clicked, carted and "
                 "bought (MRR, nDCG@k). A log folder or PostgreSQL URL; alone, the index's own log (its PostgreSQL "
                 "database when its metadata lives there, else INDEX/search-log).  Example: --from-log shop-log "
                 "--after 2024-06-01", required=False)
@click.option("--before", type=DATE, help="With --from-log: only searches made before this (ISO date, UTC, or epoch seconds).")
@click.option("--after", type=DATE, help="With --from-log: only searches made at or after this.")
@click.option("--no-rerank", is_flag=True, help="Leave out the index's classifier (fusion + classifier is not evaluated).")
@click.option("-k", "ks", multiple=True, type=click.IntRange(1, 100),
              help="Recall cut-offs, repeatable [default: 1 10 50]; with --from-log the nDCG cut-offs [default: 10].")
@click.option("--id-queries", default=100, show_default=True, type=click.IntRange(min=0),
              help="Exact-id queries (a product's id; that product is the answer) added as their own group.")
@click.option("--seed", default=1, show_default=True, type=click.IntRange(min=0), help="Which products the id queries ask for.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path), help="Draw recall@k curves per query kind into this PNG.")
@domain_errors
def eval_command(index_dir: Path, database: str | None, judgments_file: Path | None, from_log: str | None, before: float | None,
                 after: float | None, model: str | None, pretrained: str | None, no_rerank: bool,
                 ks: tuple[int, ...], id_queries: int, seed: int, as_json: bool, plot_file: Path | None) -> None:
    """Evaluate search on judged queries: each system, each query kind, latency per stage.

    Systems: text vector only, image vector only, lexical (BM25) only, the weighted-sum
    fusion, and fusion + the index's classifier. Reports Recall@k, nDCG@10, MRR and
    top-1 per query kind (text, photo, text+photo, plus brand, model-number and exact-id
    groups), the median encode / candidates / rerank milliseconds, and the targets.

    With --from-log [DIR|URL] instead of --judgments: replay the logged text queries on the
    index and report where it ranks the products shoppers chose (MRR, nDCG@10 graded by
    click 1 / add to cart 2 / purchase 3), against the order shown at the time.

    Example:

        vitrina eval --index my-index --judgments demo/judgments-heldout.jsonl --plot recall.png

        vitrina eval --index my-index --from-log shop-log --after 2024-06-01 --no-rerank
    """
    from tqdm import tqdm

    from search.evaluation.evaluate import EvalConfig, evaluate
    from search.evaluation.judgments import id_queries as make_id_queries
    from search.evaluation.judgments import read_judgments
    from search.rerank import load_reranker

    if (judgments_file is None) == (from_log is None):
        raise click.UsageError("give --judgments FILE or --from-log [DIR|URL] (one of them)")
    if from_log is None and (before is not None or after is not None):
        raise click.UsageError("--before / --after select logged searches: they go with --from-log")
    if from_log is not None:
        if plot_file:
            raise click.UsageError("--plot draws recall curves of --judgments; it does not go with --from-log")
        log_dir = log_location(from_log, index_dir, database)
        with _open_engine(index_dir, model, pretrained, database) as engine:
            if not no_rerank:
                engine.reranker = load_reranker(engine.store)
            replay_eval(engine, log_dir, before=before, after=after, ks=ks, rerank=not no_rerank, index_dir=index_dir,
                        as_json=as_json)
        return
    assert judgments_file is not None
    try:
        config = EvalConfig(ks=tuple(sorted(set(ks))) or (1, 10, 50))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-k") from None
    queries = read_judgments(judgments_file)
    with _open_engine(index_dir, model, pretrained, database) as engine:
        if not no_rerank:
            engine.reranker = load_reranker(engine.store)
        if id_queries:
            queries += make_id_queries(engine.store.product_ids(), id_queries, seed=seed)
        systems = len([s for s in config.systems if s != "fusion+rerank" or engine.reranker is not None])
        with tqdm(total=systems * len(queries), desc="evaluating", unit=" searches", file=sys.stderr, disable=None) as bar:
            report = evaluate(engine, queries, config=config, progress=bar.update)
    report = {"index": str(index_dir), "judgments": str(judgments_file), "reranker": not no_rerank and "fusion+rerank" in report["systems"],
              **report}
    if plot_file:
        plot_recall(report, plot_file)
        click.echo(f"recall curves: {plot_file}", err=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(format_report(report))


def format_report(report: dict[str, Any]) -> str:
    """Tables per group: one row per system."""
    ks, ndcg = report["ks"], f"ndcg@{report['ndcg_k']}"
    header = ("system", *(f"R@{k}" for k in ks), f"nDCG@{report['ndcg_k']}", "MRR", "top1")
    lines = []
    groups = ["overall", *[g for g in report["queries"] if g != "overall"]]
    for group in groups:
        rows = []
        for system, part in report["systems"].items():
            found = part["overall"] if group == "overall" else part["by_kind"].get(group)
            if not found or not found.get("queries"):
                continue
            rows.append((_SYSTEM_LABELS.get(system, system), *(f"{found[f'recall@{k}']:.3f}" for k in ks),
                         f"{found[ndcg]:.3f}", f"{found['mrr']:.3f}", f"{found['top1']:.3f}"))
        if not rows:
            continue
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append(f"{group} ({report['queries'][group]} queries)")
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
        lines.append("")
    latency = report["latency_ms"]
    lines.append("median latency ms: " + ", ".join(f"{k} {v:.2f}" for k, v in latency.items() if v is not None))
    for check in report["checks"]:
        lines.append(f"{'PASS' if check['passed'] else 'FAIL'}  {check['name']}: {check['value']:.3f} (target {check['target']})")
    return "\n".join(lines)


def plot_recall(report: dict[str, Any], path: Path) -> None:
    """Recall@k curves: one panel per query group, one line per system."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ["overall", *[g for g in report["queries"] if g != "overall"]]
    cols = min(3, len(groups))
    rows = (len(groups) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups):
        for system, part in report["systems"].items():
            found = part["overall"] if group == "overall" else part["by_kind"].get(group)
            if found and found.get("recall_curve"):
                ax.plot(report["curve_ks"], found["recall_curve"], marker=".", label=_SYSTEM_LABELS.get(system, system))
        ax.set_xscale("log")
        ax.set_title(f"{group} ({report['queries'][group]} queries)")
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"vitrina eval: {report.get('judgments', '')}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
