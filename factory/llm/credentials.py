"""Spotting credentials pasted into a model's config, so that they are refused before they are saved.

A key belongs in the environment, named by `api_key_env`: anything in `params` is written verbatim
into the run's `config.yaml`, sent with every request and part of the cache key. A pasted key can sit
at any depth (`params.extra_body.auth.key`, `params.default_headers.Authorization`), under any name,
or under an innocent name with a key-shaped value; `find_credentials` looks for all three and returns
only *where* it found them, so that no error message or log line ever repeats a secret.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Names that carry credentials (`api_key`, `x-api-key`, `Authorization`, `client_secret`, `token` ...).
_SECRET_NAME = re.compile(
    r"(^|[_.-])(api_?key|apikey|key|token|secret|password|passwd|passphrase|credentials?|auth|bearer|cookie)$"
    r"|authorization|^(x-)?api-?key|private_?key|client_?secret|access_?key",
    re.IGNORECASE,
)
# ...except a tokenizer's special tokens (chat-template parameters set them) and non-secret keys.
_HARMLESS_NAME = re.compile(
    r"^(eos|bos|pad|stop|sep|cls|unk|mask|special|end|start|image)_tokens?$"
    r"|^(prompt_cache|idempotency|cache|sort|group|partition)_key$",
    re.IGNORECASE,
)

# Values shaped like a provider's key, whatever name they sit under.
_SECRET_VALUE = re.compile(
    r"^\s*(bearer|basic|token)\s+\S{8,}"  # an Authorization header's value
    r"|\b(sk|pk|rk)-[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic (sk-ant-...), Stripe-style
    r"|\bhf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"  # GitHub
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|\b(gsk|r8|pplx|nvapi|fw)_[A-Za-z0-9_-]{20,}"  # Groq, Replicate, Perplexity, NVIDIA, Fireworks
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.",  # a JWT
    re.IGNORECASE,
)
# A long run of key alphabet: checked for randomness below (a model or file name is not random).
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_+/=-]{32,}")


def looks_random(token: str) -> bool:
    """Whether `token` (>= 32 key-alphabet characters) reads like a random key rather than a name.

    A random key is one or two long runs that mix lower case, upper case and digits, switching
    between them at most characters (about 60% for base62); a model or file name is many short
    words (`Qwen2_5-72B-Instruct-AWQ`), and an identifier switches only at word starts. Hex digests
    (no upper case) are not flagged: too many harmless ids are hex.
    """
    if len(re.split(r"[+/=_-]+", token.strip("+/=_-"))) > 4:
        return False
    letters = re.sub(r"[^A-Za-z0-9]", "", token)
    if not (
        any(c.islower() for c in letters)
        and any(c.isupper() for c in letters)
        and any(c.isdigit() for c in letters)
    ):
        return False
    counts = Counter(letters)
    entropy = -sum(n / len(letters) * math.log2(n / len(letters)) for n in counts.values())

    def kind(c: str) -> int:
        return 0 if c.islower() else 1 if c.isupper() else 2

    switches = sum(kind(a) != kind(b) for a, b in itertools.pairwise(letters)) / (len(letters) - 1)
    return entropy >= 4.0 and switches >= 0.4


def secret_like(value: str) -> bool:
    """Whether a string value looks like a credential (a known key format, or a long random token)."""
    if _SECRET_VALUE.search(value):
        return True
    return any(looks_random(run) for run in _TOKEN_RUN.findall(value))


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every entry nested in `value` (mappings and lists, to any depth)."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{_shown_key(key)}" if path else _shown_key(key)
            yield where, key, item
            yield from _walk(item, where)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            yield where, None, item
            yield from _walk(item, where)


def _shown_key(key: Any) -> str:
    """A key as a path segment: cut to 40 characters, and hidden when the key itself is a secret."""
    text = str(key)
    if secret_like(text):
        return "<a key-shaped name>"
    return text if len(text) <= 40 else text[:40] + "..."


def _holds_value(value: Any) -> bool:
    """A credential-named entry is harmless when it holds nothing (null, false, an empty string)."""
    return not (value is None or value is False or value == "" or value == {} or value == [])


def _secret_name(key: Any, value: Any) -> bool:
    """Whether a mapping key is itself key-shaped, or names a credential and holds something."""
    if key is None:
        return False
    name = str(key)
    if secret_like(name):
        return True
    return bool(_SECRET_NAME.search(name)) and not _HARMLESS_NAME.match(name) and _holds_value(value)


def url_holds_credentials(url: str) -> bool:
    """Whether an endpoint URL carries a credential: `user:password@`, a key-named query parameter
    (`?api_key=...`), or a key-shaped token anywhere in it."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return (
        bool(parts.password)
        or secret_like(url)
        or bool(find_credentials({k: v or "x" for k, v in query.items()}))
    )


def find_credentials(params: dict[str, Any]) -> list[str]:
    """Paths (never values) inside `params` that hold, or are named like, a credential."""
    found: list[str] = []
    for where, key, value in _walk(params, ""):
        if _secret_name(key, value) or (isinstance(value, str) and secret_like(value)):
            found.append(where)
    # A credential-named mapping is reported once, not again for each entry inside it.
    return [w for w in found if not any(w != o and w.startswith((o + ".", o + "[")) for o in found)]
