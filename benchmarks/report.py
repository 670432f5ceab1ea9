"""docs/benchmarks.md from benchmarks/results/*.json: the machine, versions, date, one table each.

Only figures found in the JSON files are printed; a benchmark without a results file is listed as
not run. `python -m benchmarks.report` rewrites the page from the committed JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import DOC_PATH, RESULTS_DIR

ORDER = (
    "side_by_side",
    "profile",
    "throughput",
    "vs_distilabel",
    "memory",
    "resume_cost",
    "embedded",
    "closed_loop",
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def _throughput(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    b = r["baseline_bare_litellm"]
    g = r.get("gateway_only")
    rows = [
        [
            x["concurrency"],
            x["prompts"],
            x["server_calls"],
            x["peak_in_flight"],
            x["wall_s"],
            x["calls_per_s"],
            x["active_calls_per_s"],
            x["limit_calls_per_s"],
            x["ratio_to_limit"],
            ratio_active(x),
            _ratio_to_bare(r, x),
            x["cpu_ms_per_call"],
            x.get("shards_cpu_ms_per_call"),
            _cpu_ratio(r, x),
            round(
                x["limit_calls_per_s"] * (x.get("shards_cpu_ms_per_call") or x["cpu_ms_per_call"]) / 1000, 2
            ),
            " / ".join(f"{k} {v}" for k, v in x.get("calls_by_role", {}).items()),
        ]
        for x in r["builds"]
    ]
    text = (
        f"The side-by-side's endpoint (`benchmarks/peers/fake_latency_server.py`) in its own process, fixed latency {r['latency_s'] * 1000:g} ms. Bare "
        f"`litellm.acompletion` at concurrency {b['concurrency']}: **{_fmt(b['calls_per_s'])} calls/s**, "
        f"{_fmt(b['cpu_ms_per_call'])} ms CPU per call (peak in flight {b['peak_in_flight']})."
    )
    b8 = r.get("baseline_bare_litellm_c8")
    if b8:
        text += (
            f" Bare litellm at concurrency 8: {_fmt(b8['calls_per_s'])} calls/s = "
            f"**{_fmt(b8['ratio_to_limit'])} of C/L**, what litellm alone reaches at the same concurrency on this machine."
        )
    if g:
        text += (
            f" `Gateway.complete` alone, same calls (cache, usage, limits; no workflow graphs): "
            f"{_fmt(g['calls_per_s'])} calls/s ({_fmt(g['ratio_to_bare_litellm'])} of bare litellm), "
            f"{_fmt(g['cpu_ms_per_call'])} ms CPU per call."
        )
    text += (
        "\n\nBuilds: 2 generations + judge + rationale per prompt. *end to end* divides the server's calls "
        "by the whole `run_build` wall time (loading, shards, merge, dataset); *calling* by the window in which "
        "the server was answering (first request to last answer), which is what bare litellm's figure "
        "measures too. CPU per call is over the whole build, and over the shard phase alone (every model "
        "call and stage, without start-up and `finalize`). *CPU ratio* = bare litellm's CPU per call / the "
        "shard phase's: what the calls/s ratio "
        "becomes wherever the client is CPU-bound, whatever else loads the machine. *cores at C/L* = CPU "
        "the client needs to reach the limit (above 1, one Python process cannot).\n\n"
    )
    text += table(
        [
            "C",
            "prompts",
            "calls",
            "peak in flight",
            "wall s",
            "calls/s end to end",
            "calls/s calling",
            "limit C/L",
            "end to end / limit",
            "calling / limit",
            "calling / bare litellm",
            "CPU ms/call (build)",
            "CPU ms/call (shards)",
            "CPU ratio to bare litellm",
            "cores at C/L",
            "calls by role",
        ],
        rows,
    )
    at64 = next((x for x in r["builds"] if x["concurrency"] == 64), None)
    at8 = next((x for x in r["builds"] if x["concurrency"] == 8), None)
    checks = [
        ["C=8: calls/s / (C/L) >= 0.95 (calling window)", ratio_active(at8) if at8 else None, 0.95],
        *(
            [
                [
                    "C=8: calls/s / bare litellm at C=8 (context, calling window)",
                    round(at8["active_calls_per_s"] / b8["calls_per_s"], 3),
                    None,
                ]
            ]
            if at8 and b8 and at8.get("active_calls_per_s")
            else []
        ),
        [
            "C=64: calls/s / bare litellm >= 0.9 (calling window)",
            _ratio_to_bare(r, at64) if at64 else None,
            0.9,
        ],
        ["C=64: bare litellm CPU per call / build's >= 0.9", _cpu_ratio(r, at64) if at64 else None, 0.9],
    ]
    return text, checks


def ratio_active(x: dict[str, Any]) -> float | None:
    if not x.get("active_calls_per_s"):
        return None
    return round(x["active_calls_per_s"] / x["limit_calls_per_s"], 3)


def _ratio_to_bare(r: dict[str, Any], x: dict[str, Any]) -> float | None:
    bare = r["baseline_bare_litellm"]["calls_per_s"]
    return round(x["active_calls_per_s"] / bare, 3) if x.get("active_calls_per_s") and bare else None


def _cpu_ratio(r: dict[str, Any], x: dict[str, Any]) -> float | None:
    bare = r["baseline_bare_litellm"]["cpu_ms_per_call"]
    build = x.get("shards_cpu_ms_per_call") or x.get("cpu_ms_per_call")
    return round(bare / build, 3) if build else None


def _side_by_side(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    ceilings = r["ceilings_c64"]
    text = (
        f"One endpoint that costs the client nothing (`benchmarks/peers/fake_latency_server.py`, "
        f"{r['latency_ms']} ms), the same 3-call graph per prompt (2 generations + pairwise judge), equal "
        f"concurrency, rounds alternating; whole-process wall times, medians. Peers: {r.get('curator') or 'Curator not run'}"
        f"{', distilabel' if r.get('distilabel') else ''}, each in its own venv. The machine is shared: "
        "compare the ratios of one run, not absolute figures across runs.\n\n"
    )
    text += (
        "Client ceilings at C=64 (calls alone, no pipeline):\n\n"
        + table(
            ["client", "calls/s", "CPU ms/call"],
            [[name, x["calls_per_s"], x["cpu_ms_per_call"]] for name, x in ceilings.items()],
        )
        + "\n\n"
    )
    rows = []
    for s in r["sizes"]:
        f, cu, d = s["factory"], s["curator"], s["distilabel"]
        rows.append(
            [
                s["prompts"],
                s["concurrency"],
                s["limit_pairs_per_s"],
                f["pairs_per_s"],
                cu["pairs_per_s"],
                d["pairs_per_s"],
                s["factory_over_curator"],
                s.get("bound_over_curator"),
                s["factory_over_distilabel"],
                f["first_call_s"],
                f["calling_calls_per_s"],
                s.get("wire_calls_per_s"),
                s["limit_calls_per_s"],
                s["load_average"],
            ]
        )
    text += table(
        [
            "prompts",
            "C",
            "limit pairs/s",
            "factory pairs/s",
            "Curator pairs/s",
            "distilabel pairs/s",
            "factory / Curator",
            "best possible / Curator",
            "factory / distilabel",
            "factory first call s",
            "factory calling calls/s",
            "raw aiohttp calls/s",
            "limit calls/s",
            "load average",
        ],
        rows,
    )
    text += (
        "\n\n'best possible / Curator' is Curator's wall time over the time the prompts' 3n calls take at raw "
        "aiohttp's rate at that concurrency (measured in the same run, 'raw aiohttp calls/s'): the ratio a "
        "client with no start-up, no per-call work and no finalize would reach. A target above it cannot be "
        "met against this Curator run."
    )
    t = r["targets"]
    checks = [
        [
            "C=64: factory / Curator pairs/s >= 1.5 (whole process)",
            t["c64_factory_over_curator"]["measured"],
            1.5,
        ],
        [
            "C=8: factory / Curator pairs/s >= 1.2 (whole process)",
            t["c8_factory_over_curator"]["measured"],
            1.2,
        ],
        ["C=64: calling calls/s / raw aiohttp >= 0.8", t["c64_calling_over_raw_aiohttp"]["measured"], 0.8],
        ["C=8: calling calls/s / (C/L) >= 0.9", t["c8_calling_over_limit"]["measured"], 0.9],
        [
            "first model call after `factory build` starts, s (< 2)",
            t["first_call_s"]["measured"],
            2.0,
            "below",
        ],
    ]
    return text, checks


def _profile(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    if "skipped" in r:
        return f"Skipped: {r['skipped']}.", []
    profiles = r["profiles"]
    names = list(dict.fromkeys(k for p in profiles for k in p["shares"]))
    first = profiles[0]
    text = (
        f"py-spy at {r['rate_hz']} Hz over a whole `factory build --engine local` ({first['prompts']} prompts, "
        f"C={first['concurrency']}, the side-by-side graph, {r['latency_ms']} ms endpoint), load average "
        f"{_fmt(r['load_average'])}. Each sample goes to the first component found walking out from the "
        "running frame (an import anywhere in the stack counts as import), so a column adds up to 100% of the "
        "samples in which Python ran. Per-call work is what is not import or finalize; the SQLite cache "
        "commits every call as it returns (a killed build repeats no finished call), and its share below is "
        "what that policy costs.\n\n"
    )
    text += table(
        ["component", *[f"share, {p['transport']} transport" for p in profiles]],
        [[n, *[_pct(p["shares"].get(n)) for p in profiles]] for n in names],
    )
    text += "\n\n" + table(["transport", "samples"], [[p["transport"], p["samples"]] for p in profiles])
    return text, []


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _vs_distilabel(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    rows = []
    for x in r["rounds"]:
        d, f = x["distilabel"], x["factory"]
        rows.append(
            [
                x["input_batch_size"],
                x["prompts"],
                d.get("peak_in_flight"),
                f["peak_in_flight"],
                d.get("wall_s"),
                f["wall_s"],
                d.get("pairs_per_s"),
                f["pairs_per_s"],
                x["ratio_pairs_per_s"],
                d.get("active_pairs_per_s"),
                f["active_pairs_per_s"],
                x["ratio_active_pairs_per_s"],
            ]
        )
    text = (
        f"distilabel {r.get('distilabel_version') or '(not run)'} in its own venv, same fake server "
        f"({r['latency_s'] * 1000:g} ms), same call graph (2 generations + pairwise judge with the same judge "
        "prompt). The factory runs with its concurrency set to the peak in flight the server saw for "
        "distilabel. *calling* rates use the window in which the server was answering.\n\n"
    )
    text += table(
        [
            "input_batch_size",
            "prompts",
            "peak in flight distilabel",
            "peak in flight factory",
            "wall s distilabel",
            "wall s factory",
            "pairs/s distilabel",
            "pairs/s factory",
            "ratio",
            "calling pairs/s distilabel",
            "calling pairs/s factory",
            "calling ratio",
        ],
        rows,
    )
    best = r["targets"]["ratio_pairs_per_s"]["measured_best"]
    return text, [["factory / distilabel judged pairs/s >= 2.5 (end to end, best round)", best, 2.5]]


def _memory(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    rows = [
        [
            x["prompts"],
            x["server_calls"],
            x["wall_s"],
            x["rss_before_build_mib"],
            x.get("peak_rss_before_finalize_mib"),
            x["peak_rss_mib"],
        ]
        for x in r["builds"]
    ]
    text = (
        "Each build in its own process, fake server with no added latency, concurrency "
        f"{r['concurrency']}. RSS in MiB.\n\n"
    )
    text += table(
        ["prompts", "calls", "wall s", "RSS before build", "peak RSS before finalize", "peak RSS"], rows
    )
    text += (
        f"\n\nPeak RSS at 100,000 prompts: **{_fmt(r['peak_rss_100k_mib'])} MiB** "
        f"({r['peak_rss_100k_kind']}); at 10,000: {_fmt(r.get('peak_rss_10k_mib'))} MiB; "
        f"shard phase: {_fmt(r.get('shard_phase_slope_kib_per_prompt'))} KiB per prompt over the second half "
        f"of the largest build, extrapolated to 100k: {_fmt(r.get('shard_phase_100k_extrapolated_mib'))} MiB."
    )
    if r.get("finalize_tiled"):
        text += "\n\n" + _finalize_tiled(r["finalize_tiled"])
    t = r["targets"]
    checks = [
        ["peak RSS at 100k prompts < 1024 MiB", t["peak_rss_100k_below_1gib"]["value_mib"], 1024.0, "below"],
        ["peak RSS 100k / 10k < 2", t["ratio_100k_over_10k"]["value"], 2.0, "below"],
    ]
    return text, checks


def _finalize_tiled(f: dict[str, Any]) -> str:
    rows = [
        [x["prompts"], x["rss_before_mib"], x.get("rss_tables_merged_mib"), x["peak_rss_mib"], x["wall_s"]]
        for x in f["points"]
    ]
    return (
        f"`finalize` alone (merge, gate, dataset, manifest) on run folders tiled from a real "
        f"{f['source_prompts']}-prompt build's shard files (ids renamed, no model calls), in MiB:\n\n"
        + table(
            [
                "prompts",
                "RSS before finalize",
                "RSS with every table merged",
                "peak RSS (dataset built)",
                "wall s",
            ],
            rows,
        )
    )


def _resume(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    rows = [
        [
            r["prompts"],
            r["uninterrupted_calls"],
            r["killed_run_calls"],
            r["cached_at_kill"],
            r["in_flight_lost_at_kill"],
            r["resumed_run_calls"],
            r["repeated_calls"],
            r["repeated_completed_calls"],
            r["pairs_equal"],
            r["dataset_equal"],
        ]
    ]
    text = (
        f"SIGKILL at half of the reference run's calls, then `--resume` (concurrency {r['concurrency']}, "
        f"latency {r['latency_s'] * 1000:g} ms). Repeated = killed + resumed - uninterrupted; the calls in "
        "flight at the kill never returned, so *completed* repeats = resumed - (uninterrupted - cached at kill).\n\n"
    )
    text += table(
        [
            "prompts",
            "uninterrupted calls",
            "killed run calls",
            "cached at kill",
            "in flight at kill",
            "resumed run calls",
            "repeated",
            "completed calls repeated",
            "pairs equal",
            "dataset equal",
        ],
        rows,
    )
    return text, [
        ["completed calls repeated on resume == 0", r["repeated_completed_calls"], 0, "equal"],
        ["resumed pairs == uninterrupted pairs", r["pairs_equal"], True, "equal"],
    ]


def _embedded(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    if "skipped" in r:
        return f"Not run: {r['skipped']}.", []
    rows = [[name, p["completion_tokens"], p["seconds"], p["tokens_per_s"]] for name, p in r["paths"].items()]
    params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
    text = (
        f"SmolLM2-135M Q4_1, {r['prompts']} prompts x {r['rounds']} rounds, {params}; the factory's llama.cpp "
        f"uses {r['factory_threads']} thread(s); `direct_tN` = llama-cpp-python with N threads.\n\n"
    )
    text += table(["path", "completion tokens", "seconds", "tokens/s"], rows)
    text += (
        f"\n\nfactory / direct (same threads): **{_fmt(r['ratio_to_direct_same_threads'])}**; "
        f"factory / best direct: {_fmt(r['ratio_to_best_direct'])}."
    )
    return text, [
        ["factory / direct llama.cpp tokens/s >= 0.8 (same threads)", r["ratio_to_direct_same_threads"], 0.8]
    ]


def _throughput_findings(records: dict[str, dict[str, Any]]) -> list[str]:
    """Findings of the side-by-side run and the build profile (issue #15)."""
    out = []
    sbs = records.get("side_by_side", {}).get("results")
    if sbs and sbs.get("sizes"):
        parts = [
            f"C={x['concurrency']}: factory {_fmt(x['factory']['pairs_per_s'])} vs Curator "
            f"{_fmt(x['curator']['pairs_per_s'])} pairs/s ({_fmt(x['factory_over_curator'])}x), first call "
            f"{_fmt(x['factory']['first_call_s'])} s"
            for x in sbs["sizes"]
        ]
        ceil = sbs["ceilings_c64"]
        out.append(
            "Side by side in one run (whole processes, alternating rounds, the load averages in the table): "
            + "; ".join(parts)
            + ". Client ceilings at C=64: raw aiohttp "
            f"{_fmt(ceil.get('aiohttp', {}).get('calls_per_s'))}, the factory's `Gateway.complete` on the lean "
            f"transport {_fmt(ceil.get('factory-gateway', {}).get('calls_per_s'))}, litellm "
            f"{_fmt(ceil.get('litellm', {}).get('calls_per_s'))} calls/s. What changed: OpenAI-compatible endpoints "
            "take a lean aiohttp transport (`factory/llm/lean.py`: one pool per event loop, same records, errors and "
            "litellm prices, read from litellm's bundled table without importing litellm); single-agent generation "
            "and single judges are plain fan-outs, not LangGraph runs; litellm, LangGraph, the feedback loop, "
            "rationales, Prefect, training and Hub code import only when a build uses them."
        )
    prof = records.get("profile", {}).get("results")
    if prof and prof.get("profiles"):
        by = {p["transport"]: p["shares"] for p in prof["profiles"]}
        lean, lite = by.get("lean", {}), by.get("litellm", {})

        def pct(d: dict[str, float], k: str) -> str:
            return _pct(d.get(k, 0.0))

        out.append(
            f"Profile of the same build (py-spy, samples by component): on the lean transport the HTTP client takes "
            f"{pct(lean, 'HTTP client (aiohttp, httpx, openai SDK)')}, the gateway's own bookkeeping "
            f"{pct(lean, 'gateway (limits, retries, budget, usage)')}, the SQLite request cache "
            f"{pct(lean, 'SQLite request cache')}, JSON {pct(lean, 'JSON encode/decode')}, pydantic "
            f"{pct(lean, 'pydantic validation/schemas')}, logging {pct(lean, 'logging')}, LangGraph "
            f"{pct(lean, 'LangGraph / langchain_core')}, imports {pct(lean, 'imports (start-up)')} and finalize "
            f"{pct(lean, 'finalize (tables, HF dataset, card)')}; forced through litellm, litellm alone takes "
            f"{pct(lite, 'litellm')} and imports {pct(lite, 'imports (start-up)')}. The cache keeps one commit per "
            "call (WAL, synchronous=NORMAL): batching commits would save at most its share and break the promise "
            "that a killed build repeats no finished call, so it stays."
        )
        gc_runs = {g["settings"]: g for g in prof.get("collector") or []}
        if {"build", "default"} <= gc_runs.keys():
            mine, stock = gc_runs["build"], gc_runs["default"]

            def counts(g: dict[str, Any]) -> str:
                return " / ".join(str(g["collections"][k]) for k in ("0", "1", "2"))

            out.append(
                f"The cycle collector, timed with `gc.callbacks` over a whole {mine['prompts']}-prompt build at "
                f"C={mine['concurrency']} (py-spy's Python frames cannot see it): on CPython's default thresholds "
                f"{counts(stock)} young / middle / full collections took {_fmt(stock['total_s'])} s; with the "
                f"heap that lives for the whole build frozen and higher thresholds (`factory/_util/gc_settings.py`), "
                f"{counts(mine)} took {_fmt(mine['total_s'])} s. After the last call, finalize copies each split "
                "into Arrow for `dataset_dict/` instead of going through a `datasets` builder, and the `factory` "
                "process ends without the interpreter's teardown, a last full collection over the whole heap "
                "(`factory/_util/process_exit.py`)."
            )
    return out


def _closed_loop(r: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    if "skipped" in r:
        return f"Not run: {r['skipped']}.", []
    b, t, test = r["build"], r["train"], r["test"]
    c = r["counts"]
    text = (
        f"`factory build` over {r['prompts']} prompts with SmolLM2-135M as generator, judge and rationale writer "
        f"(gate off): {c['dpo_train']} train / {c['dpo_test']} test DPO pairs. Then `factory train --model "
        f"local/smollm2` (TRL DPOTrainer, `accelerate launch`, CPU, full fine-tuning of {_fmt(t['parameters'])} "
        f"parameters): {t['steps']} steps, batch 2, max length {t['max_length']}, learning rate "
        f"{t['learning_rate']:g}, beta {t['beta']}. Wall and CPU time of each step (CPU = user + system of the command and its children; the `train:` rows are inside `factory train`):\n\n"
    )
    steps = [
        ["build", b["wall_s"], b["cpu_s"], b["load_average"]],
        ["train (all)", t["wall_s"], t["cpu_s"], t["load_average"]],
    ]
    steps += [[f"train: {k}", v, None, None] for k, v in t["timings_s"].items()]
    text += table(["step", "wall s", "CPU s", "load average at start"], steps)
    if test.get("before"):
        rows = [
            [k, test["before"].get(k), test["after"].get(k)]
            for k in (
                "reward_accuracy",
                "reward_margin",
                "reward_chosen",
                "reward_rejected",
                "dpo_loss",
                "logp_accuracy",
            )
        ]
        text += (
            f"\n\nTest split, {test['pairs']} pairs (reward accuracy before training is 0.5 by construction: "
            "the policy is its own reference; `logp_accuracy` = chosen answer has the higher mean per-token "
            "log-probability):\n\n" + table(["figure", "before", "after"], rows)
        )
    return text, []


def _wire_at_8(records: dict[str, dict[str, Any]]) -> str:
    sizes = (records.get("side_by_side", {}).get("results") or {}).get("sizes") or []
    at8 = next((s for s in sizes if s["concurrency"] == 8 and s.get("wire_calls_per_s")), None)
    if at8 is None:
        return ""
    share = _fmt(round(at8["wire_calls_per_s"] / at8["limit_calls_per_s"], 3))
    return f"; raw aiohttp, with no work of its own, reaches {share} of C/L at C = 8 in the side-by-side run"


def findings(records: dict[str, dict[str, Any]]) -> list[str]:
    """Where the time and memory go, from the figures plus what profiling showed (2026-11-27)."""
    out = []
    tp = records.get("throughput", {}).get("results")
    at8 = next((b for b in tp["builds"] if b["concurrency"] == 8), None) if tp else None
    b8 = tp.get("baseline_bare_litellm_c8") if tp else None
    if at8 and b8 and at8.get("active_calls_per_s"):
        out.append(
            f"C = 8 is bound by the wire, not by the build: bare `litellm.acompletion` reaches "
            f"{_fmt(b8['ratio_to_limit'])} of C/L here and the build, on the lean transport, {_fmt(ratio_active(at8))} "
            f"({_fmt(round(at8['active_calls_per_s'] / b8['calls_per_s'], 3))} of bare litellm at the same C)"
            + _wire_at_8(records)
            + ". Each prompt streams through all stages on its own (`factory/pipeline/shard.py`), so the "
            "build's slots do not drain at stage boundaries; what a slot loses beyond the server's 100 ms is "
            "the HTTP exchange and the client's turn on a busy event loop."
        )
    if tp and tp.get("gateway_only"):
        bare, gw = tp["baseline_bare_litellm"]["cpu_ms_per_call"], tp["gateway_only"]["cpu_ms_per_call"]
        builds = [
            b.get("shards_cpu_ms_per_call") or b["cpu_ms_per_call"]
            for b in tp["builds"]
            if b["concurrency"] >= 64
        ]
        build = min(builds) if builds else None
        out.append(
            f"CPU per call: bare litellm {_fmt(bare)} ms, `Gateway.complete` alone {_fmt(gw)} ms, full build "
            f"{_fmt(build)} ms (C >= 64, shard phase), as measured by the throughput benchmark on "
            f"{tp.get('measured_on', 'its date above')} against the side-by-side's endpoint (the build and "
            "`Gateway.complete` on the lean transport; see the profile section for where the build's share goes)."
        )
    out += _throughput_findings(records)
    mem = records.get("memory", {}).get("results")
    if mem and mem.get("finalize_tiled"):
        top = max(mem["finalize_tiled"]["points"], key=lambda p: p["prompts"])
        slope = mem.get("shard_phase_slope_kib_per_prompt")
        out.append(
            f"Memory: the shard phase grows {_fmt(slope)} KiB per prompt (it holds two shards at a time). "
            "`finalize` streams: stage tables are merged file by file with lazy scans "
            "(`factory/run/tables.py`), dedupe / KTO / split decisions are made shard by shard "
            "(`factory/dataset/decide.py`), and the TRL files are appended with a ParquetWriter and read back "
            f"by `datasets` as Arrow. At {_fmt(top['prompts'])} prompts RSS goes from {_fmt(top['rss_before_mib'])} "
            f"to {_fmt(top.get('rss_tables_merged_mib'))} MiB after the merge and peaks at "
            f"{_fmt(top['peak_rss_mib'])} MiB; most of what remains is `datasets.save_to_disk` reading the "
            "memory-mapped train split."
        )
    return out


RENDER = {
    "side_by_side": _side_by_side,
    "profile": _profile,
    "throughput": _throughput,
    "vs_distilabel": _vs_distilabel,
    "memory": _memory,
    "resume_cost": _resume,
    "embedded": _embedded,
    "closed_loop": _closed_loop,
}
TITLES = {
    "side_by_side": "Side by side: Curator, distilabel, client ceilings",
    "profile": "Where a build's CPU goes (py-spy)",
    "throughput": "Throughput against the physical limit",
    "vs_distilabel": "Against distilabel",
    "memory": "Memory",
    "resume_cost": "Resume cost",
    "embedded": "Embedded model",
    "closed_loop": "Closed loop: build, train, evaluate",
}


def _check_row(check: list[Any]) -> list[Any]:
    name, value, target = check[:3]
    kind = check[3] if len(check) > 3 else "at_least"
    if value is None or target is None:  # unmeasured, or a figure shown for context only
        ok = None
    elif kind == "below":
        ok = value < target
    elif kind == "equal":
        ok = value == target
    else:
        ok = value >= target
    return [name, value, _verdict(ok)]


def render(records: dict[str, dict[str, Any]]) -> str:
    """The whole page from benchmark records (as written by `python -m benchmarks`)."""
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks` (`make bench`) from `benchmarks/results/*.json`; do not edit by hand.",
        "Timings on a shared 2-core machine are noisy: each benchmark compares figures measured in the same run.",
        "",
    ]
    if not records:
        return "\n".join(out + ["No results yet: run `python -m benchmarks`.", ""])
    first = next(iter(records.values()))["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    out += [
        table(
            ["machine", "value"],
            [
                ["CPU", f"{first['cpu_model']} ({first['nproc']} cores as seen by `nproc`)"],
                ["memory", f"{first['memory_gib']} GiB"],
                ["OS", first["platform"]],
                ["python", first["python"]],
                ["versions", versions],
            ],
        ),
        "",
    ]
    checks: list[list[Any]] = []
    sections = []
    for name in ORDER:
        record = records.get(name)
        if record is None:
            sections += [f"## {TITLES[name]}", "", "Not run.", ""]
            continue
        text, found = RENDER[name](record["results"])
        machine = record["machine"]
        when = (
            f"Run {machine['date']}{' (--quick)' if record.get('quick') else ''}, {record['duration_s']:g} s, "
            f"load average at start {_fmt(machine.get('load_average_at_start'))}."
        )
        sections += [f"## {TITLES[name]}", "", when, "", text, ""]
        checks += [_check_row(c) for c in found]
    out += ["## Targets", "", table(["target", "measured", "verdict"], checks), ""]
    notes = findings(records)
    if notes:
        out += ["## Findings", "", *[f"* {n}" for n in notes], ""]
    out += sections
    return "\n".join(out).rstrip() + "\n"


def load_records(results_dir: Path) -> dict[str, dict[str, Any]]:
    records = {}
    for name in ORDER:
        path = results_dir / f"{name}.json"
        if path.is_file():
            records[name] = json.loads(path.read_text(encoding="utf-8"))
    return records


def write_report(results_dir: Path, doc: Path) -> Path:
    """Render the results in `results_dir` into the markdown file `doc`."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(load_records(results_dir)), encoding="utf-8")
    return doc


if __name__ == "__main__":
    write_report(RESULTS_DIR, DOC_PATH)
    print(DOC_PATH.read_text(encoding="utf-8"))
    sys.exit(0)
