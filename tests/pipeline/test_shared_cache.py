"""One request cache across builds (`run.cache_dir`, $FACTORY_CACHE_DIR): a build that differs from an
earlier one only in what it does with the replies (pair rule, threshold, prompt subset, parser) makes no
model call, counted at the fake server; concurrent builds over one cache are safe; `factory cache`.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import REPO, build_config, cli_env, comparable, manifest, run_cli, tables, write_config

import judges.engine.ask
from factory.cli import main
from factory.config import load_config, parse_config
from factory.llm.shared_cache import ENV_VAR, FILE_NAME
from factory.pipeline import run_build
from factory.testing import FakeLLMServer

PRICED = "openai/gpt-4o-mini"  # priced in litellm's table, so the ledger's dollars are not all zero


def _config(
    base_url: str, folder: Path, *, cache_dir: Path | None, prompts: int = 5, **sections: Any
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    sections.setdefault("generation", {"workflows": [{"kind": "single", "samples": 3}]})
    config = build_config(base_url, folder, prompts=prompts, shard_size=3, concurrency=4, **sections)
    for spec in config["models"].values():
        spec["model"] = PRICED
    if cache_dir is not None:
        config["run"]["cache_dir"] = str(cache_dir)
    return config


def _build(config: dict[str, Any]) -> Path:
    return run_build(parse_config(config)).run_dir


def _rows(run_dir: Path, table: str) -> list[str]:
    return comparable(pl.read_parquet(run_dir / f"{table}.parquet"))


def _own_cache_rows(run_dir: Path) -> int:
    with sqlite3.connect(run_dir / "cache.sqlite") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeLLMServer, Path, Path]]:
    """Build A over a fresh shared cache: (the server, the shared cache folder, A's run folder)."""
    root = tmp_path_factory.mktemp("shared")
    cache_dir = root / "cache"
    with FakeLLMServer() as server:
        run_dir = _build(_config(server.base_url, root / "a", cache_dir=cache_dir))
        yield server, cache_dir, run_dir


def test_build_a_pays_for_every_call_and_fills_the_shared_cache(
    first: tuple[FakeLLMServer, Path, Path],
) -> None:
    server, cache_dir, run_a = first
    cost = manifest(run_a)["cost"]
    assert cost["paid"]["calls"] == len(server.requests) > 0
    assert cost["saved"]["calls"] == 0 and cost["paid"]["cost_usd"] > 0
    with sqlite3.connect(cache_dir / FILE_NAME) as conn:
        shared = int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
    assert shared == cost["paid"]["calls"] == _own_cache_rows(run_a)


@pytest.mark.parametrize(
    "change",
    [
        {"pairs": {"rule": "best_vs_worst"}},
        {"pairs": {"min_margin": 3.0}},
    ],
)
def test_a_changed_pair_rule_or_threshold_makes_no_model_call(
    first: tuple[FakeLLMServer, Path, Path], tmp_path: Path, change: dict[str, Any]
) -> None:
    server, cache_dir, run_a = first
    before = server.stats.calls
    run_b = _build(_config(server.base_url, tmp_path, cache_dir=cache_dir, **change))
    assert server.stats.calls == before  # counted at the server: not one request
    a, b = tables(run_a), tables(run_b)
    assert b["candidates"] == a["candidates"] and b["judgments"] == a["judgments"]
    assert len(b["pairs"]) < len(a["pairs"])  # the change took effect on what was cut from the same judgments
    cost_a, cost_b = manifest(run_a)["cost"], manifest(run_b)["cost"]
    assert cost_b["paid"]["calls"] == 0 and cost_b["paid"]["cost_usd"] == 0
    # Every request B made was answered from A's calls: B's rationales are a subset of A's.
    assert 0 < cost_b["saved"]["calls"] <= cost_a["paid"]["calls"]
    assert 0 < cost_b["saved"]["cost_usd"] <= cost_a["paid"]["cost_usd"]
    assert cost_b["by_stage"]["judge"]["saved_calls"] == cost_a["by_stage"]["judge"]["calls"]
    assert _own_cache_rows(run_b) == 0  # the shared cache answered, not a copy in B's own folder


def test_a_subset_of_the_prompts_through_the_env_override_makes_no_model_call(
    first: tuple[FakeLLMServer, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cache_dir, run_a = first
    monkeypatch.setenv(ENV_VAR, str(cache_dir))
    config = _config(server.base_url, tmp_path, cache_dir=None, prompts=5)
    config["prompts"]["limit"] = 3
    before = server.stats.calls
    run_d = _build(config)
    assert server.stats.calls == before
    kept = set(pl.read_parquet(run_d / "prompts.parquet")["prompt_id"].to_list())
    assert len(kept) == 3
    for table in ("candidates", "judgments"):
        a = pl.read_parquet(run_a / f"{table}.parquet").filter(pl.col("prompt_id").is_in(list(kept)))
        assert comparable(a) == _rows(run_d, table), table
    # The env's cache is recorded in the run's config, so a resume without the env uses it too.
    assert load_config(run_d / "config.yaml").run.cache_dir == str(cache_dir.absolute())


def test_a_changed_parser_reparses_the_cached_replies_without_a_call(
    first: tuple[FakeLLMServer, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies are parsed after the cache: a new judge parser (here one that reads the scores the other way
    round) gets the cached raw texts, and the verdicts change without a request. Two candidates and no
    rationales: a changed verdict decides which requests come next (knockout's second round, the
    rationale of the new chosen answer), and those are new requests that a build would have to pay for."""
    server, cache_dir, run_a = first
    original = judges.engine.ask.parse_combined

    def swapped(text: str, scale: int = 10):  # type: ignore[no-untyped-def]
        parsed = original(text, scale)
        flipped = {"A": "B", "B": "A"}.get(parsed.verdict or "", parsed.verdict)
        return type(parsed)(
            verdict=flipped,
            score_a=parsed.score_b,
            score_b=parsed.score_a,
            unscored_reason=parsed.unscored_reason,
        )

    monkeypatch.setattr(judges.engine.ask, "parse_combined", swapped)
    before = server.stats.calls
    run_e = _build(
        _config(
            server.base_url,
            tmp_path,
            cache_dir=cache_dir,
            rationales={"enabled": False},
            generation={"workflows": [{"kind": "single", "samples": 2}]},
        )
    )
    assert server.stats.calls == before
    judged_a = {r["judgment_id"]: r for r in pl.read_parquet(run_a / "judgments.parquet").to_dicts()}
    judged_e = pl.read_parquet(run_e / "judgments.parquet").to_dicts()
    assert judged_e and all(r["judgment_id"] in judged_a for r in judged_e)
    for row in judged_e:
        earlier = judged_a[row["judgment_id"]]
        assert row["raw"] == earlier["raw"]  # the same reply text, from the cache
        assert (row["score_a"], row["score_b"]) == (earlier["score_b"], earlier["score_a"])
    assert any(r["verdict"] != judged_a[r["judgment_id"]]["verdict"] for r in judged_e)


def test_two_concurrent_builds_over_one_cache_both_finish_and_lose_no_call(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with FakeLLMServer(latency_s=0.01) as server:
        config = write_config(
            tmp_path / "build.yaml", _config(server.base_url, tmp_path, cache_dir=cache_dir, prompts=8)
        )
        args = [sys.executable, "-m", "factory", "build", str(config), "--engine", "local", "--quiet"]
        procs = [
            subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        for proc, (_, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0, err[-2000:]
        runs = [Path(out.strip().splitlines()[-1]) for out, _ in outs]
        answered = server.stats.calls
        distinct = {json.dumps(b, sort_keys=True) for b in server.requests}
        # A third build over the same cache afterwards: everything is there.
        again = run_cli("build", str(config), "--engine", "local", "--quiet")
        assert again.returncode == 0, again.stderr[-2000:]
        assert server.stats.calls == answered
    assert tables(runs[0]) == tables(runs[1]) == tables(Path(again.stdout.strip().splitlines()[-1]))
    costs = [manifest(r)["cost"] for r in runs]
    # Every request the server answered is a paid call of exactly one of the two ledgers.
    assert sum(c["paid"]["calls"] for c in costs) == answered
    # Each build made every request of the build once: paid, or answered by what the other had paid for.
    per_build = {c["paid"]["calls"] + c["saved"]["calls"] for c in costs}
    assert per_build == {len(distinct)}
    with sqlite3.connect(cache_dir / FILE_NAME) as conn:
        assert int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]) == len(distinct)


def test_a_cache_dir_that_is_a_file_is_a_usage_error_before_any_call(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with FakeLLMServer() as server:
        config = write_config(tmp_path / "build.yaml", _config(server.base_url, tmp_path, cache_dir=blocker))
        done = run_cli("build", str(config), "--engine", "local", "--quiet")
        assert server.stats.calls == 0
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cache dir {blocker} is not a folder (run.cache_dir or ${ENV_VAR})"
    ]
    assert not (tmp_path / "outputs").exists()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cache_stats_and_prune(
    first: tuple[FakeLLMServer, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cache_dir, run_a = first
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(cache_dir / FILE_NAME, folder / FILE_NAME)  # A's gateway closed it: no WAL file left
    paid = manifest(run_a)["cost"]["paid"]

    code, out, _ = _cli(["cache", "stats", "--cache-dir", str(folder), "--json"], capsys)
    stats = json.loads(out)
    assert code == 0 and stats["entries"] == paid["calls"]
    assert stats["cost_usd"] == pytest.approx(paid["cost_usd"], abs=1e-9)
    assert list(stats["by_model"]) == [PRICED] and stats["oldest"] <= stats["newest"]

    code, out, _ = _cli(
        ["cache", "prune", "--cache-dir", str(folder), "--model", PRICED, "--dry-run"], capsys
    )
    assert code == 0 and out.startswith(f"would remove {paid['calls']} entries")
    # Age a third of the entries by 40 days (the test's only write behind the cache's back).
    aged = paid["calls"] // 3
    with sqlite3.connect(folder / FILE_NAME) as conn:
        conn.execute(
            "UPDATE requests SET created_at = created_at - 40 * 86400 WHERE key IN "
            "(SELECT key FROM requests ORDER BY key LIMIT ?)",
            (aged,),
        )
    code, out, _ = _cli(["cache", "prune", "--cache-dir", str(folder), "--older-than", "30d"], capsys)
    assert code == 0 and out.startswith(f"removed {aged} entries") and f"; {paid['calls'] - aged} left" in out

    with sqlite3.connect(folder / FILE_NAME) as conn:
        newest = conn.execute("SELECT key, bytes FROM requests ORDER BY created_at DESC, key").fetchall()
    limit = sum(size for _, size in newest[:4])
    code, out, _ = _cli(["cache", "prune", "--cache-dir", str(folder), "--max-size", str(limit)], capsys)
    assert code == 0
    with sqlite3.connect(folder / FILE_NAME) as conn:
        left = {r[0] for r in conn.execute("SELECT key FROM requests")}
    assert left == {key for key, _ in newest[:4]}  # the newest entries that fit, and no more

    for args, message in [
        (
            ["cache", "prune", "--cache-dir", str(folder)],
            "error: give what to prune: --older-than, --model and/or --max-size",
        ),
        (
            ["cache", "prune", "--cache-dir", str(folder), "--older-than", "soon"],
            "error: Invalid value for '--older-than': expected a duration like 30d, 12h, 90m or 2w, got 'soon'",
        ),
        (
            ["cache", "stats", "--cache-dir", str(tmp_path / "none")],
            f"error: no shared request cache in {tmp_path / 'none'} (no {FILE_NAME})",
        ),
    ]:
        code, _, err = _cli(args, capsys)
        assert code == 2 and err.strip().splitlines() == [message], err


def test_a_pruned_entry_is_paid_again_and_only_that(
    first: tuple[FakeLLMServer, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, cache_dir, _ = first
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(cache_dir / FILE_NAME, folder / FILE_NAME)
    with sqlite3.connect(folder / FILE_NAME) as conn:
        conn.execute(
            "UPDATE requests SET created_at = ? WHERE key IN (SELECT key FROM requests ORDER BY key LIMIT 5)",
            (time.time() - 3 * 3600,),
        )
    code, out, _ = _cli(["cache", "prune", "--cache-dir", str(folder), "--older-than", "2h"], capsys)
    assert code == 0 and out.startswith("removed 5 entries")
    before = server.stats.calls
    run = _build(_config(server.base_url, tmp_path / "b", cache_dir=folder))
    assert server.stats.calls - before == manifest(run)["cost"]["paid"]["calls"] == 5
