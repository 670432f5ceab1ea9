"""The distilabel side of `benchmarks.vs_distilabel`, run with the Python of distilabel's own venv.

The same call graph as the factory's build without rationales: two generations per prompt (two
`TextGeneration` steps over one `OpenAILLM`), `GroupColumns` to pair them, then a pairwise judge
(`TextGeneration` with the factory's own combined-score judge prompt as its template and system
prompt), against the same fake OpenAI server. Built with distilabel's documented pipeline API.

    benchmarks/.venv-distilabel/bin/python benchmarks/distilabel_pipeline.py \
        --base-url URL --prompts N --batch-size B --judge-json judge.json --cache-dir DIR

Prints one JSON line: wall seconds of `pipeline.run`, rows out, judged rows, distilabel's version.
This file must not import the factory: it runs where only distilabel is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--prompts", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True, help="input_batch_size of every LLM step")
    parser.add_argument(
        "--judge-json",
        required=True,
        help='{"system": ..., "template": ...}: Jinja using instruction, answer_a, answer_b',
    )
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--max-tokens", type=int, default=256)
    ns = parser.parse_args()

    import distilabel
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import GroupColumns, LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with open(ns.judge_json, encoding="utf-8") as handle:
        judge = json.load(handle)
    # The factory's judge prompt names the answers `answer_a` / `answer_b`; distilabel checks that
    # every input column appears in the template, so unpack `generations` in a Jinja statement.
    template = "{% set answer_a, answer_b = generations[0], generations[1] %}" + judge["template"]
    topics = (
        "photosynthesis",
        "compound interest",
        "binary search",
        "the water cycle",
        "plate tectonics",
        "vaccines",
        "inflation",
        "recursion",
        "supply chains",
        "black holes",
    )
    data = [
        {"instruction": f"Explain {topics[i % len(topics)]} to a curious student (question {i})."}
        for i in range(ns.prompts)
    ]

    def llm(temperature: float) -> OpenAILLM:
        # max_retries=0 like the factory's benchmark: the fake server never fails here.
        return OpenAILLM(
            model="fake",
            base_url=ns.base_url,
            api_key="no-key",
            max_retries=0,
            timeout=120,
            generation_kwargs={"temperature": temperature, "max_new_tokens": ns.max_tokens},
        )

    with Pipeline(name="factory-benchmark", cache_dir=ns.cache_dir) as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=ns.batch_size)
        # Two samples of one generator, as the factory's build (different temperatures so the two
        # requests differ, as the factory's differ by seed).
        gen_a = TextGeneration(name="generate_a", llm=llm(0.7), input_batch_size=ns.batch_size)
        gen_b = TextGeneration(name="generate_b", llm=llm(0.8), input_batch_size=ns.batch_size)
        pair = GroupColumns(
            columns=["generation", "model_name"],
            output_columns=["generations", "model_names"],
            input_batch_size=ns.batch_size,
        )
        judge_step = TextGeneration(
            name="judge",
            llm=llm(0.0),
            template=template,
            system_prompt=judge["system"],
            columns=["instruction", "generations"],
            output_mappings={"generation": "judgment"},
            input_batch_size=ns.batch_size,
        )
        load >> [gen_a, gen_b] >> pair >> judge_step

    started = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    wall = time.perf_counter() - started
    rows = distiset["default"]["train"]
    judged = sum(1 for r in rows if r.get("judgment") and "### Score Assistant A" in r["judgment"])
    print(
        json.dumps(
            {
                "distilabel_version": distilabel.__version__,
                "wall_s": round(wall, 3),
                "rows": len(rows),
                "judged": judged,
                "batch_size": ns.batch_size,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
