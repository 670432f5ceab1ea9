"""Malformed configs, prompt files and flags: each gives one line on stderr that names the problem,
`error: ...`, and a non-zero exit; never a traceback. Every case runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _reliability import cli_env, run_cli

from factory.config import parse_config
from factory.inputs.prompt_sources import load_prompts
from factory.pipeline import run_build
from factory.testing import FakeLLMServer

SECRET = "sk-test-PASTEDKEY-0001"
TEN_MB = 10 * 1024 * 1024


def _base(prompts: str = "prompts.jsonl") -> dict[str, Any]:
    fake = {"model": "openai/fake", "api_base": "http://127.0.0.1:9/v1"}
    return {
        "run": {"name": "bad", "output_dir": "outputs"},
        "models": {"generator": dict(fake), "judge": dict(fake), "rationale_writer": dict(fake)},
        "prompts": {"path": prompts},
        "gate": {"enabled": False},
    }


def _with(path: str, value: Any, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The base config with one dotted key set (value None deletes the key)."""
    config = config or _base()
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return config


@dataclass(frozen=True)
class Case:
    """`files` maps names to contents (str, bytes, or a dict/list written as YAML); `args` follow `factory`."""

    name: str
    args: tuple[str, ...]
    expect: str
    files: dict[str, Any] | None = None
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] | None = None


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False)


GOOD_PROMPTS = '{"id": "a", "prompt": "Hello?"}\n{"id": "b", "prompt": "Why?"}\n'
BUILD = ("build", "c.yaml")


def _cases() -> list[Case]:
    jsonl = {"prompts.jsonl": GOOD_PROMPTS}
    cases = [
        # -- configs ---------------------------------------------------------------------------
        Case(
            "unknown top-level key",
            BUILD,
            "colour: unknown key",
            {"c.yaml": _with("colour", "blue"), **jsonl},
        ),
        Case(
            "unknown nested key",
            BUILD,
            "run.shardsize: unknown key",
            {"c.yaml": _with("run.shardsize", 4), **jsonl},
        ),
        Case("wrong type", BUILD, "run.shard_size", {"c.yaml": _with("run.shard_size", "four"), **jsonl}),
        Case("empty config", BUILD, "config file is empty", {"c.yaml": "", **jsonl}),
        Case("config not utf-8", BUILD, "not valid UTF-8", {"c.yaml": b"run: {name: \xff\xfe}\n", **jsonl}),
        Case("bad yaml", BUILD, "not valid YAML at line", {"c.yaml": "run: {name: x\nmodels: [\n", **jsonl}),
        Case(
            "top-level list",
            BUILD,
            "expected a mapping at the top level, got list",
            {"c.yaml": "- run\n- models\n", **jsonl},
        ),
        Case(
            "missing prompts section",
            BUILD,
            "prompts: Field required",
            {"c.yaml": _with("prompts", None), **jsonl},
        ),
        Case(
            "missing models section",
            BUILD,
            "models: Field required",
            {"c.yaml": _with("models", None), **jsonl},
        ),
        Case(
            "both path and name",
            BUILD,
            "exactly one of 'path', 'name' or 'hf'",
            {"c.yaml": _with("prompts.name", "mt_bench"), **jsonl},
        ),
        Case(
            "unknown public set",
            BUILD,
            "unknown prompt set 'mt_bonch'",
            {"c.yaml": _with("prompts", {"name": "mt_bonch"})},
        ),
        Case(
            "bad temperature",
            BUILD,
            "models.generator.temperature",
            {"c.yaml": _with("models.generator.temperature", 7.5), **jsonl},
        ),
        Case("zero concurrency", BUILD, "run.concurrency", {"c.yaml": _with("run.concurrency", 0), **jsonl}),
        Case(
            "negative prompt limit", BUILD, "prompts.limit", {"c.yaml": _with("prompts.limit", -3), **jsonl}
        ),
        Case(
            "negative budget",
            BUILD,
            "budget.max_calls",
            {"c.yaml": _with("budget", {"max_calls": -1}), **jsonl},
        ),
        Case(
            "unknown judge protocol",
            BUILD,
            "judging.setting.protocol",
            {"c.yaml": _with("judging", {"setting": {"protocol": "vibes"}}), **jsonl},
        ),
        Case(
            "weights mismatch",
            BUILD,
            "got 3 weights for 2 jurors",
            {
                "c.yaml": _with(
                    "judging",
                    {
                        "setting": {
                            "kind": "jury",
                            "models": ["judge", "generator"],
                            "reducer": "weighted",
                            "weights": [1, 2, 3],
                        }
                    },
                ),
                **jsonl,
            },
        ),
        Case(
            "unknown model role",
            BUILD,
            "unknown model role 'critic'",
            {"c.yaml": _with("judging", {"setting": {"models": ["critic"]}}), **jsonl},
        ),
        Case(
            "unknown workflow kind",
            BUILD,
            "generation.workflows",
            {"c.yaml": _with("generation", {"workflows": [{"kind": "swarm"}]}), **jsonl},
        ),
        Case(
            "duplicate workflow names",
            BUILD,
            "workflow names must be unique",
            {"c.yaml": _with("generation", {"workflows": [{"kind": "single"}, {"kind": "single"}]}), **jsonl},
        ),
        Case(
            "key pasted as api_key_env",
            BUILD,
            "api_key_env takes the NAME",
            {"c.yaml": _with("models.judge.api_key_env", SECRET), **jsonl},
        ),
        Case(
            "key in model params",
            BUILD,
            "params must not hold credentials (api_key)",
            {"c.yaml": _with("models.judge.params", {"api_key": SECRET}), **jsonl},
        ),
        Case(
            "api key variable not set",
            BUILD,
            "environment variable FACTORY_TEST_UNSET_KEY is not set",
            {"c.yaml": _with("models.judge.api_key_env", "FACTORY_TEST_UNSET_KEY"), **jsonl},
        ),
        Case("config not found", ("build", "nope.yaml"), "config file not found"),
        Case(
            "config is a directory", ("build", "adir"), "is a directory", setup=lambda d: (d / "adir").mkdir()
        ),
        # -- prompt files ----------------------------------------------------------------------
        Case("prompt file missing", BUILD, "prompt file not found", {"c.yaml": _base("missing.jsonl")}),
        Case(
            "prompt file empty", BUILD, "prompt file is empty", {"c.yaml": _base(), "prompts.jsonl": "\n\n"}
        ),
        Case(
            "prompt file not utf-8",
            BUILD,
            "prompt file is not valid UTF-8",
            {"c.yaml": _base(), "prompts.jsonl": b'{"prompt": "caf\xe9"}\n'},
        ),
        Case(
            "prompt line not json",
            BUILD,
            "line 2 is not valid JSON",
            {"c.yaml": _base(), "prompts.jsonl": '{"prompt": "ok"}\n{"prompt": \n'},
        ),
        Case(
            "duplicate prompt ids",
            BUILD,
            "duplicate prompt id 'a'",
            {"c.yaml": _base(), "prompts.jsonl": GOOD_PROMPTS + '{"id": "a", "prompt": "again"}\n'},
        ),
        Case(
            "missing text column",
            BUILD,
            "have no 'prompt / instruction",
            {"c.yaml": _base(), "prompts.jsonl": '{"id": "a", "body": "Hello?"}\n'},
        ),
        Case(
            "csv missing text column",
            BUILD,
            "have no 'prompt / instruction",
            {"c.yaml": _base("p.csv"), "p.csv": "id,body\na,Hello\n"},
        ),
        Case(
            "explicit id field missing",
            BUILD,
            "no id column 'uid'",
            {"c.yaml": _with("prompts.id_field", "uid"), **jsonl},
        ),
        Case(
            "rows are not objects",
            BUILD,
            "rows must be JSON objects",
            {"c.yaml": _base(), "prompts.jsonl": '["a list", "not a row"]\n'},
        ),
        Case(
            "json file of a string",
            BUILD,
            "must hold a JSON list",
            {"c.yaml": _base("p.json"), "p.json": '"just a string"'},
        ),
        Case(
            "unsupported prompt type",
            BUILD,
            "unsupported prompt file type '.xlsx'",
            {"c.yaml": _base("p.xlsx"), "p.xlsx": b"PK\x03\x04"},
        ),
        Case(
            "prompt path is a directory",
            BUILD,
            "is a directory",
            {"c.yaml": _base("pdir")},
            setup=lambda d: (d / "pdir").mkdir(),
        ),
        Case(
            "dangling symlink prompt path",
            BUILD,
            "prompt file not found",
            {"c.yaml": _base("link.jsonl")},
            setup=lambda d: (d / "link.jsonl").symlink_to(d / "gone.jsonl"),
        ),
        Case(
            "only a 10 MB prompt",
            BUILD,
            "no usable prompts in big.jsonl: all 1 were rejected",
            {
                "c.yaml": _base("big.jsonl"),
                "big.jsonl": json.dumps({"id": "huge", "prompt": "x" * TEN_MB}) + "\n",
            },
        ),
        Case(
            "only empty prompts",
            BUILD,
            "no usable prompts",
            {"c.yaml": _base(), "prompts.jsonl": '{"prompt": "  "}\n{"prompt": ""}\n'},
        ),
        # -- flags -----------------------------------------------------------------------------
        Case("resume folder missing", ("build", "--resume", "no-such-run"), "not a run folder"),
        Case(
            "resume folder without config",
            ("build", "--resume", "adir"),
            "not a run folder (no config.yaml)",
            setup=lambda d: (d / "adir").mkdir(),
        ),
        Case(
            "config and resume",
            ("build", "c.yaml", "--resume", "adir"),
            "not both",
            {"c.yaml": _base(), **jsonl},
        ),
        Case("neither config nor resume", ("build",), "give a CONFIG file or --resume RUN_DIR"),
        Case(
            "negative max calls flag",
            ("build", "c.yaml", "--max-calls", "-5"),
            "max_calls must be >= 0",
            {"c.yaml": _base(), **jsonl},
        ),
        Case("unknown engine", ("build", "c.yaml", "--engine", "warp"), "warp", {"c.yaml": _base(), **jsonl}),
        Case("unknown command", ("frobnicate",), "No such command 'frobnicate'"),
    ]
    return cases


CASES = _cases()
if os.path.exists(Path(__file__).resolve().parents[2] / "factory" / "cli" / "schedule_cmd.py"):
    CASES += [
        Case(
            "cron with a bad field",
            ("schedule", "c.yaml", "--cron", "99 * * * *"),
            "99",
            {"c.yaml": _base(), "prompts.jsonl": GOOD_PROMPTS},
        ),
        Case(
            "cron that is not a cron",
            ("schedule", "c.yaml", "--cron", "every day"),
            "cron",
            {"c.yaml": _base(), "prompts.jsonl": GOOD_PROMPTS},
        ),
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every case once, a few at a time (each is a fresh interpreter)."""

    def one(case: Case) -> tuple[str, Any]:
        folder = tmp_path_factory.mktemp(case.name.replace(" ", "_")[:40])
        for name, content in (case.files or {}).items():
            data = content if isinstance(content, (str, bytes)) else _yaml(content)
            (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
        if case.setup is not None:
            case.setup(folder)
        env = cli_env(**(case.env or {}))
        env.pop("FACTORY_TEST_UNSET_KEY", None)
        return case.name, run_cli(*case.args, env=env, cwd=folder, timeout=180)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, CASES))


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_error_and_nonzero_exit(case: Case, results: dict[str, Any]) -> None:
    result = results[case.name]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, f"exit 0; stdout={result.stdout!r}"
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert case.expect in lines[0], lines[0]
    assert SECRET not in result.stderr + result.stdout  # a pasted key is never echoed back


def test_an_oversize_prompt_among_good_ones_goes_to_failures(tmp_path: Path) -> None:
    """A 10 MB prompt does not stop the build and is not lost: it is a failure row with its reason."""
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"id": "huge", "prompt": "word " * (TEN_MB // 5)},
        {"id": "a", "prompt": "Hello?"},
        {"id": "b", "prompt": "Why is the sky blue?"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    prompts, rejected = load_prompts(path=str(path))
    assert [p.prompt_id for p in prompts] == ["a", "b"]
    assert [(r.item_id, r.reason.split(":")[0]) for r in rejected] == [("huge", "prompt_too_long")]
    with FakeLLMServer() as server:
        config = _base(str(path))
        config["run"]["output_dir"] = str(tmp_path / "outputs")
        for spec in config["models"].values():
            spec["api_base"] = server.base_url
        result = run_build(parse_config(config))
    import polars as pl

    failures = pl.read_parquet(result.run_dir / "failures.parquet").filter(pl.col("item_id") == "huge")
    assert failures["stage"].to_list() == ["load"]
    assert failures["reason"][0].startswith("prompt_too_long: 10485760 chars > max_chars 20000")
    assert 0 < len(failures["raw"][0]) <= 4000  # the start of the row is kept, not 10 MB
    assert result.manifest["counts"]["prompts"] == 3
