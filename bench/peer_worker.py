"""One peer engine on the vectors and metadata ``bench/peers.py`` wrote: build, tune, time.  Not part of vitrina.

Run by ``bench.peers`` with the peer's own virtual environment's python (``python -I``: nothing of the project
is importable, only numpy, the standard library and the peer's packages):

    peers-venv-lancedb/bin/python -I bench/peer_worker.py --peer lancedb --data DIR --work DIR --out result.json

``--data`` holds ``vectors.npy`` (n, d) float32 unit rows, ``meta.jsonl`` (row i: product i's id, title, price,
category, brand, color), ``queries.npy``, ``tune_queries.npy`` and ``tune_truth.npy`` (exact top-k rows of the
tuning queries).  The worker builds the peer's index with its default / recommended settings for precomputed
vectors, raises the peer's search knob until recall@k on the tuning queries reaches ``--target`` (where it has
one), then times single k-NN queries that return each hit's metadata row, one thread, and writes what it found
(product rows per query, ms per query, build seconds, settings) as JSON.  Recall on the timed queries is
computed by the caller.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run with -I (isolated): its sibling modules, nothing else
from peer_worker_base import EF_LADDER, LADDER, META_COLUMNS, Peer, recall, row_of  # noqa: F401  (a script: siblings import plainly)
from peer_engines import ClipRetrieval, Lance, Txtai


PEER_CLASSES = {"txtai": Txtai, "lancedb": Lance, "clip-retrieval": ClipRetrieval}


# -- driver ------------------------------------------------------------------------------------------------


def tune(peer: Peer, target: float, log) -> dict:
    """Raise the peer's knob until recall@k on the tuning queries reaches ``target``.  Knobs come cheapest first,
    in groups (LanceDB: one group per refine_factor, nprobes rising within it); within a group the first setting
    reaching the target ends the group, as does (LanceDB) a plateau (recall up by < 0.002); the fastest setting that
    reached the target in up to 3 groups is kept, else the one with the best recall."""
    tune_q, truth = peer.data["tune_queries"], peer.data["tune_truth"]
    tried = []

    def measure() -> tuple[float, float]:
        found, started = [], time.perf_counter()
        for i, q in enumerate(tune_q):
            found.append([row_of(r["id"]) for r in peer.search(f"tune{i}", q)])
        return recall(found, truth, peer.k), (time.perf_counter() - started) * 1000 / len(tune_q)

    base_recall, base_ms = measure()
    tried.append({"knob": "default", "recall": round(base_recall, 4), "ms": round(base_ms, 3)})
    log(f"    default: recall {base_recall:.4f}, {base_ms:.2f} ms")
    knobs = peer.knobs()
    if base_recall >= target or not knobs:
        return {"knob": "default", "recall": base_recall, "reached": base_recall >= target, "tried": tried}
    reached: list[tuple[float, dict, float]] = []
    best: tuple[float, dict | str] = (base_recall, "default")
    done_group, previous = object(), (None, base_recall)  # LanceDB's default is its refine_factor=None group's start
    for knob in knobs:
        group = knob.get("refine_factor", "-")
        if group == done_group:
            continue
        peer.apply(knob)
        r, ms = measure()
        tried.append({"knob": knob, "recall": round(r, 4), "ms": round(ms, 3)})
        log(f"    {knob}: recall {r:.4f}, {ms:.2f} ms")
        if r > best[0]:
            best = (r, knob)
        if r >= target:
            reached.append((ms, knob, r))
            done_group = group
            if len(reached) >= 3 or group == "-":
                break
        elif "refine_factor" in knob and previous[0] == group and r - previous[1] < 0.002:
            done_group = group  # plateau: more probes do not help without more re-ranking
        previous = (group, r)
    if reached:
        _, knob, r = min(reached, key=lambda x: x[0])
        peer.apply(knob)
        return {"knob": knob, "recall": r, "reached": True, "tried": tried}
    if isinstance(best[1], dict):
        peer.apply(best[1])
    else:
        peer.restore()
    return {"knob": best[1], "recall": best[0], "reached": False, "tried": tried}


def run(args) -> dict:
    data_dir, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"@@ {msg}", file=sys.stderr, flush=True)  # noqa: E731  (the caller shows "@@ " lines)
    data = {
        "vectors": np.load(data_dir / "vectors.npy"),
        "queries": np.load(data_dir / "queries.npy"),
        "tune_queries": np.load(data_dir / "tune_queries.npy"),
        "tune_truth": np.load(data_dir / "tune_truth.npy"),
        "meta": [json.loads(line) for line in (data_dir / "meta.jsonl").read_text().splitlines()],
    }
    try:
        import faiss  # every peer here uses FAISS or may; one OpenMP thread

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    peer = PEER_CLASSES[args.peer](data, work, args.k)
    started = time.perf_counter()
    peer.imports()
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    peer.build()
    build_s = time.perf_counter() - started
    log(f"  {peer.name}: built in {build_s:.1f} s; {peer.settings()}")
    tuning = tune(peer, args.target, log)
    for i in range(args.warmup):
        peer.search(f"query{i}", data["queries"][i])
    found, ms, sample = [], [], None
    for i, q in enumerate(data["queries"]):
        started = time.perf_counter()
        rows = peer.search(f"query{i}", q)
        ms.append((time.perf_counter() - started) * 1000)
        found.append([row_of(r["id"]) for r in rows])
        if i == 0:
            sample = rows[0] if rows else None
    parts = peer.parts(data["queries"])
    # every hit must carry its metadata row, the same as the data's
    meta, mismatched = data["meta"], 0
    if sample:
        truth_row = meta[row_of(sample["id"])]
        mismatched = sum(1 for c in META_COLUMNS if (row_of(sample.get(c)) != row_of(truth_row[c]) if c == "id"
                                                     else str(sample.get(c)) != str(truth_row[c])))
    return {"peer": peer.name, "build_s": round(build_s, 2), "import_s": round(import_s, 2), "settings": peer.settings(), "tuning": tuning,
            "ms": [round(x, 4) for x in ms], "found": found, "sample_hit": _jsonable(sample), "sample_mismatched_fields": mismatched, "parts_p50_ms": parts,
            "notes": peer.notes, "python": sys.version.split()[0], "versions": _versions()}


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for dist in ("txtai", "lancedb", "pylance", "clip-retrieval", "autofaiss", "faiss-cpu", "numpy", "pyarrow", "torch", "pandas"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=sorted(PEER_CLASSES), required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    try:
        result = run(args)
    except Exception as exc:  # noqa: BLE001 - reported as "not available" by the caller
        traceback.print_exc()
        result = {"peer": args.peer, "error": f"{type(exc).__name__}: {exc}"[:500]}
    Path(args.out).write_text(json.dumps(_jsonable(result)) + "\n")
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
