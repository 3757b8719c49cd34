"""Bulk embedding on Ray: products/s of a plain ``build_index`` vs ``build_index_ray`` with 1 and 2 actors.

    python -m bench ray-embedding --products 400 [--model data/demo-model] [--model ViT-B-32] [--ray-cpus 3]

A demo catalog (``vitrina.demo.catalog.generate_catalog``, 224 px photos, 2-4 per product) is made once in
``bench/results/cache``.  Per model (the bundled demo model by default; an open_clip name gets random
weights), each run indexes the whole catalog into a fresh folder and products/s is rows / the run's seconds:

* ``plain``: ``indexer.pipeline.build_index`` (torch's default threads, a reading thread beside the model), and
  ``plain_1_thread`` the same with one torch thread, as each actor has;
* ``ray_1``, ``ray_2``: ``indexer.distributed.ray_embedding.build_index_ray`` with 1 and 2 actors (one torch
  thread each), including the actors' start and model load, on a local Ray started once beforehand (its start
  is reported apart, as ``ray_init_s``); a run over the first batch per actor measures the fixed cost (the
  actors' start and model load, ``fixed_s``), and ``steady`` is the other products over the time beyond it.

An actor pool must leave one Ray CPU free (``indexer.distributed.actor_count``), so 2 actors need 3 Ray CPUs:
``--ray-cpus`` (default: max(the machine's CPUs, 3)) declares them; on a 2-vCPU machine that oversubscribes
the cores, and the ratio ray_2 / ray_1 shows it.  Results go to ``bench/results/ray_embedding.json``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common


def demo_catalog(products: int, seed: int) -> Path:
    from vitrina.demo.catalog import generate_catalog

    folder = common.CACHE / f"ray-demo-{products}-{seed}"
    catalog = folder / "catalog.jsonl"
    if not catalog.is_file() or len(catalog.read_text().splitlines()) != products:
        shutil.rmtree(folder, ignore_errors=True)
        generate_catalog(folder, products=products, seed=seed, image_size=224, queries=0)
    return catalog


def model_config(name: str | None):
    """The bundled model (None), a model folder, or an open_clip architecture with random weights drawn once
    (seed 0) and saved as a model folder in the cache: every actor must load the same weights."""
    from indexer.config import ModelConfig

    if name is None or Path(name).is_dir():
        return ModelConfig(name=name)
    folder = common.CACHE / f"random-{name}"
    if not folder.is_dir():
        import open_clip

        from indexer.encoders.model_folder import save_model_folder

        model, _, _ = common.random_model(name)
        save_model_folder(model, open_clip.get_model_config(name), folder)
    return ModelConfig(name=str(folder))


def run(catalog: Path, name: str | None, *, batch_size: int, actors: list[int]) -> dict[str, Any]:
    import torch

    from indexer.config import IndexConfig
    from indexer.distributed import RayOptions
    from indexer.distributed.ray_embedding import build_index_ray
    from indexer.encoders.loading import load_encoder
    from indexer.pipeline import build_index

    model = model_config(name)
    config = IndexConfig(batch_size=batch_size)
    encoder = load_encoder(model, batch_size=batch_size)
    row: dict[str, Any] = {"model": name or "vitrina-demo (bundled)", "torch_threads_plain": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        report = build_index(catalog, Path(tmp) / "plain", encoder=encoder, config=config)
        row.update(products=report.rows, images=report.images, plain_s=report.seconds,
                   plain_products_s=round(report.rows / report.seconds, 2))
        torch.set_num_threads(1)  # what each actor runs with (torch's threads are the process's: set after the above)
        report = build_index(catalog, Path(tmp) / "plain-1", encoder=encoder, config=config)
        row["plain_1_thread_products_s"] = round(report.rows / report.seconds, 2)
        for n in actors:
            first = catalog.with_name(f"first-{n}-batches.jsonl")  # beside the catalog: the same image paths
            first.write_text("".join(catalog.read_text().splitlines(keepends=True)[:n * batch_size]))
            seconds = {}
            for name, source in (("fixed", first), ("full", catalog)):
                started = time.perf_counter()
                report = build_index_ray(source, Path(tmp) / f"ray-{n}-{name}", model=model, identity=encoder.identity,
                                         ray=RayOptions(actors=n), config=config)
                seconds[name] = time.perf_counter() - started
            assert report.indexed == row["products"], report.to_json()
            row[f"ray_{n}_s"] = round(seconds["full"], 2)
            row[f"ray_{n}_products_s"] = round(report.rows / seconds["full"], 2)
            # the actors' start, model load and a batch each: what a run of n batches takes; the rest is the steady rate
            row[f"ray_{n}_fixed_s"] = round(seconds["fixed"], 2)
            beyond = seconds["full"] - seconds["fixed"]  # None where the start's variance (±10 s here) exceeds the work
            row[f"ray_{n}_steady_products_s"] = round((report.rows - n * batch_size) / beyond, 2) if beyond > 1 else None
    if "ray_1_products_s" in row and "ray_2_products_s" in row:
        row["ratio_2_vs_1_actor"] = round(row["ray_2_products_s"] / row["ray_1_products_s"], 2)
        if row["ray_1_steady_products_s"] and row["ray_2_steady_products_s"]:
            row["ratio_2_vs_1_actor_steady"] = round(row["ray_2_steady_products_s"] / row["ray_1_steady_products_s"], 2)
    row["ratio_1_actor_vs_plain"] = round(row.get("ray_1_products_s", 0) / row["plain_products_s"], 2)
    return row


def main(args) -> dict[str, Any]:
    import ray

    common.quiet_open_clip()
    catalog = demo_catalog(args.products, args.seed)
    cpus = args.ray_cpus or max(os.cpu_count() or 1, 3)
    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    ray_init_s = round(time.perf_counter() - started, 2)
    try:
        rows = [run(catalog, name, batch_size=args.batch_size, actors=[1, 2]) for name in args.model or [None]]
    finally:
        ray.shutdown()
    print(common.table(rows, ["model", "products", "images", "plain_products_s", "plain_1_thread_products_s", "ray_1_products_s", "ray_2_products_s",
                              "ray_1_steady_products_s", "ray_2_steady_products_s", "ray_1_fixed_s", "ray_2_fixed_s"]))
    for row in rows:
        if "ratio_2_vs_1_actor" in row:
            steady = row.get("ratio_2_vs_1_actor_steady")
            print(f"{row['model']}: 2 actors / 1 actor = {row['ratio_2_vs_1_actor']:.2f}x end to end, "
                  f"{f'{steady:.2f}x' if steady else 'not measurable'} beyond the fixed cost; "
                  f"1 actor / plain = {row['ratio_1_actor_vs_plain']:.2f}x "
                  f"({os.cpu_count()} CPUs here, Ray told {cpus}; ray.init took {ray_init_s} s, not counted)")
    path = common.write_results("ray_embedding", {"rows": rows, "catalog": str(catalog), "ray_cpus": cpus,
                                                  "ray_init_s": ray_init_s, "batch_size": args.batch_size},
                                out=common.RESULTS / "ray_embedding.json")
    print(f"wrote {path}")
    return {"rows": rows}


def configure(parser) -> None:
    parser.add_argument("--products", type=int, default=400, help="demo catalog size (2-4 photos of 224 px each)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", action="append", help="model folder or open_clip name (random weights, saved once "
                        "as a folder in the cache); repeatable "
                        "[default: the bundled demo model]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs Ray is told of [default: max(CPUs, 3): "
                        "2 actors need 3, one being left free for Ray Data]")
    parser.set_defaults(run=main)
