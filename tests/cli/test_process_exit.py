"""The console entry point ends the process without the interpreter's teardown, but keeps what a
normal exit promises: the exit code, flushed output, exit handlers and finished non-daemon threads."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from factory._util.gc_settings import BUILD_THRESHOLDS, long_lived_heap
from factory._util.process_exit import exit_code

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (6, 6), (130, 130), ("bad", 1)])
def test_exit_code_follows_sys_exit(code: object, status: int) -> None:
    assert exit_code(code) == status


def test_exit_now_joins_threads_runs_handlers_and_keeps_the_code(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import atexit, concurrent.futures, sys, threading, time
            from factory._util.process_exit import exit_now

            pool = concurrent.futures.ThreadPoolExecutor(2)  # idle workers must not block the exit
            pool.submit(lambda: None).result()
            threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished"))).start()
            atexit.register(lambda: print("exit handler ran"))
            sys.stdout.write("buffered line\\n")  # not flushed by hand
            exit_now(3)
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["buffered line", "thread finished", "exit handler ran"]


def test_python_m_factory_keeps_the_exit_code_of_a_user_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "factory", "build", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ")


def test_long_lived_heap_is_undone_on_the_way_out() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError), long_lived_heap():
        assert gc.get_threshold() == BUILD_THRESHOLDS
        assert gc.get_freeze_count() > frozen  # what existed at entry is out of the collector's way
        raise RuntimeError("a build that fails")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen  # 0 here: pytest freezes nothing itself
