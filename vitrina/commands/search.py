"""`vitrina search`: text, photo and product queries with weights, filters, --json and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from indexer.config import SearchConfig

from vitrina.options import DB_OPTION, INDEX_OPTION, domain_errors, model_options, query_model
from vitrina.output import format_hits


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
        return (ImageURL(value) if is_url(value) else Path(value)), weight
    if kind == "product":
        return {"product": value}, weight
    return value, weight


@click.command("search")
@click.argument("text", required=False)
@INDEX_OPTION
@DB_OPTION
@click.option("--image", "image_source", metavar="PATH|URL",
              help="A photo to search with: a file, or an http(s) URL (fetched with the indexer's guards: public addresses only, size and time caps).")
@click.option("--vector", "vector_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="A precomputed query vector of the index model's dimension: a .npy of shape (d,) or a JSON list of numbers.")
@click.option("--vector-weight", default=1.0, show_default=True, type=float, help="Weight of --vector in the query.")
@click.option("--text-weight", default=1.0, show_default=True, type=float, help="Weight of TEXT in the query.")
@click.option("--image-weight", default=1.0, show_default=True, type=float, help="Weight of --image in the query.")
@click.option("--term", "terms", multiple=True, metavar="KIND:VALUE=WEIGHT",
              help="Extra weighted term, repeatable: text:sleeveless=-0.3, image:photo.jpg=0.5, product:SKU-1=1.")
@click.option("--like", "like", metavar="ID", help="More like this product (the product itself is excluded).")
@click.option("--where", "where", multiple=True, metavar="EXPR",
              help="Filter, repeatable: category=shoes, price<50, brand=A,B, color!=red, or JSON.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of hits.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), help="Skip this many hits (paging).")
@click.option("--image-share", type=click.FloatRange(0, 1),
              help=f"How much product photos count against product text, for every term [default: {SearchConfig().image_share} "
                   f"for words, {SearchConfig().photo_image_share} weighed by what the index measures for photos].")
@click.option("--lexical-weight", type=click.FloatRange(0, 1),
              help=f"How much the BM25 word match adds; 0 turns word search off [default: {SearchConfig().lexical_weight}].")
@click.option("--field-weight", type=click.FloatRange(0, 100),
              help="How much words naming a catalog value (a category, a colour, a brand) add; 0 turns it off "
                   f"[default: {SearchConfig().field_weight}].")
@click.option("--sort", "sort", metavar="[-]FIELD",
              help=f"Order the {SearchConfig().sort_depth} most relevant hits by a field instead of by score: price or a numeric "
                   "attribute, -FIELD for descending (missing values last).  Example: --sort=-popularity")
@click.option("--boost", "boosts", multiple=True, metavar="FIELD=WEIGHT",
              help="Add WEIGHT x the field's z-score among the candidates to each score, repeatable.  "
                   "Example: --boost margin=0.5 --boost popularity=0.2")
@click.option("--in-stock", is_flag=True, help=f"Only products whose {SearchConfig().stock_field!r} field is above 0.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.option("--sheet", "sheet", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the query and its hits as a contact sheet PNG.")
@click.option("--no-rerank", is_flag=True, help="Rank by the weighted-sum fusion only, without the index's trained re-ranker.")
@click.option("--no-compose", is_flag=True, help="Do not use the index's trained photo + words combiner (vitrina train-composer).")
@domain_errors
def search_command(text: str | None, index_dir: Path, database: str | None, image_source: str | None, text_weight: float, image_weight: float,
                   terms: tuple[str, ...], like: str | None, where: tuple[str, ...], k: int, offset: int,
                   image_share: float | None, lexical_weight: float | None, field_weight: float | None, model: str | None,
                   pretrained: str | None, threads: int | None, device: str, as_json: bool,
                   sheet: Path | None, no_rerank: bool, no_compose: bool, vector_file: Path | None, vector_weight: float,
                   sort: str | None, boosts: tuple[str, ...], in_stock: bool) -> None:
    """Search an index by text, by photo, or both, with weights and filters.

    Examples:

        vitrina search "red striped t-shirt" --index my-index

        vitrina search "but in blue" --image photo.jpg --image-weight 1 --text-weight 0.6 --index my-index

        vitrina search --term "text:red dress=1" --term "text:sleeveless=-0.3" --where "price<50" --index my-index

        vitrina search --like SKU-1 -k 5 --index my-index --json

        vitrina search --vector query.npy --where "price<50" --index my-index

        vitrina search "mug" --sort=-popularity --boost margin=0.5 --in-stock --index my-index
    """
    from indexer.store.reader import IndexStore
    from search import SearchEngine
    from search.business import Business, parse_boost
    from search.filters import compile_where, parse_where

    # Everything that can be refused without the model is checked first: a refusal takes a second, not a model load.
    parsed_terms = [parse_term(t) for t in terms]
    if like:
        parsed_terms.append(({"product": like}, 1.0))
    vector = read_query_vector(vector_file) if vector_file else None
    if not (text or image_source or parsed_terms or vector is not None):
        raise click.UsageError("give TEXT, --image, --vector, --term or --like")
    filters = parse_where(where)
    boost = parse_boost(boosts) or None
    signals = Business.parse(sort, boost, in_stock or None, stock_field=SearchConfig().stock_field)
    with IndexStore.open(index_dir, database=database) as store:
        compile_where(filters, attribute_fields=store.attribute_fields())
        signals.check(store.attribute_fields(), lambda: {"price", *store.numeric_fields(store.attribute_fields())})
        wanted = [value["product"] for value, _ in parsed_terms if isinstance(value, dict)]
        missing = sorted(set(wanted) - set(store.product_pks(wanted)))
        if missing:
            raise click.ClickException(f"unknown product id {missing[0]!r}")
        if vector is not None and len(vector) != store.identity.dim:
            raise click.BadParameter(f"{vector_file}: a vector of {len(vector)} dimensions; the index's model has "
                                     f"{store.identity.dim}", param_hint="--vector")
        model_config = query_model(store.model_spec, model=model, pretrained=pretrained, threads=threads, device=device)
    photo = query_image(image_source) if image_source else None
    parsed_terms = [(query_image(value) if isinstance(value, (Path, ImageURL)) else value, weight) for value, weight in parsed_terms]
    with SearchEngine.open(index_dir, model=model_config, rerank=not no_rerank, compose=not no_compose,
                           database=database) as engine:
        result = engine.search(
            text=text, image=photo, vector=vector, weights={"text": text_weight, "image": image_weight, "vector": vector_weight},
            terms=parsed_terms,
            where=filters, k=k, offset=offset, image_share=image_share, lexical_weight=lexical_weight,
            field_weight=field_weight, exclude=[like] if like else (), sort=sort, boost=boost, in_stock=in_stock or None,
        )
    if sheet:
        from vitrina.demo.contact_sheet import render_contact_sheet

        described = [f'"{text}" x{text_weight:g}'] if text else []
        described += [f"photo x{image_weight:g}"] if photo else []
        described += [f"vector x{vector_weight:g}"] if vector is not None else []
        described += list(terms) + ([f"like {like}"] if like else [])
        render_contact_sheet([h.to_json() for h in result], sheet, query_text="  ".join(described), query_image=photo,
                             title=f"vitrina search  ({index_dir})")
        click.echo(f"contact sheet: {sheet}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(format_hits(result.hits, offset=offset))
    click.echo(f"{len(result)} hits from {result.candidates} candidates in {result.timings.get('total', 0):.0f} ms", err=True)


def read_query_vector(path: Path) -> Any:
    """A query vector from a .npy file (shape (d,)) or a JSON list of numbers, checked as a vector term."""
    import numpy as np

    from indexer.errors import QueryError
    from search.query import unit_vector

    try:
        value = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else json.loads(path.read_text(encoding="utf-8"))
        return unit_vector(value)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: not a .npy array or a JSON list of numbers ({exc})", param_hint="--vector") from None
    except QueryError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--vector") from None


class ImageURL(str):
    """An ``image:`` term's http(s) URL (a plain ``str`` term is text)."""


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def query_image(source: str | Path) -> Any:
    """The photo of a query, decoded now (before the model loads): a file, or an http(s) URL fetched through
    the SSRF-guarded fetcher (public addresses only, deadlines, byte cap); ``ImageError`` says why not."""
    from indexer.media.images import load_image

    return load_image(str(source) if isinstance(source, str) and is_url(source) else Path(source))


def register(cli: click.Group) -> None:
    cli.add_command(search_command)
