"""`python -m benchmarks [--quick] [--only NAME ...]`: run the benchmarks, write JSON and the report.

Full run (about 15 minutes on 2 cores): results go to benchmarks/results/<name>.json and the
tables to docs/benchmarks.md. `--quick` shrinks every size to a smoke run (under a minute) and,
unless `--results-dir` is given, writes into the work folder so committed figures stay untouched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import DOC_PATH, REPO, RESULTS_DIR, Options, machine_info

BENCHMARKS = (
    "side_by_side",
    "profile",
    "throughput",
    "vs_distilabel",
    "memory",
    "resume_cost",
    "embedded",
    "closed_loop",
)


def run_one(name: str, opts: Options) -> dict[str, Any]:
    """Run one benchmark module's `run(opts)` and wrap its figures with the machine and timing."""
    module = importlib.import_module(f"benchmarks.{name}")
    machine = machine_info()
    started = time.perf_counter()
    results = module.run(opts)
    return {
        "benchmark": name,
        "quick": opts.quick,
        "machine": machine,
        "duration_s": round(time.perf_counter() - started, 1),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every code path")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        help="where the JSON goes (default benchmarks/results; with --quick, the work folder)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        help="markdown report to write (default docs/benchmarks.md, or "
        "benchmarks.md next to a --results-dir other than benchmarks/results)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "outputs" / "benchmarks",
        help="scratch folder for prompts, run folders and distilabel's cache",
    )
    parser.add_argument(
        "--memory-prompts",
        default="1000,4000",
        help="prompt counts of the memory benchmark's real builds, e.g. 10000,100000 "
        "(default 1000,4000; finalize is also measured on run folders tiled to 10k and 100k)",
    )
    parser.add_argument(
        "--loop-prompts",
        type=int,
        default=300,
        help="prompts of the closed-loop build (embedded model), then DPO on CPU (default 300)",
    )
    ns = parser.parse_args(argv)
    work_dir = ns.work_dir.resolve()
    results_dir = ns.results_dir or (work_dir / "results" if ns.quick else RESULTS_DIR)
    doc = ns.doc or (DOC_PATH if results_dir == RESULTS_DIR else results_dir / "benchmarks.md")
    opts = Options(
        quick=ns.quick,
        work_dir=work_dir,
        memory_prompts=tuple(int(x) for x in ns.memory_prompts.split(",") if x.strip()),
        loop_prompts=ns.loop_prompts,
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in ns.only or BENCHMARKS:
        record = run_one(name, opts)
        path = results_dir / f"{name}.json"
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        opts.log(f"{name}: done in {record['duration_s']:.0f}s -> {path}")
    from benchmarks.report import write_report

    write_report(results_dir, doc)
    opts.log(f"report: {doc}")
    print(doc.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
