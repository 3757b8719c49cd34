"""HTTP latency of `vitrina serve` under concurrent clients: text searches and photo uploads.

    python -m bench.serve_latency --index vitrina-demo/index

Starts the server on a free loopback port, waits for /healthz, runs ``--clients`` threads (one
httpx client each) through a bounded list of requests (``POST /search`` with text and
``POST /search/image`` with a catalog photo, interleaved), stops the server and prints p50/p95
latency per endpoint as JSON.  A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

WORDS = (
    ("red", "blue", "green", "black", "white", "yellow", "navy", "pink", "grey", "orange"),
    ("striped", "dotted", "plain", "checked", "floral", "zigzag"),
    ("t-shirt", "dress", "sneakers", "mug", "handbag", "lamp", "backpack", "boots", "cap", "chair"),
)


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--index", required=True, type=Path, help="index folder to serve (e.g. from `vitrina demo`)")
    parser.add_argument("--requests", type=int, default=160, help="requests per endpoint (text and upload)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--photos", type=Path,
                        help="folder of query photos (default: INDEX/../catalog/queries when there, else the index's own images)")
    parser.add_argument("--k", type=int, default=10, help="hits per search")
    parser.add_argument("--facets", action="store_true", help="ask for category/brand/price facets too")
    parser.add_argument("--warmup", type=int, default=8, help="unmeasured requests first")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `vitrina serve` argument (repeatable)")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    photos = _photos(args.photos, args.index)
    texts = [" ".join(words) for words in itertools.product(*WORDS)]
    jobs = [("text", texts[i % len(texts)]) if i % 2 == 0 else ("image", photos[i // 2 % len(photos)])
            for i in range(2 * args.requests)]
    facets = ["category", "brand", "price"] if args.facets else []
    with _Server(args.index, args.server_arg) as server:
        local = threading.local()
        clients: list[Any] = []

        def run(job: tuple[str, Any]) -> tuple[str, float, int]:
            import httpx

            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=server.base, timeout=60.0)
                clients.append(local.client)
            kind, value = job
            started = time.perf_counter()
            if kind == "text":
                response = local.client.post("/search", json={"text": value, "k": args.k, "facets": facets})
            else:
                response = local.client.post("/search/image", files={"photo": (value.name, value.read_bytes())},
                                             data={"k": str(args.k), "facets": ",".join(facets)})
            return kind, (time.perf_counter() - started) * 1000, response.status_code

        try:
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                list(pool.map(run, jobs[: args.warmup]))
                started = time.perf_counter()
                results = list(pool.map(run, jobs))
                wall = time.perf_counter() - started
        finally:
            for client in clients:
                client.close()
    report = {
        "index": str(args.index), "clients": args.clients, "k": args.k, "facets": bool(facets),
        "server_start_s": round(server.start_s, 2), "wall_s": round(wall, 2), "throughput_rps": round(len(results) / wall, 1),
    }
    for kind, name in (("text", "search_text"), ("image", "search_image")):
        times = [ms for k, ms, _ in results if k == kind]
        report[name] = {
            "requests": len(times), "errors": sum(1 for k, _, status in results if k == kind and status != 200),
            "p50_ms": round(statistics.median(times), 1), "p95_ms": round(_percentile(times, 95), 1),
            "mean_ms": round(statistics.fmean(times), 1),
        }
    print(json.dumps(report, indent=2))
    return report


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _photos(folder: Path | None, index: Path) -> list[Path]:
    folder = folder or next((f for f in [index.parent / "catalog" / "queries"] if f.is_dir()), None)  # `vitrina demo`'s layout
    if folder is not None:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    else:
        from sqlalchemy import select

        from indexer.store.schema import ImageRow
        from indexer.store.reader import IndexStore

        with IndexStore.open(index) as store, store.engine.connect() as conn:
            locations = conn.execute(select(ImageRow.location).limit(200)).scalars().all()
        found = [Path(p) for p in locations if not p.startswith(("http://", "https://")) and Path(p).is_file()][:64]
    if not found:
        raise SystemExit(f"no photos found (give --photos DIR); looked in {folder or index}")
    return found


class _Server:
    """`vitrina serve` as a subprocess on a free loopback port, stopped on exit."""

    def __init__(self, index: Path, extra: list[str]):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, *_serve_module(), "--index", str(index), "--host", "127.0.0.1",
                        "--port", str(self.port), "--log-level", "warning", *extra]

    def __enter__(self) -> _Server:
        import httpx

        self.log = tempfile.TemporaryFile()
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
        try:
            with httpx.Client(timeout=2.0) as client:
                while True:
                    if self.process.poll() is not None:
                        self.log.seek(0)
                        raise SystemExit(f"vitrina serve exited with {self.process.returncode}:\n{self.log.read().decode(errors='replace')}")
                    try:
                        if client.get(f"{self.base}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.perf_counter() - started > 300:
                        raise SystemExit("vitrina serve was not ready within 300 s")
                    time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise
        self.start_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _serve_module() -> list[str]:
    from vitrina.cli import cli

    return ["-m", "vitrina", "serve"] if "serve" in cli.commands else ["-m", "vitrina.commands.serve"]


if __name__ == "__main__":
    main(configure(argparse.ArgumentParser(prog="python -m bench.serve_latency", description=__doc__.split("\n\n")[0])).parse_args())
