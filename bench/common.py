"""Shared bits of the benchmarks: statistics, memory, result files, tables, random-weight models."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "cache"
TINY_CONFIG_DIR = Path(__file__).resolve().parent.parent / "indexer" / "train" / "model_configs"


def p50(values: Sequence[float]) -> float:
    return round(float(statistics.median(values)), 3) if values else float("nan")


def p95(values: Sequence[float]) -> float:
    return round(float(np.percentile(values, 95)), 3) if values else float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def anon_mb() -> float:
    """This process's anonymous resident memory (heap: leaves out pages of memory-mapped files)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return round(int(line.split()[1]) / 1024, 1)
    return rss_mb()


def rss_mb() -> float:
    """This process's resident set now."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1_5_15": [round(x, 2) for x in load],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_results(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    """``bench/results/NAME-<time>.json`` (or ``out``), with the machine's load attached."""
    path = out or RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), "peak_rss_mb": peak_rss_mb(), **data},
                               indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain fixed-width table of ``columns`` of ``rows``."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line, rule, *("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def random_model(name: str, *, threads: int | None = None):
    """(model, preprocess, tokenizer) of ``name`` with random weights; ``vitrina-tiny`` and folders work too."""
    import open_clip
    import torch

    if threads:
        torch.set_num_threads(threads)
    register_tiny()
    if Path(name).is_dir():
        name = f"local-dir:{Path(name).resolve()}"
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def register_tiny() -> None:
    import open_clip

    if "vitrina-tiny" not in open_clip.list_models():
        open_clip.add_model_config(TINY_CONFIG_DIR)


def quiet_open_clip() -> None:
    """open_clip logs a warning for every random-weight model; the benchmarks mean it."""
    import logging

    logging.getLogger().setLevel(logging.ERROR)
