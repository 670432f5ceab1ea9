"""The public human-labelled preference sets the factory knows by name, and how to get their files.

Each set has one canonical raw URL, the sha256 of the file at that URL and its license. A file is
looked for, in this order:

1. the `data_dir` argument (a folder laid out like the project's reference data, e.g.
   `calibration/pandalm/testset-v1.json`); when given, the file must be there;
2. the folder named by `FACTORY_DATA_DIR` (same layout; a missing file falls through);
3. the cache, `FACTORY_CACHE_DIR` or `~/.cache/preference-factory/` (same layout);
4. a download from the canonical URL into the cache, checked against the checksum.

Example:
    >>> path = resolve_public_file(PUBLIC_SETS["pandalm"], data_dir="../shared/data")
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from factory._util.atomic_files import create_temporary_sibling
from factory._util.errors import UserError

DATA_DIR_ENV = "FACTORY_DATA_DIR"
CACHE_DIR_ENV = "FACTORY_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 60.0

_PANDALM = "https://raw.githubusercontent.com/WeOpenML/PandaLM/main/data/testset-v1.json"
_LLMBAR = "https://raw.githubusercontent.com/princeton-nlp/LLMBar/main/Dataset"
_HHH = "https://raw.githubusercontent.com/google/BIG-bench/main/bigbench/benchmark_tasks/hhh_alignment"
_BIASBENCH = "https://raw.githubusercontent.com/ncsoft/offsetbias/main/data/evalbiasbench/biasbench.json"


@dataclass(frozen=True)
class PublicSet:
    """One downloadable file of human-labelled pairs.

    `format` names the parser in `judges.humans.human_sets` (`pandalm`, `llmbar`, `hhh`, `evalbiasbench`);
    the parsers live there so that this module stays a plain table plus the fetch logic.
    """

    name: str
    relpath: str  # where the file sits under a data dir or the cache
    url: str
    sha256: str
    license: str
    format: str
    rows: int  # rows in the pinned file; a quick sanity figure for users and tests


def _llmbar(name: str, relpath: str, upstream: str, sha256: str, rows: int) -> PublicSet:
    return PublicSet(
        name,
        f"calibration/llmbar/{relpath}",
        f"{_LLMBAR}/{upstream}/dataset.json",
        sha256,
        "MIT",
        "llmbar",
        rows,
    )


def _hhh(subset: str, sha256: str, rows: int) -> PublicSet:
    return PublicSet(
        f"hhh-{subset}",
        f"calibration/hhh_alignment/{subset}.task.json",
        f"{_HHH}/{subset}/task.json",
        sha256,
        "Apache-2.0",
        "hhh",
        rows,
    )


_ENTRIES = [
    PublicSet(
        "pandalm",
        "calibration/pandalm/testset-v1.json",
        _PANDALM,
        "cc154f9067c7382d7ea86f8f246511a5e1ac87e1fddd845c5938d789505b07a4",
        "Apache-2.0",
        "pandalm",
        999,
    ),
    _llmbar(
        "llmbar-natural",
        "LLMBar_Natural.json",
        "LLMBar/Natural",
        "f7127b7aa78104cb8e03a2b1b3ac0077e95b125714dd441a8ee63666145a3375",
        100,
    ),
    _llmbar(
        "llmbar-adversarial-neighbor",
        "LLMBar_Adversarial_Neighbor.json",
        "LLMBar/Adversarial/Neighbor",
        "6712c7eda6342602e0bc7c06c282fa95e2110d4e741a284026a62d937f9780a0",
        134,
    ),
    _llmbar(
        "llmbar-adversarial-gptinst",
        "LLMBar_Adversarial_GPTInst.json",
        "LLMBar/Adversarial/GPTInst",
        "1002425f73c2cf54b6e6de99bce3f6c60fa2a17d13194772e37d7481c1351d42",
        92,
    ),
    _llmbar(
        "llmbar-adversarial-gptout",
        "LLMBar_Adversarial_GPTOut.json",
        "LLMBar/Adversarial/GPTOut",
        "1ff56e520d7607750a9866a3be0f5b850392ca4477a1f69d80f32bd3e310f561",
        47,
    ),
    _llmbar(
        "llmbar-adversarial-manual",
        "LLMBar_Adversarial_Manual.json",
        "LLMBar/Adversarial/Manual",
        "0d9598769a39cdbbd265778c37e49939d41d5f76dcfb17bd75dcfa07516d3837",
        46,
    ),
    _llmbar(
        "llmbar-mtbench",
        "Processed_MT-Bench.json",
        "Processed/MT-Bench",
        "c152249bc095d152485954bd2abd9ea79528ee5e4c045bfe9ef78755b03c20d8",
        200,
    ),
    # The upstream folder is literally named "LLMEval^2"; the caret must be percent-encoded.
    _llmbar(
        "llmbar-llmeval2",
        "Processed_LLMEval_2.json",
        "Processed/LLMEval%5E2",
        "deffdaeccda39c0fb9337c7e20925ec2b973bfd456832c2f1ba0e9ca4cf107de",
        200,
    ),
    _hhh("helpful", "1bd2a58d9bb17b26af4806e8302374cea60671dc387fbfc2c5aa5c23e0901628", 59),
    _hhh("harmless", "4720acbc916cc18413e48c6bb55c19af73400436a6304c7e110b8bb40f8952a1", 58),
    _hhh("honest", "69ba96e5bff121327ad1366e3772b7b45c50e96e7f995b2cef62c350380f1b14", 61),
    _hhh("other", "4d6b041d79e5bf2705a9f81994efb95274179faaba9270f6dc83bd0cd17c227e", 43),
    PublicSet(
        "evalbiasbench",
        "calibration/evalbiasbench/biasbench.json",
        _BIASBENCH,
        "766684b9fedbd38ae3b5595a8ab0a7ea1abc51683d6e3a0cf8583688eaa09544",
        "BSD-3-Clause",
        "evalbiasbench",
        80,
    ),
]

PUBLIC_SETS: dict[str, PublicSet] = {entry.name: entry for entry in _ENTRIES}
"""Every single-file public set, by name."""

SET_GROUPS: dict[str, list[str]] = {
    "hhh": ["hhh-helpful", "hhh-harmless", "hhh-honest", "hhh-other"],
    "llmbar-adversarial": [
        "llmbar-adversarial-neighbor",
        "llmbar-adversarial-gptinst",
        "llmbar-adversarial-gptout",
        "llmbar-adversarial-manual",
    ],
    "llmbar": [
        "llmbar-natural",
        "llmbar-adversarial-neighbor",
        "llmbar-adversarial-gptinst",
        "llmbar-adversarial-gptout",
        "llmbar-adversarial-manual",
    ],
}
"""Names that stand for several sets loaded one after the other.

LLMBar's own "LLMBar" benchmark is natural + adversarial; the processed sets are extra."""


def known_set_names() -> list[str]:
    """All names `load_human_set` accepts as a public set, sorted."""
    return sorted([*PUBLIC_SETS, *SET_GROUPS])


def set_members(name: str) -> list[PublicSet]:
    """The files behind a public set name (one, or several for a group); UserError if unknown."""
    key = name.strip().lower()
    if key in PUBLIC_SETS:
        return [PUBLIC_SETS[key]]
    if key in SET_GROUPS:
        return [PUBLIC_SETS[member] for member in SET_GROUPS[key]]
    raise UserError(
        f"unknown human set {name!r}; known sets: {', '.join(known_set_names())} "
        "(or pass a file path, or hf://owner/name)"
    )


def cache_dir() -> Path:
    """The download cache: `$FACTORY_CACHE_DIR`, else `~/.cache/preference-factory`."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "preference-factory"


def resolve_public_file(
    entry: PublicSet,
    *,
    data_dir: str | Path | None = None,
    url: str | None = None,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Return a local path to `entry`'s file, downloading it into the cache when nowhere else has it.

    `url` replaces the canonical URL (a mirror, or a local test server); the checksum still applies.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser() / entry.relpath
        if not path.is_file():
            raise UserError(
                f"{entry.name}: {path} not found (data_dir should be laid out like "
                f"<data_dir>/{entry.relpath})"
            )
        return path
    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        path = Path(env_dir).expanduser() / entry.relpath
        if path.is_file():
            return path
    cached = cache_dir() / entry.relpath
    if cached.is_file():
        return cached
    return download(entry, cached, url=url or entry.url, timeout_s=timeout_s)


def download(entry: PublicSet, dest: Path, *, url: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch `url` to `dest` atomically, keeping it only if its sha256 matches `entry.sha256`."""
    hint = f"download it yourself and pass data_dir=... or set {DATA_DIR_ENV} (layout <dir>/{entry.relpath})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the destination and rename: a killed download never leaves a half file in the cache.
    fd, tmp_name = create_temporary_sibling(dest, ".part")  # mode 0666 less the umask, unlike mkstemp
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise UserError(f"{entry.name}: cannot download {url} ({reason}); {hint}") from exc
    got = digest.hexdigest()
    if got != entry.sha256:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"{entry.name}: checksum mismatch for {url} (expected sha256 {entry.sha256[:16]}..., "
            f"got {got[:16]}...); {hint}"
        )
    os.replace(tmp, dest)
    return dest


# Public prompt sets: canonical URL and checksum; a local copy is found through FACTORY_DATA_DIR,
# then the download cache (same machinery as the human-labelled sets).
PUBLIC_PROMPT_SETS: dict[str, PublicSet] = {
    "mt_bench": PublicSet(
        name="mt_bench",
        relpath="prompts/mt_bench_question.jsonl",
        url="https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/question.jsonl",
        sha256="119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
        license="Apache-2.0",
        format="jsonl",
        rows=80,
    ),
    "alpaca_eval": PublicSet(
        name="alpaca_eval",
        relpath="prompts/alpaca_eval_805_text_davinci_003_outputs.json",
        url="https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/results/text_davinci_003/model_outputs.json",
        sha256="af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b",
        license="Apache-2.0",
        format="json",
        rows=805,
    ),
    "ifeval": PublicSet(
        name="ifeval",
        relpath="prompts/ifeval_input_data.jsonl",
        url="https://raw.githubusercontent.com/google-research/google-research/master/"
        "instruction_following_eval/data/input_data.jsonl",
        sha256="67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
        license="Apache-2.0",
        format="jsonl",
        rows=541,
    ),
    "gsm8k": PublicSet(
        name="gsm8k",
        relpath="prompts/gsm8k_test.jsonl",
        url="https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
        sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        license="MIT",
        format="jsonl",
        rows=1319,
    ),
}
