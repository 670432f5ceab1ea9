"""The build flow under Prefect (ephemeral API) against the fake server: same rows as the local engine,
resume after a failed flow, artifacts in Prefect's API."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conftest_prefect")
import json
from pathlib import Path

import conftest_prefect  # noqa: F401  (before Prefect is imported: it sets PREFECT_HOME)
from conftest_prefect import comparable_rows, run_cli, write_build_config

from factory.pipeline.outcome import GATE_FAILED_EXIT
from factory.testing import FakeLLMServer

pytest_plugins = ["conftest_prefect"]
pytestmark = pytest.mark.prefect

TABLES = ("candidates", "judgments", "pairs", "failures")


def _run_dir(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def _artifacts(keys: list[str]) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    return {a.key: a for a in found}


def _latest_flow_run(name: str = "factory-build"):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return runs[0]


def test_prefect_build_finds_the_same_rows_as_the_local_engine(
    prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeLLMServer() as server:
        config = write_build_config(
            tmp_path, server.base_url, name="same-rows", n_prompts=7, shard_size=3, gate=True
        )
        # Complete builds; the gate's verdict on 8 human items (exit 6 when it fails) must match too.
        code, out, err = run_cli(["build", str(config), "--engine", "local", "--quiet"], capsys)
        assert code in (0, GATE_FAILED_EXIT), err
        local = _run_dir(out)
        local_code = code
        code, out, err = run_cli(["build", str(config), "--engine", "prefect", "--quiet"], capsys)
        assert code == local_code, err
        flowed = _run_dir(out)

    assert local != flowed and flowed.is_dir()
    for table in TABLES:
        assert comparable_rows(local / f"{table}.parquet") == comparable_rows(flowed / f"{table}.parquet"), (
            table
        )
    assert comparable_rows(flowed / "pairs.parquet"), "the build produced no pairs to compare"
    local_data = sorted(p.relative_to(local) for p in (local / "dataset").rglob("*.parquet"))
    assert local_data == sorted(p.relative_to(flowed) for p in (flowed / "dataset").rglob("*.parquet"))
    for rel in local_data:
        assert comparable_rows(local / rel) == comparable_rows(flowed / rel), rel

    m_local = json.loads((local / "manifest.json").read_text())
    m_flow = json.loads((flowed / "manifest.json").read_text())
    assert m_flow["counts"] == m_local["counts"]
    assert m_flow["llm"]["calls"] == m_local["llm"]["calls"] > 0
    assert m_flow["gate"]["passed"] == m_local["gate"]["passed"]

    # What the Prefect UI shows for this build: counts, the gate, agreement, the report link.
    arts = _artifacts(["same-rows-counts", "same-rows-gate", "same-rows-agreement", "same-rows-report"])
    counts = {row["figure"]: row["value"] for row in json.loads(arts["same-rows-counts"].data)}
    assert counts["pairs"] == m_flow["counts"]["pairs"] and counts["llm.calls"] == m_flow["llm"]["calls"]
    verdict = "PASSED" if m_flow["gate"]["passed"] else "FAILED"
    assert f"Quality gate: {verdict}" in arts["same-rows-gate"].data
    assert "min_kappa" in arts["same-rows-gate"].data
    agreement = json.loads(arts["same-rows-agreement"].data)
    assert agreement[0]["setting_id"] == m_flow["gate"]["judge_setting"]
    assert (flowed / "report.html").as_uri() in arts["same-rows-report"].data


def test_a_damaged_run_is_refused_then_reruns_from_its_finished_shards(
    prefect_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeLLMServer() as server:
        config = write_build_config(tmp_path, server.base_url, name="resume", n_prompts=6, shard_size=2)
        code, out, err = run_cli(["build", str(config), "--engine", "local", "--quiet"], capsys)
        assert code == 0, err
        run = _run_dir(out)
        before = {t: comparable_rows(run / f"{t}.parquet") for t in TABLES}
        calls_after_first_build = server.stats.calls
        # The run lost its last stage and its manifest, and that stage cannot be written (a file sits
        # where its folder goes): the resume names the damage before any shard or call runs.
        (run / "manifest.json").unlink()
        for path in (run / "stages" / "variants").iterdir():
            path.unlink()
        (run / "stages" / "variants").rmdir()
        (run / "stages" / "variants").write_text("in the way")
        kept = {p: p.stat().st_mtime_ns for p in (run / "stages").glob("*/shard-*.parquet")}

        code, out, err = run_cli(["build", "--resume", str(run), "--engine", "prefect", "--quiet"], capsys)
        assert code == 2, err
        message = err.strip().splitlines()[-1]
        assert message.startswith("error: ") and str(run / "stages" / "variants") in message
        assert server.stats.calls == calls_after_first_build

        (run / "stages" / "variants").unlink()
        code, out, err = run_cli(["build", "--resume", str(run), "--engine", "prefect", "--quiet"], capsys)
        assert code == 0, err
        # Every call was answered by the run's request cache: nothing was paid twice.
        assert server.stats.calls == calls_after_first_build

    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished stages were skipped, not redone
    assert len(list((run / "stages" / "variants").glob("shard-*.parquet"))) == 6  # rows + failures per shard
    assert {t: comparable_rows(run / f"{t}.parquet") for t in TABLES} == before
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["llm"]["calls"] == 0


def test_artifacts_show_a_failed_gate_agreement_and_report(prefect_api: str, tmp_path: Path) -> None:
    from prefect import flow

    from flows.artifacts import publish_build_artifacts

    run = tmp_path / "gated-20261104-030000-1a2b"
    run.mkdir()
    gate = {
        "passed": False,
        "judge_setting": "judge[j]/combined10/fixed",
        "checks": [{"name": "min_kappa", "value": 0.12, "threshold": 0.4, "passed": False}],
        "advice": "change the judge",
    }
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "run_id": run.name,
                "status": "complete",
                "gate": gate,
                "counts": {"prompts": 5, "pairs": 4},
                "llm": {"calls": 9, "cost_usd": 0.0},
            }
        )
    )
    (run / "agreement.json").write_text(
        json.dumps(
            {
                "settings": [
                    {
                        "rank": 1,
                        "setting_id": "judge[j]/combined10/fixed",
                        "kappa": 0.12,
                        "accuracy": 0.5,
                        "n": 8,
                        "n_unscored": 0,
                        "bias": {"length": 0.6},
                    }
                ]
            }
        )
    )
    (run / "report.html").write_text("<html><body>report</body></html>")

    @flow
    def show(run_dir: str) -> list[str]:
        return publish_build_artifacts(Path(run_dir))

    keys = show(str(run))
    assert keys == ["gated-counts", "gated-gate", "gated-agreement", "gated-report"]
    arts = _artifacts(keys)
    assert "Quality gate: FAILED" in arts["gated-gate"].data
    assert "| min_kappa | 0.12 | 0.4 | False |" in arts["gated-gate"].data
    assert "unless forced" in arts["gated-gate"].data
    rows = json.loads(arts["gated-agreement"].data)
    assert rows == [
        {
            "rank": 1,
            "setting_id": "judge[j]/combined10/fixed",
            "kappa": 0.12,
            "accuracy": 0.5,
            "n": 8,
            "n_unscored": 0,
        }
    ]
    counts = {row["figure"]: row["value"] for row in json.loads(arts["gated-counts"].data)}
    assert counts == {"prompts": 5, "pairs": 4, "llm.calls": 9, "llm.cost_usd": 0.0, "status": "complete"}
    assert (run / "report.html").as_uri() in arts["gated-report"].data
