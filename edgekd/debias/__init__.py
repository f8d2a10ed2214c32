"""Debiasing against the protected attribute; it wraps whatever objective the stage trains with.

* ``debias.method: adversarial``: an adversary on the group, defeated through gradient reversal
  (:mod:`.adversarial`, Zhang, Lemoine & Mitchell 2018);
* ``debias.reweigh: true``: each epoch drawn so that label and group are independent
  (:mod:`.reweighing`, Kamiran & Calders 2012).

The two compose: reweighing decides which images an epoch sees, the adversary what the model
may say about them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field

from edgekd.config import Section
from edgekd.data.splits import cell_weights

if TYPE_CHECKING:
    from edgekd.debias.adversarial import AdversarialDebiasing, Adversary, lambda_at
    from edgekd.debias.reweighing import Reweighing
    from edgekd.train.objective import Objective

__all__ = [
    "AdversarialDebiasing",
    "Adversary",
    "DebiasConfig",
    "Reweighing",
    "cell_weights",
    "lambda_at",
    "with_debiasing",
]

# The training side, loaded on first use: the recipe reads DebiasConfig without importing torch.
_LAZY = {
    "AdversarialDebiasing": "edgekd.debias.adversarial",
    "Adversary": "edgekd.debias.adversarial",
    "lambda_at": "edgekd.debias.adversarial",
    "Reweighing": "edgekd.debias.reweighing",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekd.debias' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


class DebiasConfig(Section):
    """``debias``: an adversary on the protected group (Zhang, Lemoine & Mitchell 2018) and/or
    reweighing of the training draws (Kamiran & Calders 2012)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    method: Literal["none", "adversarial"] = Field("none", description="the adversary")
    lambda_: float = Field(
        0.5, alias="lambda", ge=0.0, le=100.0, description="weight of the reversed adversary loss"
    )
    criterion: Literal["demographic_parity", "equalized_odds"] = Field(
        "demographic_parity", description="equalized_odds also gives the adversary the true label"
    )
    input: Literal["probabilities", "features"] = Field(
        "probabilities", description="what the adversary sees: softmax outputs or pooled features"
    )
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [64], max_length=4, description="adversary MLP hidden widths"
    )
    warmup_epochs: int = Field(0, ge=0, description="epochs that train the adversary alone")
    schedule: Literal["constant", "linear"] = Field(
        "constant", description="lambda after the warm-up: constant, or linear from 0 over ramp_epochs"
    )
    ramp_epochs: int = Field(0, ge=0, description="linear: epochs to ramp lambda from 0")
    reweigh: bool = Field(
        False,
        description="draw each epoch so that label and group are "
        "independent: weight P(c)P(g)/P(c,g) per image",
    )
    apply_to: list[Literal["student", "baseline"]] = Field(
        default_factory=lambda: ["student"], min_length=1, description="stages trained with the debiasing"
    )

    @property
    def active(self) -> bool:
        return self.method != "none" or self.reweigh


def with_debiasing(objective: Objective, cfg) -> Objective:
    """``objective`` wrapped by the recipe's ``debias`` section (unchanged when it is off)."""
    from edgekd.debias.adversarial import AdversarialDebiasing
    from edgekd.debias.reweighing import Reweighing

    if cfg is None:
        return objective
    if cfg.method == "adversarial":
        objective = AdversarialDebiasing(
            objective,
            weight=cfg.lambda_,
            criterion=cfg.criterion,
            source=cfg.input,
            hidden=tuple(cfg.hidden),
            warmup_epochs=cfg.warmup_epochs,
            schedule=cfg.schedule,
            ramp_epochs=cfg.ramp_epochs,
        )
    return Reweighing(objective) if cfg.reweigh else objective
