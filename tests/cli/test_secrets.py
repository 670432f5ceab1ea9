"""Secrets come only from the environment and end up in no file and no log.

Recognisable fake keys are set in the environment; a build, a calibration and a dry-run publish run
through the real CLI; then every file they wrote (parquet and SQLite read back as text too, since
compression would hide a string from a byte scan) and everything they printed is searched for them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from _reliability import REPO, build_config, cli_env, run_cli, write_config
from aiohttp import web

from factory.llm import AuthError, Gateway, GatewaySettings, ModelSpec
from factory.testing import FakeLLMServer

SECRETS = {
    "OPENAI_API_KEY": "sk-test-FACTORYSECRET-1",
    "HF_TOKEN": "hf_FACTORYSECRET2",
    "MY_KEY": "my-FACTORYSECRET-3",
}


def _texts_of(path: Path) -> list[str]:
    """What a reader could see in a file: its bytes, and its decoded cells for compressed formats."""
    out = [path.read_bytes().decode("utf-8", errors="replace")]
    if path.suffix == ".parquet":
        out.append(json.dumps(pl.read_parquet(path).to_dicts(), default=str))
    elif path.suffix in (".sqlite", ".db"):
        with sqlite3.connect(path) as conn:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                out.append(json.dumps(conn.execute(f'SELECT * FROM "{table}"').fetchall(), default=str))
    return out


def _leaks(folders: list[Path], logs: list[str]) -> list[str]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                for text in _texts_of(path):
                    found += [f"{path}: {name}" for name, value in SECRETS.items() if value in text]
    for i, log in enumerate(logs):
        found += [f"log {i}: {name}" for name, value in SECRETS.items() if value in log]
    return sorted(set(found))


def _command_exists(name: str) -> bool:
    return (REPO / "factory" / "cli" / f"{name}_cmd.py").is_file()


def test_no_secret_in_any_output_file_or_log(tmp_path: Path, shared_data: Path) -> None:
    env = cli_env(**SECRETS, FACTORY_DATA_DIR=str(shared_data))
    logs: list[str] = []
    folders = [tmp_path]
    with FakeLLMServer() as server:
        config = build_config(server.base_url, tmp_path, prompts=4)
        config["models"]["generator"]["api_key_env"] = "MY_KEY"
        config["models"]["judge"]["api_key_env"] = "OPENAI_API_KEY"
        path = write_config(tmp_path / "build.yaml", config)
        built = run_cli("build", str(path), "--engine", "local", env=env)
        logs += [built.stdout, built.stderr]
        assert built.returncode == 0, built.stderr
        run_dir = Path(built.stdout.strip().splitlines()[-1])
        assert (run_dir / "cache.sqlite").is_file() and (run_dir / "config.yaml").is_file()
        assert server.stats.ok > 0
        config_text = (run_dir / "config.yaml").read_text()
        assert "api_key_env: MY_KEY" in config_text  # the variable's name is saved, never its value

        skipped = []
        if _command_exists("calibrate"):
            calibrated = run_cli(
                "calibrate",
                "--human-set",
                "pandalm",
                "--judge-model",
                "openai/fake",
                "--api-base",
                server.base_url,
                "--api-key-env",
                "OPENAI_API_KEY",
                "--limit",
                "6",
                "--out",
                str(tmp_path / "calibration"),
                "--quiet",
                env=env,
            )
            logs += [calibrated.stdout, calibrated.stderr]
            assert calibrated.returncode == 0, calibrated.stderr[-2000:]
        else:
            skipped.append("calibrate")
    if _command_exists("publish"):
        published = run_cli(
            "publish",
            str(run_dir),
            "--repo-id",
            "someone/secret-test",
            "--dry-run",
            str(tmp_path / "hub"),
            "--force",
            env=env,
        )
        logs += [published.stdout, published.stderr]
        assert published.returncode == 0, published.stderr[-2000:]
        assert any((tmp_path / "hub").rglob("*.parquet"))
    else:
        skipped.append("publish")

    assert _leaks(folders, logs) == []
    if skipped:
        pytest.skip(f"no secret found; not yet available to check: {', '.join(skipped)}")


async def test_a_key_echoed_by_the_provider_is_blanked_from_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some providers quote the key they rejected; that message ends in failure tables and logs."""

    async def reject(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response(
            {
                "error": {
                    "message": f"Incorrect API key provided: {key}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            status=401,
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", reject)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setenv("MY_KEY", SECRETS["MY_KEY"])
    try:
        spec = ModelSpec(model="openai/x", api_base=f"http://127.0.0.1:{port}/v1", api_key_env="MY_KEY")
        gateway = Gateway({"judge": spec}, GatewaySettings(max_retries=0))
        with pytest.raises(AuthError) as caught:
            await gateway.complete("judge", [{"role": "user", "content": "hi"}])
        assert "Incorrect API key provided" in str(caught.value)
        assert SECRETS["MY_KEY"] not in str(caught.value)
    finally:
        await runner.cleanup()
