"""factory/release/train/rdpo.py subclasses private hooks of TRL's DPOTrainer; pyproject pins the TRL range they were
checked against. These tests fail when the installed TRL is outside that range, or when a hook RDPO
overrides (or an attribute it reads) is gone or changed shape, before a user's training run would."""

from __future__ import annotations

import inspect
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def _pinned(name: str) -> Requirement:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found = [Requirement(r) for r in extras["train"] if Requirement(r).name == name]
    assert len(found) == 1, f"{name} must be listed once in the train extra"
    return found[0]


def test_trl_has_an_upper_bound_and_the_installed_version_is_inside_it() -> None:
    spec = _pinned("trl").specifier
    assert any(s.operator in ("<", "<=", "==", "~=") for s in spec), f"trl is not bounded above: {spec}"
    installed = metadata.version("trl")
    assert spec.contains(installed), f"installed trl {installed} is outside the pinned range {spec}"


# Each hook RDPOTrainer overrides, with the parameters it calls super() with.
HOOKS = {
    "_prepare_dataset": ["dataset", "processing_class", "args", "dataset_name"],
    "_set_signature_columns_if_needed": [],
    "_compute_loss": ["model", "inputs", "return_outputs"],
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_the_hooks_rdpo_overrides_exist_with_the_same_parameters(hook: str) -> None:
    from trl import DPOTrainer

    from factory.release.train.rdpo import RDPOTrainer

    assert hook in vars(RDPOTrainer), f"RDPOTrainer no longer overrides {hook}: update HOOKS"
    base = getattr(DPOTrainer, hook, None)
    assert callable(base), f"trl's DPOTrainer has no {hook}; factory/release/train/rdpo.py must be ported"
    params = [p for p in inspect.signature(base).parameters if p != "self"]
    assert params == HOOKS[hook], f"DPOTrainer.{hook} takes {params} now"


def test_dpo_trainer_still_sets_what_rdpo_reads() -> None:
    """RDPO reads `self._tokenizer`, `self._metrics`, `self._signature_columns` and calls the model with
    `fused_lm_head=True`, reading `.log_probs`: all set up by DPOTrainer itself."""
    from trl import DPOTrainer

    source = inspect.getsource(DPOTrainer)
    for needle in (
        "self._tokenizer =",
        "self._metrics =",
        "self._signature_columns =",
        "fused_lm_head=True",
        ".log_probs",
    ):
        assert needle in source, (
            f"trl's DPOTrainer no longer contains {needle!r}; factory/release/train/rdpo.py must be ported"
        )
