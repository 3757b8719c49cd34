"""Text tower on the batch's real token length (``indexer.encoders.text_tower``) vs open_clip's padded ``encode_text``.

    python -m bench text-tower --model ViT-B-32 --model vitrina-tiny

Padded and trimmed runs alternate on the same batches, so both see the same machine load.
"""

from __future__ import annotations

import time
from typing import Any

from bench import common

TEXTS = (
    "red striped leather shoe", "blue cotton summer dress with short sleeves", "desk lamp", "black backpack",
    "yellow ceramic coffee mug with a floral pattern", "grey wool beanie", "white sneakers size 42", "navy chair",
)


def run(model_name: str, *, batches: tuple[int, ...] = (1, 32), repeats: int = 9, threads: int | None = None) -> list[dict[str, Any]]:
    import torch

    from indexer.encoders.text_tower import encode_text_trimmed, real_length

    model, _, tokenizer = common.random_model(model_name, threads=threads)
    rows = []
    for batch in batches:
        texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(batch)]
        tokens = tokenizer(texts)
        padded, trimmed = [], []
        with torch.inference_mode():
            a = model.encode_text(tokens, normalize=True)
            b = encode_text_trimmed(model, tokens, normalize=True)
            cosine = float((a * b).sum(-1).min())
            for _ in range(repeats if batch == 1 else max(3, repeats // 3)):
                started = time.perf_counter()
                model.encode_text(tokens, normalize=True)
                middle = time.perf_counter()
                encode_text_trimmed(model, tokens, normalize=True)
                padded.append((middle - started) * 1000)
                trimmed.append((time.perf_counter() - middle) * 1000)
        rows.append({"model": model_name, "batch": batch, "context": tokens.shape[1], "real_length": real_length(model, tokens),
                     "padded_p50_ms": common.p50(padded), "trimmed_p50_ms": common.p50(trimmed),
                     "speedup": round(common.p50(padded) / common.p50(trimmed), 2), "min_cosine": round(cosine, 7)})
    return rows


def main(args) -> dict[str, Any]:
    common.quiet_open_clip()
    rows = [row for name in args.model or ["ViT-B-32", "vitrina-tiny"] for row in run(name, threads=args.threads)]
    print(common.table(rows, list(rows[0])))
    path = common.write_results("text-tower", {"rows": rows})
    print(f"wrote {path}")
    return {"rows": rows}


def configure(parser) -> None:
    parser.add_argument("--model", action="append", help="open_clip name or model folder (repeatable); random weights")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.set_defaults(run=main)
