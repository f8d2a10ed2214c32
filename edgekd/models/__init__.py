"""Networks come from timm by name: ``timm.create_model(arch, pretrained=..., num_classes=...)``.

Nothing is downloaded unless a recipe says ``pretrained: true``; ``checkpoint: PATH`` loads local
weights with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgekd.config import Section, resolve_path
from edgekd.data.augment import AugmentConfig
from edgekd.errors import EdgeKDError

__all__ = ["is_known_arch", "create_model", "load_weights", "pooled_features_and_logits", "feature_width",
           "count_parameters", "state_dict_bytes"]


class ModelConfig(Section):
    """A network and how it is trained (``teacher`` and ``student``)."""

    arch: str
    pretrained: bool = False
    checkpoint: Path | None = Field(None, description="local weights, loaded with weights_only")
    epochs: int = Field(ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="OneCycle pct_start")
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    zero_head: bool = Field(
        True, description="from scratch: start the classifier at zero (timm's init of a few-class "
                          "head gives logits of +-20 and a first epoch spent undoing them)")
    sync_batchnorm: bool = Field(
        False, description="under torchrun on GPUs: BatchNorm statistics over the global batch")
    # The names of edgekd.train.selection.SELECTION_METRICS (a test keeps them equal); spelled
    # out here so reading a recipe does not import the training code.
    select_by: Literal["auto", "top1", "cell_balanced_accuracy", "worst_cell_recall"] = Field(
        "auto", description="validation score that picks best.pt; auto: cell_balanced_accuracy "
                            "when the data have protected groups, else top1")
    grad_clip_norm: float | None = Field(
        None, gt=0.0, description="clip the global gradient norm of each step to this; none: off")
    ema_decay: float | None = Field(
        None, gt=0.0, lt=1.0, description="keep an exponential moving average of the weights "
                                          "(timm's ModelEmaV3) and validate, select and ship it; "
                                          "none: off")
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="augmentation of the training images (edgekd.data.augment); off by default. "
                    "The baseline and the distilled student share student.augment")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        from edgekd.models import is_known_arch

        if not is_known_arch(arch):
            raise ValueError(
                f"{arch!r} is not a timm model (see timm.list_models(), e.g. efficientnet_b0)"
            )
        return arch

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(path, info, folder=False)

    @model_validator(mode="after")
    def _weights_for_zero_epochs(self) -> ModelConfig:
        if self.epochs == 0 and self.checkpoint is None and not self.pretrained:
            raise ValueError("epochs: 0 needs a checkpoint or pretrained: true")
        return self


def is_known_arch(arch: str) -> bool:
    """True when timm has a model called ``arch``."""
    import timm

    return timm.is_model(arch)


def create_model(cfg, num_classes: int, *, key: str):
    """Build the network of a recipe's ``teacher`` or ``student`` section.

    ``key`` is the recipe section, named in errors (``teacher.checkpoint: ...``).
    """
    import timm
    import torch

    model = timm.create_model(
        cfg.arch, pretrained=cfg.pretrained, num_classes=num_classes, drop_rate=cfg.drop_rate
    )
    if cfg.checkpoint is not None:
        load_weights(model, cfg.checkpoint, key=f"{key}.checkpoint")
    elif cfg.zero_head and not cfg.pretrained:
        zero_classifier(model)
    return model.to(memory_format=torch.channels_last)


def zero_classifier(model) -> None:
    """Set the classifier's weights and bias to 0, so training starts from uniform predictions.

    timm's EfficientNet initialises a linear layer uniformly in ``+-1/sqrt(fan_out)``
    (Tan & Le's TensorFlow init); with ``fan_out`` = 4 classes that is ``+-0.5`` over 1536
    features, so an untrained B3 outputs logits up to 20 and starts at a loss of 4.5 instead of
    ``ln 4`` = 1.39 (measured on the quickstart: a first epoch's mean loss of 3.0 to 3.3 against
    1.2 to 1.4 from zero). Zeros are the usual fix (Goyal et al. 2017 zero the last BN of each
    block for the same reason): the first step gives the head a gradient and the backbone its
    first signal the step after.
    """
    import torch

    head = model.get_classifier()
    with torch.no_grad():
        for param in head.parameters():
            param.zero_()


def load_weights(model, path: Path, *, key: str) -> None:
    """Load a state dict (or edgekd's ``{"model": state_dict}``) safely into ``model``."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EdgeKDError(f"{key}: {path} is not a loadable torch weights file ({first})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise EdgeKDError(f"{key}: {path} holds a {type(state).__name__}, not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = (
            f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, model has {tuple(own[wrong[0]].shape)}"
            if wrong
            else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        )
        raise EdgeKDError(
            f"{key}: weights in {path} do not fit {type(model).__name__} with "
            f"{model.num_classes} classes ({detail})"
        )
    model.load_state_dict(state)


def pooled_features_and_logits(model, x):
    """The pooled penultimate features (the classifier's input) and the logits of a timm model.

    One forward pass: ``forward_features`` -> ``forward_head(pre_logits=True)`` -> classifier,
    which is exactly ``model(x)`` with the features kept (RKD and KD++ distil them).
    """
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    return features, model.get_classifier()(features)


def feature_width(model) -> int:
    """Width of the pooled features (1280 for EfficientNet-B0, 1536 for B3)."""
    return int(model.num_features)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def state_dict_bytes(model) -> int:
    """Bytes of the weights as stored (parameters and buffers)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
