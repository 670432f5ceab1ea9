"""`python -m factory.release.train.worker SPEC.json`: one training process, as started by `accelerate launch`.

`factory train` writes the spec (`factory.release.train.trainer.TrainSpec`) and the accelerate config into the run
folder and launches this module on every process; each runs `factory.release.train.trainer.run_training(spec)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from factory._util.errors import UserError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m factory.release.train.worker SPEC.json", file=sys.stderr)
        return 2
    from factory.release.train.trainer import TrainSpec, run_training

    try:
        run_training(TrainSpec.from_json(Path(args[0])))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
