"""`factory train`: TRL's DPO/KTO trainers (and RDPO) on a run's dataset, launched through accelerate,
with held-out evaluation and a report written into the dataset card.

Modules:
- `evaluate`: held-out evaluation of a preference-trained model: DPO implicit-reward accuracy and margins on `test`.
- `launch`: `accelerate launch` for `factory train`: the accelerate config and the training spec, written into the run folder, and the one command that runs them (what `--dry-run` prints).
- `model`: which model `factory train --model NAME` trains, and loading it with its tokenizer (chat template included).
- `rdpo`: rationale-augmented DPO (RDPO, arXiv 2407.14477) on top of TRL's `DPOTrainer`.
- `report`: what a training run says about the data, written where readers look: the dataset card and the run's report.
- `tiny`: a randomly initialised 1-layer Llama with a byte-level tokenizer: `factory train --smoke` proves on CPU, in seconds, that TRL consumes the run's data as written (nothing downloaded, nothing learnt).
- `trainer`: trainer hand-off: TRL's DPO / KTO trainers (and RDPO) on a run's dataset exactly as written, then a held-out evaluation on its test split.
- `worker`: `python -m factory.release.train.worker SPEC.json`: one training process, as started by `accelerate launch`.
"""

__all__ = ["evaluate", "launch", "model", "rdpo", "report", "tiny", "trainer", "worker"]
