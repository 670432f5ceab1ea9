"""The model gateway: the only package that imports litellm.

The gateway itself (and litellm with it, a multi-second import) loads on first use, so code that
only needs the config types or the error tree (config loading, CLI error paths) starts fast.
"""

from typing import TYPE_CHECKING, Any

from factory.llm.errors import (
    AuthError,
    BadRequestError,
    BudgetExceededError,
    CircuitOpenError,
    EmptyReplyError,
    LLMError,
    LLMTimeoutError,
    OutputParseError,
    ProviderError,
    RateLimitError,
)
from factory.llm.limits import Budget, GatewaySettings
from factory.llm.models import ModelSpec

if TYPE_CHECKING:
    from factory.llm.gateway import Completion, Gateway, parse_json_reply

_GATEWAY_NAMES = {"Completion", "Gateway", "parse_json_reply"}


def __getattr__(name: str) -> Any:
    if name in _GATEWAY_NAMES:
        from factory.llm import gateway

        return getattr(gateway, name)
    raise AttributeError(f"module 'factory.llm' has no attribute {name!r}")


__all__ = [
    "AuthError",
    "BadRequestError",
    "Budget",
    "BudgetExceededError",
    "CircuitOpenError",
    "Completion",
    "EmptyReplyError",
    "Gateway",
    "GatewaySettings",
    "LLMError",
    "LLMTimeoutError",
    "ModelSpec",
    "OutputParseError",
    "ProviderError",
    "RateLimitError",
    "parse_json_reply",
]
