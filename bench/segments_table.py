"""The table ``python -m bench segments`` prints: one row per measure, with its target where the issue sets one."""

from __future__ import annotations

from typing import Any

from bench import common


def row(step: str, measure: str, value: Any, target: str | None = None, met: bool | None = None) -> dict[str, Any]:
    return {"step": step, "measure": measure, "value": value, "target": target, "met": met}


def table_rows(out: dict[str, Any], args: Any) -> list[dict[str, Any]]:
    """The printed table of the steps that ran; a row with a target says whether this run met it."""
    rows: list[dict[str, Any]] = []
    k = f"{args.products // 1000}k"
    if "put" in out:
        rows += [row("1 put", f"put_many {args.filter_products} (s)", out["put"]["put_s"], "<= 10 s", out["put"]["put_s"] <= 10),
                 row("1 put", "its commit (s)", out["put"]["commit_s"])]
    if "commit" in out:
        c = out["commit"]
        big, small = c["big"], c["small"]
        rows += [
        row("2 commit", f"1 changed @{k} median ms ({big['commits']})", big["median_ms"], "<= 1000 ms", big["median_ms"] <= 1000),
        row("2 commit", f"@{k} max / first-5 median / merge commits ms",
            f"{big['max_ms']} / {big['median_first5_ms']} / {', '.join(str(m['ms']) for m in big['merges']) or 'none'}"),
        row("2 commit", f"1 changed @{args.small} median / max ms", f"{small['median_ms']} / {small['max_ms']}"),
        row("2 commit", f"ratio {k} / {args.small}", c["ratio_big_vs_small"], "<= 2x", c["ratio_big_vs_small"] <= 2)]
    if "price_change" in out:
        p = out["price_change"]
        uf, feed = p["update_fields"], p["apply_feed"]
        rows += [
            row("3 price", f"update_fields {p['changed']} + commit (s)", uf["total_s"], "<= 2 s", uf["total_s"] <= 2),
            row("3 price", "update_fields / its commit (s)", f"{uf['update_s']} / {uf['commit_s']}"),
            row("3 price", "new .faiss files, encoder calls", f"{len(uf['new_faiss_files'])}, {uf['encoder_calls']}")]
    if "price_change" in out and feed:
        rows += [row("3 price", f"apply_feed CSV {feed['rows']} rows (s)", feed["seconds"], "<= 2 s", feed["seconds"] <= 2),
                 row("3 price", "feed: fields_only / new .faiss / encoder calls",
                     f"{feed['fields_only']} / {len(feed['new_faiss_files'])} / {feed['encoder_factory_calls']}")]
    if "segments_vs_merged" in out:
        s = out["segments_vs_merged"]
        exact = s["overlap_at_10_with_exact"]
        rows += [
        row("4 segs", "p50-enc 10 segments / optimized (ms)", f"{s['segmented_p50_ms']} / {s['optimized_p50_ms']}"),
        row("4 segs", "ratio 10 segments / optimized", s["ratio_p50"], "<= 1.3x", s["ratio_p50"] <= 1.3),
        row("4 segs", "optimize (s)", s["optimize_s"]),
        row("4 segs", "top-10 ids+scores optimized == fresh", s["optimized_equals_fresh"], "1.0", s["optimized_equals_fresh"] == 1.0),
        row("4 segs", "optimized == fresh ids only / == segmented", f"{s['optimized_ids_equal_fresh']} / {s['optimized_equals_segmented']}"),
        row("4 segs", "overlap@10 with Flat: segmented / optimized", f"{exact['segmented']} / {exact['optimized']}")]
    if "under_load" in out:
        u = out["under_load"]
        reloads = u["queries_that_loaded_a_commit_ms"]
        rows += [
        row("5 load", "quiet p50 / p99 (ms)", f"{u['quiet']['p50_ms']} / {u['quiet']['p99_ms']}"),
        row("5 load", "writer p50 / p99 (ms)", f"{u['loaded']['p50_ms']} / {u['loaded']['p99_ms']}"),
        row("5 load", "p99 ratio writer / quiet", u["p99_ratio"], "<= 2x", u["p99_ratio"] <= 2),
        row("5 load", "queries quiet / loaded; commits; loading one: n, p50 ms",
            f"{u['quiet']['queries']} / {u['loaded']['queries']}; {u['writer']['commits']}; {len(reloads)}, {common.p50(reloads)}")]
    if "filter" in out:
        f = out["filter"]
        rows += [
        row("6 filter", f"where color=red @{args.filter_products // 1000}k p50-enc", f["filtered_p50_ms"], "<= 5 ms",
            f["filtered_p50_ms"] <= 5),
        row("6 filter", "cold (SQL each query) / SQL alone / unfiltered p50 ms",
            f"{f['filtered_cold_p50_ms']} / {f['sql_p50_ms']} / {f['unfiltered_p50_ms']}"),
    ]
    return rows
