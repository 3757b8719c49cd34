"""The installed package, not the source tree: sdist -> wheel -> installed copy that finds its bundled model.

The wheel is built from the sdist (as ``python -m build`` does), so a file missing from the sdist
fails here too.  It is installed with ``pip install --no-deps --target DIR`` and run with
``PYTHONPATH=DIR`` from another folder: the dependencies come from this virtual environment,
every module of ours from DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import write_catalog

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILES = ("open_clip_config.json", "open_clip_model.safetensors", "MODEL_CARD.md")
STATIC_FILES = ("index.html", "app.js", "style.css")

pytestmark = pytest.mark.slow


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel built from that sdist), without build isolation (no network needed)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"], cwd=ROOT)
    sdist = next(out.glob("vitrina-*.tar.gz"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(sdist)],
         cwd=out)
    return sdist, next(out.glob("vitrina-*.whl"))


def test_sdist_holds_the_model_the_page_and_the_build_files(built):
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for name in MODEL_FILES:
        assert f"data/demo-model/{name}" in names
    for name in STATIC_FILES:
        assert f"search/web/static/{name}" in names
    assert {"setup.py", "pyproject.toml", "README.md"} <= names


def test_wheel_ships_the_model_as_package_data(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in MODEL_FILES:
        assert f"indexer/bundled/demo-model/{name}" in names
    for name in STATIC_FILES:
        assert f"search/web/static/{name}" in names
    assert not any(n.startswith(("data/", "tests/", "bench/")) for n in names), "nothing outside our packages"
    assert wheel.stat().st_size < 40 * 1024 * 1024


def test_installed_wheel_indexes_and_searches_with_its_bundled_model(built, tmp_path):
    _, wheel = built
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    catalog = write_catalog(elsewhere / "catalog", n=12)
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}

    where = json.loads(_run([sys.executable, "-c", (
        "import json, indexer, search, vitrina; from indexer.encoders.loading import BUNDLED_MODEL_DIR as m; "
        "print(json.dumps([indexer.__file__, search.__file__, vitrina.__file__, str(m)]))")], cwd=elsewhere, env=env))
    for path in where:
        assert Path(path).resolve().is_relative_to(target.resolve()), path
    assert Path(where[3]).name == "demo-model" and (Path(where[3]) / "open_clip_config.json").is_file()

    cli = [sys.executable, "-m", "vitrina"]
    indexed = _run([*cli, "index", str(catalog), "--index", "idx"], cwd=elsewhere, env=env)
    assert "12 indexed" in indexed
    hits = json.loads(_run([*cli, "search", "red circle widget", "--index", "idx", "-k", "3", "--json"], cwd=elsewhere, env=env))
    assert len(hits["hits"]) == 3
    info = json.loads(_run([*cli, "info", "--index", "idx", "--json"], cwd=elsewhere, env=env))
    assert info["model"]["name"] == "vitrina-demo"
