"""The dataset a build writes: which rows it keeps, TRL row formats, the split, the Hub layout,
the dataset card and the human review queue.

Modules:
- `card`: the dataset card (`dataset/README.md`): Hub YAML metadata plus a description of how the data was made.
- `decide`: which rows the dataset keeps, decided in one pass before anything is written.
- `review_queue`: contested pairs to people, and people's labels back into the pairs.
- `rows`: the dataset's row formats: TRL's conversational preference (`dpo`) and unpaired (`kto`) rows, and MAPL's prompt-level preferences (`mapl_intra`), built from rows of the run's tables.
- `shard_parts`: where the dataset's rows come from, in pieces small enough to hold one at a time.
- `writer`: the dataset written at the end of a build: TRL formats, dedupe, a leak-free split, Hub layout.
"""

__all__ = ["card", "decide", "review_queue", "rows", "shard_parts", "writer"]
