"""A fake OpenAI-compatible server for tests and benchmarks: scripted replies, faults, latency.

Example::

    from factory.testing import FakeLLMServer, Rule, Fault

    with FakeLLMServer(rules=[Rule("### Overall Score", reply="### Overall Score: 7/10")],
                       faults=Fault(rate_429=0.1)) as server:
        ...  # point a model at server.base_url
        print(server.stats.calls, server.requests[-1]["messages"])
"""

from typing import TYPE_CHECKING, Any

from factory.testing._process import ServerStats, SpawnedServer
from factory.testing.default_replies import default_reply, schema_instance
from factory.testing.script import Fault, Rule, Script, ScriptExhausted, ServerScript, load_script

if TYPE_CHECKING:
    from factory.testing.fake_app import FakeLLMApp
    from factory.testing.fake_server import FakeLLMServer, serve_forever

_SERVER_NAMES = {"FakeLLMServer", "serve_forever"}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m factory.testing.fake_server` does not find its own
    # module already imported by this package (runpy warns about that).
    if name in _SERVER_NAMES:
        from factory.testing import fake_server

        return getattr(fake_server, name)
    if name == "FakeLLMApp":
        from factory.testing.fake_app import FakeLLMApp

        return FakeLLMApp
    raise AttributeError(f"module 'factory.testing' has no attribute {name!r}")


__all__ = [
    "FakeLLMApp",
    "FakeLLMServer",
    "Fault",
    "Rule",
    "Script",
    "ScriptExhausted",
    "ServerScript",
    "ServerStats",
    "SpawnedServer",
    "default_reply",
    "load_script",
    "schema_instance",
    "serve_forever",
]
