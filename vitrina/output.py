"""How commands print: result tables, index summaries, sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
