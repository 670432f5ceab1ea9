"""What every stage of a build gets: the config, the run folder, the gateway, a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from factory.config import BuildConfig
from factory.llm import Gateway
from factory.pipeline.progress import BuildProgress
from factory.run.folder import RunFolder


@dataclass
class BuildContext:
    config: BuildConfig
    run: RunFolder
    gateway: Gateway
    progress: BuildProgress = field(default_factory=BuildProgress)

    def rng(self, *parts: object) -> random.Random:
        """A seeded RNG for one decision, independent of the order in which items are processed."""
        return random.Random(f"{self.config.run.seed}/" + "/".join(str(p) for p in parts))
