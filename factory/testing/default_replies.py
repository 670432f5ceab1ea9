"""Protocol-aware answers for requests no rule matched, so whole builds run against the fake server.

Every answer is a pure function of the request body (hashed with sha256 over canonical JSON), so the
same request always gets the same answer and requests that differ in anything (prompt, `seed`,
`temperature`) get different ones. In order of precedence:

* `response_format` of type `json_schema` (or `json_object` carrying a schema): a valid instance of
  the schema, numbers and enum choices picked from the hash so different requests score differently.
  `pattern` and `format` constraints on strings are not solved (only common formats are imitated).
* the prompt asks for `### Score Assistant A:` lines (combined judge protocol): evidence plus both
  scores out of N, N read from the prompt (`/10`, `/5`, `/100`; 10 when absent).
* the prompt asks for `### Answer:` (direct comparison): evidence plus `A`, `B` or `C`.
* the prompt asks for `### Overall Score:` (reviewer, independent judge): evidence plus a score out
  of 10; with `### Feedback:` also asked, `### Evaluation:` / `### Overall Score:` / `### Feedback:`.
* otherwise a plain answer: "Answer to: <first words of the last user message>..." plus 1-4 sentences.

A marker only counts as asked for when at least one occurrence is not already filled in with a
concrete value, so a revision prompt quoting a reviewer's `### Overall Score: 7/10` gets a plain answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

_SCORE_A = re.compile(r"### Score Assistant A:([^\n]*)")
_ANSWER = re.compile(r"### Answer:([^\n]*)")
_OVERALL = re.compile(r"### Overall Score:([^\n]*)")
_FEEDBACK = re.compile(r"### Feedback:")
_OUT_OF = re.compile(r"/\s*(\d+)")
_FILLED_SCORE = re.compile(r"\s*\d+(?:\.\d+)?\s*/\s*\d+\s*\**\s*$")
_FILLED_ANSWER = re.compile(r"\s*\**\s*\[?\s*[ABC]\s*\]?\s*\**\s*$")

_SENTENCES = (
    "The key idea is to break the problem into smaller steps and handle each one in turn.",
    "A concrete example makes the explanation easier to follow.",
    "It is worth checking the edge cases before relying on the result.",
    "In practice the simplest approach that works is usually the right one.",
    "Several sources agree on this point, although details vary.",
    "The trade-off is between speed and accuracy, and the context decides which matters more.",
    "This holds in most cases, with a few exceptions noted below.",
    "Finally, the answer should be verified against the original question.",
)


def request_digest(body: dict[str, Any]) -> int:
    """A stable 64-bit number derived from the whole request body."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message (plain string content or OpenAI content parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _asked(pattern: re.Pattern[str], filled: re.Pattern[str], text: str) -> list[str] | None:
    """The trailing text of each marker occurrence, or None when the prompt does not ask for it."""
    tails = pattern.findall(text)
    if not tails or all(filled.match(tail) for tail in tails):
        return None
    return tails


def _out_of(tails: list[str], default: int = 10) -> int:
    for tail in tails:
        found = _OUT_OF.search(tail)
        if found and int(found.group(1)) > 0:
            return int(found.group(1))
    return default


def _evidence(h: int) -> str:
    return _SENTENCES[h % len(_SENTENCES)]


def default_reply(body: dict[str, Any], choice: int = 0) -> str:
    """The answer for a request no rule matched; `choice` varies it for `n > 1` requests."""
    h = request_digest(body) if choice == 0 else request_digest({"choice": choice, "body": body})
    schema_reply = _schema_reply(body.get("response_format"), h)
    if schema_reply is not None:
        return schema_reply
    messages = body.get("messages") or []
    prompt = _last_user(messages)
    system = "\n".join(message_text(m) for m in messages if m.get("role") == "system")
    asking = prompt + "\n" + system
    if (tails := _asked(_SCORE_A, _FILLED_SCORE, asking)) is not None:
        n = _out_of(tails)
        return (
            f"### Evaluation Evidence: {_evidence(h)}\n"
            f"### Score Assistant A: {1 + h % n}/{n}\n### Score Assistant B: {1 + (h >> 16) % n}/{n}"
        )
    if _asked(_ANSWER, _FILLED_ANSWER, asking) is not None:
        return f"### Evaluation Evidence: {_evidence(h)}\n### Answer: {'ABC'[(h >> 8) % 3]}"
    if (tails := _asked(_OVERALL, _FILLED_SCORE, asking)) is not None:
        n = _out_of(tails)
        score = f"### Overall Score: {1 + (h >> 8) % n}/{n}"
        if _FEEDBACK.search(asking):
            return (
                f"### Evaluation: {_evidence(h)}\n{score}\n"
                f"### Feedback: {_SENTENCES[(h >> 24) % len(_SENTENCES)]}"
            )
        return f"### Evaluation Evidence: {_evidence(h)}\n{score}"
    return plain_answer(prompt, h)


def plain_answer(prompt: str, h: int) -> str:
    """A few deterministic sentences; the count and choice depend on the hash."""
    head = " ".join(prompt.split()[:8]) or "your question"
    count = 1 + (h >> 4) % 4
    picked = [_SENTENCES[(h >> (8 + 3 * i)) % len(_SENTENCES)] for i in range(count)]
    return f"Answer to: {head}... " + " ".join(picked)


# --- JSON schema instances -------------------------------------------------------------------------


def _schema_reply(response_format: Any, h: int) -> str | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    schema: Any = None
    if kind == "json_schema":
        wrapper = response_format.get("json_schema") or {}
        schema = wrapper.get("schema", wrapper) if isinstance(wrapper, dict) else None
    elif kind == "json_object":
        schema = response_format.get("schema") or response_format.get("json_schema")
        if schema is None:
            return json.dumps({"answer": plain_answer("", h)})
    else:
        return None
    if not isinstance(schema, dict):
        return json.dumps({})
    return json.dumps(schema_instance(schema, h))


def schema_instance(schema: dict[str, Any], seed: int = 0) -> Any:
    """A valid instance of a JSON schema (the subset pydantic emits), values derived from `seed`.

    Objects carry every property (only the required ones below depth 6, which stops recursive
    models); arrays carry max(minItems, 1) items, capped by maxItems.
    """
    return _Instance(schema, seed).build(schema, "$", 0)


class _Instance:
    def __init__(self, root: dict[str, Any], seed: int) -> None:
        self.root = root
        self.seed = seed

    def _h(self, path: str) -> int:
        return int.from_bytes(hashlib.sha256(f"{self.seed}:{path}".encode()).digest()[:8], "big")

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.root
        for part in ref.removeprefix("#/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node if isinstance(node, dict) else {}

    def build(self, schema: dict[str, Any], path: str, depth: int) -> Any:
        if "$ref" in schema:
            return self.build(self._resolve(schema["$ref"]), path, depth)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            options = schema["enum"]
            return options[self._h(path) % len(options)]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
                return self.build(options[0], path, depth)
        if schema.get("allOf"):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part["$ref"]) if "$ref" in part else part)
            return self.build(merged, path, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            return self._object(schema, path, depth)
        if kind == "array":
            return self._array(schema, path, depth)
        if kind == "integer":
            return self._integer(schema, path)
        if kind == "number":
            return self._number(schema, path)
        if kind == "boolean":
            return bool(self._h(path) & 1)
        if kind == "null":
            return None
        return self._string(schema, path)

    def _object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        keys = list(props) if depth < 6 else [k for k in props if k in required]
        return {k: self.build(props[k], f"{path}.{k}", depth + 1) for k in keys}

    def _array(self, schema: dict[str, Any], path: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = int(schema.get("minItems", 0))
        count = max(low, len(prefix), 0 if depth >= 6 or schema.get("uniqueItems") else 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items: dict[str, Any] = schema["items"] if isinstance(schema.get("items"), dict) else {}
        return [
            self.build(prefix[i] if i < len(prefix) else items, f"{path}[{i}]", depth + 1)
            for i in range(count)
        ]

    def _integer(self, schema: dict[str, Any], path: str) -> int:
        low, high = schema.get("minimum"), schema.get("maximum")
        low = (
            math.floor(schema["exclusiveMinimum"]) + 1
            if "exclusiveMinimum" in schema
            else (math.ceil(low) if low is not None else None)
        )
        high = (
            math.ceil(schema["exclusiveMaximum"]) - 1
            if "exclusiveMaximum" in schema
            else (math.floor(high) if high is not None else None)
        )
        if low is None:
            low = high - 10 if high is not None else 0
        if high is None:
            high = low + 10
        return low + self._h(path) % (high - low + 1) if high >= low else low

    def _number(self, schema: dict[str, Any], path: str) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        low = float(low) if low is not None else (float(high) - 10.0 if high is not None else 0.0)
        high = float(high) if high is not None else low + 10.0
        if high <= low:
            return low
        # Stay strictly inside the range so exclusive bounds hold too; round for readable output.
        value = low + (0.05 + 0.9 * (self._h(path) % 10_000) / 10_000) * (high - low)
        rounded = round(value, 3)
        return rounded if low < rounded < high else value

    def _string(self, schema: dict[str, Any], path: str) -> str:
        fmt = schema.get("format")
        h = self._h(path)
        if fmt == "date-time":
            text = f"2025-01-{1 + h % 28:02d}T12:00:00Z"
        elif fmt == "date":
            text = f"2025-01-{1 + h % 28:02d}"
        elif fmt == "email":
            text = f"user{h % 1000}@example.com"
        elif fmt in ("uri", "url"):
            text = f"https://example.com/{h % 1000}"
        elif fmt == "uuid":
            text = f"{h & 0xFFFFFFFF:08x}-0000-4000-8000-{h >> 16 & 0xFFFFFFFFFFFF:012x}"
        else:
            text = _SENTENCES[h % len(_SENTENCES)]
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(text) < low:
            text += "x" * (low - len(text))
        return text[: int(high)] if high is not None else text
