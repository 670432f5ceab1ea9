"""The temporary Prefect API of a command-line build, out of reach of the terminal's Ctrl-C.

With no `PREFECT_API_URL`, Prefect starts a temporary API server as a child process on first use.
A child shares the terminal's foreground process group, so a Ctrl-C reaches it as well as the build:
the server dies mid-run, the flow can no longer record that it was cancelled, and Prefect's clients
spend a minute retrying it. `start_local_api()` starts that server up front from a helper thread
that blocks SIGINT; the child inherits the blocked signal, so only the build sees Ctrl-C. It still
stops as before: Prefect terminates it (SIGTERM) at exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from factory._util import interrupts


def start_local_api() -> Callable[[], None] | None:
    """Start Prefect's temporary API now if this process is going to use one; return a quick,
    non-blocking stop for a second Ctrl-C (None when the API is someone else's).

    Raises `BuildInterrupted` if Ctrl-C was pressed while it started (nothing was built yet)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's clients use (one per process)
    failure: list[BaseException] = []

    def start() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # this thread only; its children inherit it
        try:
            server.start()
        except BaseException as exc:
            failure.append(exc)

    # Daemon: after a Ctrl-C the build does not wait for a start-up it no longer needs (Prefect's
    # own exit handler stops the server if it got that far).
    starter = threading.Thread(target=start, name="prefect-local-api", daemon=True)
    starter.start()
    while starter.is_alive():
        starter.join(0.2)  # in slices: the main thread must stay free to take the Ctrl-C
        if interrupts.requested():
            raise interrupts.BuildInterrupted(None, 0, 0)
    if failure:
        raise failure[0]
    return lambda: _terminate(server)


def _terminate(server: Any) -> None:
    process = getattr(server, "server_process", None)
    if process is not None and process.poll() is None:
        process.terminate()
