"""`factory calibrate`: judge settings over a human-labelled set, scored, ranked and decided against
a threshold.

Modules:
- `agreement`: the agreement.json document: settings read against the threshold and the baselines, the outcome.
- `calibrate`: the entry point: load the human set, run the sweep (or score a judgments file), write the run folder.
- `config`: the calibration config (human set, judge models, settings to sweep) and its YAML loader.
- `decision`: a kappa read against a threshold through its interval: pass, fail or undecided, and the n that decides.
- `outputs`: the run folder's files: calibration.yaml, judgments.parquet, agreement.json and the report.
- `sweep`: settings expanded from a config, judged over the human set (juries reduced from jurors), scored, ranked.
- `table`: run a judge setting over a table of pairs: a file, a human-labelled set, or a polars frame.
"""

__all__ = ["agreement", "calibrate", "config", "decision", "outputs", "sweep", "table"]
