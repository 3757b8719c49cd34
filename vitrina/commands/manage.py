"""`vitrina info`, `check`, `repair` and `delete`: look after an index folder."""

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
        files = store.commit_info.get("files", {})
        sizes = {name: (index_dir / info["name"]).stat().st_size if (index_dir / info["name"]).exists() else None for name, info in files.items()}
        db = sum(p.stat().st_size for p in index_dir.glob("vitrina.db*"))
        vectors = {
            modality: {"type": store.factory(modality), "vectors": info.get("ntotal"), "bytes": sizes.get(modality),
                       "recall_at_10": info.get("recall"), "tuning": info.get("tuning"), "tuned_at": info.get("tuned_at")}
            for modality, info in files.items()
        }
        data: dict[str, Any] = {
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
    budget = f", memory budget {human_size(store.max_memory)}" if store.max_memory else ""
    click.echo(f"index type {data['index_type']}{budget} (generation {data['generation']})")
    for modality, info in vectors.items():
        click.echo(f"  {modality:<8} {describe_vectors(info)}")
    click.echo("sizes      " + ", ".join(f"{k} {human_size(v)}" for k, v in data["bytes"].items()))
    click.echo("filters    " + ", ".join(data["filter_fields"]))


@click.command("repair")
@INDEX_OPTION
@domain_errors
def repair_command(index_dir: Path) -> None:
    """Rebuild an index folder's FAISS files from the vectors stored in its database.

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


def register(cli: click.Group) -> None:
    cli.add_command(info_command)
    cli.add_command(repair_command)
    cli.add_command(delete_command)
    cli.add_command(check_command)
