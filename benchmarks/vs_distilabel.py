"""Side by side with distilabel: the same call graph against the same fake server, in one run.

Call graph per prompt: two generations, then one pairwise judge (the factory's combined-score judge
prompt in both). distilabel (PyPI, pinned below) runs in its own virtual environment, created here
on first use under benchmarks/.venv-distilabel/ (gitignored), with `benchmarks/distilabel_pipeline.py`.

Equal requests in flight: distilabel runs its steps in parallel processes, each sending
`input_batch_size` requests at once, so its peak in flight is not simply the batch size. It runs
first; the factory then runs with its concurrency set to the peak the server saw for distilabel.
We report judged pairs/s for both, end to end (start-up included) and over the window in which the
server was answering (first request to last answer), and their ratios.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

from benchmarks._common import (
    REPO,
    Options,
    ServerWatch,
    build_config,
    child_env,
    load_average,
    parse_child_output,
    ratio,
    run_child,
    write_prompts,
)

NAME = "vs_distilabel"
DISTILABEL = "distilabel==1.5.3"
# distilabel 1.5.3 imports `requests` without declaring it; its OpenAILLM needs the openai SDK.
DISTILABEL_EXTRAS = ("requests", "openai")
VENV_DIR = REPO / "benchmarks" / ".venv-distilabel"
SCRIPT = REPO / "benchmarks" / "distilabel_pipeline.py"
LATENCY_S = 0.1


def venv_python(install: bool, log: Any = None) -> Path | None:
    """distilabel's interpreter; created and installed when missing and `install` is true."""
    python = VENV_DIR / "bin" / "python"
    if python.exists() and _imports_distilabel(python):
        return python
    if not install:
        return None
    if log:
        log(f"{NAME}: creating {VENV_DIR.relative_to(REPO)} and installing {DISTILABEL} (about a minute)")
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV_DIR)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", DISTILABEL, *DISTILABEL_EXTRAS],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return python if _imports_distilabel(python) else None


def _imports_distilabel(python: Path) -> bool:
    done = subprocess.run(
        [str(python), "-c", "import distilabel.pipeline, openai, requests"],
        capture_output=True,
        timeout=300,
        check=False,
    )
    return done.returncode == 0


def judge_template() -> dict[str, str]:
    """The factory's combined-score judge prompt (system + user) with Jinja slots for distilabel."""
    from judges.protocols import render_pairwise

    system, user = render_pairwise("combined", "{{ instruction }}", "{{ answer_a }}", "{{ answer_b }}", 10)
    return {"system": str(system["content"]), "template": str(user["content"])}


def _run_distilabel(python: Path, server: Any, work: Path, n_prompts: int, batch_size: int) -> dict[str, Any]:
    judge_path = work / "judge.json"
    judge_path.write_text(json.dumps(judge_template()), encoding="utf-8")
    command = [
        str(python),
        str(SCRIPT),
        "--base-url",
        server.base_url,
        "--prompts",
        str(n_prompts),
        "--batch-size",
        str(batch_size),
        "--judge-json",
        str(judge_path),
        "--cache-dir",
        str(work / "cache"),
    ]
    env = child_env()
    env.pop("PYTHONPATH", None)  # distilabel's side must not see the factory
    server.reset()
    with ServerWatch(server) as watch:
        done = subprocess.run(
            command, check=False, cwd=work, env=env, capture_output=True, text=True, timeout=1800
        )
    result = parse_child_output(done.returncode, done.stdout, done.stderr, command)
    stats = server.stats()
    result.update(server_calls=stats.calls, peak_in_flight=stats.peak_in_flight, active_s=watch.active_s)
    return result


def _run_factory(server: Any, work: Path, n_prompts: int, concurrency: int) -> dict[str, Any]:
    prompts = write_prompts(work / f"prompts-{n_prompts}.jsonl", n_prompts)
    config = build_config(server.base_url, work / "runs", prompts, concurrency=concurrency, rationales=False)
    config_path = work / f"config-c{concurrency}.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    server.reset()
    with ServerWatch(server) as watch:
        child = run_child(["build", str(config_path)])
    stats = server.stats()
    return {
        "wall_s": child["wall_s"],
        "judged": child["counts"].get("judgments"),
        "pairs": child["counts"].get("pairs"),
        "server_calls": stats.calls,
        "peak_in_flight": stats.peak_in_flight,
        "active_s": watch.active_s,
        "cpu_s": child["cpu_s"],
        "concurrency": concurrency,
    }


def _rates(side: dict[str, Any]) -> dict[str, Any]:
    judged = side.get("judged") or 0
    side["pairs_per_s"] = round(judged / side["wall_s"], 2) if side.get("wall_s") else None
    side["active_pairs_per_s"] = round(judged / side["active_s"], 2) if side.get("active_s") else None
    return side


def run(opts: Options) -> dict[str, Any]:
    from factory.testing import FakeLLMServer

    work = opts.work_dir / NAME
    work.mkdir(parents=True, exist_ok=True)
    batch_sizes = (4,) if opts.quick else (4, 16)
    python = venv_python(install=not opts.quick, log=opts.log)
    rounds: list[dict[str, Any]] = []
    with FakeLLMServer.spawn(latency_s=LATENCY_S) as server:
        for batch in batch_sizes:
            # About 15 s of distilabel calls at its observed ~0.35 of the C/L limit (2.5 batches in flight).
            n_prompts = 12 if opts.quick else max(100, math.ceil(15 * 0.35 * 2.5 * batch / LATENCY_S / 3))
            entry: dict[str, Any] = {
                "input_batch_size": batch,
                "prompts": n_prompts,
                "load_average": load_average(),
            }
            if python is None:
                entry["distilabel"] = {
                    "skipped": f"no venv at {VENV_DIR.relative_to(REPO)} (a full run creates it)"
                }
                concurrency = 2 * batch
            else:
                opts.log(f"{NAME}: distilabel, {n_prompts} prompts, input_batch_size {batch}")
                entry["distilabel"] = _rates(_run_distilabel(python, server, work, n_prompts, batch))
                concurrency = max(1, entry["distilabel"]["peak_in_flight"])
            opts.log(f"{NAME}: factory, {n_prompts} prompts, concurrency {concurrency}")
            entry["factory"] = _rates(_run_factory(server, work, n_prompts, concurrency))
            dl = entry["distilabel"]
            entry["ratio_pairs_per_s"] = ratio(entry["factory"]["pairs_per_s"], dl.get("pairs_per_s"))
            entry["ratio_active_pairs_per_s"] = ratio(
                entry["factory"]["active_pairs_per_s"], dl.get("active_pairs_per_s")
            )
            rounds.append(entry)
            opts.log(
                f"{NAME}: batch {batch}: factory {entry['factory']['pairs_per_s']} pairs/s vs distilabel "
                f"{dl.get('pairs_per_s')} (ratio {entry['ratio_pairs_per_s']})"
            )
    version = next(
        (
            r["distilabel"].get("distilabel_version")
            for r in rounds
            if "distilabel_version" in r["distilabel"]
        ),
        None,
    )
    best = max((r["ratio_pairs_per_s"] for r in rounds if r["ratio_pairs_per_s"] is not None), default=None)
    return {
        "latency_s": LATENCY_S,
        "distilabel_version": version,
        "python": sys.version.split()[0],
        "rounds": rounds,
        "targets": {"ratio_pairs_per_s": {"target": 2.5, "measured_best": best}},
    }
