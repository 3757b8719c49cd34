"""`vitrina info`, `check`, `repair`, `delete`, `optimize` and `migrate`: look after an index folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


from vitrina.options import INDEX_OPTION, domain_errors
from vitrina.output import describe_vectors, human_size


@click.command("info")
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
        db = sum(p.stat().st_size for p in index_dir.glob("vitrina.db*"))
        vectors = {modality: _modality_info(store, index_dir, modality) for modality in ("text", "image")}
        data: dict[str, Any] = {
            "folder": str(index_dir), "metadata": store.backend.describe(), "model": store.identity.to_json(), "model_spec": store.model_spec,
            "index_type": store.index_type, "max_memory": store.max_memory, "vector_indexes": vectors,
            "counts": store.counts(), "generation": store.commit_info.get("generation"),
            "bytes": {"database": db, **{f"{k}_index": v["bytes"] for k, v in vectors.items()}},
            "filter_fields": ["id", "price", "category", "brand", *store.attribute_fields()],
        }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    counts = data["counts"]
    click.echo(f"index      {index_dir}")
    click.echo(f"metadata   {data['metadata']}")
    click.echo(f"model      {store.identity.describe()}")
    click.echo(f"products   {counts['products']} ({counts['images']} image vectors, {counts['texts']} text vectors)")
    budget = f", memory budget {human_size(store.max_memory)}" if store.max_memory else ""
    click.echo(f"index type {data['index_type']}{budget} (generation {data['generation']})")
    for modality, info in vectors.items():
        click.echo(f"  {modality:<8} {describe_vectors(info)}")
        if len(info["segments"]) > 1 or info["dead"]:
            click.echo(f"           {len(info['segments'])} segments, {info['live']} live and {info['dead']} dead vectors "
                       f"(`vitrina optimize` merges them into one)")
    click.echo("sizes      " + ", ".join(f"{k} {human_size(v)}" for k, v in data["bytes"].items()))
    click.echo("filters    " + ", ".join(data["filter_fields"]))


def _modality_info(store: Any, folder: Path, modality: str) -> dict[str, Any]:
    """One modality's segments (type, vectors, live, bytes, tuning) and the largest one's figures."""
    import numpy as np

    ids, numbers = store.vector_ids(modality)
    live = {int(n): int(c) for n, c in zip(*np.unique(numbers, return_counts=True))} if len(numbers) else {}
    segments = []
    for seg in store.segments(modality):
        path = folder / seg["name"]
        segments.append({"name": seg["name"], "type": seg.get("index_type"), "vectors": seg.get("ntotal"),
                         "live": live.get(int(seg["number"]), 0), "bytes": path.stat().st_size if path.exists() else None,
                         "recall_at_10": seg.get("recall"), "tuning": seg.get("tuning")})
    largest = max(segments, key=lambda s: s["vectors"] or 0) if segments else {}
    sizes = [s["bytes"] for s in segments]
    return {"type": store.factory(modality), "vectors": len(ids), "live": len(ids),
            "dead": sum(s["vectors"] or 0 for s in segments) - len(ids),
            "bytes": None if None in sizes else sum(sizes), "recall_at_10": largest.get("recall_at_10"),
            "tuning": largest.get("tuning"), "tuned_at": largest.get("vectors"), "segments": segments}


@click.command("repair")
@INDEX_OPTION
@domain_errors
def repair_command(index_dir: Path) -> None:
    """Rebuild an index folder's FAISS segments from the vectors stored in its database (one per modality).

    Use it when `vitrina info` or a search reports a missing or torn index file.

    Example:

        vitrina repair --index my-index
    """
    from indexer.store import IndexStore, IndexWriter

    with IndexStore.open(index_dir, writable=True) as store, IndexWriter(store, rebuild=True) as writer:
        info = writer.rebuild_all()
    click.echo(f"rebuilt generation {info.generation}: {info.products} products, {info.images} image vectors")


@click.command("delete")
@click.argument("product_ids", nargs=-1, required=True)
@INDEX_OPTION
@domain_errors
def delete_command(product_ids: tuple[str, ...], index_dir: Path) -> None:
    """Remove products (and their vectors) from an index, in one commit.

    Example:

        vitrina delete --index my-index SKU-1 SKU-2
    """
    from indexer.store import IndexStore, IndexWriter

    with IndexStore.open(index_dir, writable=True) as store:
        missing = sorted(set(product_ids) - set(store.product_pks(product_ids)))
        with IndexWriter(store) as writer:
            removed = writer.delete(product_ids)
            if removed:
                writer.commit()
    click.echo(f"deleted {removed} product(s)" + (f"; not in the index: {', '.join(missing)}" if missing else ""))


@click.command("check")
@INDEX_OPTION
@domain_errors
def check_command(index_dir: Path) -> None:
    """Verify an index folder: every segment file matches its commit record, every live vector is in its segment.

    Exits non-zero, naming the problem and the repair command, when something is off.

    Example:

        vitrina check --index my-index
    """
    from indexer.store import IndexStore

    with IndexStore.open(index_dir) as store:
        summary = store.check()
    click.echo(f"ok: generation {summary['generation']}, {summary['products']} products, "
               f"{summary['image']} image vectors, {summary['text']} text vectors; every segment verified "
               f"({summary['image_segments']} image, {summary['text_segments']} text; "
               f"{summary['image_dead'] + summary['text_dead']} dead vectors awaiting a merge)")


@click.command("optimize")
@INDEX_OPTION
@domain_errors
def optimize_command(index_dir: Path) -> None:
    """Merge each modality's segments into one: dead vectors (deleted or replaced products) are dropped,
    the index type is re-chosen for the merged size and its recall re-tuned.

    Commits merge small segments on their own (tiered, bounded work per commit); run this after a large
    change, or at a quiet hour.  Readers go on answering from the last commit meanwhile.

    Example:

        vitrina optimize --index my-index
    """
    from indexer.store import IndexStore, IndexWriter

    with IndexStore.open(index_dir, writable=True) as store, IndexWriter(store) as writer:
        info = writer.optimize()
    merged = ", ".join(f"{m} {n} vectors" for m, n in sorted(writer.merged.items())) or "nothing to merge"
    click.echo(f"generation {info.generation}: merged {merged}")


@click.command("migrate")
@click.option("--from", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Index folder whose metadata (its vitrina.db) moves into PostgreSQL.")
@click.option("--db", "database", required=True, envvar="VITRINA_DB", metavar="URL",
              help="An empty PostgreSQL database: postgresql+psycopg://USER@HOST/DATABASE (default: $VITRINA_DB).")
@domain_errors
def migrate_command(index_dir: Path, database: str) -> None:
    """Copy an index's metadata from its SQLite file into a PostgreSQL database.

    Every row keeps its id (the FAISS segment files stay as they are, in the folder), in one
    transaction checked table by table.  Afterwards the folder names the database (database.json,
    without the password) and every command finds it there; the SQLite file is kept as
    vitrina.db.migrated.  Several `vitrina serve` replicas can then share the index: the folder on
    shared storage, the metadata in PostgreSQL.

    Example:

        vitrina migrate --from my-index --db postgresql+psycopg://vitrina@db.internal/shop
    """
    from indexer.store.migrate import migrate_to_postgres

    report = migrate_to_postgres(index_dir, database)
    copied = ", ".join(f"{n} {t}" for t, n in report["tables"].items())
    click.echo(f"migrated {index_dir} into {report['database']} in {report['seconds']:.1f}s: {copied}")


def register(cli: click.Group) -> None:
    cli.add_command(info_command)
    cli.add_command(repair_command)
    cli.add_command(delete_command)
    cli.add_command(check_command)
    cli.add_command(optimize_command)
    cli.add_command(migrate_command)
