"""Incremental builds: which prompts count as already built, and the versions.json index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory._util.errors import UserError
from factory.inputs.prompt_sources import Prompt, RejectedPrompt
from factory.run.folder import RunFolder
from factory.run.incremental import (
    append_version,
    built_fingerprints,
    dataset_home,
    earlier_runs,
    read_versions,
    select_new_prompts,
)
from factory.run.recorded_inputs import write_prompts_table


def _run(
    parent: Path,
    run_id: str,
    name: str,
    texts: list[str],
    status: str | None = "complete",
    rejected: tuple[str, ...] = (),
) -> Path:
    root = parent / run_id
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(f"run:\n  name: {name}\n")
    write_prompts_table(
        RunFolder(root),
        [Prompt(f"p{i}", (t,), "test") for i, t in enumerate(texts)],
        [RejectedPrompt(f"r{i}", "too_long", t) for i, t in enumerate(rejected)],
    )
    if status is not None:
        (root / "manifest.json").write_text(json.dumps({"run_id": run_id, "status": status}))
    return root


def _prompts(*texts: str) -> list[Prompt]:
    return [Prompt(f"id-{i}", (t,), "test") for i, t in enumerate(texts)]


def test_finished_builds_of_the_same_dataset_count_as_built(tmp_path: Path) -> None:
    home = dataset_home(tmp_path, "demo")
    _run(home, "demo-20261101-030000-aaaa", "demo", ["alpha", "beta"])
    _run(tmp_path, "demo-20261102-120000-bbbb", "demo", ["gamma"])  # a plain `factory build`
    _run(home, "demo-20261103-030000-cccc", "demo", ["delta"], status=None)  # killed: never finished
    _run(home, "demo-20261104-030000-dddd", "demo", ["epsilon"], status="stopped")
    _run(tmp_path, "demo-x-20261101-030000-eeee", "demo-x", ["zeta"])  # another dataset, same prefix
    _run(home, "demo-20261105-030000-ffff", "demo", ["eta"], rejected=("theta",))

    fresh, skipped = select_new_prompts(
        _prompts("alpha", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"),
        built_fingerprints(tmp_path, "demo"),
    )
    assert [p.text for p in fresh] == ["delta", "epsilon", "zeta", "theta", "iota"]
    assert skipped == 3
    assert [r.name for r in earlier_runs(tmp_path, "demo")] == [
        "demo-20261101-030000-aaaa",
        "demo-20261102-120000-bbbb",
        "demo-20261105-030000-ffff",
    ]


def test_prompts_are_matched_by_content_not_by_id(tmp_path: Path) -> None:
    _run(tmp_path, "demo-20261101-030000-aaaa", "demo", ["What is 2 + 2?"])
    seen = built_fingerprints(tmp_path, "demo")
    renumbered = [Prompt("brand-new-id", ("What is 2 + 2?",), "other.jsonl")]
    edited = [Prompt("p0", ("What is 2 + 3?",), "test")]
    assert select_new_prompts(renumbered, seen) == ([], 1)
    assert select_new_prompts(edited, seen) == (edited, 0)
    # A multi-turn prompt is a different prompt from its first turn alone.
    assert select_new_prompts([Prompt("m", ("What is 2 + 2?", "And doubled?"), "t")], seen)[1] == 0


def test_a_run_being_resumed_does_not_count_against_itself(tmp_path: Path) -> None:
    own = _run(tmp_path, "demo-20261101-030000-aaaa", "demo", ["alpha"])
    assert built_fingerprints(tmp_path, "demo", exclude=own) == set()


def test_versions_are_appended_in_order_and_a_rerun_keeps_its_number(tmp_path: Path) -> None:
    home = dataset_home(tmp_path, "demo")
    assert read_versions(home) == []
    first = _run(home, "demo-20261101-030000-aaaa", "demo", ["alpha"])
    second = _run(home, "demo-20261102-030000-bbbb", "demo", ["beta"])
    manifest = {"status": "complete", "counts": {"pairs": 3}, "gate": {"passed": False}}
    e1 = append_version(home, first, {**manifest, "run_id": first.name}, new_prompts=1, skipped=0)
    e2 = append_version(home, second, {**manifest, "run_id": second.name}, new_prompts=1, skipped=1)
    again = append_version(
        home, first, {**manifest, "run_id": first.name, "status": "complete"}, new_prompts=1, skipped=None
    )
    versions = read_versions(home)
    assert [(v["version"], v["run_id"], v["path"]) for v in versions] == [
        (1, first.name, first.name),
        (2, second.name, second.name),
    ]
    assert (e1["version"], e2["version"], again["version"]) == (1, 2, 1)
    assert again["skipped_prompts"] == 0  # unknown on a rerun: the first record stands
    assert versions[1]["gate_passed"] is False and versions[1]["counts"] == {"pairs": 3}
    assert json.loads((home / "versions.json").read_text())["dataset"] == "demo"


def test_a_corrupt_versions_file_is_a_user_error(tmp_path: Path) -> None:
    home = dataset_home(tmp_path, "demo")
    home.mkdir()
    (home / "versions.json").write_text("{not json")
    with pytest.raises(UserError, match="versions.json is not valid JSON"):
        read_versions(home)
    (home / "versions.json").write_text('{"dataset": "demo"}')
    with pytest.raises(UserError, match="has no 'versions' list"):
        read_versions(home)
