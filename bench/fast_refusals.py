"""How long `vitrina` takes to refuse bad input: a fresh process each time, as a user runs it.

    python -m bench fast-refusals [--repeat 3] [--target 2.0]

Builds a small index once (a 30-product demo catalog, the bundled model), then runs each refusal
``--repeat`` times as ``python -m vitrina ...`` and reports the wall time per case: a bad filter field,
a CSV without an ``id`` column, an unknown catalog format, a catalog without one valid row, a missing
photo, a refused photo URL (loopback), an unknown product id, a missing index folder and an unknown
device.  Every case must exit 1 (2 for a bad option value, as click does) with its message and no traceback; the target is the slowest run of
each case <= ``--target`` seconds (the model and torch are never loaded for these).  A benchmark,
not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common


USAGE_ERRORS = {"search: unknown device"}


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (fresh processes)")
    parser.add_argument("--target", type=float, default=2.0, help="seconds the slowest run of a case may take")
    parser.add_argument("--out", type=Path, help="result JSON (default: bench/results/fast-refusals-<time>.json)")
    parser.set_defaults(run=main)
    return parser


def cases(work: Path, index: Path) -> list[tuple[str, list[str], str]]:
    """(name, vitrina arguments, expected message) per refusal; each exits 1 (2: click's usage errors)."""
    (work / "no-id.csv").write_text("sku,title\n1,red mug\n")
    (work / "catalog.txt").write_text('{"id": "a", "title": "red mug"}\n')
    (work / "junk.jsonl").write_text("not json\n{\"id\": \"a\"}\n")
    return [
        ("search: unknown filter field", ["search", "red", "--where", "colour=red", "--index", str(index)], "unknown filter field 'colour'"),
        ("search: bad filter syntax", ["search", "red", "--where", "price<<5", "--index", str(index)], "price"),
        ("search: missing photo", ["search", "--image", str(work / "nope.jpg"), "--index", str(index)], "file not found"),
        ("search: photo URL on loopback", ["search", "--image", "http://127.0.0.1:9/a.jpg", "--index", str(index)], "loopback"),
        ("search: unknown product", ["search", "--like", "NOPE", "--index", str(index)], "unknown product id"),
        ("search: missing index", ["search", "red", "--index", str(work / "no-index")], "not an index folder"),
        ("search: unknown device", ["search", "red", "--device", "tpu", "--index", str(index)], "--device"),
        ("index: CSV without id column", ["index", str(work / "no-id.csv"), "--index", str(work / "i1")], "'id' column"),
        ("index: unknown format", ["index", str(work / "catalog.txt"), "--index", str(work / "i2")], "unknown catalog format"),
        ("index: no valid row", ["index", str(work / "junk.jsonl"), "--index", str(work / "i3")], "could be indexed"),
    ]


def run_once(args: list[str], *, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "vitrina", *args], capture_output=True, text=True, env=env, timeout=300)
    return time.perf_counter() - started, result


def main(args: argparse.Namespace) -> None:
    from vitrina.demo.catalog import generate_catalog

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="vitrina-refusals-") as tmp:
        work = Path(tmp)
        generate_catalog(work / "catalog", products=30, seed=5, image_size=64, queries=4)
        index = work / "index"
        seconds, built = run_once(["index", str(work / "catalog" / "catalog.jsonl"), "--index", str(index)], env=env)
        if built.returncode:
            raise SystemExit(f"building the index failed:\n{built.stderr}")
        _, searched = run_once(["search", "red", "--index", str(index), "-k", "1"], env=env)
        print(f"setup: index of 30 products in {seconds:.1f}s", file=sys.stderr)

        rows: list[dict[str, Any]] = []
        for name, case_args, message in cases(work, index):
            times, last = [], None
            for _ in range(args.repeat):
                took, last = run_once(case_args, env=env)
                times.append(took)
            assert last is not None
            output = last.stdout + last.stderr
            ok = last.returncode == (2 if name in USAGE_ERRORS else 1) and message in output and "Traceback" not in output
            rows.append({"case": name, "exit": last.returncode, "message_ok": ok, "p50_s": common.p50(times),
                         "max_s": round(max(times), 3), "within_target": max(times) <= args.target,
                         "said": output.strip().splitlines()[-1][:160] if output.strip() else ""})
            leftovers = [p.name for p in work.glob("i[123]")]
            if leftovers:
                rows[-1]["left_behind"] = leftovers
        reference, _ = run_once(["search", "red", "--index", str(index), "-k", "1"], env=env)
    print(common.table(rows, ["case", "exit", "message_ok", "p50_s", "max_s", "within_target"]))
    print(f"\nfor comparison, a search that loads the model and answers: {reference:.2f}s "
          f"({'ok' if searched.returncode == 0 else 'failed'})")
    path = common.write_results("fast-refusals", {"target_s": args.target, "repeat": args.repeat, "rows": rows,
                                                  "answering_search_s": round(reference, 3)}, args.out)
    print(f"results: {path}")
    failed = [r["case"] for r in rows if not (r["message_ok"] and r["within_target"]) or r.get("left_behind")]
    if failed:
        print(json.dumps({"missed": failed}), file=sys.stderr)
        raise SystemExit(1)
