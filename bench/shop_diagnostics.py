"""Diagnostics of ``bench.shop_sim``: judgments with the true position bias, θ fits, what the judgments teach."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np




def oracle_judgments(log_dir: Path, cutoff: float, theta: np.ndarray, max_weight: float = 10.0) -> Any:
    """Diagnostic (``--diagnose``): ``collect_judgments(correct_bias=False)`` with each positive re-weighted by the
    *true* ``1 / theta`` instead of the fitted one, pooled the way ``collect_judgments`` pools (the mean over the
    searches where the product got its strongest event), from the module's public helpers."""
    from search.behaviour.click_model import ips_weights
    from search.behaviour.judgments_from_log import (
        collect_judgments,
        query_key,
        read_window,
        replayable_terms,
    )

    base = collect_judgments(log_dir, correct_bias=False, before=cutoff, labels="event")
    window = read_window(log_dir, before=cutoff)
    best: dict[tuple[str, str], tuple[int, list[float]]] = {}
    for search in window.searches:
        terms, _ = replayable_terms(search)
        if terms is None:
            continue
        qid = query_key(terms, search.where)
        for pid, (grade, position) in window.outcomes.get(search.query_id, {}).items():
            weight = float(ips_weights(theta, [position], max_weight=max_weight)[0]) if position else 1.0
            found = best.get((qid, pid))
            if found is None or grade > found[0]:
                best[(qid, pid)] = (grade, [weight])
            elif grade == found[0]:
                found[1].append(weight)
    rows = [{**r, "weight": round(float(np.mean(best[(r["query_id"], r["product_id"])][1])), 6)} if r["label"] > 0 else r
            for r in base.rows]
    return replace(base, rows=rows, theta=[round(float(t), 4) for t in theta], bias_corrected=True)


def pbm_theta(log_dir: Path, cutoff: float, min_impressions: int) -> list[float]:
    """Diagnostic: the PBM fitted (``fit_pbm``) on the training window's impressions of (query, product) pairs
    shown at least ``min_impressions`` times (``_position_bias`` fits every pair)."""
    from search.behaviour.click_model import fit_pbm
    from search.behaviour.judgments_from_log import query_key, read_window

    window = read_window(log_dir, before=cutoff)
    ids: dict[tuple[str, str], int] = {}
    pairs, positions, clicks = [], [], []
    for search in window.searches:
        key, outcomes = query_key([dict(t) for t in search.terms], search.where), window.outcomes.get(search.query_id, {})
        for hit in search.shown:
            pairs.append(ids.setdefault((key, hit.product_id), len(ids)))
            positions.append(hit.position)
            clicks.append(hit.product_id in outcomes)
    pair = np.asarray(pairs)
    keep = np.bincount(pair)[pair] >= min_impressions
    if not keep.any():
        return []
    _, renumbered = np.unique(pair[keep], return_inverse=True)
    model = fit_pbm(renumbered, np.asarray(positions)[keep], np.asarray(clicks)[keep])
    return [round(float(t), 4) for t in model.theta]


def target_table(judged: dict[str, Any], log_dir: Path, cutoff: float, grades_of: dict[str, np.ndarray],
                 index_of: dict[str, int]) -> list[dict[str, Any]]:
    """Diagnostic: what each variant's judgments ask the re-ranker to learn — the mean of ``weight x
    [label > 0]`` over judged (query, product) pairs — by the pair's true preference ``g`` and the mean position it
    was shown at.  Unbiased judgments depend on ``g`` alone (the shoppers' attraction does); a column trend
    within a row is position bias left in (falling) or over-corrected (rising)."""
    from search.behaviour.judgments_from_log import (
        query_key,
        read_window,
        replayable_terms,
    )

    window = read_window(log_dir, before=cutoff)
    shown: dict[tuple[str, str], list[int]] = {}
    for search in window.searches:
        terms, _ = replayable_terms(search)
        if terms is not None:
            qid = query_key(terms, search.where)
            for hit in search.shown:
                shown.setdefault((qid, hit.product_id), []).append(hit.position)
    buckets = (("shown at 1-3", 1, 3.5), ("4-6", 3.5, 6.5), ("7-10", 6.5, 99))
    cells: dict[tuple[str, int, str], list[float]] = {}
    for name, found in judged.items():
        for row in found.rows:
            grades = grades_of.get(row.get("text", ""))
            positions = shown.get((row["query_id"], row["product_id"]))
            if grades is None or not positions:
                continue
            mean = float(np.mean(positions))
            bucket = next(label for label, lo, hi in buckets if lo <= mean < hi)
            g = int(grades[index_of[row["product_id"]]])
            cells.setdefault((name, g, bucket), []).append(float(row["weight"]) * (row["label"] > 0))
    out = []
    for name in judged:
        for g in range(5):
            row_out: dict[str, Any] = {"judgments": name, "true g": g}
            for label, _, _ in buckets:
                values = cells.get((name, g, label), [])
                row_out[label] = round(float(np.mean(values)), 3) if values else None
                row_out[f"n {label.split()[-1]}"] = len(values)
            out.append(row_out)
    return out

