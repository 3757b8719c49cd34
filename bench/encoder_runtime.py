"""Image tower throughput: eager torch fp32 vs ONNX Runtime fp32 and int8 (``indexer.encoders.onnx``).

    python -m bench encoder-runtime --model ViT-B-32 --model data/demo-model --threads 2

Per model (random weights for open_clip names; a model folder as stored): images/s of ``encode_pixels``
on the same preprocessed batches, torch and ONNX alternated ``--repeats`` times (medians), the ratio,
and the minimum cosine between the two embeddings of each image.  The ONNX export goes to a temporary
cache folder, and its time is reported too.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common


def run_model(name: str, *, threads: int | None, batch_size: int, batches: int, repeats: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from indexer.config import ModelConfig
    from indexer.encoders.loading import load_encoder
    from indexer.encoders.onnx import with_onnx_image_tower

    common.register_tiny()
    is_folder = Path(name).is_dir()
    base = load_encoder(ModelConfig(name=name, pretrained=None if is_folder else "random", threads=threads), batch_size=batch_size)
    size = base.model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(batch_size, 3, *size, generator=generator) * 2 - 1 for _ in range(batches)]
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        onnx = with_onnx_image_tower(base, cache_dir=cache, threads=threads)
        export_s = time.perf_counter() - started
        if onnx.runtime != "onnx":
            return {"model": name, "error": "onnxruntime unavailable"}
        int8 = with_onnx_image_tower(base, cache_dir=cache, threads=threads, int8=True)
        runs = {"torch": base, "onnx": onnx, "onnx_int8": int8}
        times: dict[str, list[float]] = {key: [] for key in runs}
        for encoder in runs.values():
            encoder.encode_pixels(inputs[0][:2])  # warm-up
        for _ in range(repeats):
            for key, encoder in runs.items():
                started = time.perf_counter()
                for pixels in inputs:
                    encoder.encode_pixels(pixels)
                times[key].append(time.perf_counter() - started)
        reference = [base.encode_pixels(p) for p in inputs]
        cosine = {key: min(float(np.min((ref * runs[key].encode_pixels(p)).sum(axis=1))) for ref, p in zip(reference, inputs))
                  for key in ("onnx", "onnx_int8")}
    n = batch_size * batches
    out: dict[str, Any] = {"model": name, "images": n, "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
                           "export_s": round(export_s, 1)}
    for key in runs:
        out[f"{key}_img_s"] = round(n / statistics.median(times[key]), 2)
    for key in ("onnx", "onnx_int8"):
        out[f"ratio_{key}_vs_torch"] = round(out[f"{key}_img_s"] / out["torch_img_s"], 2)
        out[f"{key}_min_cosine"] = round(cosine[key], 5)
    return out


def main(args) -> dict[str, Any]:
    common.quiet_open_clip()
    rows = [run_model(name, threads=args.threads, batch_size=args.batch_size, batches=args.batches, repeats=args.repeats)
            for name in args.model or ["ViT-B-32", "data/demo-model"]]
    print(common.table(rows, ["model", "images", "torch_img_s", "onnx_img_s", "onnx_int8_img_s", "ratio_onnx_vs_torch",
                              "ratio_onnx_int8_vs_torch", "onnx_min_cosine", "onnx_int8_min_cosine", "export_s"]))
    path = common.write_results("encoder-runtime", {"rows": rows})
    print(f"wrote {path}")
    return {"rows": rows}


def configure(parser) -> None:
    parser.add_argument("--model", action="append", help="open_clip name (random weights) or model folder; repeatable")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.set_defaults(run=main)
