"""What the search log costs a search: the recording on the request thread, and a whole ``POST /search``
with the log off, in a folder (SQLite files) and in PostgreSQL.

The index: a demo catalog (``--products`` 300, seed 11, the one ``ray-embedding`` draws) built with the bundled
demo model and cached in ``bench/results/cache/log-cost-<n>-<seed>/``.  Text queries are the generator's
colour / category words.

* **recording**: ``search.web.events.SearchRecorder.record`` (building the ``LoggedSearch`` from the page
  shown and queueing it) timed on this thread for pages of k = 10 and k = 100, while the log's writer thread
  writes what it queues: p50 / p95 over ``--records`` calls;
* **end to end**: ``POST /search {"text", "k": 10}`` through the app (``fastapi.testclient``, in process, so
  no network) with no log, a folder log and a PostgreSQL log, in rounds that alternate the three so they
  share the machine's load: p50 / p95 of each and p50 minus the no-log p50;
* **writer**: seconds for the writer thread to store ``--records`` queued searches (k = 10): rows per second
  each store keeps up with.

PostgreSQL runs in a throwaway cluster on this machine (``vitrina.testing.postgres_cluster``, fsync off, as
in the tests): its figures are a lower bound of a production server's write cost, not of the request's.

    python -m bench log-cost [--products 300] [--records 2000] [--rounds 6] [--queries 40]
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.ray_embedding import demo_catalog

WORDS = ["red", "blue", "green", "black", "white", "striped", "plain", "shoe", "bag", "lamp", "cup", "hat"]


def _index(products: int, seed: int) -> Path:
    from indexer.config import ModelConfig
    from indexer.encoders.loading import load_encoder
    from indexer.pipeline import build_index

    folder = common.CACHE / f"log-cost-{products}-{seed}" / "index"
    if not (folder / "vitrina.db").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        build_index(demo_catalog(products, seed), folder, encoder=load_encoder(ModelConfig()))
    return folder


def _texts(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False)) for _ in range(n)]


def _recording(engine: Any, log: Any, records: int) -> dict[str, Any]:
    from search.web.events import SearchRecorder
    from search.web.models import SearchIn

    recorder = SearchRecorder(log, engine)
    out: dict[str, Any] = {}
    for k in (10, 100):
        result = engine.search("red shoe", k=k)
        params = SearchIn(text="red shoe", k=k)
        times = []
        for _ in range(records):
            started = time.perf_counter()
            recorder.record(terms=[("text", "red shoe", 1.0)], params=params, hits=result.hits, offset=0,
                            result=result, rerank_supported=True)
            times.append((time.perf_counter() - started) * 1000)
        log.flush(timeout=120)
        out[f"k{k}"] = {"p50_ms": round(float(np.median(times)), 4), "p95_ms": round(float(np.percentile(times, 95)), 4)}
    return out


def _writer(engine: Any, log: Any, records: int) -> float:
    from search.web.events import SearchRecorder
    from search.web.models import SearchIn

    recorder = SearchRecorder(log, engine)
    result = engine.search("blue bag", k=10)
    params = SearchIn(text="blue bag", k=10)
    log.flush(timeout=120)
    started = time.perf_counter()
    for _ in range(records):
        recorder.record(terms=[("text", "blue bag", 1.0)], params=params, hits=result.hits, offset=0, result=result,
                        rerank_supported=True)
    log.flush(timeout=600)
    return time.perf_counter() - started


def main(args: Any) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from search import SearchEngine
    from search.behaviour.log import LogConfig, SearchLog
    from search.web.app import create_app
    from vitrina.testing.postgres_cluster import PostgresCluster

    common.quiet_open_clip()
    index = _index(args.products, args.seed)
    work = Path(tempfile.mkdtemp(prefix="vitrina-bench-log-"))
    texts = _texts(args.queries)
    result: dict[str, Any] = {"products": args.products, "records": args.records, "rounds": args.rounds,
                              "queries_per_round": args.queries}
    config = LogConfig(queue_size=max(10_000, 2 * args.records))
    with PostgresCluster.start() as cluster, SearchEngine.open(index) as engine:
        logs = {"folder": SearchLog(work / "log", config), "postgresql": SearchLog(cluster.create_database("log"), config)}
        try:
            clients = {"off": TestClient(create_app(engine)),
                       **{name: TestClient(create_app(engine, search_log=log)) for name, log in logs.items()}}
            for client in clients.values():  # warm: the encoder, the caches, the pools
                for text in texts[:10]:
                    assert client.post("/search", json={"text": text, "k": 10}).status_code == 200
            times: dict[str, list[float]] = {name: [] for name in clients}
            for _ in range(args.rounds):  # alternating: the three see the same load
                for name, client in clients.items():
                    for text in texts:
                        started = time.perf_counter()
                        answer = client.post("/search", json={"text": text, "k": 10})
                        times[name].append((time.perf_counter() - started) * 1000)
                        assert answer.status_code == 200 and ("query_id" in answer.json()) == (name != "off")
            off = common.p50(times["off"])
            result["end_to_end"] = {name: {"p50_ms": round(common.p50(t), 3), "p95_ms": round(common.p95(t), 3),
                                           "p50_minus_off_ms": round(common.p50(t) - off, 3)} for name, t in times.items()}
            for name, log in logs.items():
                result[name] = {"recording": _recording(engine, log, args.records),
                                "writer_rows_per_s": round(args.records / _writer(engine, log, args.records)),
                                "dropped": log.dropped, "enabled": log.enabled}
        finally:
            for log in logs.values():
                log.close()
    result["machine"] = common.machine()
    print(json.dumps(result, indent=2))
    common.write_results("log_cost", result)
    shutil.rmtree(work, ignore_errors=True)
    return result


def configure(parser: Any) -> None:
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--queries", type=int, default=40)
    parser.set_defaults(run=main)
