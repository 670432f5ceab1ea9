"""How a judge setting is described: one judge, a jury of judges, or a debate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["direct", "independent", "combined"]
Order = Literal["fixed", "random", "both"]
Reducer = Literal["plurality", "mean_score", "weighted"]


class DebateSettings(BaseModel):
    """ChatEval-style debate (the Fellowship paper's setup by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roles: tuple[str, ...] = Field(("General Public", "Psychologist", "Critic"), min_length=1,
                                   description="Debater personas, each played by the same model.")
    rounds: int = Field(2, ge=1, le=10, description="Rounds; in each round every role speaks once, in order.")
    verdict: Literal["mean_score"] = Field("mean_score", description="Verdict rule: compare mean final scores.")


class JudgeSetting(BaseModel):
    """One way of judging a pair. `models` are role names (or litellm model strings in calibration)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["judge", "jury", "debate"] = Field("judge", description="Single judge, jury of judges, or debate.")
    models: tuple[str, ...] = Field(("judge",), min_length=1,
                                    description="Judge model roles; a jury has one juror per entry.")
    protocol: Protocol = Field("combined", description="Prompting strategy of the Fellowship paper.")
    scale: Literal[5, 10, 100] = Field(10, description="Score scale of the combined protocol.")
    order: Order = Field("fixed", description="fixed (paper), random (seeded flip), both (swap; disagreement = tie).")
    structured: bool = Field(False, description="Ask for JSON-schema output instead of '###' lines.")
    reducer: Reducer = Field("plurality", description="How a jury combines its jurors' verdicts.")
    weights: tuple[float, ...] | None = Field(None, description="Juror weights for the weighted reducer "
                                              "(e.g. each juror's kappa against humans).")
    debate: DebateSettings = Field(default_factory=DebateSettings, description="Debate options (kind=debate).")
    seed: int = Field(0, description="Seed of the random order.")

    @model_validator(mode="after")
    def _check(self) -> "JudgeSetting":
        if self.kind == "judge" and len(self.models) != 1:
            raise ValueError(f"a single judge takes one model, got {len(self.models)}: use kind: jury")
        if self.weights is not None and len(self.weights) != len(self.models):
            raise ValueError(f"got {len(self.weights)} weights for {len(self.models)} jurors")
        if self.reducer == "weighted" and self.weights is None:
            raise ValueError("reducer 'weighted' needs weights (one per juror)")
        return self

    @property
    def setting_id(self) -> str:
        """A readable id, stable across runs, e.g. `jury[a+b+c]/combined10/both/plurality`."""
        proto = f"{self.protocol}{self.scale}" if self.protocol == "combined" else self.protocol
        ident = f"{self.kind}[{'+'.join(self.models)}]/{proto}/{self.order}"
        if self.structured:
            ident += "/json"
        if self.kind == "jury":
            ident += f"/{self.reducer}"
        if self.kind == "debate":
            ident += f"/r{self.debate.rounds}"
        return ident
