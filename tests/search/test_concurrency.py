"""Searches in threads while a writer indexes and commits: no errors, each answer from one commit."""

import json
import threading

from conftest import write_catalog
from indexer.config import IndexConfig
from indexer.pipeline import build_index
from search import SearchEngine


def test_searches_during_indexing_see_whole_commits(tmp_path, built_index, tiny_encoder):
    extra_dir = tmp_path / "extra"
    catalog = write_catalog(extra_dir, n=40)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    for row in rows:
        row["id"] = "X" + row["id"]
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    errors: list[BaseException] = []
    sizes: list[int] = []
    stop = threading.Event()

    def searcher(engine):
        while not stop.is_set():
            try:
                result = engine.search("widget", k=100)
                ids = [h.product_id for h in result]
                assert len(ids) == len(set(ids))
                # a commit adds 8 products at a time: 24 committed at start, then 32, 40, ... 64
                assert len(ids) % 8 == 0 and all(h.product["id"] == h.product_id for h in result), len(ids)
                sizes.append(len(ids))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    with SearchEngine.open(built_index, encoder=tiny_encoder) as engine:
        threads = [threading.Thread(target=searcher, args=(engine,)) for _ in range(3)]
        for t in threads:
            t.start()
        report = build_index(catalog, built_index, encoder=tiny_encoder, config=IndexConfig(batch_size=8, commit_every=8))
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert report.indexed == 40 and report.commits == 6  # five of eight products, then the merge a bulk run ends with
        assert len(engine.search("widget", k=100)) == 64
    assert sizes and min(sizes) >= 24
