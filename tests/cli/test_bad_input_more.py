"""More hostile and careless input (issue 14): each case runs the real CLI in a subprocess and must
end with exit 2 and one stderr line `error: ...` that names the problem, no traceback, no secret
echoed back, and - for everything that can be checked before a model is called - zero requests to
the model server and no run folder.

Every model role of every config points at a live fake server of the case's own, so a check that
ran too late (after the first call) shows up as requests on that server. The YAML alias bomb, the
FIFO and the `/dev/zero` link run under a memory limit and a timeout: they must fail fast.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from _reliability import REPO, build_config, cli_env

from factory.config import parse_config
from factory.pipeline import run_build
from factory.testing import FakeLLMServer

SECRET = "sk-live-Q7pXw2Lm9Rt4Vb8Nz3Kc6Hd1"
HF_SECRET = "hf_QxWbTrLmZpKsNvYdGhJfCaEu"
RANDOM_SECRET = "Zq8Xw3Rt6Yp1Lm4Nb7Vc2Kd5Hg9Jf0Sa"  # no known prefix: caught as a random token
SECRETS = (SECRET, HF_SECRET, RANDOM_SECRET)
MEMORY_LIMIT = 1 << 30  # address space of the CLI process: the alias bomb grew to 2.6 GB before
TIMEOUT_S = 120  # generous: the machine is shared; a hang (FIFO) would never end at all
GOOD_PROMPTS = '{"id": "a", "prompt": "Hello?"}\n{"id": "b", "prompt": "Why?"}\n'


# ------------------------------------------------------------------------------------- configs


def _base() -> dict[str, Any]:
    """A valid build spec; `SERVER` in an api_base is replaced by the case's fake server."""
    fake = {"model": "openai/fake", "api_base": "SERVER", "max_tokens": 32}
    return {
        "run": {"name": "bad", "output_dir": "outputs", "shard_size": 2},
        "models": {"generator": dict(fake), "judge": dict(fake), "rationale_writer": dict(fake)},
        "prompts": {"path": "prompts.jsonl"},
        "gate": {"enabled": False},
    }


def _with(*changes: tuple[str, Any]) -> dict[str, Any]:
    """The base config with dotted keys set (a value of None deletes the key)."""
    config = _base()
    for path, value in changes:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return config


def _judging(**setting: Any) -> tuple[str, Any]:
    return ("judging", {"setting": setting})


def _params(params: dict[str, Any]) -> tuple[str, Any]:
    return ("models.judge.params", params)


def _base_yaml() -> str:
    return yaml.safe_dump(_base(), sort_keys=False)


def _bomb(levels: int = 9) -> str:
    """The classic billion-laughs shape in a few hundred bytes: 10**levels strings once expanded."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nrun: {{name: *l{levels - 1}}}\n"


@dataclass(frozen=True)
class Case:
    """`files` maps names to contents (str, bytes, or a dict written as YAML); `args` follow `factory`.
    `expect` must appear in the one stderr line. Cases that need no build add no server check."""

    name: str
    args: tuple[str, ...]
    expect: str
    files: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    limited: bool = False  # run under MEMORY_LIMIT (the resource-exhaustion cases)


BUILD = ("build", "c.yaml", "--engine", "local")


def _build(config: dict[str, Any] | str, **files: Any) -> dict[str, Any]:
    return {"c.yaml": config, "prompts.jsonl": GOOD_PROMPTS, **files}


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda d: os.mkfifo(d / name)


def _link(name: str, target: str) -> Callable[[Path], None]:
    return lambda d: (d / name).symlink_to(target)


def _fake_run(d: Path, *, marker: str | None = None, files: dict[str, str] | None = None) -> None:
    """A folder that holds a config.yaml (and whatever else) but was not written by a build."""
    (d / "run").mkdir()
    (d / "run" / "config.yaml").write_text(_base_yaml().replace("SERVER", "http://127.0.0.1:9/v1"))
    for name, text in (files or {}).items():
        (d / "run" / name).write_text(text)
    if marker is not None:
        (d / "run" / "factory-run.json").write_text(marker)


def _cases() -> list[Case]:
    human_rows = '{"id": "h1", "prompt": "p", "response_a": "a", "response_b": "b"}\n'  # no label column
    cases = [
        # -- 1. roles named anywhere must exist -------------------------------------------------------
        Case(
            "juror of a heterogeneous jury names an unknown role",
            BUILD,
            "unknown model role 'critic' in judging.setting.jurors[1].models",
            _build(_with(_judging(kind="jury", jurors=[{"models": ["judge"]}, {"models": ["critic"]}]))),
        ),
        Case(
            "juror of a nested jury names an unknown role",
            BUILD,
            "judging.setting.jurors[0].jurors[0].models",
            _build(
                _with(_judging(kind="jury", jurors=[{"kind": "jury", "jurors": [{"models": ["ghost"]}]}]))
            ),
        ),
        Case(
            "one jury model misspelt",
            BUILD,
            "unknown model role 'judje'",
            _build(_with(_judging(kind="jury", models=["judge", "judje"]))),
        ),
        Case(
            "debate played by an unknown role",
            BUILD,
            "unknown model role 'debater'",
            _build(_with(_judging(kind="debate", models=["debater"]))),
        ),
        Case(
            "variants.fresh_role unknown",
            BUILD,
            "unknown model role 'writer' in variants.fresh_role",
            _build(_with(("variants", {"fresh": True, "fresh_role": "writer"}))),
        ),
        Case(
            "rationales.verifier_role unknown",
            BUILD,
            "unknown model role 'checker' in rationales.verifier_role",
            _build(_with(("rationales", {"verify": True, "verifier_role": "checker"}))),
        ),
        Case(
            "default verifier is not a role when jurors name the judges",
            BUILD,
            "unknown model role 'judge' in rationales.verifier_role (default",
            _build(
                _with(
                    ("models.judge", None),
                    ("models.j1", {"model": "openai/fake", "api_base": "SERVER"}),
                    _judging(kind="jury", jurors=[{"models": ["j1"]}]),
                    ("rationales", {"verify": True}),
                )
            ),
        ),
        Case(
            "feedback-loop reviewer unknown",
            BUILD,
            "unknown model role 'editor'",
            _build(
                _with(("generation", {"workflows": [{"kind": "feedback_loop", "reviewers": ["editor"]}]}))
            ),
        ),
        # -- 1. model strings --------------------------------------------------------------------------
        Case(
            "empty model string",
            BUILD,
            "models.judge.model: model is empty",
            _build(_with(("models.judge.model", ""))),
        ),
        Case(
            "blank model string",
            BUILD,
            "models.judge.model: model is empty",
            _build(_with(("models.judge.model", "   "))),
        ),
        Case(
            "model string with a space",
            BUILD,
            "must not contain spaces",
            _build(_with(("models.judge.model", "openai/gpt 4o"))),
        ),
        Case(
            "unknown embedded model",
            BUILD,
            "unknown embedded model 'local/smollm3'",
            _build(_with(("models.judge.model", "local/smollm3"))),
        ),
        Case(
            "embedded model with no name",
            BUILD,
            "unknown embedded model 'local/'",
            _build(_with(("models.generator.model", "local/"))),
        ),
        # -- 1. the gate's human set, before any generation -------------------------------------------
        Case(
            "misspelt public human set",
            BUILD,
            "gate.human_set: human set 'pandlam' is neither a known set",
            _build(_with(("gate", {"human_set": "pandlam"}))),
        ),
        Case(
            "human set file missing",
            BUILD,
            "gate.human_set: human set",
            _build(_with(("gate", {"human_set": "labels.jsonl"}))),
        ),
        Case(
            "human set file of no known format",
            BUILD,
            "gate.human_set:",
            _build(_with(("gate", {"human_set": "labels.json"})), **{"labels.json": '{"not": "a list"}'}),
        ),
        Case(
            "human set rows without labels",
            BUILD,
            "gate.human_set:",
            _build(_with(("gate", {"human_set": "labels.jsonl"})), **{"labels.jsonl": human_rows}),
        ),
        Case(
            "human set file is empty",
            BUILD,
            "gate.human_set:",
            _build(_with(("gate", {"human_set": "labels.jsonl"})), **{"labels.jsonl": ""}),
        ),
        # -- 1. numbers: finite, and in range ---------------------------------------------------------
        Case(
            "--max-cost nan",
            (*BUILD, "--max-cost", "nan"),
            "max_cost_usd must be a finite number",
            _build(_base()),
        ),
        Case(
            "--max-cost inf",
            (*BUILD, "--max-cost", "inf"),
            "max_cost_usd must be a finite number",
            _build(_base()),
        ),
        Case(
            "--max-cost -inf",
            (*BUILD, "--max-cost", "-inf"),
            "max_cost_usd must be a finite number",
            _build(_base()),
        ),
        Case(
            "budget nan in yaml",
            BUILD,
            "budget.max_cost_usd: Input should be a finite number",
            _build(_base_yaml() + "budget: {max_cost_usd: .nan}\n"),
        ),
        Case(
            "temperature nan",
            BUILD,
            "temperature: Input should be a finite number",
            _build(_base_yaml().replace("max_tokens: 32", "max_tokens: 32\n    temperature: .nan", 2)),
        ),
        Case(
            "timeout inf",
            BUILD,
            "timeout_s: Input should be a finite number",
            _build(_base_yaml().replace("max_tokens: 32", "max_tokens: 32\n    timeout_s: .inf", 1)),
        ),
        Case(
            "backoff inf",
            BUILD,
            "gateway.backoff_max_s: Input should be a finite number",
            _build(_base_yaml() + "gateway: {backoff_max_s: .inf}\n"),
        ),
        Case(
            "min margin inf",
            BUILD,
            "pairs.min_margin: Input should be a finite number",
            _build(_base_yaml() + "pairs: {min_margin: .inf}\n"),
        ),
        Case(
            "juror weight nan",
            BUILD,
            "judging.setting.weights",
            _build(
                _base_yaml()
                + "judging: {setting: {kind: jury, models: [judge, generator], reducer: weighted, "
                "weights: [1.0, .nan]}}\n"
            ),
        ),
        Case(
            "--workers 0",
            ("build", "c.yaml", "--workers", "0"),
            "Invalid value for '--workers'",
            _build(_base()),
        ),
        # -- 1. duplicate keys -------------------------------------------------------------------------
        Case(
            "duplicate top-level key",
            BUILD,
            "duplicate key 'models' (first at line 5)",
            _build(_base_yaml() + "models: {judge: {model: openai/other}}\n"),
        ),
        Case(
            "duplicate nested key",
            BUILD,
            "duplicate key 'name' (first at line 2)",
            _build(_base_yaml().replace("  name: bad\n", "  name: bad\n  name: other\n")),
        ),
        Case(
            "duplicate key in a flow mapping",
            BUILD,
            "duplicate key 'max_calls'",
            _build(_base_yaml() + "budget: {max_calls: 5, max_calls: 500000}\n"),
        ),
        # -- 1. --resume needs a run folder this factory wrote ----------------------------------------
        Case(
            "resume a folder that only has a config.yaml",
            ("build", "--resume", "run", "--engine", "local"),
            "not a run folder this factory wrote",
            setup=_fake_run,
        ),
        Case(
            "resume a folder with a config and other files",
            ("build", "--resume", "run", "--engine", "local"),
            "not a run folder this factory wrote",
            setup=lambda d: _fake_run(d, files={"notes.txt": "mine", "data.csv": "a,b\n"}),
        ),
        Case(
            "resume a folder with a garbage marker",
            ("build", "--resume", "run", "--engine", "local"),
            "factory-run.json is not the marker",
            setup=lambda d: _fake_run(d, marker="not json"),
        ),
        Case(
            "resume a folder from a newer factory",
            ("build", "--resume", "run", "--engine", "local"),
            "written by a newer factory",
            setup=lambda d: _fake_run(d, marker='{"format": 99}'),
        ),
        Case(
            "resume a file",
            ("build", "--resume", "c.yaml", "--engine", "local"),
            "not a run folder (a file",
            _build(_base()),
        ),
        # -- 2. resource exhaustion: bounded time and memory ------------------------------------------
        Case("yaml alias bomb", BUILD, "aliases expand to more than", _build(_bomb()), limited=True),
        Case(
            "yaml alias bomb in a calibration config",
            ("calibrate", "cal.yaml"),
            "aliases expand to more than",
            {"cal.yaml": _bomb()},
            limited=True,
        ),
        Case(
            "recursive yaml alias",
            BUILD,
            "recursive structure",
            _build(_base_yaml() + "extra: &x [1, *x]\n"),
            limited=True,
        ),
        Case(
            "yaml nested 10000 deep",
            BUILD,
            "not valid YAML",
            _build("a: " + "[" * 10000 + "]" * 10000 + "\n"),
            limited=True,
        ),
        Case(
            "config is a fifo",
            BUILD,
            "not a regular file",
            {"prompts.jsonl": GOOD_PROMPTS},
            _fifo("c.yaml"),
            limited=True,
        ),
        Case(
            "config links to /dev/zero",
            BUILD,
            "not a regular file",
            {"prompts.jsonl": GOOD_PROMPTS},
            _link("c.yaml", "/dev/zero"),
            limited=True,
        ),
        Case(
            "config of 2 MB",
            BUILD,
            "config file is too large",
            _build(_base_yaml() + "# " + "x" * (2 << 20) + "\n"),
            limited=True,
        ),
        Case(
            "huge unknown key",
            BUILD,
            "unknown key",
            _build(_base_yaml() + "? " + "k" * 200_000 + "\n: 1\n"),
            limited=True,
        ),
        Case(
            "huge value of the wrong type",
            BUILD,
            "run.shard_size",
            _build(
                _base_yaml().replace("shard_size: 2", "shard_size: [" + ", ".join(["word"] * 50_000) + "]")
            ),
            limited=True,
        ),
        Case(
            "fake-llm script alias bomb",
            ("fake-llm", "--script", "s.yaml", "--port", "0"),
            "aliases expand to more than",
            {"s.yaml": _bomb()},
            limited=True,
        ),
        # -- 3. usage errors exit 2 ---------------------------------------------------------------------
        Case(
            "non-numeric --max-calls",
            ("build", "c.yaml", "--max-calls", "many"),
            "Invalid value for '--max-calls'",
        ),
        Case(
            "non-numeric --max-cost",
            ("build", "c.yaml", "--max-cost", "cheap"),
            "Invalid value for '--max-cost'",
        ),
        Case("unknown option", ("build", "c.yaml", "--colour"), "No such option: --colour"),
        Case("misspelt command", ("buidl", "c.yaml"), "No such command 'buidl'"),
        Case("option without its value", ("build", "c.yaml", "--max-cost"), "requires an argument"),
        Case("missing argument", ("train",), "Missing argument"),
        Case("extra argument", ("build", "a.yaml", "b.yaml"), "unexpected extra argument"),
        Case("no command at all", (), "no command given"),
        Case(
            "config path is a dangling symlink",
            BUILD,
            "config file not found",
            {"prompts.jsonl": GOOD_PROMPTS},
            _link("c.yaml", "gone.yaml"),
        ),
        Case("nan beta for train", ("train", "run", "--beta", "nan"), "Invalid value for '--beta'"),
        Case(
            "negative latency for fake-llm", ("fake-llm", "--latency", "-1"), "Invalid value for '--latency'"
        ),
        # -- 5. credentials pasted into params ----------------------------------------------------------
        Case(
            "api key nested in extra_body",
            BUILD,
            "params must not hold credentials (extra_body.api_key)",
            _build(_with(_params({"extra_body": {"api_key": SECRET}}))),
        ),
        Case(
            "bearer token in default_headers",
            BUILD,
            "(default_headers.Authorization)",
            _build(_with(_params({"default_headers": {"Authorization": f"Bearer {SECRET}"}}))),
        ),
        Case(
            "x-api-key header",
            BUILD,
            "(extra_headers.X-Api-Key)",
            _build(_with(_params({"extra_headers": {"X-Api-Key": RANDOM_SECRET}}))),
        ),
        Case(
            "key-shaped value under an innocent name",
            BUILD,
            "(extra_body.metadata.note)",
            _build(_with(_params({"extra_body": {"metadata": {"note": SECRET}}}))),
        ),
        Case(
            "hugging face token as a value",
            BUILD,
            "(extra_body.hub)",
            _build(_with(_params({"extra_body": {"hub": HF_SECRET}}))),
        ),
        Case(
            "random token under an innocent name",
            BUILD,
            "(extra_body.session)",
            _build(_with(_params({"extra_body": {"session": RANDOM_SECRET}}))),
        ),
        Case(
            "bearer token inside a list",
            BUILD,
            "(extra_body.headers[1])",
            _build(_with(_params({"extra_body": {"headers": ["Accept: */*", f"Bearer {SECRET}"]}}))),
        ),
        Case(
            "secret as a mapping key",
            BUILD,
            "params must not hold credentials (extra_body.<a key-shaped name>)",
            _build(_with(_params({"extra_body": {SECRET: True}}))),
        ),
        Case(
            "password in api_base",
            BUILD,
            "api_base must not hold credentials",
            _build(_with(("models.judge.api_base", f"http://user:{RANDOM_SECRET}@127.0.0.1:9/v1"))),
        ),
        Case(
            "key in the api_base query",
            BUILD,
            "api_base must not hold credentials",
            _build(_with(("models.judge.api_base", f"http://127.0.0.1:9/v1?api_key={SECRET}"))),
        ),
    ]
    return cases


CASES = _cases()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run(
    args: tuple[str, ...] | list[str], cwd: Path, limited: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m factory ARGS` in `cwd`; a run past TIMEOUT_S is killed and reported as exit -9."""
    command = [sys.executable, "-m", "factory", *args]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            env=cli_env(),
            cwd=cwd,
            timeout=TIMEOUT_S,
            preexec_fn=_limit_memory if limited else None,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, -9, "", f"killed after {TIMEOUT_S} s (a hang)")


def _write(folder: Path, files: dict[str, Any], base_url: str) -> None:
    for name, content in files.items():
        text = content if isinstance(content, str | bytes) else yaml.safe_dump(content, sort_keys=False)
        if isinstance(text, str):
            text = text.replace("SERVER", base_url).encode()
        (folder / name).write_bytes(text)


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[subprocess.CompletedProcess[str], int, bool]]:
    """Every case once, a few at a time, each with its own fake server: (result, requests, run folder made)."""

    def one(case: Case) -> tuple[str, tuple[subprocess.CompletedProcess[str], int, bool]]:
        folder = tmp_path_factory.mktemp(case.name.replace(" ", "_").replace("/", "_")[:40])
        with FakeLLMServer() as server:
            _write(folder, case.files, server.base_url)
            if case.setup is not None:
                case.setup(folder)
            result = _run(case.args, folder, case.limited)
            requests = server.stats.calls
        return case.name, (result, requests, (folder / "outputs").exists())

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, CASES))


def test_there_are_at_least_forty_new_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_one_line_before_any_call(case: Case, results: dict[str, Any]) -> None:
    result, requests, made_run_folder = results[case.name]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line, got: {result.stderr[-2000:]!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert case.expect in lines[0], lines[0]
    assert len(lines[0]) < 600  # bounded, whatever the size of the input
    assert result.returncode == 2, (result.returncode, lines[0])
    assert requests == 0, f"{requests} model calls were made before the error"
    assert not made_run_folder, "a run folder was created for a build that cannot run"
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout


def test_the_harness_sees_calls_and_run_folders(tmp_path: Path) -> None:
    """The control: the base config, unchanged, builds through the case's server (so a check that ran
    after the first call would be seen as requests above)."""
    with FakeLLMServer() as server:
        _write(tmp_path, _build(_base()), server.base_url)
        result = _run(BUILD, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert server.stats.calls > 0
    run_dir = tmp_path / result.stdout.strip().splitlines()[-1]
    assert run_dir.is_dir() and (tmp_path / "outputs").is_dir()
    assert json.loads((run_dir / "factory-run.json").read_text())["format"] == 1  # the resume marker


# ------------------------------------------------------------------------- damaged run folders


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small finished build, and the server it was built against (kept up for the resumes)."""
    tmp = tmp_path_factory.mktemp("finished")
    with FakeLLMServer() as server:
        config = build_config(server.base_url, tmp, prompts=4, shard_size=2)
        result = run_build(parse_config(config))
        assert result.manifest["status"] == "complete"
        yield result.run_dir, server


def _corrupt_cache_bytes(run: Path) -> None:
    (run / "cache.sqlite").write_bytes(b"this is not a database, just text " * 100)


def _cache_folder(run: Path) -> None:
    for path in run.glob("cache.sqlite*"):
        path.unlink()
    (run / "cache.sqlite").mkdir()


def _stages_file(run: Path) -> None:
    shutil.rmtree(run / "stages")
    (run / "stages").write_text("not a folder")


def _stage_file(run: Path) -> None:
    shutil.rmtree(run / "stages" / "judge")
    (run / "stages" / "judge").write_text("not a folder")


def _shard_folder(run: Path) -> None:
    shard = run / "stages" / "pairs" / "shard-00001.parquet"
    shard.unlink()
    shard.mkdir()


def _prompts_garbage(run: Path) -> None:
    (run / "prompts.parquet").write_text("garbage")


def _prompts_other_schema(run: Path) -> None:
    pl.DataFrame({"x": [1, 2]}).write_parquet(run / "prompts.parquet")


DAMAGED = [
    ("cache that is not a database", _corrupt_cache_bytes, "cache.sqlite is not a SQLite database"),
    ("cache that is a folder", _cache_folder, "cache.sqlite is not a file"),
    ("stages replaced by a file", _stages_file, "stages should be the folder of stage outputs"),
    ("stage folder replaced by a file", _stage_file, "judge should be a stage folder"),
    ("shard file that is a folder", _shard_folder, "shard-00001.parquet should be a shard file"),
    ("prompts table that is not parquet", _prompts_garbage, "prompts.parquet is not a readable parquet file"),
    ("prompts table of another schema", _prompts_other_schema, "prompts.parquet lacks column(s) prompt_id"),
]


@pytest.mark.parametrize(("name", "damage", "expect"), DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_run_folder_is_named_before_any_call(
    name: str, damage: Callable[[Path], None], expect: str, finished_run: Any, tmp_path: Path
) -> None:
    source, server = finished_run
    run = shutil.copytree(source, tmp_path / source.name)
    damage(run)
    before = server.stats.calls
    result = _run(("build", "--resume", str(run), "--engine", "local"), tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: damaged run folder: ") and expect in lines[0], lines[0]
    assert str(run) in lines[0]  # the file is named by its full path
    assert result.returncode == 2
    assert server.stats.calls == before


REDONE = [
    ("shard of another schema", lambda p: pl.DataFrame({"other": ["x"], "n": [1]}).write_parquet(p)),
    ("shard that is not parquet", lambda p: p.write_bytes(b"PAR1 but not really")),
    ("failures file of another schema", None),
]


@pytest.mark.parametrize(("name", "damage"), REDONE, ids=[r[0] for r in REDONE])
def test_unsound_shard_file_is_redone_from_the_cache(
    name: str, damage: Callable[[Path], None] | None, finished_run: Any, tmp_path: Path
) -> None:
    """A shard file that is not this factory's is rebuilt on resume; the cache answers every call."""
    source, server = finished_run
    run = shutil.copytree(source, tmp_path / source.name)
    shard = run / "stages" / "judge" / "shard-00001.parquet"
    if damage is None:
        shard = run / "stages" / "judge" / "shard-00001.failures.parquet"
        pl.DataFrame({"prompt_id": ["q000"]}).write_parquet(shard)
    else:
        damage(shard)
    expected = pl.read_parquet(source / "judgments.parquet").sort("judgment_id")
    before = server.stats.calls
    result = _run(("build", "--resume", str(run), "--engine", "local", "--quiet"), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert server.stats.calls == before  # redone from the cache: nothing paid twice
    rebuilt = pl.read_parquet(run / "stages" / "judge" / "shard-00001.parquet")
    assert "prompt_id" in rebuilt.columns and rebuilt.height > 0
    again = pl.read_parquet(run / "judgments.parquet").sort("judgment_id")
    assert again["judgment_id"].to_list() == expected["judgment_id"].to_list()


def test_a_run_folder_from_before_the_marker_still_resumes(finished_run: Any, tmp_path: Path) -> None:
    """Older run folders have no factory-run.json but do have prompts.parquet beside config.yaml."""
    source, server = finished_run
    run = shutil.copytree(source, tmp_path / source.name)
    (run / "factory-run.json").unlink()
    before = server.stats.calls
    result = _run(("build", "--resume", str(run), "--engine", "local", "--quiet"), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert server.stats.calls == before


def test_nothing_writes_into_the_repository() -> None:
    assert not (REPO / "c.yaml").exists()  # every case ran in its own folder


# ------------------------------------------------------------------- what must still be accepted


def test_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    """The loader refuses duplicates and bombs, not the ordinary use of anchors: one model block,
    reused, and merged with an override (which is not a duplicate key)."""
    from factory.config import load_config

    (tmp_path / "p.jsonl").write_text(GOOD_PROMPTS)
    (tmp_path / "c.yaml").write_text(
        "run: {name: anchors}\n"
        "models:\n"
        "  generator: &fake {model: openai/fake, api_base: 'http://127.0.0.1:9/v1', temperature: 0.7}\n"
        "  judge:\n    <<: *fake\n    temperature: 0.0\n"
        "  rationale_writer: *fake\n"
        "prompts: {path: p.jsonl}\n"
    )
    config = load_config(tmp_path / "c.yaml")
    assert config.models["judge"].temperature == 0.0
    assert config.models["rationale_writer"] == config.models["generator"]


def test_merge_keys_override_without_counting_as_duplicates() -> None:
    from factory._util.yaml_input import parse_yaml_text

    data = parse_yaml_text(
        "base: &b {model: m, temperature: 0.7}\njudge:\n  <<: *b\n  temperature: 0.0\n", "t"
    )
    assert data["judge"] == {"model": "m", "temperature": 0.0}


ORDINARY_PARAMS: list[dict[str, Any]] = [
    {"stop": ["###", "<|im_end|>"], "repeat_penalty": 1.1},
    {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}, "top_k": 40, "min_p": 0.05}},
    {"extra_body": {"eos_token": "</s>", "skip_special_tokens": True, "prompt_cache_key": "build-1"}},
    {"extra_headers": {"OpenAI-Organization": "org-research", "User-Agent": "preference-factory/0.1"}},
    {"extra_body": {"guided_json": {"type": "object", "properties": {"score": {"type": "integer"}}}}},
    {
        "metadata": {
            "model_path": "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
            "hub_id": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            "revision": "a" * 40,
        }
    },
    {"api_version": "2024-06-01", "api_key": None, "logit_bias": {"50256": -100}},
]


@pytest.mark.parametrize("params", ORDINARY_PARAMS, ids=[str(i) for i in range(len(ORDINARY_PARAMS))])
def test_ordinary_params_are_not_taken_for_credentials(params: dict[str, Any]) -> None:
    from factory.llm.models import ModelSpec

    assert ModelSpec(model="openai/fake", params=params).params == params
