"""Serving replicas: two `vitrina serve` processes over one PostgreSQL database and one index folder, a writer
committing beside them.  Every search answers (no 5xx) and both replicas reach each new generation on their
own within 5 s (real uvicorn processes on 127.0.0.1, real PostgreSQL; bounded in count and time)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from indexer.config import IndexConfig
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from indexer.store.writer import IndexWriter

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SWITCH_LIMIT_S = 5.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(folder: Path, url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from vitrina.cli import main; main()", "serve", "--index", str(folder), "--db", url,
               "--port", str(port), "--refresh-seconds", "0.25", "--search-threads", "2", "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def _health(base: str) -> dict | None:
    try:
        answer = httpx.get(f"{base}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_two_replicas_under_a_writer_switch_within_5_s_with_no_5xx(tmp_path, catalog, tiny_encoder, pg_url):
    folder = tmp_path / "shared-index"
    config = IndexConfig(database=pg_url)
    spec = {"name": tiny_encoder.identity.name, "pretrained": None}
    build_index(catalog, folder, encoder=tiny_encoder, config=config, model_spec=spec)
    ports = [_free_port(), _free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    logs = [tmp_path / f"replica{i}.log" for i in range(2)]
    replicas = [_start(folder, pg_url, port, log) for port, log in zip(ports, logs)]
    statuses: list[int] = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 120
        while not all(_health(b) for b in bases):
            assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
            assert all(r.poll() is None for r in replicas), [log.read_text()[-2000:] for log in logs]
            time.sleep(0.3)

        def load() -> None:  # bounded: at most 2,000 searches, alternating replicas
            with httpx.Client(timeout=30) as client:
                for i in range(2000):
                    if stop.is_set():
                        return
                    answer = client.post(f"{bases[i % 2]}/search", json={"text": "red widget", "k": 5})
                    statuses.append(answer.status_code)

        loader = threading.Thread(target=load)
        loader.start()
        rows = [json.loads(line) for line in catalog.read_text().splitlines()]
        switches: list[float] = []
        steps = [lambda: rows.append({"id": "NEW1", "title": "new red widget", "price": 3.0}),
                 lambda: rows.pop(3),
                 lambda: rows[5].update(title="renamed red widget"),
                 None]  # the last commit merges every segment (`vitrina optimize`): old files retire, readers go on
        for step in steps:
            if step is None:
                with IndexStore.open(folder, writable=True) as store, IndexWriter(store) as writer:
                    generation = writer.optimize().generation
            else:
                step()
                catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
                build_index(catalog, folder, encoder=tiny_encoder, config=config, model_spec=spec, delete_missing=True)
                with IndexStore.open(folder) as store:
                    generation = int(store.commit_info["generation"])
            committed = time.monotonic()
            while not all((h := _health(b)) and h["generation"] == generation for b in bases):
                assert time.monotonic() - committed < 30, f"replicas never reached generation {generation}"
                time.sleep(0.05)
            switches.append(time.monotonic() - committed)
            time.sleep(0.5)
        stop.set()
        loader.join(timeout=60)
        answers = [httpx.post(f"{b}/search", json={"text": "red widget", "k": 5}, timeout=30).json() for b in bases]
        assert [h["product_id"] for h in answers[0]["hits"]] == [h["product_id"] for h in answers[1]["hits"]]
        print(f"replicas reached each new generation in {[round(s, 2) for s in switches]} s; {len(statuses)} searches")
        assert max(switches) <= SWITCH_LIMIT_S, switches
        assert statuses and not [s for s in statuses if s >= 500], sorted(set(statuses))
        assert all(s == 200 for s in statuses)
    finally:
        stop.set()
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            try:
                replica.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.kill()
