"""The quality gate of `factory build`: thresholds decide approval; every figure lands in manifest.json.

Judges are scripted on the fake server: on the gate's human-set items (prompts tagged `[item-N]`) a
"copycat" model gives the human label and a "firstwins" model always prefers the first answer; on the
build's own items both answer with the server's default judge replies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from factory.cli import main
from factory.config import GateSettings, parse_config
from factory.pipeline import run_build
from factory.pipeline.finalize.gate import evaluate_checks, summary_lines
from factory.pipeline.outcome import GATE_FAILED_EXIT
from factory.testing import FakeLLMServer, Rule, default_reply

N_ITEMS = 12


def label(i: int) -> str:
    return ("A", "B", "tie", "B")[i % 4]


def write_files(tmp: Path) -> tuple[Path, Path]:
    human = tmp / "human.jsonl"
    human.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"h{i}",
                    "prompt": f"[item-{i}] Which is right?",
                    "response_a": f"alpha {i}",
                    "response_b": f"beta {i}",
                    "label": label(i),
                }
            )
            + "\n"
            for i in range(N_ITEMS)
        )
    )
    prompts = tmp / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Explain topic {i}."}) + "\n" for i in range(3))
    )
    return human, prompts


def _judge(body: dict[str, Any], verdict_for: Any) -> str:
    text = body["messages"][-1]["content"]
    match = re.search(r"\[item-(\d+)\]", text)
    if match is None or "### Score Assistant A" not in json.dumps(body["messages"]):
        return default_reply(body)
    alpha_first = text.index("alpha") < text.index("beta")
    verdict = verdict_for(int(match.group(1)), alpha_first)
    a, b = {"A": (9, 2), "B": (2, 9), "tie": (5, 5)}[verdict]
    return f"### Evaluation Evidence:\nscripted\n### Score Assistant A: {a}/10\n### Score Assistant B: {b}/10"


def copycat(body: dict[str, Any]) -> str:
    def verdict(i: int, alpha_first: bool) -> str:
        v = label(i)
        return v if alpha_first else {"A": "B", "B": "A", "tie": "tie"}[v]

    return _judge(body, verdict)


def firstwins(body: dict[str, Any]) -> str:
    return _judge(body, lambda i, alpha_first: "A")


def mostly_right(body: dict[str, Any]) -> str:
    """Copies the humans except on every fourth item (a B it calls A): kappa 0.64 on 12 items."""

    def verdict(i: int, alpha_first: bool) -> str:
        v = "A" if i % 4 == 3 else label(i)
        return v if alpha_first else {"A": "B", "B": "A", "tie": "tie"}[v]

    return _judge(body, verdict)


RULES = [
    Rule(model="copycat", reply=copycat),
    Rule(model="mostly", reply=mostly_right),
    Rule(model="copycat2", reply=copycat),
    Rule(model="firstwins", reply=firstwins),
]


def build_config(
    tmp: Path, server: FakeLLMServer, judging: dict[str, Any], gate: dict[str, Any]
) -> dict[str, Any]:
    human, prompts = write_files(tmp)
    spec = {"api_base": server.base_url, "temperature": 0.0}
    return {
        "run": {"name": "gate-test", "output_dir": str(tmp / "out"), "shard_size": 3, "concurrency": 4},
        "models": {
            "generator": {**spec, "model": "openai/writer"},
            "j1": {**spec, "model": "openai/copycat"},
            "j2": {**spec, "model": "openai/copycat2"},
            "bad": {**spec, "model": "openai/firstwins"},
            "mostly": {**spec, "model": "openai/mostly"},
        },
        "prompts": {"path": str(prompts)},
        "judging": {"setting": judging},
        "rationales": {"enabled": False},
        "variants": {"enabled": False},
        "gate": {"human_set": str(human), "human_set_limit": N_ITEMS, **gate},
    }


def test_checks_pass_fail_and_unmeasured() -> None:
    settings = GateSettings(human_set="pandalm", min_kappa=0.4, min_inter_juror_kappa=0.3, max_flip_rate=0.2)
    checks = {
        c["name"]: c
        for c in evaluate_checks(settings, {"kappa": 0.4, "inter_juror_kappa": None, "flip_rate": 0.25})
    }
    assert checks["min_kappa"]["passed"]  # the threshold itself passes
    assert not checks["min_inter_juror_kappa"]["passed"]  # a figure the gate does not have never passes
    assert not checks["max_flip_rate"]["passed"] and checks["max_flip_rate"]["value"] == 0.25
    # Unset thresholds are not checked; no human set, no kappa check.
    only = evaluate_checks(GateSettings(human_set=None), {"kappa": None})
    assert only == []


def test_gate_passes_a_jury_that_agrees_with_humans(tmp_path: Path) -> None:
    with FakeLLMServer(rules=RULES) as server:
        config = parse_config(
            build_config(
                tmp_path,
                server,
                {"kind": "jury", "models": ["j1", "j2"], "order": "fixed"},
                {"min_kappa": 0.6, "min_inter_juror_kappa": -1.0, "max_flip_rate": 0.2},
            )
        )
        result = run_build(config)
        calls = server.stats.calls
        # A resumed build finalizes again; its gate's calls all come from the run's request cache.
        resumed = run_build(resume_dir=result.run_dir)
        assert server.stats.calls == calls
    assert resumed.manifest["gate"]["checks"] == result.manifest["gate"]["checks"]
    gate = result.manifest["gate"]
    checks = {c["name"]: c for c in gate["checks"]}
    assert gate["passed"] is True and result.manifest["approved"] is True
    assert checks["min_kappa"]["value"] == pytest.approx(1.0)  # both jurors copy the humans
    assert checks["max_flip_rate"]["value"] == 0.0  # measured on the human set in both orders
    # Inter-juror agreement comes from the build's own jury votes.
    assert checks["min_inter_juror_kappa"]["value"] is not None and "jury" not in (
        checks["min_inter_juror_kappa"]["note"] or ""
    )
    assert (
        gate["figures"]["n"] == N_ITEMS and gate["judge_setting"] == "jury[j1+j2]/combined10/fixed/plurality"
    )
    # Gate calls are filed apart from the build's judging.
    assert any(tag.startswith("gate/") for tag in result.manifest["llm"]["by_tag"])
    stages = result.manifest["stages"]  # and the manifest's stages attribute every call, the gate's included
    assert stages["gate"]["calls"] > 0 and stages["judge"]["calls"] > 0
    assert sum(s["calls"] for s in stages.values()) == result.manifest["llm"]["calls"]
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True and manifest["approved"] is True
    for folder in (result.run_dir, result.run_dir / "dataset"):
        agreement = json.loads((folder / "agreement.json").read_text())
        assert agreement["gate"]["passed"] is True and (folder / "report.html").is_file()


def test_gate_fails_a_position_biased_judge_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeLLMServer(rules=RULES) as server:
        data = build_config(
            tmp_path,
            server,
            {"kind": "judge", "models": ["bad"], "order": "fixed"},
            {"min_kappa": 0.4, "min_inter_juror_kappa": 0.2},
        )
        config_path = tmp_path / "build.yaml"
        config_path.write_text(json.dumps(data))  # JSON is YAML
        code = 0
        try:
            main(["build", str(config_path), "--engine", "local", "--quiet"])
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    # A distinct exit code: a schedule or CI step can tell "complete but not approved" from a pass.
    assert code == GATE_FAILED_EXIT, err
    run_dir = Path(out.strip().splitlines()[-1])
    err = " ".join(err.split())  # rich wraps long lines
    manifest = json.loads((run_dir / "manifest.json").read_text())
    gate = manifest["gate"]
    checks = {c["name"]: c for c in gate["checks"]}
    assert gate["passed"] is False and manifest["approved"] is False
    assert manifest["status"] == "complete"
    assert manifest["outcome"]["exit_code"] == GATE_FAILED_EXIT and manifest["outcome"]["gate_failed"] is True
    assert "complete, but the quality gate failed: the data is not approved" in err
    assert checks["min_kappa"]["value"] == pytest.approx(0.0) and not checks["min_kappa"]["passed"]
    assert (
        checks["min_inter_juror_kappa"]["value"] is None and "jury" in checks["min_inter_juror_kappa"]["note"]
    )
    # The data is still written, and the report says plainly that it is not approved.
    assert (run_dir / "pairs.parquet").is_file() and (run_dir / "dataset" / "report.html").is_file()
    html = (run_dir / "report.html").read_text()
    assert "Quality gate FAILED" in html and "not approved" in html
    assert "quality gate FAILED" in err and "NOT approved" in err
    assert "min_kappa: 0.000 [0.00, 0.00] (needs 95% lower bound >= 0.4)" in err
    assert "capable judge model" in err  # what would change, not a lowered threshold


def test_gate_is_undecided_when_the_kappa_interval_straddles_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeLLMServer(rules=RULES) as server:
        data = build_config(
            tmp_path, server, {"kind": "judge", "models": ["mostly"], "order": "fixed"}, {"min_kappa": 0.4}
        )
        config_path = tmp_path / "build.yaml"
        config_path.write_text(json.dumps(data))
        # An undecided gate approves nothing: the build exits as one whose gate did not pass.
        with pytest.raises(SystemExit) as exited:
            main(["build", str(config_path), "--engine", "local", "--quiet"])
        assert exited.value.code == GATE_FAILED_EXIT
    out, err = capsys.readouterr()
    run_dir = Path(out.strip().splitlines()[-1])
    err = " ".join(err.split())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    gate = manifest["gate"]
    kappa = {c["name"]: c for c in gate["checks"]}["min_kappa"]
    # 9 of 12 right with these label shares: kappa (0.75 - 0.3125) / 0.6875, far above 0.4, but on 12 items
    # its interval reaches below the threshold.
    assert kappa["value"] == pytest.approx((0.75 - 0.3125) / 0.6875)
    lo, hi = kappa["interval"]
    assert lo < 0.4 <= hi and kappa["status"] == "undecided" and kappa["need_n"] > N_ITEMS
    assert gate["verdict"] == "undecided" and gate["passed"] is False and manifest["approved"] is False
    # The baselines, all kappa 0 here (alpha is the longer answer, no lists, A first), are beaten.
    assert {c["name"]: c for c in gate["checks"]}["beat_baselines"]["status"] == "pass"
    assert "quality gate UNDECIDED" in err and f"need n >= {kappa['need_n']}" in err
    assert "gate.human_set_limit" in gate["advice"]
    agreement = json.loads((run_dir / "agreement.json").read_text())
    assert (
        agreement["sample"]["n"] == N_ITEMS and agreement["settings"][0]["decision"]["verdict"] == "undecided"
    )
    assert "Quality gate UNDECIDED" in (run_dir / "report.html").read_text()


def test_disabled_gate_is_reported_as_such() -> None:
    assert summary_lines({"enabled": False, "passed": True, "checks": []}) == [
        "quality gate: disabled in the config; nothing was checked"
    ]
    assert "not approved" in summary_lines(None)[0]
