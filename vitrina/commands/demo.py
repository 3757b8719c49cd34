"""Commands around the offline demo: ``demo-catalog`` and ``demo``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from indexer.config import IndexConfig, ModelConfig
from indexer.errors import VitrinaError

from vitrina.output import Progress


@dataclass(frozen=True, kw_only=True)
class DemoQuery:
    name: str
    label: str
    search: dict[str, Any]
    query_image: Path | None = None
    expect: str | None = None


def ensure_demo_catalog(folder: Path, *, products: int, seed: int, image_size: int = 224, quiet: bool = False) -> Path:
    """Generate the demo catalog in ``folder`` unless one with the same settings is there."""
    from vitrina.demo.catalog import generate_catalog

    stamp = folder / "demo-catalog.json"
    settings = {"products": products, "seed": seed, "image_size": image_size}
    if stamp.is_file() and json.loads(stamp.read_text()) == settings and (folder / "catalog.jsonl").is_file():
        return folder / "catalog.jsonl"
    with Progress("drawing products", total=products, quiet=quiet) as bar:
        report = generate_catalog(folder, products=products, seed=seed, image_size=image_size, queries=max(40, products // 10),
                                  progress=bar.update)
    stamp.write_text(json.dumps(settings) + "\n")
    return report.catalog


def demo_queries(catalog_dir: Path) -> list[DemoQuery]:
    """A handful of text, photo and combined queries drawn from the generated catalog."""
    rows = [json.loads(line) for line in (catalog_dir / "catalog.jsonl").read_text().splitlines() if line.strip()]
    judgments = [json.loads(line) for line in (catalog_dir / "judgments-heldout.jsonl").read_text().splitlines() if line.strip()]
    first = rows[0]
    photo = next((j for j in judgments if j["kind"] == "photo" and j["label"] == 3), None)
    queries = [
        DemoQuery(name="text", label=f'text: "{first["color"]} {first["pattern"]} {first["category"]}"',
                  search={"text": f'{first["color"]} {first["pattern"]} {first["category"]}'}),
    ]
    if photo:
        image = catalog_dir / photo["image"]
        shown = next(r for r in rows if r["id"] == photo["product_id"])
        colours = sorted({r["color"] for r in rows if r["category"] == shown["category"]} - {shown["color"]}) or ["red"]
        queries += [
            DemoQuery(name="photo", label=f"photo: {photo['image']} (a new photo of {shown['id']}, not indexed)",
                      search={"image": image}, query_image=image, expect=shown["id"]),
            DemoQuery(name="photo-and-text", label=f'photo + text: the same photo "but in {colours[0]}"',
                      search={"text": f"but in {colours[0]}", "image": image}, query_image=image),
        ]
    queries += [
        DemoQuery(name="negative", label=f'weighted terms: "{first["category"]}" x1, "{first["color"]}" x-0.5',
                  search={"terms": [(first["category"], 1.0), (first["color"], -0.5)]}),
        DemoQuery(name="filtered", label=f'filtered: "{first["pattern"]}" where price < 50',
                  search={"text": first["pattern"], "where": {"price": {"lt": 50}}}),
    ]
    return queries


def register(cli: click.Group) -> None:
    cli.add_command(demo_catalog_command)
    cli.add_command(demo_command)


@click.command("demo-catalog")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write the catalog into.")
@click.option("--products", default=1000, show_default=True, type=click.IntRange(min=1), help="Number of products.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed (different seeds: disjoint products).")
@click.option("--image-size", default=224, show_default=True, type=click.IntRange(32, 4096), help="Photo size in pixels.")
@click.option("--queries", default=200, show_default=True, type=click.IntRange(min=0), help="Judged queries (train + held-out).")
def demo_catalog_command(out_dir: Path, products: int, seed: int, image_size: int, queries: int) -> None:
    """Generate a demo product catalog with photos and judged queries.

    Writes catalog.jsonl, images/, queries/ (extra photos not in the catalog) and
    judgments-train.jsonl / judgments-heldout.jsonl, all from the seed.

    Example:

        vitrina demo-catalog --out demo --products 1000 --seed 7
    """
    from vitrina.demo.catalog import generate_catalog

    with Progress("drawing products", total=products) as bar:
        report = generate_catalog(out_dir, products=products, seed=seed, image_size=image_size, queries=queries, progress=bar.update)
    click.echo(f"{report.products} products, {report.images} photos, {report.query_photos} query photos -> {report.catalog}")
    click.echo(f"judgments: {report.judgments_train}, {report.judgments_heldout}")


@click.command("demo")
@click.option("--dir", "demo_dir", default=Path("vitrina-demo"), show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Working folder: catalog/, index/ and sheets/ go here (reused when present).")
@click.option("--products", default=1000, show_default=True, type=click.IntRange(min=10), help="Demo catalog size.")
@click.option("--seed", default=2024, show_default=True, type=click.IntRange(min=0), help="Catalog seed (not one the bundled model saw).")
@click.option("--model", help="Model folder or name (default: the bundled demo model).")
@click.option("--pretrained", help="Pretrained tag or checkpoint for --model.")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 50), help="Hits per query.")
def demo_command(demo_dir: Path, products: int, seed: int, model: str | None, pretrained: str | None, k: int) -> None:
    """Run the offline demo: generate a catalog, index it, run example queries.

    Everything happens on this machine with the bundled model: a demo catalog is drawn,
    indexed, and searched by text, by photo, by both, with negative weights and filters.
    Results print as tables and are drawn as contact sheets (PNG) in DIR/sheets/.

    Example:

        vitrina demo --dir vitrina-demo
    """
    try:
        _run_demo(demo_dir, products=products, seed=seed, model=ModelConfig(name=model, pretrained=pretrained), k=k)
    except VitrinaError as exc:
        raise click.ClickException(str(exc)) from None


def _run_demo(demo_dir: Path, *, products: int, seed: int, model: ModelConfig, k: int) -> None:
    from indexer.encoders.loading import load_encoder
    from indexer.pipeline import build_index
    from indexer.stages import StageTimes
    from indexer.store.reader import IndexStore
    from search import SearchEngine
    from vitrina.output import format_hits
    from vitrina.demo.contact_sheet import render_contact_sheet

    catalog_dir, index_dir, sheets = demo_dir / "catalog", demo_dir / "index", demo_dir / "sheets"
    click.echo(f"1/3 demo catalog: {products} products (seed {seed}) in {catalog_dir}")
    catalog = ensure_demo_catalog(catalog_dir, products=products, seed=seed)
    encoder = load_encoder(model)
    click.echo(f"2/3 index with {encoder.identity.describe()} in {index_dir}")
    if _index_is_current(index_dir, encoder, products):
        click.echo("    (already built with this model: reused)")
    else:
        spec = {"name": encoder.identity.name, "pretrained": model.pretrained}
        stages = StageTimes()
        with Progress("indexing", total=products, stage=stages.bottleneck) as bar:
            report = build_index(catalog, index_dir, encoder=encoder, config=IndexConfig(), model_spec=spec, progress=bar.update,
                                 stages=stages)
        click.echo(f"    {report.indexed} products, {report.images} photos indexed in {report.seconds:.0f}s")
    click.echo("3/3 example queries")
    with SearchEngine(IndexStore.open(index_dir), encoder) as engine:
        for query in demo_queries(catalog_dir):
            result = engine.search(k=k, **query.search)
            click.echo(f"\n== {query.label}")
            click.echo(format_hits(result.hits))
            if query.expect:
                ids = [h.product_id for h in result]
                found = f"rank {ids.index(query.expect) + 1}" if query.expect in ids else f"not in the top {k}"
                click.echo(f"   the photographed product {query.expect}: {found}")
            sheet = render_contact_sheet([h.to_json() for h in result], sheets / f"{query.name}.png",
                                         query_text=query.label, query_image=query.query_image, title="vitrina demo")
            click.echo(f"   contact sheet: {sheet}")
    click.echo(
        f"\nSearch further:  vitrina search \"blue dotted mug\" --index {index_dir} --sheet results.png"
        f"\nBy photo:        vitrina search --image {catalog_dir}/queries/<file> --index {index_dir}"
    )


def _index_is_current(index_dir: Path, encoder: Any, products: int) -> bool:
    from indexer.errors import IndexFormatError
    from indexer.store.reader import IndexStore

    try:
        with IndexStore.open(index_dir) as store:
            return store.identity.same_model(encoder.identity) and store.counts()["products"] == products
    except IndexFormatError:
        if (index_dir / "vitrina.db").is_file():  # the demo's own index in an older format: built afresh
            import shutil

            shutil.rmtree(index_dir)
        return False
