"""The base of every recipe section, and paths given in a recipe (ground floor: pydantic only).

Each section is defined next to what it configures (a data source's settings in its module under
``edgekd/data``, a distillation method's beside its loss, ...); :mod:`edgekd.recipe` puts them
together. Unknown keys are errors, and values are checked on assignment too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, overload

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

__all__ = ["Section", "resolve_path"]


class Section(BaseModel):
    """A recipe section: unknown keys are errors, values are checked on assignment too, and a
    float must be finite (``.inf`` and ``.nan`` are refused).

    ``renamed_keys`` maps a key a section used to have to what replaced it, so an old recipe
    gets one line saying what to write instead of "extra inputs are not permitted"."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    renamed_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in cls.renamed_keys.items():
                if old in data:
                    raise ValueError(f"{old} was replaced by {new}")
        return data


@overload
def resolve_path(path: Path, info: ValidationInfo, *, folder: bool) -> Path: ...
@overload
def resolve_path(path: None, info: ValidationInfo, *, folder: bool) -> None: ...
def resolve_path(path: Path | None, info: ValidationInfo, *, folder: bool) -> Path | None:
    """A path from the recipe, relative to the recipe's folder (the validation context's
    ``base_dir``), that must exist; raises ``ValueError`` (a recipe error line) when it does not."""
    if path is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    full = (base / path.expanduser()).resolve()
    if not (full.is_dir() if folder else full.is_file()):
        kind = "folder" if folder else "file"
        raise ValueError(f"{kind} {str(path)!r} does not exist (relative to {base.resolve()})")
    return full
