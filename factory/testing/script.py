"""What the fake server answers: scripted rules, the fault plan, and script files.

A `Script` walks its `Rule`s in order; the first rule that matches the request and still has
replies left answers it. When nothing matches, the script's `default` answers (by default the
protocol-aware replies of `default_replies`). A rule that would have matched but has used up its
`times` makes the script *exhausted*: with `strict=True` the server answers HTTP 500 instead of
silently falling back, the way inspect_ai's fake model raises when its script runs out.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from factory._util.errors import UserError
from factory._util.yaml_input import MAX_YAML_BYTES, load_yaml_file, read_regular_file, validate_model
from factory.testing.default_replies import default_reply, message_text

Reply = str | list[str] | Callable[[dict[str, Any]], str]
MatchOn = Literal["last_user", "system", "any"]
FaultKind = Literal["429", "500", "401", "timeout", "malformed", "truncated", "empty"]


@dataclass(frozen=True)
class Rule:
    """One scripted answer.

    Matches when every given condition holds: `contains` is a substring of, and `regex` is found in,
    the text chosen by `role` (the last user message by default, all system messages, or every
    message), and `model` equals the request's model. A rule with no condition matches everything.

    `reply` is a string, a list (used in order, cycling) or a callable that gets the request body.
    `times` caps how many requests the rule answers; after that it is exhausted.

    Example: `Rule("### Overall Score", reply=["### Overall Score: 3/10", "### Overall Score: 9/10"])`
    """

    contains: str | None = None
    _: KW_ONLY
    regex: str | None = None
    model: str | None = None
    reply: Reply
    times: int | None = None
    role: MatchOn = "last_user"
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.role not in ("last_user", "system", "any"):
            raise UserError(f"Rule role must be last_user, system or any; got {self.role!r}.")
        if self.times is not None and self.times < 1:
            raise UserError(f"Rule times must be at least 1; got {self.times}.")
        if isinstance(self.reply, list) and not self.reply:
            raise UserError("Rule reply list is empty.")
        if self.regex is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except re.error as exc:
                raise UserError(f"Rule regex {self.regex!r} does not compile: {exc}.") from exc

    def matches(self, body: dict[str, Any]) -> bool:
        """Whether this rule's conditions hold for the request body (ignores `times`)."""
        if self.model is not None and self.model != body.get("model"):
            return False
        if self.contains is None and self._pattern is None:
            return True
        text = _match_text(body.get("messages") or [], self.role)
        if self.contains is not None and self.contains not in text:
            return False
        return self._pattern is None or self._pattern.search(text) is not None

    def describe(self) -> str:
        """A short label for error messages."""
        parts = [
            f"{k}={v!r}"
            for k, v in (("contains", self.contains), ("regex", self.regex), ("model", self.model))
            if v is not None
        ]
        return "Rule(" + ", ".join(parts or ["<any>"]) + ")"


def _match_text(messages: list[dict[str, Any]], role: MatchOn) -> str:
    if role == "last_user":
        for message in reversed(messages):
            if message.get("role") == "user":
                return message_text(message)
        return ""
    wanted = [m for m in messages if role == "any" or m.get("role") == "system"]
    return "\n".join(message_text(m) for m in wanted)


class ScriptExhausted(Exception):
    """A rule that matched has used all its `times` and no other rule matched (strict scripts)."""


class Script:
    """Rules plus a default, with per-rule use counts (thread-safe; `reset()` zeroes them)."""

    def __init__(
        self,
        rules: Sequence[Rule] = (),
        default: str | Callable[[dict[str, Any]], str] | None = None,
        strict: bool = True,
    ) -> None:
        self.rules = list(rules)
        self.default = default
        self.strict = strict
        self._uses = [0] * len(self.rules)
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._uses = [0] * len(self.rules)

    def reply(self, body: dict[str, Any], choice: int = 0) -> str:
        """The answer text for one request (`choice` > 0 for the extra choices of `n > 1`);
        raises `ScriptExhausted` when a strict script ran out."""
        exhausted: Rule | None = None
        for i, rule in enumerate(self.rules):
            if not rule.matches(body):
                continue
            with self._lock:
                use = self._uses[i]
                if rule.times is not None and use >= rule.times:
                    exhausted = exhausted or rule
                    continue
                self._uses[i] = use + 1
            if isinstance(rule.reply, str):
                return rule.reply
            if isinstance(rule.reply, list):
                return rule.reply[use % len(rule.reply)]
            return str(rule.reply(body))
        if exhausted is not None and self.strict:
            raise ScriptExhausted(
                f"fake LLM script exhausted: {exhausted.describe()} has answered its "
                f"{exhausted.times} request(s) and no other rule matched"
            )
        if self.default is None:
            return default_reply(body, choice)
        return self.default if isinstance(self.default, str) else str(self.default(body))


@dataclass(frozen=True)
class Fault:
    """The failure plan. Rates are per-request probabilities (their sum must be at most 1), drawn
    from an RNG seeded by (server seed, request index), so a sequential run fails the same requests
    every time.

    * `rate_429`: HTTP 429 with `Retry-After: retry_after_s` (fractional seconds) and `retry-after-ms`.
    * `rate_500`: HTTP 500.  `first_n_fail`: the first N requests after start/reset get `fail_status`.
    * `rate_401`: HTTP 401 `invalid_api_key`, as a provider answers a wrong key (1.0: every request).
    * `rate_timeout`: sleep `timeout_s` before answering, so the client's timeout fires.
    * `rate_malformed`: HTTP 200 whose body is not JSON or has no `choices`.
    * `rate_truncated`: content cut at half with `finish_reason: "length"`.
    * `rate_empty`: HTTP 200 whose content is "" or only whitespace (half each), `finish_reason: "stop"`.
    * `outage`: every request gets 503 (toggle at runtime with `FakeLLMServer.set_outage`).

    Example: `Fault(rate_429=0.2, retry_after_s=0.01)`
    """

    rate_429: float = 0.0
    retry_after_s: float = 0.05
    rate_500: float = 0.0
    rate_401: float = 0.0
    rate_timeout: float = 0.0
    timeout_s: float = 30.0
    rate_malformed: float = 0.0
    rate_truncated: float = 0.0
    rate_empty: float = 0.0
    first_n_fail: int = 0
    fail_status: int = 503
    outage: bool = False

    def __post_init__(self) -> None:
        rates = self._rates()
        bad = {k: v for k, v in rates if not 0.0 <= v <= 1.0}
        if bad:
            raise UserError(f"Fault rates must lie in [0, 1]; got {bad}.")
        if sum(v for _, v in rates) > 1.0 + 1e-9:
            raise UserError(f"Fault rates sum to {sum(v for _, v in rates):.3f}; they must sum to at most 1.")
        if self.first_n_fail < 0 or not 400 <= self.fail_status <= 599:
            raise UserError(
                f"Fault first_n_fail must be >= 0 and fail_status an HTTP error code; "
                f"got {self.first_n_fail} and {self.fail_status}."
            )

    def _rates(self) -> list[tuple[FaultKind, float]]:
        return [
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("401", self.rate_401),
            ("timeout", self.rate_timeout),
            ("malformed", self.rate_malformed),
            ("truncated", self.rate_truncated),
            ("empty", self.rate_empty),
        ]

    @property
    def any_random(self) -> bool:
        return any(v > 0 for _, v in self._rates())

    def pick(self, rng: random.Random) -> FaultKind | None:
        """Draw this request's random fault (None = answer normally)."""
        u = rng.random()
        edge = 0.0
        for kind, rate in self._rates():
            edge += rate
            if u < edge:
                return kind
        return None


class _RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    contains: str | None = None
    regex: str | None = None
    model: str | None = None
    reply: str | list[str]
    times: int | None = None
    role: MatchOn = "last_user"


class _ScriptFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    rules: list[_RuleFile] = []
    default: str | None = None
    strict: bool = True
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    seed: int = 0
    faults: dict[str, Any] = {}


@dataclass(frozen=True)
class ServerScript:
    """Everything a script file sets (what `python -m factory.testing.fake_server --script F` serves)."""

    rules: list[Rule] = field(default_factory=list)
    default: str | None = None
    strict: bool = True
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    seed: int = 0
    faults: Fault = field(default_factory=Fault)


def load_script(path: str | Path) -> ServerScript:
    """Read a YAML or JSON script file.

    Example file::

        latency_s: 0.05
        faults: {rate_429: 0.1, retry_after_s: 0.02}
        rules:
          - contains: "### Overall Score"
            reply: ["### Overall Score: 4/10", "### Overall Score: 8/10"]
    """
    path = Path(path)
    if path.suffix == ".json":
        text = read_regular_file(path, "fake-LLM script", MAX_YAML_BYTES).decode("utf-8", errors="replace")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"fake-LLM script {path} is not valid JSON: {exc}") from None
    else:
        raw = load_yaml_file(path, "fake-LLM script")
    spec = validate_model(_ScriptFile, raw or {}, f"fake-LLM script {path}")
    return ServerScript(
        rules=[Rule(**r.model_dump()) for r in spec.rules],
        default=spec.default,
        strict=spec.strict,
        latency_s=spec.latency_s,
        latency_jitter_s=spec.latency_jitter_s,
        seed=spec.seed,
        faults=fault_from_dict(spec.faults),
    )


def fault_from_dict(values: dict[str, Any]) -> Fault:
    """Build a `Fault` from plain data, naming unknown keys (for script files and the CLI)."""
    known = set(Fault.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"Unknown fault setting(s) {unknown}; known: {sorted(known)}.")
    try:
        return Fault(**values)
    except TypeError as exc:
        raise UserError(f"Fault settings {values} have a value of the wrong type: {exc}.") from exc
