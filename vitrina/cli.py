"""The ``vitrina`` command: thin wrappers that parse options, call the library, print.

Library errors (``VitrinaError``) become one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from indexer.config import DEFAULT_INDEX_TYPE, RUNTIMES, IndexConfig, ModelConfig, SearchConfig
from indexer.fetch import FetchPolicy

from .cli_support import ByteSize, domain_errors

INDEX_OPTION = click.option(
    "--index", "index_dir", envvar="VITRINA_INDEX", required=True, type=click.Path(path_type=Path),
    help="Index folder (default: $VITRINA_INDEX).",
)


def model_options(func):
    func = click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads (default: torch's choice).")(func)
    func = click.option("--pretrained", help="Pretrained tag (laion2b_s34b_b79k), a local checkpoint file, or 'random'.")(func)
    func = click.option(
        "--model", help="open_clip model: an architecture (ViT-B-32), hf-hub:ORG/REPO, or a model folder. Default: the bundled demo model."
    )(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vitrina")
def cli() -> None:
    """vitrina: find products by words, by photo, or both.

    Build an index from a catalog with `vitrina index`, then query it with
    `vitrina search` (or from Python: `from search import SearchEngine`).
    """


@cli.command("index")
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@INDEX_OPTION
@model_options
@click.option("--batch-size", default=IndexConfig().batch_size, show_default=True, type=click.IntRange(min=1), help="Products embedded per batch.")
@click.option("--index-type", default=DEFAULT_INDEX_TYPE, show_default=True,
              help="'auto' (exact Flat while small, HNSW32 while it fits --max-memory, IVF-PQ beyond; re-chosen as "
                   "the index grows, search settings tuned to recall@10 >= 0.95) or any FAISS factory string: "
                   "Flat, HNSW32, IVF1024,PQ32np...")
@click.option("--max-memory", type=ByteSize(), help="Memory budget of the vector indexes for --index-type auto "
              "(e.g. 2GB, 512MiB) [default: no limit].")
@click.option("--commit-every", default=IndexConfig().commit_every, show_default=True, type=click.IntRange(min=0),
              help="Make progress durable and searchable every N products (0: only at the end).")
@click.option("--delete-missing", is_flag=True, help="Remove stored products whose id is no longer in the catalog.")
@click.option("--allow-outside-root", is_flag=True, help="Accept local image paths outside the catalog's folder.")
@click.option("--allow-network", "allow_networks", multiple=True, metavar="CIDR",
              help="Let image URLs reach this otherwise refused network (e.g. an intranet image server 10.1.0.0/16); repeatable.")
@click.option("--report", "report_file", type=click.Path(path_type=Path), help="Also write the run report as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a summary.")
@click.option("--profile", is_flag=True, help="Print the time spent per stage (read, decode, text, image, store) at the end.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
              help="What runs the image tower: eager torch, ONNX Runtime (exported once and cached in "
                   "~/.cache/vitrina/onnx; same embeddings) or ONNX Runtime with int8 weights (faster, cosine ~0.995); "
                   "the ONNX ones need pip install 'vitrina[onnx]', else torch is used.")
@domain_errors
def index_command(catalog: Path, index_dir: Path, model: str | None, pretrained: str | None, threads: int | None,
                  batch_size: int, index_type: str, max_memory: int | None, commit_every: int, delete_missing: bool, allow_outside_root: bool,
                  allow_networks: tuple[str, ...], report_file: Path | None, as_json: bool, profile: bool, runtime: str) -> None:
    """Index a product catalog (CSV or JSONL) into an index folder.

    Incremental: new products are added, changed ones (text or image bytes) re-embedded,
    unchanged ones skipped. A killed run continues from its last commit when run again.
    Bad rows and bad images are reported with their row numbers and never stop the run.

    Example:

        vitrina index catalog.jsonl --index my-index --model ViT-B-32 --pretrained laion2b_s34b_b79k
    """
    from tqdm import tqdm

    from indexer.encoder import load_encoder
    from indexer.pipeline import build_index
    from indexer.stages import StageTimes

    model_config = ModelConfig(name=model, pretrained=pretrained, threads=threads, runtime=runtime)
    encoder = load_encoder(model_config, batch_size=batch_size)
    if encoder.runtime != runtime:
        from indexer.onnx_runtime import onnx_available

        click.echo(f"--runtime {runtime}: {onnx_available()}; using torch", err=True)
    try:
        fetch = FetchPolicy(allow_networks=allow_networks)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-network") from None
    config = IndexConfig(index_type=index_type, max_memory=max_memory, batch_size=batch_size, commit_every=commit_every,
                         allow_outside_root=allow_outside_root, fetch=fetch)
    spec = {"name": encoder.identity.name, "pretrained": model_config.pretrained}
    stages = StageTimes()

    with tqdm(desc="indexing", unit=" products", file=sys.stderr, disable=as_json or None) as bar:
        def progress(n: int) -> None:
            slowest = stages.bottleneck()
            if slowest:
                bar.set_postfix_str(f"bottleneck: {slowest}", refresh=False)
            bar.update(n)

        report = build_index(catalog, index_dir, encoder=encoder, config=config, model_spec=spec, progress=progress,
                             delete_missing=delete_missing, stages=stages)
    data = report.to_json()
    if report_file:
        report_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{report.indexed} indexed, {report.updated} updated, {report.unchanged} unchanged, {report.skipped} skipped, "
        f"{report.failed} failed of {report.rows} rows ({report.images} images embedded); {report.deleted} deleted; "
        f"{report.seconds:.1f}s -> {index_dir}"
    )
    if profile:
        click.echo(format_stages(report.stages, products=report.indexed + report.updated, images=report.images))
    for problem in report.problems[:20]:
        click.echo(f"  {problem}", err=True)
    if len(report.problems) > 20:
        click.echo(f"  ... and {len(report.problems) - 20} more (see --report FILE)", err=True)


def format_stages(seconds: dict[str, float], *, products: int, images: int) -> str:
    """The ``--profile`` table: seconds and share of the wall time per stage, and which stage limits the run."""
    from indexer.stages import MAIN_STAGES, WORKER_STAGES

    wall = seconds.get("wall") or sum(seconds.values()) or 1.0
    lines = [f"{'stage':<8} {'thread':<7} {'seconds':>8} {'of wall':>8}"]
    for stage in (*WORKER_STAGES, *MAIN_STAGES, "wait"):
        where = "worker" if stage in WORKER_STAGES else "main"
        lines.append(f"{stage:<8} {where:<7} {seconds.get(stage, 0.0):>8.2f} {seconds.get(stage, 0.0) / wall:>8.0%}")
    rate = f"{images / wall:.1f} images/s, {products / wall:.1f} products/s" if wall else ""
    lines.append(f"{'wall':<8} {'':<7} {wall:>8.2f}   {rate}")
    lines.append("(read and decode run in a worker thread, overlapped with the model; 'wait' is the model idling for them)")
    return "\n".join(lines)


def parse_term(text: str) -> tuple[Any, float]:
    """``KIND:VALUE[=WEIGHT]`` → a term for ``SearchEngine.search(terms=...)``."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("text", "image", "product"):
        raise click.BadParameter(f"{text!r}: expected KIND:VALUE[=WEIGHT] with KIND text, image or product")
    value, weight = rest, 1.0
    head, eq, tail = rest.rpartition("=")
    if eq:
        try:
            weight = float(tail)
            value = head
        except ValueError:
            pass
    if not value:
        raise click.BadParameter(f"{text!r}: empty value")
    if kind == "image":
        return Path(value), weight
    if kind == "product":
        return {"product": value}, weight
    return value, weight


@cli.command("search")
@click.argument("text", required=False)
@INDEX_OPTION
@click.option("--image", "image_path", type=click.Path(path_type=Path), help="A photo to search with (path).")
@click.option("--text-weight", default=1.0, show_default=True, type=float, help="Weight of TEXT in the query.")
@click.option("--image-weight", default=1.0, show_default=True, type=float, help="Weight of --image in the query.")
@click.option("--term", "terms", multiple=True, metavar="KIND:VALUE=WEIGHT",
              help="Extra weighted term, repeatable: text:sleeveless=-0.3, image:photo.jpg=0.5, product:SKU-1=1.")
@click.option("--like", "like", metavar="ID", help="More like this product (the product itself is excluded).")
@click.option("--where", "where", multiple=True, metavar="EXPR",
              help="Filter, repeatable: category=shoes, price<50, brand=A,B, color!=red, or JSON.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of hits.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), help="Skip this many hits (paging).")
@click.option("--image-share", type=click.FloatRange(0, 1), help=f"How much product photos count against product text [default: {SearchConfig().image_share}].")
@click.option("--lexical-weight", type=click.FloatRange(0, 1),
              help=f"How much the BM25 word match adds; 0 turns word search off [default: {SearchConfig().lexical_weight}].")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.option("--sheet", "sheet", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the query and its hits as a contact sheet PNG.")
@click.option("--no-rerank", is_flag=True, help="Rank by the weighted-sum fusion only, without the index's trained re-ranker.")
@domain_errors
def search_command(text: str | None, index_dir: Path, image_path: Path | None, text_weight: float, image_weight: float,
                   terms: tuple[str, ...], like: str | None, where: tuple[str, ...], k: int, offset: int,
                   image_share: float | None, lexical_weight: float | None, model: str | None, pretrained: str | None, threads: int | None, as_json: bool,
                   sheet: Path | None, no_rerank: bool) -> None:
    """Search an index by text, by photo, or both, with weights and filters.

    Examples:

        vitrina search "red striped t-shirt" --index my-index

        vitrina search "but in blue" --image photo.jpg --image-weight 1 --text-weight 0.6 --index my-index

        vitrina search --term "text:red dress=1" --term "text:sleeveless=-0.3" --where "price<50" --index my-index

        vitrina search --like SKU-1 -k 5 --index my-index --json
    """
    from search import SearchEngine
    from search.filters import parse_where

    parsed_terms = [parse_term(t) for t in terms]
    if like:
        parsed_terms.append(({"product": like}, 1.0))
    if not (text or image_path or parsed_terms):
        raise click.UsageError("give TEXT, --image, --term or --like")
    model_config = ModelConfig(name=model, pretrained=pretrained, threads=threads) if model else None
    with SearchEngine.open(index_dir, model=model_config, rerank=not no_rerank) as engine:
        result = engine.search(
            text=text, image=image_path, weights={"text": text_weight, "image": image_weight}, terms=parsed_terms,
            where=parse_where(where), k=k, offset=offset, image_share=image_share, lexical_weight=lexical_weight,
            exclude=[like] if like else (),
        )
    if sheet:
        from vitrina.contact_sheet import render_contact_sheet

        described = [f'"{text}" x{text_weight:g}'] if text else []
        described += [f"photo x{image_weight:g}"] if image_path else []
        described += list(terms) + ([f"like {like}"] if like else [])
        render_contact_sheet([h.to_json() for h in result], sheet, query_text="  ".join(described), query_image=image_path,
                             title=f"vitrina search  ({index_dir})")
        click.echo(f"contact sheet: {sheet}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(format_hits(result.hits, offset=offset))
    click.echo(f"{len(result)} hits from {result.candidates} candidates in {result.timings.get('total', 0):.0f} ms", err=True)


def format_hits(hits, *, offset: int = 0) -> str:
    """A readable table of hits: rank, id, fused/image/text scores, price, title."""
    if not hits:
        return "no hits"
    rows = [("#", "id", "score", "image", "text", "price", "title")]
    for rank, hit in enumerate(hits, start=offset + 1):
        price = hit.product.get("price")
        rows.append((
            str(rank), hit.product_id, f"{hit.score:.3f}", _fmt(hit.scores.get("image")), _fmt(hit.scores.get("text")),
            f"{price:.2f}" if price is not None else "-", (hit.product.get("title") or "")[:60],
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@cli.command("info")
@INDEX_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@domain_errors
def info_command(index_dir: Path, as_json: bool) -> None:
    """Show an index folder's model, counts, index types and sizes.

    Example:

        vitrina info --index my-index
    """
    from indexer.store import IndexStore

    with IndexStore.open(index_dir) as store:
        files = store.commit_info.get("files", {})
        sizes = {name: (index_dir / info["name"]).stat().st_size if (index_dir / info["name"]).exists() else None for name, info in files.items()}
        db = sum(p.stat().st_size for p in index_dir.glob("vitrina.db*"))
        vectors = {
            modality: {"type": store.factory(modality), "vectors": info.get("ntotal"), "bytes": sizes.get(modality),
                       "recall_at_10": info.get("recall"), "tuning": info.get("tuning"), "tuned_at": info.get("tuned_at")}
            for modality, info in files.items()
        }
        data = {
            "folder": str(index_dir), "model": store.identity.to_json(), "model_spec": store.model_spec,
            "index_type": store.index_type, "max_memory": store.max_memory, "vector_indexes": vectors,
            "counts": store.counts(), "generation": store.commit_info.get("generation"),
            "bytes": {"database": db, **{f"{k}_index": v for k, v in sizes.items()}},
            "filter_fields": ["id", "price", "category", "brand", *store.attribute_fields()],
        }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    counts = data["counts"]
    click.echo(f"index      {index_dir}")
    click.echo(f"model      {store.identity.describe()}")
    click.echo(f"products   {counts['products']} ({counts['images']} image vectors, {counts['texts']} text vectors)")
    budget = f", memory budget {_size(store.max_memory)}" if store.max_memory else ""
    click.echo(f"index type {data['index_type']}{budget} (generation {data['generation']})")
    for modality, info in vectors.items():
        click.echo(f"  {modality:<8} {_describe_vectors(info)}")
    click.echo("sizes      " + ", ".join(f"{k} {_size(v)}" for k, v in data["bytes"].items()))
    click.echo("filters    " + ", ".join(data["filter_fields"]))


def _describe_vectors(info: dict[str, Any]) -> str:
    """"HNSW32, 120000 vectors, 250.1 MB, efSearch 64: recall@10 0.962 (measured at 120000 vectors)"."""
    text = f"{info['type']}, {info['vectors']} vectors, {_size(info['bytes'])}"
    tuning = info.get("tuning") or {}
    if info["type"].startswith("HNSW") or ",HNSW" in info["type"]:
        text += f", efSearch {tuning.get('ef_search', 'default')}"
    elif "IVF" in info["type"]:
        text += f", nprobe {tuning.get('nprobe', 'default')}"
    recall = info.get("recall_at_10")
    if recall == 1.0 and not tuning:
        return text + ": exact search"
    if recall is not None:
        text += f": recall@10 {recall:.3f} against exact search (sampled queries, at {info.get('tuned_at')} vectors)"
    return text


def _size(n: int | None) -> str:
    if n is None:
        return "missing"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@cli.command("repair")
@INDEX_OPTION
@domain_errors
def repair_command(index_dir: Path) -> None:
    """Rebuild an index folder's FAISS files from the vectors stored in its database.

    Use it when `vitrina info` or a search reports a missing or torn index file.

    Example:

        vitrina repair --index my-index
    """
    from indexer.store import IndexStore

    with IndexStore.open(index_dir, writable=True) as store, store.writer(rebuild=True) as writer:
        info = writer.rebuild_all()
    click.echo(f"rebuilt generation {info.generation}: {info.products} products, {info.images} image vectors")


@cli.command("delete")
@click.argument("product_ids", nargs=-1, required=True)
@INDEX_OPTION
@domain_errors
def delete_command(product_ids: tuple[str, ...], index_dir: Path) -> None:
    """Remove products (and their vectors) from an index, in one commit.

    Example:

        vitrina delete --index my-index SKU-1 SKU-2
    """
    from indexer.store import IndexStore

    with IndexStore.open(index_dir, writable=True) as store:
        missing = sorted(set(product_ids) - set(store.product_pks(product_ids)))
        with store.writer() as writer:
            removed = writer.delete(product_ids)
            if removed:
                writer.commit()
    click.echo(f"deleted {removed} product(s)" + (f"; not in the index: {', '.join(missing)}" if missing else ""))


@cli.command("check")
@INDEX_OPTION
@domain_errors
def check_command(index_dir: Path) -> None:
    """Verify an index folder: files match the commit, FAISS ids match the database.

    Exits non-zero, naming the problem and the repair command, when something is off.

    Example:

        vitrina check --index my-index
    """
    from indexer.store import IndexStore

    with IndexStore.open(index_dir) as store:
        summary = store.check()
    click.echo(f"ok: generation {summary['generation']}, {summary['products']} products, "
               f"{summary['image']} image vectors, {summary['text']} text vectors")


def _register_more() -> None:
    from vitrina import demo_commands, rerank_commands, serve_command, train_command

    demo_commands.register(cli)
    train_command.register(cli)
    serve_command.register(cli)
    rerank_commands.register(cli)


_register_more()


def main() -> None:
    cli(prog_name="vitrina")


if __name__ == "__main__":
    main()
