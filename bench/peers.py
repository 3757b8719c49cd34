"""vitrina beside peer engines (txtai, LanceDB, clip-retrieval) on the same vectors and metadata rows.

    python -m bench peers                          # 20k and 100k products
    python -m bench peers --scales 2000            # a quick check
    python -m bench peers --peers lancedb          # one peer only

Data: ``--scales`` products, each with ONE 512-d text vector (``bench.synthetic.synthetic_vectors``, clustered
unit vectors, seed 0, no image vectors) and a metadata row (id, title, price, category, brand, color) identical
for every engine.  Queries: 200 ``sample_queries`` near the product vectors (seed 7); the knobs of the peers are
tuned on 100 other ones (seed 11), so the reported recall is measured on queries the tuning did not see.

Ground truth, the same for every engine: the exact top-10 products by cosine between the query and the
product's text vector (``faiss.IndexFlatIP``).  vitrina's products have no photos here, so its fused score
is a monotone function of that cosine (the image side falls back to the text z-score; the query words match
no product, so BM25 and field evidence add 0): its recall measures its candidate search, not its ranking.

vitrina runs in this process (project venv): the folder is built by ``build_synthetic_bulk`` (``put_many``,
one commit) with ``index_type="auto"``; (a) the full engine, everything on (BM25, field evidence, re-ranker
if trained, calibration), queried by a text that a stand-in encoder maps to the query vector (its ``encode``
time is subtracted); (b) vector-only: ``search(vector=..., lexical_weight=0, field_weight=0, rerank=False)``.

Each peer runs in its own virtual environment, ``bench/results/peers-venv-<name>`` (``python3 -m venv`` +
``pip install <peer>``, created on first use, reused while its marker file matches), as a subprocess running
``bench/peer_worker.py``; a peer that cannot be installed, imported or run is reported "not available: <why>".
Everything (builds too) runs single-threaded: OMP/MKL/OpenBLAS/Rayon/Lance threads = 1, FAISS omp threads = 1.
Latency is wall time of one k=10 query returning each hit's metadata row; p50/p95 over the 200 queries after
5 warm-up queries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common

DIM = 512
K = 10
WORKER = Path(__file__).resolve().parent / "peer_worker.py"

#: pip requirements and the module that must import, per peer.  clip-retrieval's ``clip-anytorch`` dependency
#: imports ``pkg_resources``, which setuptools dropped (81+), so its venv gets an older setuptools beside it.
PEERS: dict[str, dict[str, Any]] = {
    "txtai": {"pip": ["txtai"], "module": "txtai", "dist": "txtai"},
    "lancedb": {"pip": ["lancedb"], "module": "lancedb", "dist": "lancedb"},
    "clip-retrieval": {"pip": ["clip-retrieval", "setuptools<81"], "module": "clip_retrieval.clip_back",
                       "dist": "clip-retrieval"},
}

#: The environment every timed process runs with: one thread everywhere.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1",
              "LANCE_CPU_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
              "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}


# -- the peers' virtual environments ----------------------------------------------------------------


def venv_dir(name: str, root: Path = common.RESULTS) -> Path:
    return root / f"peers-venv-{name}"


def ensure_venv(name: str, *, timeout: float = 1800, root: Path = common.RESULTS, log=print) -> tuple[Path | None, str]:
    """(the venv's python, its peer version) or (None, why not).  Creates ``peers-venv-<name>`` with
    ``python3 -m venv`` and ``pip install <peer>`` (pip's configured index and constraints as they are)
    unless its marker says that install already succeeded; a failed install or import is retried (in the same
    venv) on the next run."""
    spec = PEERS[name]
    folder = venv_dir(name, root)
    python = folder / "bin" / "python"
    marker = folder / "peer-installed.json"
    if marker.is_file() and python.exists():
        info = json.loads(marker.read_text())
        if info.get("pip") == spec["pip"]:
            return python, info.get("version", "?")
    folder.parent.mkdir(parents=True, exist_ok=True)
    base = shutil.which("python3") or sys.executable
    started = time.perf_counter()
    pip = " ".join(spec["pip"])
    log(f"  installing {name} into {folder} (pip install {pip}; up to {timeout:.0f} s)...", flush=True)
    try:
        if not python.exists():  # an existing venv is completed in place: pip installs only what is missing
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run([base, "-m", "venv", str(folder)], check=True, capture_output=True, text=True, timeout=120)
        with open(folder / "install.log", "w") as out:
            done = subprocess.run([str(python), "-m", "pip", "install", *spec["pip"]], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, env={**os.environ, "PIP_PROGRESS_BAR": "off"})
    except subprocess.TimeoutExpired:
        return None, f"pip install {pip} ran past {timeout:.0f} s"
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"venv creation failed: {str(getattr(exc, 'stderr', '') or exc).strip()[-300:]}"
    if done.returncode != 0:
        return None, f"pip install {pip} failed: {_pip_error(folder / 'install.log')}"
    probe = subprocess.run(
        [str(python), "-I", "-c", f"import importlib.metadata as m, {spec['module']}; print(m.version({spec['dist']!r}))"],
        capture_output=True, text=True, timeout=600, env={**os.environ, **ONE_THREAD})
    if probe.returncode != 0:
        return None, f"import {spec['module']} failed: {_last_line(probe.stderr)}"
    version = probe.stdout.strip().splitlines()[-1]
    marker.write_text(json.dumps({"pip": spec["pip"], "version": version,
                                  "install_s": round(time.perf_counter() - started, 1)}) + "\n")
    log(f"  {name} {version} installed in {time.perf_counter() - started:.0f} s", flush=True)
    return python, version


def _pip_error(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors[0] if errors else (lines[-1] if lines else "no output"))[:300]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


# -- the data every engine gets ----------------------------------------------------------------------


def metadata_rows(products: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """The rows ``build_synthetic_bulk`` stores (same ids, titles, prices, categories, brands, colours)."""
    from bench.synthetic import BRANDS, CATEGORIES

    prices = np.random.default_rng(seed).integers(1, 500, products).astype(float)
    return [{"id": f"SKU-{i:07d}", "title": f"product {i}", "price": float(prices[i]),
             "category": CATEGORIES[i % len(CATEGORIES)], "brand": BRANDS[i % len(BRANDS)],
             "color": ("red", "blue", "green")[i % 3]} for i in range(products)]


def prepare(products: int, folder: Path, *, queries: int, tune_queries: int = 100, seed: int = 0) -> dict[str, Any]:
    """Vectors, metadata, queries and exact truth for one scale, written to ``folder`` for the workers."""
    from bench.synthetic import synthetic_vectors
    from indexer.store.index_types import exact_neighbours, sample_queries

    text, images = synthetic_vectors(products, DIM, images_per_product=0, seed=seed)
    query_vectors = sample_queries(text, queries, seed=7)
    tune_vectors = sample_queries(text, tune_queries, seed=11)
    data = {"text": text, "images": images, "meta": metadata_rows(products, seed=seed), "queries": query_vectors,
            "truth": exact_neighbours(text, query_vectors, K), "tune_queries": tune_vectors,
            "tune_truth": exact_neighbours(text, tune_vectors, K)}
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "vectors.npy", text)
    np.save(folder / "queries.npy", query_vectors)
    np.save(folder / "tune_queries.npy", tune_vectors)
    np.save(folder / "tune_truth.npy", data["tune_truth"])
    with open(folder / "meta.jsonl", "w") as out:
        for row in data["meta"]:
            out.write(json.dumps(row) + "\n")
    return data


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int = K) -> float:
    return round(float(np.mean([len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth)])), 4)


def _row_of(product_id: str) -> int:
    return int(product_id.rsplit("-", 1)[1])


# -- vitrina -------------------------------------------------------------------------------------------------


def run_vitrina(data: dict[str, Any], folder: Path, *, warmup: int = 5) -> list[dict[str, Any]]:
    """Build the folder (auto index type, bulk put, one commit), then time (a) the full engine and (b) vector-only,
    alternated query by query."""
    import inspect

    import faiss

    from bench.latency import VectorEncoder
    from indexer.encoders.base import ModelIdentity
    from indexer.store import vectors as vector_files
    from indexer.store.reader import IndexStore
    from search import SearchEngine
    from bench.synthetic import build_synthetic_bulk

    faiss.omp_set_num_threads(1)
    vector_files.set_threads(1)
    identity = ModelIdentity(name="synthetic", pretrained=None, fingerprint="synthetic", dim=DIM)
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    build_synthetic_bulk(folder, text=data["text"], images=data["images"], identity=identity, index_type="auto")
    build_s = time.perf_counter() - started
    queries = data["queries"]
    texts = [f"q{i}" for i in range(len(queries))]  # words no product has: BM25 and field evidence find nothing
    engine = SearchEngine(IndexStore.open(folder), VectorEncoder(queries, texts, identity))
    vector_files.set_threads(1)
    has_vector = "vector" in inspect.signature(SearchEngine.search).parameters

    def vector_only(i: int):
        if has_vector:
            return engine.search(vector=queries[i], lexical_weight=0, field_weight=0, rerank=False, k=K)
        return engine.search(texts[i], lexical_weight=0, field_weight=0, rerank=False, k=K)

    for i in range(min(warmup, len(queries))):
        engine.search(texts[i], k=K)
        vector_only(i)
    full_ms, full_found, vec_ms, vec_found, encode_ms = [], [], [], [], []
    stages: dict[str, dict[str, list[float]]] = {"full": {}, "vector": {}}
    mismatched = 0
    for i in range(len(queries)):
        t = time.perf_counter()
        result = engine.search(texts[i], k=K)
        wall = (time.perf_counter() - t) * 1000
        encode_ms.append(result.timings.get("encode", 0.0))
        full_ms.append(wall - result.timings.get("encode", 0.0))
        full_found.append([_row_of(h.product_id) for h in result.hits])
        for stage, ms in result.timings.items():
            stages["full"].setdefault(stage, []).append(ms)
        t = time.perf_counter()
        result = vector_only(i)
        wall = (time.perf_counter() - t) * 1000
        vec_ms.append(wall - (0.0 if has_vector else result.timings.get("encode", 0.0)))
        vec_found.append([_row_of(h.product_id) for h in result.hits])
        for stage, ms in result.timings.items():
            stages["vector"].setdefault(stage, []).append(ms)
        if i == 0 and result.hits:  # the hit carries its metadata row: the same as every peer's
            hit, row = result.hits[0].product, data["meta"][_row_of(result.hits[0].product_id)]
            got = {**hit, "color": hit.get("attributes", {}).get("color")}
            mismatched = sum(1 for c in row if str(got.get(c)) != str(row[c]))
    info = engine.info()
    commit = engine.store.read_commit()
    engine.close()
    text_file = [{k: v for k, v in segment.items() if k != "sha256"}
                 for segment in (commit.get("segments") or {}).get("text", [])]
    settings = {"index_type": "auto", "vector_indexes": info["vector_indexes"], "counts": info["counts"],
                "text_segments": text_file, "search_vector_param": has_vector}
    load = [round(x, 2) for x in os.getloadavg()]
    index = info["vector_indexes"].get("text")
    common_notes = f"auto -> {index}; exact re-scoring of candidates from SQLite"
    return [
        {"engine": "vitrina (a) full", "build_s": round(build_s, 2), "p50_ms": common.p50(full_ms), "p95_ms": common.p95(full_ms),
         "recall": recall_at_k(full_found, data["truth"]), "available": True, "load_avg": load,
         "notes": f"{common_notes}; BM25+fields+calibration on, text->stand-in encoder (encode p50 "
                  f"{common.p50(encode_ms)} ms subtracted)",
         "settings": settings, "sample_mismatched_fields": mismatched,
         "stage_p50_ms": {k: common.p50(v) for k, v in stages["full"].items()}},
        {"engine": "vitrina (b) vector-only", "build_s": round(build_s, 2), "p50_ms": common.p50(vec_ms),
         "p95_ms": common.p95(vec_ms), "recall": recall_at_k(vec_found, data["truth"]), "available": True, "load_avg": load,
         "notes": f"{common_notes}; " + ("search(vector=..., lexical_weight=0, field_weight=0, rerank=False)" if has_vector
                                         else "text via stand-in encoder, lexical_weight=0, field_weight=0"),
         "settings": settings, "sample_mismatched_fields": mismatched,
         "stage_p50_ms": {k: common.p50(v) for k, v in stages["vector"].items()}},
    ]


# -- the peers -----------------------------------------------------------------------------------------------


def run_peer(name: str, python: Path, data_dir: Path, work: Path, data: dict[str, Any], *, timeout: float,
             target: float) -> dict[str, Any]:
    """One worker subprocess in the peer's venv; its row (or "not available: <why>")."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(ONE_THREAD)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(python), "-I", str(WORKER), "--peer", name, "--data", str(data_dir), "--work", str(work),
               "--out", str(out), "--k", str(K), "--target", str(target)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return _unavailable(name, f"worker ran past {timeout:.0f} s")
    (work.parent / f"{name}.stderr.log").write_text(done.stderr)
    for line in done.stderr.splitlines():
        if line.startswith("@@ "):
            print(f"  [{name}] {line[3:]}", flush=True)
    if not out.is_file():
        return _unavailable(name, f"worker exited {done.returncode}: {_last_line(done.stderr)}")
    result = json.loads(out.read_text())
    if "error" in result:
        return _unavailable(name, result["error"])
    row = {"engine": name, "build_s": result["build_s"], "p50_ms": common.p50(result["ms"]), "p95_ms": common.p95(result["ms"]),
           "recall": recall_at_k(result["found"], data["truth"]), "available": True,
           "load_avg": [round(x, 2) for x in os.getloadavg()], "settings": result["settings"], "tuning": result["tuning"],
           "sample_hit": result["sample_hit"], "sample_mismatched_fields": result["sample_mismatched_fields"],
           "versions": result.get("versions"), "parts_p50_ms": result.get("parts_p50_ms"), "import_s": result.get("import_s"),
           "worker_wall_s": round(time.perf_counter() - started, 1)}
    row["notes"] = _peer_notes(name, result)
    return row


def _peer_notes(name: str, result: dict[str, Any]) -> str:
    s, tuning = result["settings"], result["tuning"]
    knob = tuning["knob"]
    knob_text = "default" if knob == "default" else ",".join(f"{k}={v}" for k, v in knob.items())
    reached = "" if tuning["reached"] else f" (target not reached; best tuning recall {tuning['recall']:.3f})"
    version = (result.get("versions") or {}).get(PEERS[name]["dist"], "?")
    if name == "txtai":
        nprobe = f", nprobe {s.get('default_nprobe')}->{s.get('nprobe')}" if s.get("nprobe") else ""
        return f"txtai {version}: faiss {s.get('index')}{nprobe}; SQL similar() + content store{reached}"
    if name == "lancedb":
        return f"lancedb {version}: IVF_PQ defaults, metric {s.get('metric')}; {knob_text}{reached}"
    if name == "clip-retrieval":
        parts = result.get("parts_p50_ms") or {}
        split = (f" (p50 faiss {parts['faiss_search_and_reconstruct_p50_ms']} ms + metadata "
                 f"{parts['map_to_metadata_p50_ms']} ms)" if parts else "")
        return (f"clip-retrieval {version}: autofaiss {s.get('index_key')} ({s.get('autofaiss_index_param')}) -> "
                f"{s.get('search_param')}; KnnService+{s.get('metadata_provider')}{split}{reached}")
    return knob_text


def _unavailable(name: str, why: str) -> dict[str, Any]:
    return {"engine": name, "available": False, "notes": f"not available: {why}"}


# -- the command -------------------------------------------------------------------------------------------------


def main(args) -> dict[str, Any]:
    scales = [int(s) for s in str(args.scales).split(",") if s.strip()]
    names = [n.strip() for n in args.peers.split(",") if n.strip()] if args.peers else []
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peer(s) {unknown}; known: {sorted(PEERS)}")
    pythons: dict[str, tuple[Path | None, str]] = {}
    for name in names:
        pythons[name] = ensure_venv(name, timeout=args.install_timeout)
        if pythons[name][0] is None:
            print(f"  {name}: not available: {pythons[name][1]}", flush=True)
    work_root = Path(args.work) if args.work else common.RESULTS / "peers-work"
    rows: list[dict[str, Any]] = []
    for products in scales:
        print(f"== {products} products", flush=True)
        scale_dir = work_root / str(products)
        data = prepare(products, scale_dir / "data", queries=args.queries)
        for row in run_vitrina(data, scale_dir / "vitrina"):
            rows.append({"scale": products, **row})
            print(f"  {row['engine']}: build {row['build_s']} s, p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
                  f"recall@10 {row['recall']}; stage p50 {row['stage_p50_ms']}", flush=True)
        shutil.rmtree(scale_dir / "vitrina", ignore_errors=True)
        for name in names:
            python, version = pythons[name]
            if python is None:
                rows.append({"scale": products, **_unavailable(name, version)})
                continue
            print(f"  {name} {version}...", flush=True)
            row = run_peer(name, python, scale_dir / "data", scale_dir / name, data, timeout=args.peer_timeout,
                           target=args.target)
            rows.append({"scale": products, **row})
            print(f"  {name}: " + (f"build {row['build_s']} s, p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
                                   f"recall@10 {row['recall']}" if row["available"] else row["notes"]), flush=True)
            if not args.keep:
                shutil.rmtree(scale_dir / name, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(scale_dir, ignore_errors=True)
    table_rows = [{"engine": r["engine"], "scale": r["scale"], "build s": r.get("build_s"), "p50 ms": r.get("p50_ms"),
                   "p95 ms": r.get("p95_ms"), "recall@10": r.get("recall"), "notes": r.get("notes")} for r in rows]
    print(common.table(table_rows, ["engine", "scale", "build s", "p50 ms", "p95 ms", "recall@10", "notes"]))
    out = {"definition": {
        "data": f"{DIM}-d clustered unit vectors (bench.synthetic.synthetic_vectors, seed 0), one text vector per product, "
                "no image vectors; metadata rows id,title,price,category,brand,color identical for every engine",
        "queries": f"{args.queries} sample_queries(seed=7) near the product vectors; peers tuned on 100 others (seed=11)",
        "ground_truth": "exact top-10 products by cosine(query, product text vector), faiss.IndexFlatIP",
        "latency": "wall ms of one k=10 query returning each hit's metadata row, single thread everywhere, "
                   "5 warm-up queries; vitrina (a) minus its stand-in encoder's encode time",
        "threads": ONE_THREAD, "target_recall": args.target},
        "peers": {n: {"available": p is not None, "version_or_reason": v} for n, (p, v) in pythons.items()},
        "rows": rows}
    path = common.write_results("peers", out, out=Path(args.out) if args.out else common.RESULTS / "peers.json")
    print(f"wrote {path}")
    return out


def configure(parser) -> None:
    parser.add_argument("--scales", default="20000,100000", help="products per run, comma-separated")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"peers to run, comma-separated (of {', '.join(PEERS)}; '' for none)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.99, help="recall@10 a peer's knob is raised to")
    parser.add_argument("--install-timeout", type=float, default=1800, help="seconds for one peer's pip install")
    parser.add_argument("--peer-timeout", type=float, default=1800, help="seconds for one peer's build + tuning + timing")
    parser.add_argument("--work", default=None, help="where data files and indexes go (default bench/results/peers-work)")
    parser.add_argument("--keep", action="store_true", help="keep the data files and built indexes")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/peers.json)")
    parser.set_defaults(run=main)
