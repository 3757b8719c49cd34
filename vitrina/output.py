"""How commands print: result tables, index summaries, sizes, progress."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from search.results import Hit


def format_hits(hits: Sequence[Hit], *, offset: int = 0) -> str:
    """A readable table of hits: rank, id, fused/image/text scores, price, title."""
    if not hits:
        return "no hits"
    rows = [("#", "id", "score", "image", "text", "price", "title")]
    for rank, hit in enumerate(hits, start=offset + 1):
        price = hit.product.get("price")
        rows.append((
            str(rank), hit.product_id, f"{hit.score:.3f}", fmt_score(hit.scores.get("image")), fmt_score(hit.scores.get("text")),
            f"{price:.2f}" if price is not None else "-", (hit.product.get("title") or "")[:60],
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows)


def fmt_score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe_vectors(info: dict[str, Any]) -> str:
    """"HNSW32, 120000 vectors, 250.1 MB, efSearch 64: recall@10 0.962 (measured at 120000 vectors)"."""
    text = f"{info['type']}, {info['vectors']} vectors, {human_size(info['bytes'])}"
    tuning = info.get("tuning") or {}
    if info["type"].startswith("HNSW") or ",HNSW" in info["type"]:
        text += f", efSearch {tuning.get('ef_search', 'default')}"
    elif "IVF" in info["type"]:
        text += f", nprobe {tuning.get('nprobe', 'default')}"
    recall = info.get("recall_at_10")
    if recall == 1.0 and not tuning:
        return text + ": exact search"
    if recall is not None:
        text += f": recall@10 {recall:.3f} against exact search (sampled queries, at {info.get('tuned_at')} vectors)"
    return text


def human_size(n: float | None) -> str:
    if n is None:
        return "missing"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


#: Seconds between progress lines when stderr is not a terminal (a file, a pipe, a CI log).
PROGRESS_INTERVAL_ENV = "VITRINA_PROGRESS_SECONDS"
DEFAULT_PROGRESS_INTERVAL = 10.0


class Progress:
    """Progress of a long run on stderr: tqdm's bar on a terminal, else one line every few seconds.

    tqdm draws nothing when its stream is not a terminal (``disable=None``), so a run logged to a
    file or CI would be silent for minutes; there this prints ``indexing: 1200/5000 products (24%),
    85.3 products/s, ETA 45s, stage: decode`` every ``$VITRINA_PROGRESS_SECONDS`` (10 s) and a last
    line when the run ends.  ``stage`` names what limits the run right now (or None).
    """

    def __init__(self, desc: str, *, unit: str = "products", total: int | None = None, quiet: bool = False,
                 stage: Callable[[], str | None] | None = None, stream: TextIO | None = None,
                 interval: float | None = None):
        self.desc, self.unit, self.total, self.quiet, self.stage = desc, unit, total, quiet, stage
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval if interval is not None else _interval_from_env()
        self.done = 0
        self._started = self._last_line = time.monotonic()
        self._bar: Any = None
        if not quiet and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        if self._bar is not None:
            stage = self.stage() if self.stage else None
            if stage:
                self._bar.set_postfix_str(f"bottleneck: {stage}", refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        """``desc: done/total unit (pct), rate unit/s, ETA, stage`` as of ``now``."""
        elapsed = max((now if now is not None else time.monotonic()) - self._started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.desc}: {self.done}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({min(self.done / self.total, 1.0):.0%})"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_seconds((self.total - self.done) / rate)}")
        stage = self.stage() if self.stage else None
        if stage:
            parts.append(f"stage: {stage}")
        return ", ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif not self.quiet:
            elapsed = time.monotonic() - self._started
            self._print(f"{self.desc}: done, {self.done} {self.unit} in {format_seconds(elapsed)} "
                        f"({self.done / max(elapsed, 1e-9):.1f} {self.unit}/s)")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def count_catalog_rows(path: Path) -> int | None:
    """Rows in a catalog file, estimated from its line count (for progress only: a CSV cell may span lines)."""
    try:
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            handle.seek(max(handle.tell() - 1, 0))
            lines += handle.read(1) not in (b"\n", b"")
    except OSError:
        return None
    return max(lines - (path.suffix.lower() == ".csv"), 0) or None


def _interval_from_env() -> float:
    try:
        return max(float(os.environ.get(PROGRESS_INTERVAL_ENV, DEFAULT_PROGRESS_INTERVAL)), 0.0)
    except ValueError:
        return DEFAULT_PROGRESS_INTERVAL


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
