#!/usr/bin/env python3
"""distilabel's equivalent of a minimal preference build: 2 generations per prompt, then an
UltraFeedback judge over both, against an OpenAI-compatible endpoint. Prints pairs/s.

Usage: distilabel_pairs.py BASE_URL N_PROMPTS CONCURRENCY
"""

import logging
import os
import sys
import tempfile
import time

os.environ.setdefault("DISTILABEL_CACHE_DIR", tempfile.mkdtemp())
logging.disable(logging.WARNING)
from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import GroupColumns, LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration, UltraFeedback

base, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def llm(name):
    return OpenAILLM(model=name, base_url=base, api_key="x", generation_kwargs={"max_new_tokens": 64})


with Pipeline(name="bench") as p:
    load = LoadDataFromDicts(
        data=[{"instruction": f"Question {i}: explain item {i}."} for i in range(n)], batch_size=c
    )
    g1 = TextGeneration(llm=llm("gen-a"), input_batch_size=c)
    g2 = TextGeneration(llm=llm("gen-b"), input_batch_size=c)
    group = GroupColumns(
        columns=["generation", "model_name"],
        output_columns=["generations", "generation_models"],
        input_batch_size=c,
    )
    judge = UltraFeedback(llm=llm("judge"), aspect="overall-rating", input_batch_size=c)
    load >> [g1, g2] >> group >> judge
t = time.time()
ds = p.run(use_cache=False)
dt = time.time() - t
rows = ds["default"]["train"]
ok = sum(1 for r in rows if r.get("ratings") and None not in r["ratings"])
print(
    f"distilabel {__import__('distilabel').__version__}: {ok}/{n} judged pairs in {dt:.1f} s = {ok / dt:.2f} pairs/s at batch size {c}"
)
