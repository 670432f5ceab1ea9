"""Memory: peak RSS of a build as the prompt count grows, and where it grows.

Two measurements, each in its own child process (`ru_maxrss`):

* real builds against a spawned fake server with no added latency, at the sizes in
  `--memory-prompts` (default 1,000 and 4,000; the client's litellm CPU is the only limit, so 100k
  prompts, ~400k calls, would take hours on 2 cores). Each reports its RSS before the build (the
  interpreter and imports), its peak while the shards ran (before `finalize`) and its overall peak;
* `finalize` alone (merge the stage files, gate, dataset, manifest) on run folders tiled from the
  largest real build's shard files to 10,000 and 100,000 prompts (`benchmarks/_tile.py`: distinct ids
  and prompt texts, no model calls). `finalize` holds every table of the run in memory, so this is
  where RSS grows with the prompt count; the shard phase is bounded by the shards in flight.

The figure for 100k prompts is the larger of the shard phase (the largest real build's peak before
`finalize`, plus its RSS growth per prompt over its second half of shards, times the prompts still
to go) and the tiled `finalize` at 100k, labelled as such; `--memory-prompts 10000,100000` measures
real builds instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._common import Options, build_config, load_average, ratio, run_child, write_prompts

NAME = "memory"
CONCURRENCY = 64
GIB_MIB = 1024.0
TILED_SIZES = (10_000, 100_000)


def steady_slope(samples: list[tuple[int, float]]) -> float | None:
    """Least-squares RSS growth (MiB per prompt) over the second half of a build's shards: the first
    shards fill caches and connection pools, what follows is what keeps growing."""
    half = [(n, m) for n, m in samples if n > samples[-1][0] / 2] if samples else []
    if len(half) < 2:
        return None
    mean_n = sum(n for n, _ in half) / len(half)
    mean_m = sum(m for _, m in half) / len(half)
    var = sum((n - mean_n) ** 2 for n, _ in half)
    return sum((n - mean_n) * (m - mean_m) for n, m in half) / var if var else None


def _real_builds(opts: Options, sizes: tuple[int, ...], work: Path) -> list[dict[str, Any]]:
    from factory.testing import FakeLLMServer

    rows: list[dict[str, Any]] = []
    with FakeLLMServer.spawn(latency_s=0.0) as server:
        for n in sizes:
            prompts = write_prompts(work / f"prompts-{n}.jsonl", n)
            config_path = work / f"config-{n}.json"
            config_path.write_text(
                json.dumps(build_config(server.base_url, work / "runs", prompts, concurrency=CONCURRENCY))
            )
            opts.log(f"{NAME}: build of {n} prompts (no added latency)")
            server.reset()
            load = load_average()
            child = run_child(["build", str(config_path), "--memory-trace"], timeout_s=6 * 3600)
            rows.append(
                {
                    "prompts": n,
                    "server_calls": server.stats().calls,
                    "wall_s": child["wall_s"],
                    "rss_before_build_mib": child["rss_before_build_mib"],
                    "peak_rss_before_finalize_mib": child.get("peak_rss_before_finalize_mib"),
                    "peak_rss_mib": child["peak_rss_mib"],
                    "run_dir": child["run_dir"],
                    "status": child["status"],
                    "rss_by_prompts_done": child.get("rss_by_prompts_done", []),
                    "load_average": load,
                }
            )
            opts.log(
                f"{NAME}: {n} prompts: peak RSS {child['peak_rss_mib']:.0f} MiB (before the build "
                f"{child['rss_before_build_mib']:.0f}, shards done {child.get('peak_rss_before_finalize_mib')})"
            )
    return rows


def _tiled_finalize(
    opts: Options, source: dict[str, Any], sizes: tuple[int, ...], work: Path
) -> dict[str, Any]:
    from benchmarks._tile import tile_run

    points = []
    for target in sizes:
        copies = max(1, round(target / source["prompts"]))
        tiled = work / f"tiled-{target}"
        opts.log(f"{NAME}: finalize alone on {source['prompts']} x {copies} prompts (tiled run folder)")
        total = tile_run(Path(source["run_dir"]), tiled, source["prompts"], copies)
        child = run_child(["finalize", str(tiled)], timeout_s=3600)
        points.append(
            {
                "prompts": total,
                "peak_rss_mib": child["peak_rss_mib"],
                "rss_before_mib": child["rss_before_mib"],
                "wall_s": child["wall_s"],
                "pairs": child["counts"].get("pairs"),
                "rss_tables_merged_mib": child.get("rss_tables_merged_mib"),
            }
        )
        opts.log(f"{NAME}: finalize of {total} prompts: peak RSS {child['peak_rss_mib']:.0f} MiB")
    return {"source_prompts": source["prompts"], "points": points}


def run(opts: Options) -> dict[str, Any]:
    sizes = (40,) if opts.quick else tuple(sorted(set(opts.memory_prompts)))
    tiled_sizes = (80,) if opts.quick else TILED_SIZES
    work = opts.work_dir / NAME
    rows = _real_builds(opts, sizes, work)
    measured = {r["prompts"]: r["peak_rss_mib"] for r in rows}
    tiled = None
    if max(sizes) < max(tiled_sizes):
        # Tile the largest build that divides every target size, so 10k and 100k are hit exactly.
        source = next(
            (r for r in reversed(rows) if all(t % r["prompts"] == 0 for t in tiled_sizes)), rows[-1]
        )
        tiled = _tiled_finalize(opts, source, tiled_sizes, work)
    largest = rows[-1]
    samples = [tuple(x) for x in largest["rss_by_prompts_done"]]
    slope = steady_slope(samples)  # type: ignore[arg-type]
    shard_phase_100k = (
        round(largest["peak_rss_before_finalize_mib"] + slope * (100_000 - largest["prompts"]), 1)
        if slope is not None and largest["peak_rss_before_finalize_mib"]
        else None
    )
    tiled_at = {p["prompts"]: p["peak_rss_mib"] for p in tiled["points"]} if tiled else {}

    def nearest(values: dict[int, float], n: int) -> float | None:
        close = [v for k, v in values.items() if abs(k - n) <= 0.1 * n]
        return close[0] if close else None

    if nearest(measured, 100_000) is not None:
        at_100k, kind = nearest(measured, 100_000), "measured (real build)"
        at_10k = nearest(measured, 10_000)
    else:
        finalize_100k = nearest(tiled_at, 100_000)
        at_100k = (
            max(v for v in (finalize_100k, shard_phase_100k) if v is not None)
            if (finalize_100k or shard_phase_100k)
            else None
        )
        kind = (
            "max of finalize measured on a run folder tiled to 100k prompts and the shard phase "
            "extrapolated from the largest real build's steady RSS growth"
        )
        at_10k = nearest(measured, 10_000) or nearest(tiled_at, 10_000)
    for r in rows:
        r.pop("run_dir", None)
    return {
        "concurrency": CONCURRENCY,
        "builds": rows,
        "finalize_tiled": tiled,
        "shard_phase_slope_kib_per_prompt": round(slope * 1024, 3) if slope is not None else None,
        "shard_phase_100k_extrapolated_mib": shard_phase_100k,
        "growth_largest_over_smallest": ratio(rows[-1]["peak_rss_mib"], rows[0]["peak_rss_mib"])
        if rows
        else None,
        "peak_rss_100k_mib": at_100k,
        "peak_rss_100k_kind": kind,
        "peak_rss_10k_mib": at_10k,
        "targets": {
            "peak_rss_100k_below_1gib": {"target_mib": GIB_MIB, "value_mib": at_100k},
            "ratio_100k_over_10k": {"target": 2.0, "value": ratio(at_100k, at_10k)},
        },
    }
