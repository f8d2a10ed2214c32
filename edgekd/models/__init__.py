"""Networks come from timm by name: ``timm.create_model(arch, pretrained=..., num_classes=...)``.

Nothing is downloaded unless a recipe says ``pretrained: true`` (then timm's weights come from the
Hugging Face hub or its local cache); ``checkpoint: PATH`` loads local weights, a safetensors file
or a torch file read with ``weights_only=True`` (:mod:`edgekd.models.weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgekd.config import Section, resolve_path
from edgekd.data.augment import AugmentConfig
from edgekd.models.weights import hub_unreachable, load_weights, pretrained_source, weights_record

__all__ = [
    "ModelConfig",
    "is_known_arch",
    "create_model",
    "load_weights",
    "weights_record",
    "pooled_features_and_logits",
    "feature_width",
    "count_parameters",
    "state_dict_bytes",
]


class ModelConfig(Section):
    """A network and how it is trained (``teacher`` and ``student``)."""

    arch: str = Field(
        description="a timm model, optionally with the tag of its pretrained "
        "weights: efficientnet_b3 or efficientnet_b3.ra2_in1k"
    )
    pretrained: bool = Field(
        False,
        description="start from timm's ImageNet weights (the tag in arch, else timm's "
        "default), from the Hugging Face hub or its local cache",
    )
    checkpoint: Path | None = Field(
        None,
        description="start from local weights: a .safetensors file, or a torch file "
        "holding a state dict (bare or under 'model' / 'state_dict'), read "
        "with weights_only; a classifier for another class count is replaced",
    )
    epochs: int = Field(ge=0, description="training epochs")
    batch_size: int = Field(64, ge=1, description="global batch (under torchrun split over the processes)")
    lr: float = Field(2e-3, gt=0.0, le=10.0, description="peak AdamW learning rate (OneCycle schedule)")
    weight_decay: float = Field(0.05, ge=0.0, description="AdamW weight decay")
    warmup_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="OneCycle pct_start")
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier (timm's)")
    zero_head: bool = Field(
        True,
        description="start a new classifier (from scratch, or replacing the one of loaded "
        "weights) at zero: timm's init of a few-class head gives logits of "
        "+-20 and a first epoch spent undoing them",
    )
    sync_batchnorm: bool = Field(
        False, description="under torchrun on GPUs: BatchNorm statistics over the global batch"
    )
    # The names of edgekd.train.selection.SELECTION_METRICS (a test keeps them equal); spelled
    # out here so reading a recipe does not import the training code.
    select_by: Literal["auto", "top1", "cell_balanced_accuracy", "worst_cell_recall"] = Field(
        "auto",
        description="validation score that picks best.pt; auto: cell_balanced_accuracy "
        "when the data have protected groups, else top1",
    )
    grad_clip_norm: float | None = Field(
        None, gt=0.0, description="clip the global gradient norm of each step to this; none: off"
    )
    ema_decay: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="keep an exponential moving average of the weights "
        "(timm's ModelEmaV3) and validate, select and ship it; "
        "none: off",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="autocast of the training steps; auto: bf16 on CUDA GPUs that have "
        "it (Ampere and newer), fp16 with a gradient scaler on older ones, "
        "fp32 on the CPU (where bf16 autocast is slower)",
    )
    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="smoothing of the cross-entropy on the labels, in "
        "every objective of this network (teacher; baseline "
        "and every distillation method for student); 0.1 is "
        "the usual value",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="augmentation of the training images (edgekd.data.augment); off by default. "
        "The baseline and the distilled student share student.augment",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str, info: ValidationInfo) -> str:
        if not _asks_timm(info):
            return arch
        if not is_known_arch(arch):
            raise ValueError(f"{arch!r} is not a timm model (see timm.list_models(), e.g. efficientnet_b0)")
        if "." in arch:
            import timm
            from timm.models import is_model_pretrained

            if not is_model_pretrained(arch):
                base = arch.split(".", 1)[0]
                tags = timm.list_pretrained(f"{base}.*")
                raise ValueError(
                    f"{arch!r}: timm has no weights tagged {arch.split('.', 1)[1]!r} "
                    f"for {base} (it has: {', '.join(tags) or 'none'})"
                )
        return arch

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(path, info, folder=False)

    @model_validator(mode="after")
    def _weights(self, info: ValidationInfo) -> ModelConfig:
        if self.epochs == 0 and self.checkpoint is None and not self.pretrained:
            raise ValueError("epochs: 0 needs a checkpoint or pretrained: true")
        if self.pretrained and self.checkpoint is not None:
            raise ValueError("pretrained: true and a checkpoint both give the first weights; keep one")
        if self.pretrained and _asks_timm(info):
            from timm.models import is_model_pretrained

            if not is_model_pretrained(self.arch):
                raise ValueError(
                    f"pretrained: true, but timm has no pretrained weights for "
                    f"{self.arch}; train from scratch or set a checkpoint"
                )
        # a tag with pretrained: false names the architecture only (the card says "scratch"),
        # so `--set student.pretrained=false` tries a recipe without the hub
        return self


def _asks_timm(info: ValidationInfo) -> bool:
    """Whether to check names against timm's registry, which imports torch (seconds): the recipe
    is validated once with ``context={"timm": False}`` so a mistake elsewhere is reported before
    torch loads, then again with the checks (:func:`edgekd.recipe.parse_recipe`)."""
    return (info.context or {}).get("timm", True)


def is_known_arch(arch: str) -> bool:
    """True when timm has a model called ``arch``."""
    import timm

    return timm.is_model(arch)


def create_model(
    cfg, num_classes: int, *, key: str, load: bool = True, log: Callable[[str], None] | None = print
):
    """Build the network of a recipe's ``teacher`` or ``student`` section.

    ``key`` is the recipe section, named in errors (``teacher.checkpoint: ...``). With
    ``load=False`` the first weights (pretrained, checkpoint) are not read: for a network whose
    trained weights replace them anyway (a reused stage). A classifier that starts new (from
    scratch, or replacing loaded weights' classifier for another class count) is zeroed when
    ``zero_head`` is on. ``log`` hears when a checkpoint's classifier was replaced.
    """
    import timm
    import torch

    pretrained = load and cfg.pretrained
    try:
        model = timm.create_model(
            cfg.arch, pretrained=pretrained, num_classes=num_classes, drop_rate=cfg.drop_rate
        )
    except OSError:  # huggingface_hub: offline and not cached, unreachable, HTTP errors
        if not pretrained:
            raise
        raise hub_unreachable(cfg.arch, f"{key}.pretrained") from None
    new_head = not pretrained or pretrained_source(cfg.arch)["num_classes"] != num_classes
    if load and cfg.checkpoint is not None:
        new_head = load_weights(model, cfg.checkpoint, key=f"{key}.checkpoint", log=log)
    if cfg.zero_head and new_head:
        zero_classifier(model)
    return model.to(memory_format=torch.channels_last)


def zero_classifier(model) -> None:
    """Set the classifier's weights and bias to 0, so training starts from uniform predictions.

    timm's EfficientNet initialises a linear layer uniformly in ``+-1/sqrt(fan_out)``
    (Tan & Le's TensorFlow init); with ``fan_out`` = 4 classes that is ``+-0.5`` over 1536
    features, so an untrained B3 outputs logits up to 20 and starts at a loss far above
    ``ln 4`` = 1.39, the loss of uniform predictions, and its first epoch pays for it. Zeros are
    the usual fix (Goyal et al. 2017 zero the last BN of each
    block for the same reason): the first step gives the head a gradient and the backbone its
    first signal the step after. On pretrained features the same holds, and BiT (Kolesnikov et
    al. 2020) zeroes the new head when fine-tuning for the same reason.
    """
    import torch

    head = model.get_classifier()
    with torch.no_grad():
        for param in head.parameters():
            param.zero_()


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
