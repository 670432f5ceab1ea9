#!/usr/bin/env python3
"""Bespoke Curator's equivalent of a minimal preference build: 2 generations per prompt, then a
pairwise judge over both (combined-score prompt), against an OpenAI-compatible endpoint.
Three Curator LLM stages over the dataset, as a Curator user writes it. Prints pairs/s.

Usage: curator_pairs.py BASE_URL N_PROMPTS CONCURRENCY
Run it with a venv that has bespokelabs-curator; set CURATOR_CACHE_DIR to a fresh folder.
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TELEMETRY_ENABLED", "false")
os.environ.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")
os.environ.setdefault("CURATOR_CACHE_DIR", tempfile.mkdtemp())
os.environ.setdefault("CURATOR_DISABLE_CACHE", "1")
os.environ.setdefault("OPENAI_API_KEY", "x")
from bespokelabs import curator
from datasets import Dataset

base, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
params = {
    "base_url": base,
    "api_key": "x",
    "max_concurrent_requests": c,
    "max_requests_per_minute": 10_000_000,
    "max_tokens_per_minute": 10_000_000_000,
    "require_all_responses": False,
}


class Gen(curator.LLM):
    def __init__(self, col, **kw):
        self.col = col
        super().__init__(**kw)

    def prompt(self, row):
        return row["instruction"]

    def parse(self, row, response):
        return {**row, self.col: response}


class Judge(curator.LLM):
    def prompt(self, row):
        return (
            f"[Question]\n{row['instruction']}\n\n[Assistant A]\n{row['a']}\n\n[Assistant B]\n{row['b']}\n\n"
            "Score Assistant A and Score Assistant B out of 10."
        )

    def parse(self, row, response):
        import re

        s = re.findall(r"(\d+)/10", response)
        return {**row, "score_a": int(s[0]) if s else None, "score_b": int(s[1]) if len(s) > 1 else None}


ds = Dataset.from_list([{"instruction": f"Question {i}: explain item {i}."} for i in range(n)])
t = time.time()
ds = Gen("a", model_name="gen-a", backend="openai", backend_params=params)(ds).dataset
ds = Gen("b", model_name="gen-b", backend="openai", backend_params=params)(ds).dataset
ds = Judge(model_name="judge", backend="openai", backend_params=params)(ds).dataset
dt = time.time() - t
ok = sum(1 for r in ds if r["score_a"] is not None and r["score_b"] is not None)
print(
    f"curator {curator.__version__ if hasattr(curator, '__version__') else ''}: {ok}/{n} judged pairs in "
    f"{dt:.1f} s = {ok / dt:.2f} pairs/s at concurrency {c}"
)
