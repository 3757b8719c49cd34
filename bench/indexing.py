"""Indexing throughput: the model's forward passes alone vs ``build_index`` end to end.

    python -m bench indexing --images 64 --model ViT-B-32 --model data/demo-model [--jpeg-only]

A catalog of real files is made once (``bench/results/cache/catalog-N``): photos of 800-2000 px,
half JPEG and half PNG (all JPEG with ``--jpeg-only``), drawn with PIL (gradient, shapes, a little
noise), one per product.  Per model (random weights; a model folder path works too), in one run:

* ``encoder_only``: ``encode_pixels`` on pre-decoded, preprocessed tensors, same batch size
  (``encoder_with_texts``: plus the forward passes of the products' texts);
* ``decode``: read + decode + preprocess alone (what the model waits for), and with JPEG draft mode;
* ``end_to_end``: ``indexer.pipeline.build_index`` into a fresh folder (texts, SQLite, FAISS included);
* ``prefetched``: read + decode + preprocess in ``indexer.prefetch`` threads overlapping ``encode_pixels``.

images/s of each and the ratio end_to_end / encoder_only are printed and written to bench/results/.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common

COLOURS = [(200, 40, 40), (40, 90, 200), (30, 150, 70), (230, 200, 50), (30, 30, 30), (240, 240, 240)]
KINDS = ["shirt", "mug", "lamp", "bag", "shoe", "chair"]


def make_catalog(folder: Path, n: int, *, seed: int = 0, png: bool = True) -> Path:
    """``folder/catalog.jsonl`` with ``n`` products and one 800-2000 px photo each (JPEG and PNG alternate;
    all JPEG without ``png``)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    path = folder / "catalog.jsonl"
    if path.is_file() and len(path.read_text().splitlines()) == n:
        return path
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    noise_rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w, h = rng.randint(800, 2000), rng.randint(800, 2000)
        top, bottom = rng.choice(COLOURS), rng.choice(COLOURS)
        ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        pixels = (np.array(top, np.float32) * (1 - ramp) + np.array(bottom, np.float32) * ramp) * np.ones((1, w, 1), np.float32)
        pixels += noise_rng.normal(0, 6, (h, w, 3)).astype(np.float32)  # sensor noise: realistic file sizes
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(2, 6)):
            x0, y0 = rng.randint(0, w - 100), rng.randint(0, h - 100)
            box = (x0, y0, min(w, x0 + rng.randint(80, w // 2)), min(h, y0 + rng.randint(80, h // 2)))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=rng.choice(COLOURS))
        image = image.filter(ImageFilter.GaussianBlur(1))
        jpeg = i % 2 == 0 or not png
        name = f"images/p{i:04d}.{'jpg' if jpeg else 'png'}"
        image.save(folder / name, quality=90) if jpeg else image.save(folder / name, compress_level=6)
        kind = KINDS[i % len(KINDS)]
        rows.append({"id": f"P{i:05d}", "title": f"{kind} number {i}", "description": f"a synthetic {kind} photo, {w}x{h}",
                     "images": [name], "price": 10 + i, "category": kind, "brand": f"Brand{i % 5}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_model(name: str, catalog: Path, *, batch_size: int, threads: int | None, workers: int) -> dict[str, Any]:
    import torch

    from indexer.config import IndexConfig, ModelConfig
    from indexer.encoders.loading import load_encoder
    from indexer.media.images import decode_image, read_file
    from indexer.pipeline import build_index
    from indexer.prefetch import prefetch, prepare_images

    common.register_tiny()
    is_folder = Path(name).is_dir()
    encoder = load_encoder(ModelConfig(name=name, pretrained=None if is_folder else "random", threads=threads), batch_size=batch_size)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    files = [catalog.parent / r["images"][0] for r in rows]
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]

    def prepare(batch: list[Path]):
        return prepare_images([(str(p), read_file(p)) for p in batch], preprocess=encoder.preprocess_images)

    started = time.perf_counter()
    prepared = [prepare(batch) for batch in batches]
    decode_s = time.perf_counter() - started
    from indexer.catalog import iter_products

    texts = [record.text for record in iter_products(catalog)]
    encoder.encode_texts(texts[:2])  # warm-up
    started = time.perf_counter()
    encoder.encode_texts(texts)
    text_s = time.perf_counter() - started

    started = time.perf_counter()
    for batch in batches:  # JPEG draft: the decoder itself scales by 1/2..1/8 towards the model's size (PNG unaffected)
        encoder.preprocess_images([decode_image(read_file(p), name=str(p), min_size=encoder.image_size) for p in batch])
    draft_s = time.perf_counter() - started

    encoder.encode_pixels(prepared[0].pixels[:2])  # warm-up
    started = time.perf_counter()
    for p in prepared:
        encoder.encode_pixels(p.pixels)
    encoder_s = time.perf_counter() - started

    started = time.perf_counter()
    for p in prefetch(batches, prepare, workers=workers, depth=2):
        encoder.encode_pixels(p.pixels)
    prefetched_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        report = build_index(catalog, Path(tmp) / "index", encoder=encoder, config=IndexConfig(batch_size=batch_size))
    e2e_images, e2e_s = report.images, report.seconds
    del prepared
    n = len(files)
    out = {
        "model": name, "images": n, "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
        "encoder_only_img_s": round(n / encoder_s, 2),
        "encoder_with_texts_img_s": round(n / (encoder_s + text_s), 2),  # the product texts' forward passes too
        "decode_preprocess_img_s": round(n / decode_s, 2),
        "decode_jpeg_draft_img_s": round(n / draft_s, 2),
        "end_to_end_img_s": round(e2e_images / e2e_s, 2),
        "prefetched_img_s": round(n / prefetched_s, 2),
    }
    out["ratio_end_to_end_vs_encoder"] = round(out["end_to_end_img_s"] / out["encoder_only_img_s"], 2)
    out["ratio_end_to_end_vs_encoder_with_texts"] = round(out["end_to_end_img_s"] / out["encoder_with_texts_img_s"], 2)
    out["ratio_prefetched_vs_encoder"] = round(out["prefetched_img_s"] / out["encoder_only_img_s"], 2)
    return out


def main(args) -> dict[str, Any]:
    common.quiet_open_clip()
    name = f"catalog-{args.images}" + ("-jpeg" if args.jpeg_only else "")
    catalog = make_catalog(common.CACHE / name, args.images, png=not args.jpeg_only)
    rows = [run_model(name, catalog, batch_size=args.batch_size, threads=args.threads, workers=args.workers)
            for name in args.model or ["ViT-B-32", "vitrina-tiny"]]
    print(common.table(rows, ["model", "images", "encoder_only_img_s", "decode_preprocess_img_s", "decode_jpeg_draft_img_s",
                              "end_to_end_img_s", "prefetched_img_s", "ratio_end_to_end_vs_encoder",
                              "ratio_end_to_end_vs_encoder_with_texts", "ratio_prefetched_vs_encoder"]))
    path = common.write_results("indexing", {"rows": rows, "catalog": str(catalog)})
    print(f"wrote {path}")
    return {"rows": rows}


def configure(parser) -> None:
    parser.add_argument("--images", type=int, default=64, help="catalog size (one photo per product)")
    parser.add_argument("--model", action="append", help="open_clip name (random weights) or model folder; repeatable")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--workers", type=int, default=1, help="prefetch threads")
    parser.add_argument("--jpeg-only", action="store_true", help="all photos JPEG (the default mixes JPEG and PNG 1:1)")
    parser.set_defaults(run=main)
