"""One query, one ranking; one read, one commit; settings that do not leak out of a search."""

import threading
from dataclasses import replace

import faiss
import numpy as np
import pytest

from conftest import open_built_engine, write_catalog
from indexer.config import IndexConfig
from indexer.pipeline import build_index
from search import SearchEngine
from search.rerank import RerankerConfig
from search.rerank.train import train_reranker
from test_rerank import judged_queries


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("consistency-catalog"))


@pytest.fixture(scope="module")
def reranked(tmp_path_factory, catalog, tiny_encoder):
    with open_built_engine(tmp_path_factory.mktemp("consistency") / "index", catalog, tiny_encoder) as engine:
        reranker, _ = train_reranker(engine, judged_queries(catalog.parent),
                                     config=RerankerConfig(epochs=2, id_queries=4, val_fraction=0.3, seed=1, depth=8))
        engine.reranker = reranker
        engine.config = replace(engine.config, rerank_depth=8)  # as deep as the classifier was trained
        yield engine


def test_pages_of_a_reranked_query_come_from_one_ranking(reranked):
    assert reranked.reranker.depth == 8
    whole = [h.product_id for h in reranked.search("red circle widget", k=12)]
    pages = [h.product_id for offset in (0, 4, 8) for h in reranked.search("red circle widget", k=4, offset=offset)]
    assert pages == whole and len(set(pages)) == 12
    deep = [h.product_id for h in reranked.search("red circle widget", k=20)]
    assert deep[:12] == whole  # a deeper page does not re-rank more candidates than the classifier was trained on


def test_the_query_is_encoded_before_the_read_snapshot_is_taken(reranked):
    store, encoder = reranked.store, reranked.encoder
    seen = []
    original = encoder.encode_texts

    def encode_texts(texts):
        seen.append(getattr(store._local, "conn", None))
        return original(texts)

    encoder.encode_texts = encode_texts
    try:
        reranked.search("a query nobody asked before", k=3)
    finally:
        del encoder.encode_texts
    assert seen == [None]


def test_faiss_threads_are_set_for_the_search_only(reranked, tiny_encoder):
    faiss.omp_set_num_threads(2)
    with SearchEngine.open(reranked.store.folder, encoder=tiny_encoder, rerank=False) as engine:
        engine.search("green square widget", k=3)
    assert faiss.omp_get_max_threads() == 2  # what torch and everything else in this thread see


def test_product_reads_stay_consistent_while_a_writer_replaces_products(tmp_path, tiny_encoder):
    catalog = write_catalog(tmp_path / "catalog")
    changed = catalog.parent / "changed.jsonl"  # beside the catalog: its image paths resolve to the same files
    changed.write_text(catalog.read_text().replace("widget", "gadget"))
    folder = tmp_path / "index"
    with open_built_engine(folder, catalog, tiny_encoder) as engine:
        errors: list[BaseException] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    for i in range(0, 24, 5):
                        assert engine.product(f"P{i:03d}")["id"] == f"P{i:03d}"
                except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                    errors.append(exc)
                    return

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for source in (changed, catalog, changed):  # every product is replaced (new pk) at each run
                build_index(source, folder, encoder=tiny_encoder, config=IndexConfig(commit_every=4))
        finally:
            stop.set()
            reader.join(timeout=60)
        assert errors == []
        assert "gadget" in engine.product("P003")["title"]
        assert np.all([engine.product(f"P{i:03d}")["id"] == f"P{i:03d}" for i in range(24)])
