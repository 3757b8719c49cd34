"""Kill ``vitrina index`` (SIGKILL) at several points; the index must stay sound and a re-run
must end exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_catalog
from indexer.store.reader import IndexStore
from search import SearchEngine

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def run_index(catalog: Path, folder: Path, model_dir: Path, *, fault: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    args = ["index", str(catalog), "--index", str(folder), "--model", str(model_dir), "--batch-size", "4", "--commit-every", "8"]
    if fault:
        command = [sys.executable, str(HERE / "faultinject.py"), fault[0], str(fault[1]), "--", *args]
    else:
        command = [sys.executable, "-m", "vitrina", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(HERE.parents[1])}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def state(folder: Path) -> dict:
    """Everything that defines an index's content: products with pks and hashes, and vectors."""
    with IndexStore.open(folder) as store:
        store.check()
        with store.engine.connect() as conn:
            products = conn.exec_driver_sql("SELECT pk, id, title, price, content_hash FROM products ORDER BY pk").all()
            images = conn.exec_driver_sql("SELECT pk, product_pk, position, location FROM images ORDER BY pk").all()
        vectors = store.vectors_of([row[0] for row in products])
    return {"products": products, "images": images, "vectors": vectors}


@pytest.fixture(scope="module")
def fault_catalog(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("fault-catalog"), n=30)


@pytest.fixture(scope="module")
def clean_state(tmp_path_factory, fault_catalog, tiny_model_dir) -> dict:
    folder = tmp_path_factory.mktemp("clean") / "index"
    result = run_index(fault_catalog, folder, tiny_model_dir)
    assert result.returncode == 0, result.stderr
    return state(folder)


@pytest.mark.parametrize("fault", [
    ("after-commit", 2),
    ("encoding", 3),
    ("faiss-write", 3),
    ("before-sqlite-commit", 2),
    ("merge-write", 2),
    ("merge-before-sqlite-commit", 2),
    ("before-cleanup", 2),
])
def test_killed_run_leaves_a_sound_index_and_resumes_to_the_clean_state(tmp_path, fault_catalog, tiny_model_dir, clean_state,
                                                                         tiny_encoder, fault):
    folder = tmp_path / "index"
    killed = run_index(fault_catalog, folder, tiny_model_dir, fault=fault)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    with IndexStore.open(folder) as store:
        summary = store.check()  # files match the commit; FAISS ids match the rows
        committed = summary["products"]
    assert committed < 30
    if committed:
        with SearchEngine.open(folder, encoder=tiny_encoder) as engine:
            assert len(engine.search("red widget", k=5)) == min(5, committed)
    assert not list(folder.glob("*.tmp")) or fault[0] in ("faiss-write", "merge-write")  # only a torn temp file may remain
    resumed = run_index(fault_catalog, folder, tiny_model_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{committed} unchanged" in resumed.stdout
    assert not list(folder.glob("*.tmp"))
    got = state(folder)
    assert got["products"] == clean_state["products"]
    assert got["images"] == clean_state["images"]
    for key in ("text", "images"):
        np.testing.assert_allclose(got["vectors"][key], clean_state["vectors"][key], atol=1e-5)
    # a run that changed much of the index ends merged: one segment per modality; on disk beside them only the
    # segments replaced lately (kept a while for readers elsewhere), no leftover of the killed run
    with IndexStore.open(folder) as store:
        live = sorted(s["name"] for m in ("image", "text") for s in store.segments(m))
        retired = {r["name"] for r in store.commit_info.get("retired", [])}
    assert set(p.name for p in folder.glob("*.faiss")) == set(live) | retired and len(live) == 2
