"""What a build reads: prompt sources (files, public sets, Hugging Face datasets), chat columns,
row filters, and multi-turn prompts as conversations.

Modules:
- `chat_prompts`: a chat `messages` column (OpenAI/TRL `role`/`content`, or ShareGPT `from`/`value`) read as prompt turns.
- `conversation`: multi-turn prompts as chat messages: the user turns with the shared earlier answers between them.
- `hub_source`: prompt rows from a Hugging Face dataset, through `datasets.load_dataset`.
- `prompt_sources`: prompt sources: local files (jsonl, json, csv, parquet, txt), public prompt sets by name, and Hugging Face datasets (`factory.inputs.hub_source`), with an optional row filter (`factory.inputs.row_filter`).
- `row_filter`: `prompts.where`: which rows of a prompt source to keep, as data rather than code.
"""

__all__ = ["chat_prompts", "conversation", "hub_source", "prompt_sources", "row_filter"]
