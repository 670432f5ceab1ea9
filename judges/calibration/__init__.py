"""`factory calibrate`: judge settings over a human-labelled set, scored, ranked and decided against
a threshold.

Modules:
- `calibrate`: calibrate judge settings against a human-labelled set: expand, judge, score, rank, write agreement.json.
- `decision`: a kappa read against a threshold through its interval: pass, fail or undecided, and the n that decides.
- `table`: run a judge setting over a table of pairs: a file, a human-labelled set, or a polars frame.
"""

__all__ = ["calibrate", "decision", "table"]
