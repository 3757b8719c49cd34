"""The search log in PostgreSQL: written by several processes at once, rotated in partitions, read back by
`vitrina judgments` / `eval --from-log`, and `vitrina serve --workers 2 --log` over a real database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from search.behaviour.judgments_from_log import collect_judgments
from search.behaviour.log import LogConfig, LoggedEvent, LoggedSearch, SearchLog, SearchLogError, ShownHit, read_log
from search.behaviour.log_postgres import SEARCHES, PostgresLogStore
from vitrina.cli import cli

pytestmark = pytest.mark.postgres


def search(query_id: str, at: float, text_: str = "red square", products=("P001", "P002", "P003")) -> LoggedSearch:
    return LoggedSearch(query_id=query_id, at=at, terms=[{"text": text_, "weight": 1.0}],
                        shown=tuple(ShownHit(product_id=p, position=i, score=1.0 / i, scores={"fused": 1.0 / i})
                                    for i, p in enumerate(products, start=1)), params={"k": 3}, generation=4)


def click(query_id: str, product: str, position: int, at: float, kind: str = "click") -> LoggedEvent:
    return LoggedEvent(query_id=query_id, product_id=product, kind=kind, position=position, at=at)


def partitions(url: str) -> list[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                            "WHERE i.inhparent = CAST(:t AS regclass)"), {"t": SEARCHES}).scalars())
    finally:
        engine.dispose()


def test_two_writers_share_one_log_and_read_back_in_time_order(pg_url):
    first, second = SearchLog(pg_url), SearchLog(pg_url)  # two serve workers: two processes' logs, one database
    try:
        assert first.store.shared and first.where.startswith("postgresql+psycopg://")
        first.record_search(search("a", 100.0))
        second.record_search(search("b", 200.0, "blue circle"))
        second.record_event(click("a", "P002", 2, 201.0))  # the event reaches the other worker
        first.record_event(click("b", "P001", 1, 202.0, "purchase"))
        first.flush()
        second.flush()
        assert second.knows("a") and first.knows("b") and not first.knows("never-logged")
    finally:
        first.close()
        second.close()
    searches, events = read_log(pg_url)
    assert [s.query_id for s in searches] == ["a", "b"] and searches[1].text == "blue circle"
    assert searches[0] == search("a", 100.0)  # every field round-trips
    assert [(e.query_id, e.product_id, e.kind, e.position) for e in events] == [("a", "P002", "click", 2),
                                                                               ("b", "P001", "purchase", 1)]
    found = collect_judgments(pg_url, labels="event")
    assert found.searches == 2 and found.events == 2 and {r["product_id"] for r in found.rows if r["label"] > 0} == {"P002", "P001"}


def test_rotation_drops_the_oldest_partitions(pg_url):
    log = SearchLog(pg_url, LogConfig(max_bytes=4096, keep=1))  # every batch fills a part: each write rotates
    try:
        for n in range(5):
            log.record_search(search(f"q{n}", float(n)))
            log.flush()
    finally:
        log.close()
    assert partitions(pg_url) == [f"{SEARCHES}_p5", f"{SEARCHES}_p6"]  # the live part and `keep` rotated one
    assert [s.query_id for s in read_log(pg_url)[0]] == ["q4"]  # q4 went to part 5, then 6 became live


def test_a_rotation_that_cannot_lock_is_put_off_and_nothing_is_lost(pg_url, monkeypatch, caplog):
    import logging

    from search.behaviour import log_postgres

    monkeypatch.setattr(log_postgres, "ROTATE_LOCK_TIMEOUT_MS", 200)
    log = SearchLog(pg_url, LogConfig(max_bytes=4096, keep=1))
    reader = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1) if pg_url.startswith("postgresql://") else pg_url)
    try:
        with caplog.at_level(logging.WARNING, logger="vitrina.log"):
            with reader.connect() as conn, conn.begin():  # a long read of the log holds its tables
                conn.execute(text(f"SELECT count(*) FROM {SEARCHES}"))
                log.record_search(search("a", 1.0))
                log.flush()
                assert log.enabled and any("rotation put off" in r.getMessage() for r in caplog.records)
            assert [s.query_id for s in read_log(pg_url)[0]] == ["a"]  # written, not rotated away
            log.record_search(search("b", 2.0))
            log.flush()
    finally:
        log.close()
        reader.dispose()
    assert log.enabled and partitions(pg_url) == [f"{SEARCHES}_p1", f"{SEARCHES}_p2"]  # rotated once the lock was free
    assert [s.query_id for s in read_log(pg_url)[0]] == ["a", "b"]


def test_a_database_without_a_log_or_out_of_reach_is_a_clear_error(pg_url, tmp_path):
    with pytest.raises(SearchLogError, match="no search log in this database"):
        read_log(pg_url)
    with pytest.raises(SearchLogError, match="cannot keep the search log"):
        PostgresLogStore("postgresql://nobody@127.0.0.1:1/nothing")
    with pytest.raises(SearchLogError, match="cannot use the PostgreSQL database"):
        read_log("postgresql://nobody@127.0.0.1:1/nothing")
    with pytest.raises(SearchLogError, match="not a PostgreSQL URL"):
        SearchLog("mysql://shop@db/x")
    result = CliRunner().invoke(cli, ["judgments", "--from-log", pg_url, "--out", str(tmp_path / "j.jsonl")])
    assert result.exit_code == 1 and "no search log in this database" in result.output


def test_judgments_from_the_log_kept_with_the_index(pg_url, tmp_path):
    log = SearchLog(pg_url)
    try:
        for n in range(3):
            log.record_search(search(f"s{n}", 10.0 * n))
            log.record_event(click(f"s{n}", "P003", 3, 10.0 * n + 1))
    finally:
        log.close()
    index = tmp_path / "index"  # an index whose metadata lives in that database names it in database.json
    index.mkdir()
    (index / "database.json").write_text(json.dumps({"url": pg_url}))
    out = tmp_path / "judgments.jsonl"
    result = CliRunner().invoke(cli, ["judgments", "--index", str(index), "--from-log", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["searches"] == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["product_id"]: r["label"] for r in rows}["P003"] > 0


# -- vitrina serve --workers 2 --log, over a real database ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_serve_with_two_workers_logs_every_search_and_event_in_postgres(tmp_path, catalog, tiny_encoder, pg_url):
    from indexer.config import IndexConfig
    from indexer.pipeline import build_index

    folder = tmp_path / "index"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(database=pg_url),
                model_spec={"name": tiny_encoder.identity.name, "pretrained": None})
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from vitrina.cli import main; main()", "serve", "--index", str(folder), "--log",
               "--workers", "2", "--port", str(port), "--search-threads", "2", "--log-level", "warning"]
    out = tmp_path / "serve.log"
    with out.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    answers, statuses = [], []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, out.read_text()
            assert time.monotonic() < deadline, "the server did not start: " + out.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        with httpx.Client(base_url=base, timeout=30) as client:  # a fresh connection each time: either worker answers
            for n, words in enumerate(["red", "green", "blue", "square", "circle", "yellow"] * 2):
                answer = client.post("/search", json={"text": words, "k": 3}, headers={"connection": "close"}).json()
                answers.append(answer)
                hit = answer["hits"][n % len(answer["hits"])]
                statuses.append(client.post("/events", json={"query_id": answer["query_id"], "product_id": hit["product_id"],
                                                             "kind": "click", "position": hit["rank"]},
                                            headers={"connection": "close"}).status_code)
            statuses.append(client.post("/events", json={"query_id": "f" * 32, "product_id": "P001", "kind": "click"}).status_code)
    finally:
        server.send_signal(signal.SIGINT)  # uvicorn stops its workers; each writes what its log still holds
        server.wait(30)
    assert statuses == [202] * len(answers) + [404], out.read_text()
    searches, events = read_log(pg_url)
    assert sorted(s.query_id for s in searches) == sorted(a["query_id"] for a in answers)
    assert sorted(e.query_id for e in events) == sorted(a["query_id"] for a in answers)
    assert "Traceback" not in out.read_text()
    assert not (Path(folder) / "search-log").exists()  # --log alone went to the index's own (PostgreSQL) database
    assert all(isinstance(s.generation, int) for s in searches)
