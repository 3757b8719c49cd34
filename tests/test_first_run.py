"""First-run behaviour of the command line: help everywhere, refusals before any model loads, progress in logs,
devices, no empty index folder after a failed first run, and the offline API docs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import write_catalog
from vitrina.cli import cli


def _commands(group: click.Group, prefix: str = "vitrina") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix} {name}")
    return found


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model fails the test: these refusals must come first."""
    import indexer.encoders.loading
    import search.engine

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(indexer.encoders.loading, "load_encoder", refuse)
    monkeypatch.setattr(search.engine, "load_encoder", refuse)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("first-run")
    catalog = write_catalog(folder / "catalog", n=8)
    result = CliRunner().invoke(cli, ["index", str(catalog), "--index", str(folder / "index"), "--model", str(tiny_model_dir), "--json"])
    assert result.exit_code == 0, result.output
    return folder / "index"


@pytest.mark.parametrize("where, command", [pytest.param(where, command, id=where)
                                            for where, command in [("vitrina", cli), *_commands(cli)]])
def test_every_option_of_every_command_has_help(where, command):
    missing = [f"{where} {'/'.join(param.opts)}" for param in command.params
               if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not missing, "options without help text: " + ", ".join(missing)


@pytest.mark.parametrize("name, content, message", [
    ("catalog.csv", "sku,title\n1,red mug\n", "the CSV header must have an 'id' column"),
    ("catalog.txt", '{"id": "a", "title": "red mug"}\n', "unknown catalog format '.txt'"),
    ("catalog.jsonl", 'not json\n{"id": "a"}\n', "none of its 2 row(s) could be indexed"),
    ("catalog.jsonl", "", "the catalog has no rows"),
])
def test_index_refuses_a_bad_catalog_before_the_model_and_leaves_no_folder(runner, tmp_path, no_model, name, content, message):
    catalog = tmp_path / name
    catalog.write_text(content)
    result = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "new-index")])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new-index").exists()


@pytest.mark.parametrize("args, message", [
    (["red", "--where", "colour=red"], "unknown filter field 'colour'"),
    (["--image", "/nonexistent/photo.jpg"], "file not found"),
    (["--image", "http://127.0.0.1:9/photo.jpg"], "loopback"),  # a URL goes through the SSRF-guarded fetcher
    (["--term", "image:http://10.0.0.1/photo.jpg"], "private"),
    (["--like", "NOPE"], "unknown product id 'NOPE'"),
])
def test_search_refuses_bad_input_before_the_model(runner, small_index, no_model, args, message):
    result = runner.invoke(cli, ["search", *args, "--index", str(small_index)])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_search_image_url_is_fetched_not_read_as_a_path(runner, small_index, monkeypatch):
    import indexer.media.images
    from conftest import draw_product

    fetched = []
    photo = draw_product(small_index.parent / "query.png", "red", "circle").read_bytes()

    def fake_fetch(url, *, policy):
        fetched.append(url)
        return photo

    monkeypatch.setattr(indexer.media.images, "fetch_url", fake_fetch)
    result = runner.invoke(cli, ["search", "--image", "https://shop.example/p/red.png?size=2", "--index", str(small_index), "--json", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert fetched == ["https://shop.example/p/red.png?size=2"]
    assert len(json.loads(result.output)["hits"]) == 2


def test_index_that_indexes_nothing_exits_non_zero_and_removes_its_new_folder(runner, tmp_path, tiny_model_dir):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"id": f"P{i}", "image": f"missing-{i}.png"}) + "\n" for i in range(3)))
    result = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "index"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 1, result.output
    assert "nothing indexed: none of its 3 row(s) could be indexed" in result.output
    assert "missing-0.png" in result.output
    assert not (tmp_path / "index").exists()


def test_device_option(runner, small_index, tmp_path, tiny_model_dir):
    from indexer.encoders.loading import resolve_device
    from indexer.errors import ModelError

    import torch

    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="device 'cuda' is not available"):
            resolve_device("cuda")
        result = runner.invoke(cli, ["search", "red", "--device", "cuda:0", "--index", str(small_index)])
        assert result.exit_code == 1 and "device 'cuda:0' is not available" in result.output, result.output
    if not torch.backends.mps.is_available():
        with pytest.raises(ModelError, match="'mps' is not available"):
            resolve_device("mps")
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("tpu")
    bad = runner.invoke(cli, ["search", "red", "--device", "tpu", "--index", str(small_index)])
    assert bad.exit_code == 2 and "auto, cpu, cuda, cuda:N or mps" in bad.output
    ok = runner.invoke(cli, ["search", "red", "--device", "cpu", "--index", str(small_index), "--json"])
    assert ok.exit_code == 0, ok.output
    for command in ("index", "search", "serve"):
        assert "--device" in runner.invoke(cli, [command, "--help"]).output


def test_progress_lines_when_not_a_terminal():
    from vitrina.output import Progress

    stream = io.StringIO()
    with Progress("indexing", total=200, stream=stream, interval=0, stage=lambda: "decode") as progress:
        progress.update(50)
        progress.update(50)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("indexing: 50/200 products (25%), ") and "products/s" in lines[0]
    assert "ETA " in lines[0] and lines[0].endswith("stage: decode")
    assert lines[-1].startswith("indexing: done, 100 products in ")
    quiet = io.StringIO()
    with Progress("indexing", stream=quiet, interval=0, quiet=True) as progress:
        progress.update(5)
    assert quiet.getvalue() == ""


def test_index_prints_progress_lines_to_a_log(runner, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("VITRINA_PROGRESS_SECONDS", "0")
    catalog = write_catalog(tmp_path / "catalog", n=10)
    result = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "index"), "--model", str(tiny_model_dir),
                                 "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.output.splitlines() if line.startswith("indexing: ")]
    assert any("/10 products" in line and "products/s" in line for line in progress), result.output
    assert progress[-1].startswith("indexing: done, 10 products")


def test_count_catalog_rows(tmp_path):
    from vitrina.output import count_catalog_rows

    (tmp_path / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n{"id": 3}')
    (tmp_path / "b.csv").write_text("id,title\n1,a\n2,b\n")
    assert count_catalog_rows(tmp_path / "a.jsonl") == 3
    assert count_catalog_rows(tmp_path / "b.csv") == 2


def test_api_docs_are_served_from_installed_assets(small_index, tiny_model_dir):
    from fastapi.testclient import TestClient

    from search import SearchEngine
    from search.web.app import create_app
    from search.web.docs import ASSET_FILES, assets_dir

    assert all((assets_dir() / name).is_file() for name in ASSET_FILES)
    with SearchEngine.open(small_index) as engine, TestClient(create_app(engine)) as client:
        for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js")):
            html = client.get(page)
            assert html.status_code == 200 and asset in html.text
            assert "cdn.jsdelivr" not in html.text and "fonts.googleapis" not in html.text
            assert client.get(asset).status_code == 200
        assert client.get("/static/favicon.svg").status_code == 200
        assert 'rel="icon"' in client.get("/").text
