"""The model gateway: the only package that imports litellm."""

from factory.llm.errors import (
    AuthError,
    BadRequestError,
    BudgetExceededError,
    CircuitOpenError,
    LLMError,
    LLMTimeoutError,
    OutputParseError,
    ProviderError,
    RateLimitError,
)
from factory.llm.gateway import Budget, Completion, Gateway, GatewaySettings, parse_json_reply
from factory.llm.models import ModelSpec

__all__ = [
    "AuthError", "BadRequestError", "Budget", "BudgetExceededError", "CircuitOpenError", "Completion",
    "Gateway", "GatewaySettings", "LLMError", "LLMTimeoutError", "ModelSpec", "OutputParseError",
    "ProviderError", "RateLimitError", "parse_json_reply",
]
