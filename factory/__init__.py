"""Synthetic preference dataset factory: prompts in, judged and verified DPO/KTO pairs out."""

__version__ = "0.1.0"
