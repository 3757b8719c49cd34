"""Shared fixtures: a tiny random open_clip model built once per session, small catalogs."""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_NAME = "vitrina-test-tiny"

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
SHAPES = ("square", "circle", "triangle")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model folder holding a tiny random open_clip model (seeded)."""
    import open_clip
    import torch

    from indexer.encoders.model_folder import save_model_folder

    configs = tmp_path_factory.mktemp("model-configs")
    (configs / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(configs)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_NAME)
    return save_model_folder(model, TINY_CONFIG, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from indexer.config import ModelConfig
    from indexer.encoders.loading import load_encoder

    return load_encoder(ModelConfig(name=str(tiny_model_dir)))


def draw_product(path: Path, colour: str, shape: str, *, seed: int = 0, size: int = 48) -> Path:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    pad = rng.randint(2, 8)
    box = (pad, pad, size - pad, size - pad)
    fill = COLOURS[colour]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([(size // 2, pad), (pad, size - pad), (size - pad, size - pad)], fill=fill)
    image.save(path)
    return path


def write_catalog(folder: Path, n: int = 24, *, fmt: str = "jsonl") -> Path:
    """A small catalog: ``n`` products of 4 colours x 3 shapes, 1-2 images each, prices 10..."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        shape = SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        paths = [draw_product(images / f"p{i}_{j}.png", colour, shape, seed=i * 10 + j).name for j in range((i % 2) + 1)]
        rows.append({
            "id": f"P{i:03d}", "title": f"{colour} {shape} widget", "description": f"a {shape} thing in {colour}",
            "images": [f"images/{p}" for p in paths], "price": 10.0 + i, "category": shape,
            "brand": f"Brand{i % 3}", "color": colour,
        })
    if fmt == "jsonl":
        path = folder / "catalog.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import csv

        path = folder / "catalog.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, "images": "|".join(r["images"])})
    return path


@pytest.fixture
def catalog(tmp_path) -> Path:
    return write_catalog(tmp_path / "catalog")


@pytest.fixture
def built_index(tmp_path, catalog, tiny_encoder, database) -> Path:
    """``catalog`` indexed into a folder (metadata in ``database``: SQLite unless a module asks for both)."""
    from indexer.config import IndexConfig
    from indexer.pipeline import build_index

    folder = tmp_path / "index"
    build_index(catalog, folder, encoder=tiny_encoder, model_spec={"name": str(_model_dir(tiny_encoder)), "pretrained": None},
                config=IndexConfig(database=database))
    return folder


def open_built_engine(folder: Path, catalog: Path, encoder):
    """Index ``catalog`` into ``folder`` and open an engine on it (a context manager)."""
    from indexer.pipeline import build_index
    from search import SearchEngine

    build_index(catalog, folder, encoder=encoder, model_spec={"name": encoder.identity.name, "pretrained": None})
    return SearchEngine.open(folder, encoder=encoder)


def _model_dir(encoder) -> str:
    return encoder.identity.name


@pytest.fixture
def engine(built_index, tiny_encoder):
    from search import SearchEngine

    with SearchEngine.open(built_index, encoder=tiny_encoder) as opened:
        yield opened


# -- hostile images, shared by the hardening tests ----------------------------------------------------------------------
def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def corrupt_exif_images() -> dict[str, bytes]:
    """Photos whose pixels decode but whose EXIF block does not parse."""
    raw_profile = PngImagePlugin.PngInfo()
    raw_profile.add_text("Raw profile type exif", "\nexif\n   20\nzz not hex zz\n")
    base = Image.new("RGB", (12, 8), (200, 30, 30))
    return {
        "png-exif-chunk": encoded(base, "PNG", exif=b"Exif\x00\x00XXXXgarbage"),  # SyntaxError: not a TIFF file
        "webp-exif": encoded(base, "WEBP", exif=b"XXXXgarbage"),
        "png-raw-profile": encoded(base, "PNG", pnginfo=raw_profile),  # ValueError in bytes.fromhex
    }


def post_json(client: Any, text: str) -> Any:
    """POST /search with a raw JSON text (so that escapes like \\ud800 reach the server as written)."""
    return client.post("/search", content=text.encode(), headers={"content-type": "application/json"})


# -- PostgreSQL: a throwaway cluster per session, a fresh database per test -----------------------------------------------
@pytest.fixture(scope="session")
def pg_cluster():
    """A running throwaway PostgreSQL cluster; skipped where PostgreSQL or psycopg is missing, except in CI
    (``CI`` set), where that fails the test."""
    from vitrina.testing.postgres_cluster import PostgresCluster, PostgresUnavailable

    try:
        import psycopg  # noqa: F401
        cluster = PostgresCluster.start()
    except (ImportError, PostgresUnavailable) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {exc}")
        pytest.skip(f"PostgreSQL is not available here: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """The URL of a new empty database in the session's cluster."""
    return pg_cluster.create_database()


#: Where the metadata of test indexes lives: modules that run against both backends override ``database``
#: with ``BOTH_DATABASES`` as params.
BOTH_DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def database_for(request) -> str | None:
    """None for SQLite, a fresh PostgreSQL database's URL for "postgresql"."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return None


@pytest.fixture
def database() -> str | None:
    return None
