"""The CLI follows the conventions a user expects: --version, --debug in the help, flags without a value,
a fake server that says where it listens, a bad cron refused at once, run files readable like others."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer
from _reliability import REPO, build_config, cli_env, run_cli

import factory
from factory.cli import _register_commands, main
from factory.cli.app import app

READY_TIMEOUT_S = 120  # the fake server's start, imports included, on a loaded machine


def _commands() -> dict[str, Any]:
    """The click commands typer builds (typer bundles its own click, so no isinstance checks)."""
    _register_commands()
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        main([*args, "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return capsys.readouterr().out


def test_version_prints_the_package_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"factory {factory.__version__}\n"


def test_the_top_level_help_shows_version_and_debug(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help([], capsys)
    assert "--version" in text and "--debug" in text and "traceback" in text


def test_boolean_options_are_flags_and_the_help_shows_no_value_for_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = _commands()
    assert {"build", "schedule", "publish", "train", "fake-llm"} <= set(commands)
    flags = 0
    for name, command in commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.type_descriptor.annotation is bool:
                assert param.is_flag, f"{name} {param.opts}"
                flags += 1
        text = _help([name], capsys)
        assert "<bool>" not in text, f"factory {name} --help:\n{text}"
    assert flags >= 8
    assert "<bool>" not in _help([], capsys)


def test_fake_llm_on_port_0_prints_its_url_and_serves_there(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "factory", "fake-llm", "--port", "0"],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT_S)
        assert ready, "factory fake-llm printed nothing"
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1") and not url.endswith(":0/v1"), url
        request = urllib.request.Request(
            f"{url}/chat/completions",
            method="POST",
            data=json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hello"}]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["choices"][0]["message"]["content"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_fake_llm_and_annotate_do_not_share_a_default_port() -> None:
    commands = _commands()

    def default_port(name: str) -> int:
        port = next(p for p in commands[name].params if p.name == "port")
        return int(port.default)

    assert default_port("fake-llm") != default_port("annotate")


@pytest.mark.parametrize(
    "cron, says, never",
    [
        ("61 * * * *", "minute 61 is out of range 0-59", "expected 5 fields"),
        ("0 3 * * 8", "day of week 8 is out of range 0-7", "expected 5 fields"),
        ("0 3 1W * *", "day of month '1W' is not a number 1-31", "expected 5 fields"),
        ("0 3 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4", "out of range"),
    ],
)
def test_an_invalid_cron_is_refused_before_prefect_is_imported(
    tmp_path: Path, cron: str, says: str, never: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(build_config("http://127.0.0.1:9/v1", tmp_path)))
    script = (
        "import sys\nfrom factory.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    print(sorted(m for m in ('prefect', 'litellm', 'flows') if m in sys.modules))\n    raise\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "schedule", str(config), "--cron", cron],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"error: invalid cron expression '{cron}': "
    )
    assert says in done.stderr and never not in done.stderr
    assert done.stdout.strip() == "[]"  # nothing slow was imported before the error


def test_valid_cron_forms_pass_the_early_check() -> None:
    from factory._util.cron import check_cron

    for cron in (
        "0 3 * * *",
        "@daily",
        "*/15 0-23/2 * * MON-FRI",
        "0 3 L * *",
        "0 3 * * 5#3",
        "0 0 1 jan,jul ?",
    ):
        check_cron(cron)


def test_run_files_honour_the_umask(tmp_path: Path) -> None:
    from factory.config import parse_config
    from factory.pipeline import run_build
    from factory.testing import FakeLLMServer

    previous = os.umask(0o027)
    try:
        with FakeLLMServer() as server:
            result = run_build(parse_config(build_config(server.base_url, tmp_path, prompts=4), "test"))
    finally:
        os.umask(previous)
    files = [p for p in result.run_dir.rglob("*") if p.is_file()]
    assert len(files) > 10
    modes = {p.relative_to(result.run_dir).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {path: mode for path, mode in modes.items() if mode != 0o640} == {}
