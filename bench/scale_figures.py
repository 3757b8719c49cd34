"""Per-node figures for the 100M-product plan (docs/scale.md), measured on whatever machine runs it.

    python -m bench.scale_figures                               # every section (~30 min on 2 loaded vCPUs)
    python -m bench.scale_figures --sections postgres,sqlite    # some sections; the others stay in the JSON

embed: ViT-B-32 (random weights) images/s and texts/s (vitrina's trimmed text tower), batch 32, torch threads
2 and 1 alternated.  memory: per FAISS type as ``make_index`` wraps it (``IndexIDMap2``, inner product) on
clustered 512-d unit vectors: train/add s, file and resident bytes per vector (RSS growth of a fresh process
reading the file; IVF also without the id map), efSearch / nprobe / re-scoring depth tuned to recall@10 0.95
as ``segments.build`` does, single-thread p50, recall re-scored from fp16 / SQ8 copies.  merge: vitrina's merge (``segments.build`` of the union) vs
FAISS ``merge_from`` of IVF-PQ segments sharing one trained quantizer.  postgres: a throwaway cluster with
vitrina's tables and words triggers (``postgres_backend``) and synthetic products: bytes per row / product
per table, insert rate.  sqlite: ``index_vectors`` of synthetic products: file bytes per product.
Each section records the load average before and after it and merges into ``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.synthetic import unit_rows

SECTIONS = ("embed", "memory", "merge", "postgres", "sqlite")
TYPES = ("Flat", "HNSW32", "SQ8", "PQ32np", "IVF1024,PQ64np", "IVF4096,PQ32np")
WORDS = ("red blue green black white grey navy beige pink yellow orange purple brown cotton wool linen leather suede denim silk "  # noqa: SIM905
         "polyester steel oak walnut ceramic glass bamboo plastic striped dotted plain checked floral slim regular oversized "
         "classic vintage modern soft warm light heavy waterproof breathable organic recycled mens womens kids unisex shirt tee "
         "jacket coat dress skirt jeans trousers shorts sweater hoodie boots sneakers sandals loafers bag backpack wallet belt "
         "hat scarf gloves mug bowl plate lamp chair table sofa rug cushion curtain vase candle clock mirror shelf desk bed "
         "pillow towel blanket bottle kettle pan knife watch ring necklace bracelet earrings sunglasses phone case charger cable "
         "speaker headphones keyboard mouse with and for the a in of to size pack set new edition premium everyday travel "
         "outdoor home office kitchen garden summer winter spring autumn collection fit stretch pocket zip button hood sleeve "
         "long short high low").split()


def _product_texts(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    """(title, description, model code): words drawn Zipf-like from ``WORDS``, one unique-ish code per title."""
    p = 1.0 / np.arange(1, len(WORDS) + 1) ** 0.8
    p /= p.sum()
    codes = [f"{chr(65 + i % 26)}{chr(65 + (i // 26) % 26)}-{rng.integers(1000, 99999)}" for i in range(n)]
    return [(" ".join(rng.choice(WORDS, int(rng.integers(6, 10)), p=p)) + " " + code,
             " ".join(rng.choice(WORDS, int(rng.integers(25, 36)), p=p)), code) for code in codes]


def _section(name: str, args: Any, run: Any) -> dict[str, Any]:
    before, started = common.machine(), time.perf_counter()
    print(f"== {name} (load {before['load_avg_1_5_15']})", flush=True)
    data = run(args)
    data.update(measured_on=f"{os.cpu_count()} vCPUs, no GPU used, other work running beside it",
                command=f"python -m bench.scale_figures --sections {name} " + " ".join(
                    f"--{k.replace('_', '-')} {v!r}" for k, v in vars(args).items() if k not in ("sections", "run", "out")),
                load_before=before["load_avg_1_5_15"], load_after=common.machine()["load_avg_1_5_15"],
                started=before["time"], seconds=round(time.perf_counter() - started, 1))
    print(json.dumps(data, indent=1, default=str)[:3000], flush=True)
    return data


def run_embed(args: Any) -> dict[str, Any]:
    import torch

    from indexer.config import ModelConfig
    from indexer.encoders.loading import load_encoder

    common.quiet_open_clip()
    encoder = load_encoder(ModelConfig(name="ViT-B-32", pretrained="random"), batch_size=32)
    gen = torch.Generator().manual_seed(0)
    pixels = [torch.rand(32, 3, 224, 224, generator=gen) * 2 - 1 for _ in range(args.batches)]
    texts = [". ".join(t[:2]) for t in _product_texts(np.random.default_rng(0), 32 * args.batches)]
    lengths = (encoder.tokenizer(texts) != 0).sum(dim=1)
    times: dict[str, list[float]] = {}
    encoder.encode_pixels(pixels[0][:2]), encoder.encode_texts(texts[:2])  # warm-up
    for _ in range(args.repeats):
        for threads in (2, 1):
            torch.set_num_threads(threads)
            started = time.perf_counter()
            for batch in pixels:
                encoder.encode_pixels(batch)
            times.setdefault(f"images_per_s_{threads}_threads", []).append(32 * args.batches / (time.perf_counter() - started))
            started = time.perf_counter()
            encoder.encode_texts(texts)
            times.setdefault(f"texts_per_s_{threads}_threads", []).append(len(texts) / (time.perf_counter() - started))
    out: dict[str, Any] = {k: round(float(np.median(v)), 2) for k, v in times.items()}
    out.update(model="ViT-B-32, random weights, eager torch fp32", batch_size=32, images=32 * args.batches, texts=len(texts),
               text_tokens_mean=round(float(lengths.float().mean()), 1), torch=torch.__version__, earlier_results=_earlier_results(),
               all_runs={k: [round(x, 2) for x in v] for k, v in times.items()})
    return out


def _earlier_results() -> list[dict[str, Any]]:
    """Images/s that ``bench indexing`` / ``bench encoder-runtime`` left in bench/results/, if any."""
    files = [(p.name, json.loads(p.read_text())) for p in sorted(common.RESULTS.glob("*.json")) if p.name.startswith(("indexing", "encoder-runtime"))]
    return [{"file": name, "machine": data.get("machine"), "rows": [
        {k: v for k, v in row.items() if "img_s" in k or k in ("model", "torch_threads", "batch_size")}
        for row in data.get("rows", []) if "ViT-B-32" in str(row.get("model"))]} for name, data in files]


_RSS_CHILD = """import json, sys, faiss
anon = lambda: next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('RssAnon:'))
before = anon(); index = faiss.read_index(sys.argv[1]); print(json.dumps(anon() - before))"""


def _resident_bytes(index: Any, folder: Path) -> tuple[int, int]:
    """(file bytes, anonymous RSS growth of a fresh process reading it)."""
    import faiss

    faiss.write_index(index, str(folder / "index.faiss"))
    result = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(folder / "index.faiss")], capture_output=True, text=True, check=True)
    return (folder / "index.faiss").stat().st_size, json.loads(result.stdout)


def _tune(index: Any, vectors: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    """``segments.build``'s tuning (re-scoring depths for compressed codes), timed single-thread, plus the recall of
    compressed codes without exact re-scoring and with the candidates re-scored by SQ8 codes instead."""
    import faiss

    from indexer.config import VectorIndexConfig
    from indexer.store import index_types
    from indexer.store import vectors as vector_files

    config = VectorIndexConfig()
    queries = index_types.sample_queries(vectors, config.tuning_queries)
    depths = (0,) if vector_files.stores_full_vectors(index) else config.rescore_depths
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    for rescore in depths:
        result = index_types.tune_search(index, queries, vectors, config.target_recall, ids=ids, rerank=rescore,
                                         max_value=config.max_nprobe if rescore else 1024, time_queries=True, config=config)
        if result.reached:
            break
    tune_s = time.perf_counter() - started
    times = [0.0]
    for i, query in enumerate(queries[:50] if rescore else ()):  # gather ``rescore`` random exact vectors (in RAM), score them
        rows = np.sort(np.random.default_rng(i).choice(len(vectors), rescore, replace=False))
        started = time.perf_counter()
        np.argpartition(-np.einsum("ij,j->i", vectors[rows], query), 10)  # no BLAS threads: one core, as FAISS here
        times.append(time.perf_counter() - started)
    rescore_ms = float(np.median(times[1:] or times)) * 1000
    search_ms = float(result.ms_per_query or 0.0)
    inner = faiss.downcast_index(index.index)
    out = {"ef_search": result.tuning.ef_search if isinstance(inner, faiss.IndexHNSW) else None,
           "nprobe": result.tuning.nprobe if "IVF" in type(inner).__name__ else None, "rescore": rescore,
           "recall_at_10": round(result.recall, 4), "reached": result.reached, "faiss_ms_p50_1thread": round(search_ms, 3),
           "rescore_ms_p50_in_ram": round(rescore_ms, 3), "total_ms_p50_1thread": round(search_ms + rescore_ms, 3), "tune_s": round(tune_s, 1)}
    if rescore:
        truth = index_types.exact_neighbours(vectors, queries, 10, ids=ids)
        plain = index_types.approximate_neighbours(index, queries, 10, tuning=result.tuning)
        sq8 = faiss.index_factory(vectors.shape[1], "SQ8", faiss.METRIC_INNER_PRODUCT)
        sq8.train(vectors)
        by_sq8 = index_types.approximate_neighbours(index, queries, 10, tuning=result.tuning, rerank=rescore, ids=ids,
                                                    vectors=sq8.sa_decode(sq8.sa_encode(vectors)))
        by_fp16 = index_types.approximate_neighbours(index, queries, 10, tuning=result.tuning, rerank=rescore, ids=ids,
                                                     vectors=vectors.astype(np.float16).astype(np.float32))
        out.update(recall_at_10_no_rescore=round(index_types.recall_at_k(plain, truth, 10), 4),
                   recall_at_10_rescored_by_sq8_codes=round(index_types.recall_at_k(by_sq8, truth, 10), 4),
                   recall_at_10_rescored_by_fp16=round(index_types.recall_at_k(by_fp16, truth, 10), 4))
    if type(inner).__name__ == "IndexPQ":  # a full scan of the codes: the cost of one code
        out["ns_per_code_scanned_1thread"] = round(search_ms * 1e6 / index.ntotal, 2)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return out


def run_memory(args: Any) -> dict[str, Any]:
    import faiss

    from indexer.store import vectors as vector_files

    n, dim = args.vectors, 512
    vectors = unit_rows(np.random.default_rng(0), n, dim, clustered=True)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index_type in args.types.split(";"):
            print(f"  {index_type} (load {os.getloadavg()[0]:.1f})", flush=True)
            index = vector_files.make_index(index_type, dim)
            started = time.perf_counter()
            index.train(vectors) if not index.is_trained else None  # as train_and_add (all of them: n <= 256k)
            train_s, started = time.perf_counter() - started, time.perf_counter()
            index.add_with_ids(vectors, ids)
            add_s = time.perf_counter() - started
            size, rss = _resident_bytes(index, Path(tmp))
            row: dict[str, Any] = {"index_type": index_type, "wrapper": "IndexIDMap2", "vectors": n, "train_s": round(train_s, 1),
                                   "add_s": round(add_s, 1), "add_s_per_100k": round(add_s * 1e5 / n, 1),
                                   "file_bytes_per_vector": round(size / n, 1), "rss_bytes_per_vector": round(rss / n, 1)}
            if "IVF" in index_type:  # the IVF alone keeps the ids too: what it costs without IndexIDMap2
                size, rss = _resident_bytes(inner := faiss.downcast_index(index.index), Path(tmp))
                ivf = faiss.extract_index_ivf(inner)
                row.update(no_id_map_file_bytes_per_vector=round(size / n, 1), no_id_map_rss_bytes_per_vector=round(rss / n, 1),
                           fixed_bytes=int(ivf.nlist * dim * 4 + 256 * dim * 4), code_bytes=int(ivf.code_size))
            rows.append({**row, **_tune(index, vectors, ids)})
    return {"dim": dim, "data": "clustered unit vectors (n/500 centres, noise 0.35: bench.synthetic.unit_rows)",
            "build_threads": os.cpu_count(), "rows": rows}


def run_merge(args: Any) -> dict[str, Any]:
    import faiss

    from indexer.config import VectorIndexConfig
    from indexer.store import index_types, segments

    n, dim, parts = args.merge_vectors, 512, args.segments
    vectors = unit_rows(np.random.default_rng(1), n, dim, clustered=True)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    config = VectorIndexConfig()
    ivf_type = f"IVF{index_types.ivf_lists(n)},PQ32np"
    out: dict[str, Any] = {"vectors": n, "segments": parts, "ivf_type": ivf_type}
    for index_type in ("HNSW32", ivf_type):
        started = time.perf_counter()
        _, info = segments.build(ids, vectors, index_type=index_type, dim=dim, config=config)
        out[f"vitrina_rebuild_{index_type}"] = {"seconds": round(time.perf_counter() - started, 1), **info}
    # one quantizer trained once and shared by every segment: a merge is then a copy of codes and ids
    trained = faiss.index_factory(dim, ivf_type, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    trained.train(vectors)
    train_s, started = time.perf_counter() - started, time.perf_counter()
    pieces = [faiss.clone_index(trained) for _ in range(parts)]
    for piece, rows in zip(pieces, np.array_split(np.arange(n), parts)):
        piece.add_with_ids(vectors[rows], ids[rows])
    add_s, started = time.perf_counter() - started, time.perf_counter()
    merged = faiss.clone_index(trained)
    for piece in pieces:
        merged.merge_from(piece, 0)
    merge_s = time.perf_counter() - started
    direct = faiss.clone_index(trained)
    direct.add_with_ids(vectors, ids)
    queries = index_types.sample_queries(vectors, 200)
    faiss.extract_index_ivf(merged).nprobe = faiss.extract_index_ivf(direct).nprobe = 16
    agree = index_types.recall_at_k(merged.search(queries, 10)[1], direct.search(queries, 10)[1], 10)
    out["faiss_merge_from"] = {"train_s": round(train_s, 1), "add_s_all_segments": round(add_s, 1), "merge_s": round(merge_s, 2),
                               "ntotal": int(merged.ntotal), "top10_agreement_with_direct_build": round(agree, 4),
                               "note": "bare IVF (ids in the inverted lists), merge_from(other, 0)"}
    return out


def run_postgres(args: Any) -> dict[str, Any]:
    """A throwaway cluster (initdb refuses root: run as postgres), unix socket only, removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="vitrina-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    for path in (root, sock):
        shutil.chown(path, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg = lambda name, *rest: as_pg + [shutil.which(name) or f"/usr/lib/postgresql/15/bin/{name}", "-D", str(data), *rest]
    subprocess.run(pg("initdb", "-U", "postgres", "-A", "trust", "--no-sync"), check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(pg("pg_ctl", "-w", "-l", str(root / "log"), "-o", f"-c fsync=off -c listen_addresses='' -k {sock}", "start"),
                   check=True, capture_output=True)
    start_s = time.perf_counter() - started
    try:
        out = _measure_postgres(f"postgresql+psycopg://postgres@/postgres?host={sock}", args.products)
    finally:
        subprocess.run(pg("pg_ctl", "-m", "fast", "stop"), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
    out["cluster_start_s"] = round(start_s, 1)
    return out


_PLAIN = ("CREATE TABLE text_vectors_plain (LIKE text_vectors)", "ALTER TABLE text_vectors_plain ALTER COLUMN vector SET STORAGE PLAIN",
          "INSERT INTO text_vectors_plain SELECT * FROM text_vectors", "VACUUM ANALYZE")  # the vectors without TOAST, for comparison
_SIZES = ("SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid), "
          "coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), (SELECT count(*) FROM {t}), "
          "(SELECT avg(pg_column_size(t.*)) FROM {t} t), (SELECT avg(pg_column_size(t.{col})) FROM {t} t) FROM pg_class c WHERE relname = '{t}'")


def _measure_postgres(url: str, n: int) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from indexer.store.postgres_backend import _WORDS_DDL
    from indexer.store.schema import AttributeValue, Base, ImageRow, Product, TextVector

    engine = create_engine(url)
    with engine.begin() as conn:  # as PostgresBackend.create_schema: + product_words (tsvector, GIN), word_counts, triggers
        Base.metadata.create_all(conn)
        for statement in _WORDS_DDL:
            conn.execute(text(statement))
    rng = np.random.default_rng(3)
    blob = lambda: rng.standard_normal(512).astype(np.float32).tobytes()
    rows: dict[Any, list[dict[str, Any]]] = {Product.__table__: [], ImageRow.__table__: [], TextVector.__table__: [], AttributeValue.__table__: []}
    for pk, (title, description, _) in enumerate(_product_texts(rng, n), start=1):
        attributes = {"color": str(rng.choice(WORDS[:12])), "material": str(rng.choice(WORDS[13:25])), "size": str(rng.choice(["S", "M", "L", "42"]))}
        rows[Product.__table__].append({
            "pk": pk, "id": f"SKU-{pk:09d}", "row": pk, "title": title, "description": description, "price": float(rng.integers(100, 50000)) / 100,
            "category": str(rng.choice(WORDS[40:80])), "brand": f"Brand{int(rng.integers(0, 5000))}", "attributes": attributes,
            "content_hash": os.urandom(32).hex(), "embed_hash": os.urandom(32).hex(), "generation": 1})
        rows[ImageRow.__table__] += [{"product_pk": pk, "position": j, "segment": 1, "vector": blob(),  # 1.5 images per product
                                      "location": f"https://cdn.example.com/p/{pk:09d}/{j}.jpg"} for j in range(1 + pk % 2)]
        rows[TextVector.__table__].append({"product_pk": pk, "vector": blob(), "segment": 1})
        rows[AttributeValue.__table__] += [{"product_pk": pk, "key": k, "text": v, "number": 42.0 if v == "42" else None}
                                           for k, v in attributes.items()]
    started = time.perf_counter()
    with engine.begin() as conn:
        for table, batch in rows.items():  # as IndexWriter.put_many: products in multi-row INSERTs (RETURNING), the rest executemany
            insert = table.insert().returning(table.c.pk, sort_by_parameter_order=True) if table is Product.__table__ else table.insert()
            for start in range(0, len(batch), 5000):
                conn.execute(insert, batch[start:start + 5000])
    insert_s = time.perf_counter() - started
    tables: dict[str, Any] = {}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as auto:
        for statement in _PLAIN:
            auto.execute(text(statement))
        for name, col in (("products", "title"), ("images", "vector"), ("text_vectors", "vector"), ("attribute_values", "text"),
                          ("product_words", "words"), ("word_counts", "term"), ("text_vectors_plain", "vector")):
            total, heap, idx, toast, count, row, column = auto.execute(text(_SIZES.format(t=name, col=col))).one()
            tables[name] = {"rows": count, "total_bytes": total, "heap_bytes": heap, "index_bytes": idx, "toast_bytes": toast,
                            "bytes_per_row": round(total / count, 1), "bytes_per_product": round(total / n, 1),
                            "avg_pg_column_size_row": round(float(row), 1), f"avg_pg_column_size_{col}": round(float(column), 1)}
        database, version = auto.execute(text("SELECT pg_database_size(current_database()), version()")).one()
    engine.dispose()
    per_product = {k: round(sum(tables[t]["bytes_per_product"] for t in group), 1) for k, group in (
        ("metadata", ("products", "attribute_values")), ("words", ("product_words", "word_counts")), ("vectors", ("images", "text_vectors")))}
    return {"server_version": version, "products": n, "images_per_product": 1.5, "tables": tables, "database_bytes": database,
            "bytes_per_product": {**per_product, "all": round(sum(per_product.values()), 1)}, "insert_s": round(insert_s, 1),
            "insert_products_per_s": round(n / insert_s, 1), "insert_note": "one transaction, fsync off, words triggers included",
            "text_vectors_plain_note": "text_vectors copied with the vector column STORAGE PLAIN (no TOAST)"}


def run_sqlite(args: Any) -> dict[str, Any]:
    import sqlite3

    from indexer.catalog import ProductRecord
    from indexer.config import IndexConfig
    from indexer.encoders.base import ModelIdentity
    from indexer.vectors_index import index_vectors

    n, dim = args.sqlite_products, 512
    rng = np.random.default_rng(4)
    records = [ProductRecord(id=f"SKU-{i:09d}", row=i + 1, title=title, description=description, price=float(i % 500),
                             category=str(rng.choice(WORDS[40:80])), brand=f"Brand{i % 5000}",
                             images=(f"https://cdn.example.com/p/{i:09d}/0.jpg",),
                             attributes={"color": str(rng.choice(WORDS[:12])), "material": str(rng.choice(WORDS[13:25])), "size": "M"})
               for i, (title, description, _) in enumerate(_product_texts(rng, n))]
    identity = ModelIdentity(name="synthetic", pretrained=None, fingerprint="0" * 64, dim=dim)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        started = time.perf_counter()
        index_vectors(folder, records, text=unit_rows(rng, n, dim), image=unit_rows(rng, n, dim), identity=identity,
                      config=IndexConfig(index_type="Flat", commit_every=0, batch_size=1000))
        build_s = time.perf_counter() - started
        db = folder / "vitrina.db"
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                per_table = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall())
            except sqlite3.OperationalError:
                per_table = {}
        db_bytes = db.stat().st_size
        faiss_bytes = sum(p.stat().st_size for p in folder.glob("*.faiss"))
    return {"products": n, "images_per_product": 1, "build_s": round(build_s, 1), "db_bytes": db_bytes,
            "db_bytes_per_product": round(db_bytes / n, 1), "faiss_flat_bytes_per_product": round(faiss_bytes / n, 1),
            "per_table_bytes_per_product": {k: round(v / n, 1) for k, v in list(per_table.items())[:10]}}


RUNS = {"embed": run_embed, "memory": run_memory, "merge": run_merge, "postgres": run_postgres, "sqlite": run_sqlite}


def main(args: Any) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never download
    path = Path(args.out)
    results = json.loads(path.read_text()).get("sections", {}) if path.is_file() else {}
    for name in [s for s in args.sections.split(",") if s]:
        if name not in RUNS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        results[name] = _section(name, args, RUNS[name])
        common.write_results("scale_figures", {"sections": results}, out=path)  # after each section: partial runs keep
    return results


def configure(parser: Any) -> None:
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=2, help="embed: alternations of threads 2 / 1")
    parser.add_argument("--batches", type=int, default=2, help="embed: batches of 32 per timing")
    parser.add_argument("--vectors", type=int, default=200_000, help="memory: vectors per index")
    parser.add_argument("--types", default=";".join(TYPES), help="memory: FAISS factory strings, ';'-separated")
    parser.add_argument("--merge-vectors", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--products", type=int, default=20_000, help="postgres: synthetic products")
    parser.add_argument("--sqlite-products", type=int, default=10_000)
    parser.add_argument("--out", default=str(common.RESULTS / "scale_figures.json"))
    parser.set_defaults(run=main)


if __name__ == "__main__":
    import argparse

    configure(_parser := argparse.ArgumentParser(prog="python -m bench.scale_figures", description=__doc__.split("\n")[0]))
    main(_parser.parse_args())
