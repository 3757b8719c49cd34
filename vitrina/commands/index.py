"""`vitrina index`: build or update an index from a catalog, with a report of every row."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from indexer.config import DEFAULT_INDEX_TYPE, RUNTIMES, FetchPolicy, IndexConfig, ModelConfig

from vitrina.options import DB_OPTION, INDEX_OPTION, ByteSize, domain_errors, model_options
from vitrina.output import Progress, count_catalog_rows

if TYPE_CHECKING:
    from indexer.distributed import RayOptions
    from indexer.pipeline import IndexReport
    from indexer.vectors_file import VectorsFile


@click.command("index")
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@INDEX_OPTION
@DB_OPTION
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
@click.option("--vectors", "vectors_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Precomputed vectors: a .npz with arrays ids (strings), text and/or image (floats, shape (n, d), d the "
                   "model's). A listed product takes its text vector from text (else its text is encoded) and one image "
                   "vector from image for its first image (none of its images is read). Only .npz: Parquet needs pyarrow, "
                   "which is not installed.")
@click.option("--report", "report_file", type=click.Path(path_type=Path), help="Also write the run report as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a summary.")
@click.option("--profile", is_flag=True, help="Print the time spent per stage (read, decode, text, image, store) at the end.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
              help="What runs the image tower: eager torch, ONNX Runtime (exported once and cached in "
                   "~/.cache/vitrina/onnx; same embeddings) or ONNX Runtime with int8 weights (faster, cosine ~0.995); "
                   "the ONNX ones need pip install 'vitrina[onnx]', else torch is used.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[auto|ADDRESS]",
              help="Embed on Ray (pip install 'vitrina[ray]'): the catalog is checked here, then a pool of actors (one "
                   "model each) reads, decodes and embeds its products and this process stores what changed (same index, "
                   "report and row numbers as without --ray). 'auto' (what --ray alone means) starts a Ray on this "
                   "machine; an ADDRESS (ray://head:10001, head:6379) joins a running cluster whose workers have vitrina "
                   "installed. Put it after the catalog, or write --ray=auto.")
@click.option("--actors", type=click.IntRange(min=1), help="With --ray: embedding actors, one CPU and one model each "
              "[default: the cluster's CPUs - 1]. At most CPUs - 1: one CPU stays free for Ray Data, whose pool hangs "
              "when the actors take every CPU.")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --ray: GPUs each actor embeds on (0.5 lets two actors share one); 0 embeds on CPUs. "
                   "Actors ignore --device and --threads: one torch thread each, on their GPU when they have one.")
@domain_errors
def index_command(catalog: Path, index_dir: Path, database: str | None, model: str | None, pretrained: str | None, threads: int | None,
                  device: str, batch_size: int, index_type: str, max_memory: int | None, commit_every: int, delete_missing: bool, allow_outside_root: bool,
                  allow_networks: tuple[str, ...], report_file: Path | None, as_json: bool, profile: bool, runtime: str,
                  vectors_file: Path | None, ray_address: str | None, actors: int | None, gpus_per_actor: float) -> None:
    """Index a product catalog (CSV or JSONL) into an index folder.

    Incremental: new products are added, changed ones (text or image bytes) re-embedded,
    unchanged ones skipped. A killed run continues from its last commit when run again.
    Bad rows and bad images are reported with their row numbers and never stop the run.

    Examples:

        vitrina index catalog.jsonl --index my-index --model ViT-B-32 --pretrained laion2b_s34b_b79k

        vitrina index catalog.jsonl --index my-index --vectors vectors.npz

        vitrina index catalog.jsonl --index my-index --ray auto --actors 3

        vitrina index catalog.jsonl --index my-index --db postgresql+psycopg://vitrina@db/shop
    """
    # Everything that can be refused without the model is checked first: a refusal takes a second, not a model load.
    try:
        fetch = FetchPolicy(allow_networks=allow_networks)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-network") from None
    ray = ray_options(ray_address, actors, gpus_per_actor, vectors=vectors_file is not None)
    check_catalog(catalog, allow_outside_root=allow_outside_root)
    vectors = check_vectors(vectors_file, index_dir, database) if vectors_file else None
    model_config = ModelConfig(name=model, pretrained=pretrained, threads=threads, runtime=runtime, device=device)
    config = IndexConfig(index_type=index_type, max_memory=max_memory, batch_size=batch_size, commit_every=commit_every,
                         allow_outside_root=allow_outside_root, fetch=fetch, database=database)
    new_folder = not index_dir.exists()
    try:
        if ray is not None:
            report = _build_ray(catalog, index_dir, model_config, config, delete_missing=delete_missing, quiet=as_json, ray=ray)
        else:
            report = _build(catalog, index_dir, model_config, config, delete_missing=delete_missing, quiet=as_json, vectors=vectors)
    except BaseException:
        if new_folder:
            remove_if_empty(index_dir)
        raise
    kept = report.indexed + report.updated + report.unchanged
    if not kept and new_folder:
        remove_if_empty(index_dir)
    data = report.to_json()
    if report_file:
        report_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        if not kept:
            raise click.ClickException(nothing_indexed(report.rows, report.problems))
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
    if not kept:
        raise click.ClickException(nothing_indexed(report.rows, report.problems))


def _build(catalog: Path, index_dir: Path, model_config: ModelConfig, config: IndexConfig, *, delete_missing: bool,
           quiet: bool, vectors: VectorsFile | None = None) -> IndexReport:
    from indexer.encoders.loading import load_encoder
    from indexer.pipeline import build_index
    from indexer.stages import StageTimes

    encoder = load_encoder(model_config, batch_size=config.batch_size)
    if encoder.runtime != model_config.runtime:
        from indexer.encoders.onnx import onnx_available

        click.echo(f"--runtime {model_config.runtime}: {onnx_available()}; using torch", err=True)
    spec = {"name": encoder.identity.name, "pretrained": model_config.pretrained}
    stages = StageTimes()
    with Progress("indexing", total=count_catalog_rows(catalog), quiet=quiet, stage=stages.bottleneck) as progress:
        return build_index(catalog, index_dir, encoder=encoder, config=config, model_spec=spec, progress=progress.update,
                           delete_missing=delete_missing, stages=stages, vectors=vectors)


def ray_options(address: str | None, actors: int | None, gpus_per_actor: float, *, vectors: bool) -> RayOptions | None:
    """The --ray options checked (Ray importable, no --vectors), or None without --ray; refused as usage errors."""
    from indexer.distributed import RayNotInstalledError, RayOptions, import_ray

    if address is None:
        if actors is not None or gpus_per_actor:
            raise click.UsageError("--actors and --gpus-per-actor need --ray")
        return None
    if vectors:
        raise click.UsageError("--vectors cannot be combined with --ray (precomputed vectors leave little to embed)")
    try:
        import_ray()
    except RayNotInstalledError as exc:
        raise click.UsageError(str(exc)) from None
    return RayOptions(address=address.strip() or "auto", actors=actors, gpus_per_actor=gpus_per_actor)


def _build_ray(catalog: Path, index_dir: Path, model_config: ModelConfig, config: IndexConfig, *, delete_missing: bool,
               quiet: bool, ray: RayOptions) -> IndexReport:
    from indexer.distributed import ActorsError
    from indexer.distributed.ray_embedding import build_index_ray
    from indexer.encoders.loading import load_encoder
    from indexer.stages import StageTimes

    # loaded here once (on the CPU) to fail fast on a bad model and to know its identity; the actors load their own
    encoder = load_encoder(replace(model_config, device="cpu"), batch_size=1)
    if encoder.runtime != model_config.runtime:
        from indexer.encoders.onnx import onnx_available

        click.echo(f"--runtime {model_config.runtime}: {onnx_available()}; using torch", err=True)
    identity = encoder.identity
    del encoder
    spec = {"name": identity.name, "pretrained": model_config.pretrained}
    stages = StageTimes()
    with Progress("indexing", total=count_catalog_rows(catalog), quiet=quiet, stage=stages.bottleneck) as progress:
        try:
            return build_index_ray(catalog, index_dir, model=model_config, identity=identity, ray=ray, config=config,
                                   model_spec=spec, progress=progress.update, delete_missing=delete_missing, stages=stages)
        except ActorsError as exc:
            raise click.BadParameter(str(exc), param_hint="--actors/--gpus-per-actor") from None


def check_catalog(catalog: Path, *, allow_outside_root: bool = False) -> None:
    """Refuse, before any model loads, a catalog of an unknown format, with a bad header, or without one valid row.

    Reads up to its first valid product (a valid catalog: one row).
    """
    from indexer.catalog import RowError, catalog_format, iter_products

    catalog_format(catalog)
    problems: list[RowError] = []
    for _ in iter_products(catalog, on_error=problems.append, allow_outside_root=allow_outside_root):
        return
    raise click.ClickException(nothing_indexed(len({p.row for p in problems}), [p for p in problems if p.fatal], what=str(catalog)))


def check_vectors(path: Path, index_dir: Path, database: str | None = None) -> VectorsFile:
    """Read and check a vectors file before any model loads (against an existing index's dimension too)."""
    from indexer.errors import VitrinaError
    from indexer.store.reader import IndexStore
    from indexer.vectors_file import read_vectors_file

    vectors = read_vectors_file(path)
    try:
        with IndexStore.open(index_dir, database=database) as store:
            dim = store.identity.dim
    except VitrinaError:  # no index yet: the model's dimension is checked once it loads
        return vectors
    vectors.check_dim(dim, model=f"the model of {index_dir}")
    return vectors


def nothing_indexed(rows: int, problems: Sequence[object], *, what: str = "nothing indexed") -> str:
    """Why a run indexed nothing: an empty catalog, or the first reasons its rows were refused."""
    if not rows:
        return f"{what}: the catalog has no rows"
    first = "; ".join(str(p) for p in problems[:3])
    return f"{what}: none of its {rows} row(s) could be indexed" + (f" ({first}{'; ...' if len(problems) > 3 else ''})" if first else "")


def remove_if_empty(index_dir: Path) -> None:
    """Remove an index folder this run created when it holds no committed product (a failed first run)."""
    from indexer.errors import VitrinaError
    from indexer.store.reader import IndexStore

    try:
        with IndexStore.open(index_dir) as store:
            if store.counts()["products"]:
                return
    except VitrinaError:
        pass
    except Exception:  # an unreadable half-made database: still ours to remove
        pass
    shutil.rmtree(index_dir, ignore_errors=True)


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


def register(cli: click.Group) -> None:
    cli.add_command(index_command)
