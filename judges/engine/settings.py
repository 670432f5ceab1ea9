"""How a judge setting is described: one judge, a jury of judges, or a debate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["direct", "independent", "combined"]
Order = Literal["fixed", "random", "both"]
Reducer = Literal["plurality", "mean_score", "weighted"]

# ChatEval's referee personas, as the Fellowship paper used them; other role names get a generic line.
CHATEVAL_ROLES: dict[str, str] = {
    "General Public": "You are interested in the question and care about whether the answers are useful "
    "to an ordinary reader. Think critically by yourself and say which of the two responses is better.",
    "Psychologist": "You study human behavior and mental processes in order to understand and explain "
    "what people need from an answer. Help the other referees determine which response is the better one.",
    "Critic": "You check for fluent writing, clear sentences, correctness and good wording. Question the "
    "other referees' judgements to make sure they are well considered, and offer an alternative view "
    "if the two responses look equally good.",
}


class DebateSettings(BaseModel):
    """ChatEval-style debate (the Fellowship paper's setup by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    roles: tuple[str, ...] = Field(
        ("General Public", "Psychologist", "Critic"),
        min_length=1,
        description="Debater personas, each played by the same model.",
    )
    descriptions: tuple[str, ...] | None = Field(
        None,
        description="One persona description per role; None uses ChatEval's for its three roles "
        "and a generic referee line for any other.",
    )
    rounds: int = Field(2, ge=1, le=10, description="Rounds; in each round every role speaks once, in order.")
    verdict: Literal["mean_score"] = Field(
        "mean_score", description="Verdict rule: compare mean final scores."
    )

    @model_validator(mode="after")
    def _check(self) -> DebateSettings:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"debate roles must be distinct, got {list(self.roles)}")
        if self.descriptions is not None and len(self.descriptions) != len(self.roles):
            raise ValueError(f"got {len(self.descriptions)} role descriptions for {len(self.roles)} roles")
        return self

    def description(self, index: int) -> str:
        """The persona line of role number `index`."""
        if self.descriptions is not None:
            return self.descriptions[index]
        return CHATEVAL_ROLES.get(
            self.roles[index],
            "Judge the two responses carefully and fairly, and discuss your view with the other referees.",
        )


class JudgeSetting(BaseModel):
    """One way of judging a pair. `models` are role names (or litellm model strings in calibration).

    Example::

        JudgeSetting(kind="jury", models=("judge_a", "judge_b", "judge_c"), order="both")
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["judge", "jury", "debate"] = Field(
        "judge", description="Single judge, jury of judges, or debate."
    )
    models: tuple[str, ...] = Field(
        ("judge",),
        min_length=1,
        description="Judge model roles or litellm model strings; a jury has one "
        "juror per entry unless `jurors` is given.",
    )
    api_base: str | None = Field(
        None,
        description="Endpoint for entries of `models` that are litellm model "
        "strings rather than roles (calibration from command-line flags).",
    )
    protocol: Protocol = Field("combined", description="Prompting strategy of the Fellowship paper.")
    scale: Literal[5, 10, 100] = Field(
        10, description="Score scale of the combined and independent protocols."
    )
    order: Order = Field(
        "fixed", description="fixed (paper), random (seeded flip), both (swap; disagreement = tie)."
    )
    structured: bool = Field(False, description="Ask for JSON-schema output instead of '###' lines.")
    reducer: Reducer = Field("plurality", description="How a jury combines its jurors' verdicts.")
    weights: tuple[float, ...] | None = Field(
        None,
        description="Juror weights for the weighted reducer "
        "(e.g. each juror's kappa against humans; below 0 counts as 0).",
    )
    jurors: tuple[JudgeSetting, ...] | None = Field(
        None,
        description="A heterogeneous jury: one full setting per juror (own model, protocol, order). "
        "None: one juror per entry of `models`, sharing this setting's protocol, scale and order.",
    )
    debate: DebateSettings = Field(
        default_factory=DebateSettings, description="Debate options (kind=debate)."
    )
    seed: int = Field(0, description="Seed of the random order.")

    @model_validator(mode="after")
    def _check(self) -> JudgeSetting:
        if self.kind == "judge" and len(self.models) != 1:
            raise ValueError(f"a single judge takes one model, got {len(self.models)}: use kind: jury")
        if self.kind == "debate":
            if len(self.models) != 1:
                raise ValueError(f"a debate is played by one model, got {len(self.models)}")
            if self.protocol != "combined" or self.scale != 10:
                raise ValueError("a debate scores both answers out of 10: use protocol combined, scale 10")
        if self.jurors is not None and self.kind != "jury":
            raise ValueError(f"jurors are for kind: jury, not kind: {self.kind}")
        if self.jurors is not None and not self.jurors:
            raise ValueError("jurors is empty: give at least one juror setting")
        count = len(self.jurors) if self.jurors is not None else len(self.models)
        if self.weights is not None and len(self.weights) != count:
            raise ValueError(f"got {len(self.weights)} weights for {count} jurors")
        if self.reducer == "weighted" and self.weights is None:
            raise ValueError("reducer 'weighted' needs weights (one per juror)")
        return self

    def juror_settings(self) -> tuple[JudgeSetting, ...]:
        """The jurors of a jury: `jurors` as given, else one single judge per model sharing this setting."""
        if self.jurors is not None:
            return self.jurors
        return tuple(
            JudgeSetting(
                kind="judge",
                models=(model,),
                api_base=self.api_base,
                protocol=self.protocol,
                scale=self.scale,
                order=self.order,
                structured=self.structured,
                seed=self.seed,
            )
            for model in self.models
        )

    @property
    def setting_id(self) -> str:
        """A readable id, stable across runs, e.g. `jury[a+b+c]/combined10/both/plurality`."""
        if self.kind == "jury" and self.jurors is not None:
            ident = f"jury[{' + '.join(j.setting_id for j in self.jurors)}]"
        else:
            proto = (
                f"{self.protocol}{self.scale}"
                if self.protocol in ("combined", "independent")
                else self.protocol
            )
            if self.protocol == "independent" and self.scale == 10:
                proto = "independent"  # the paper's only scale: keep the short, historical id
            ident = f"{self.kind}[{'+'.join(self.models)}]/{proto}/{self.order}"
            if self.structured:
                ident += "/json"
        if self.kind == "jury":
            ident += f"/{self.reducer}"
        if self.kind == "debate":
            ident += f"/r{self.debate.rounds}"
            if self.debate.roles != DebateSettings().roles:
                ident += f"/{'+'.join(self.debate.roles)}"
        if self.order == "random" and self.seed != 0 and self.jurors is None:
            ident += f"/seed{self.seed}"
        return ident
