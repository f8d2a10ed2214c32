"""The distillation-method registry: ``distill.method: NAME`` -> its objective class.

A method is one module under ``edgekd/distill`` (``kd.py``, ``rkd.py``, ...): its recipe section
(a :class:`DistillMethodConfig` with ``method: Literal[NAME]``) and its loss, registered together
the way timm registers a model where it is defined (the five built-in methods keep their sections
in the torch-free :mod:`.configs`, so a recipe is checked before torch is imported)::

    class MyConfig(DistillMethodConfig):
        method: Literal["mine"] = "mine"
        temperature: float = 4.0

    @register_method(MyConfig)
    class MyLoss(Objective):
        uses_teacher = True
        def __init__(self, *, temperature: float = 4.0, label_smoothing: float = 0.0): ...

The loss's keyword arguments are the section's keys (:func:`build_objective` passes them), plus
``label_smoothing`` (the student's): every method's cross-entropy on the labels goes through
:func:`~edgekd.train.objective.label_cross_entropy` with it. :mod:`edgekd.recipe` builds the
``distill`` section's schema from :data:`METHOD_CONFIGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from edgekd.config import Section
from edgekd.registry import Registry, tag_of

if TYPE_CHECKING:
    from edgekd.train.objective import Objective

__all__ = ["DistillMethodConfig", "METHOD_CONFIGS", "OBJECTIVES", "register_method", "build_objective"]

OBJECTIVES: Registry[type[Objective]] = Registry("distillation method")
# name -> recipe section; torch-free, so the recipe is checked before torch loads (.configs)
METHOD_CONFIGS: Registry[type[DistillMethodConfig]] = Registry("distillation method")


class DistillMethodConfig(Section):
    """What every ``distill`` section has besides its method's own keys."""

    cache_teacher: bool = Field(
        True, description="compute the teacher's outputs once per split and keep them on disk"
    )


def register_method(config: type[DistillMethodConfig]) -> Callable[[type[Objective]], type[Objective]]:
    """Register the decorated objective class under the name ``config`` declares in ``method``."""

    name = tag_of(config, "method")
    if METHOD_CONFIGS.get(name, config) is not config:
        raise ValueError(
            f"distillation method {name!r}: its section is {METHOD_CONFIGS[name].__name__}, "
            f"not {config.__name__}"
        )

    def add(cls: type[Objective]) -> type[Objective]:
        cls.config = config
        OBJECTIVES.register(name)(cls)
        if name not in METHOD_CONFIGS:
            METHOD_CONFIGS.add(name, config)
        return cls

    return add


def build_objective(cfg: DistillMethodConfig, *, label_smoothing: float = 0.0) -> Objective:
    """The student's objective for a recipe's ``distill`` section: the registered class, called
    with the section's own keys and the student's ``label_smoothing``."""
    from edgekd.distill import load_methods

    load_methods()
    cls = OBJECTIVES.get(cfg.method, key="distill.method")
    return cls(
        **cfg.model_dump(exclude={"method", *DistillMethodConfig.model_fields}),
        label_smoothing=label_smoothing,
    )
