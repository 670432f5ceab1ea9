"""Rate limits shared by every process of a build: a build on 2 Dask worker processes with rpm 120
never sends the fake server more than 120 requests in any 60 s window (measured at the server).

Slow (`-m slow`; 112 s measured at load 0.1-1: ~40 s of Prefect API and Dask start-up plus the
window): the limit is per minute, and the build makes more calls than the
limit so that the second minute is needed. Without a limiter shared by the workers, each worker
would send its own 120 at once and the busiest window would hold every call."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
from pathlib import Path

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
import yaml
from conftest_prefect import write_build_config

from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]

RPM = 120
PROMPTS = 36  # about 3.8 calls per prompt: ~135 calls, more than one minute's limit


def busiest_window(times: list[float], window_s: float) -> int:
    """The most of `times` that fall in any half-open window [a, a + window_s)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.slow
@pytest.mark.prefect
def test_two_dask_workers_together_never_exceed_the_models_rpm(prefect_api: str, tmp_path: Path) -> None:
    from factory.config import load_config
    from flows import run_build_flow

    with FakeLLMServer(latency_s=0.02) as server:
        path = write_build_config(tmp_path, server.base_url, name="rpm", n_prompts=PROMPTS, shard_size=4)
        spec = yaml.safe_load(path.read_text())
        for role in spec["models"].values():
            role["rpm"] = RPM
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        result = run_build_flow(load_config(path), runner="dask", workers=2)
        arrivals = server.arrival_times("fake")
        stats = server.stats

    assert len(result["workers"]) == 2  # both worker processes sent requests
    assert len(arrivals) > RPM  # more calls than one window allows: the limit had to hold them back
    busiest = busiest_window(arrivals, 60.0)
    assert busiest <= RPM, f"{busiest} requests in one 60 s window (limit {RPM})"
    assert busiest >= RPM * 0.9  # and the limit was used, not starved
    assert max(arrivals) - min(arrivals) >= 60.0
    manifest = result["manifest"]
    assert manifest["outcome"]["status"] == "complete"
    assert manifest["llm"]["calls"] == stats.ok == len(arrivals)  # no 429 needed, none retried
    assert manifest["counts"]["prompts"] == PROMPTS
