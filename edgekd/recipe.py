"""The recipe: one YAML file that is the whole truth of a build.

A recipe is data. It is read as safe YAML (no tags, no code) with its size, depth and aliases
bounded (:mod:`edgekd.yaml_bounded`), its numbers must be finite, and it is validated against a
pydantic schema; every mistake becomes one :class:`~edgekd.errors.EdgeKDError` line that names
the key path, the value and what is allowed::

    recipe = load_recipe("recipes/quickstart.yaml", overrides=["distill.temperature=8"])

Each section's schema lives with what it configures: a data source's in its module under
``edgekd/data`` (registered in :data:`edgekd.data.DATA_SOURCES`), the distillation methods' in
:mod:`edgekd.distill.configs` (:data:`edgekd.distill.METHOD_CONFIGS`), the networks' in
:mod:`edgekd.models`, the adversary's in :mod:`edgekd.debias`, each export format's in its
exporter (:data:`edgekd.export.formats.EXPORT_FORMATS`), the card's in :mod:`edgekd.card.build`.
None of them imports torch, so a recipe mistake is reported in a second. This module assembles
them (the ``data`` and ``distill`` sections as unions tagged by ``source`` and ``method``) and
holds the YAML reading, ``--set`` overrides and the error text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from edgekd.bundle.write import BundleConfig
from edgekd.card.build import CardConfig
from edgekd.config import Section
from edgekd.data import DATA_SOURCES
from edgekd.debias import DebiasConfig
from edgekd.distill import METHOD_CONFIGS
from edgekd.errors import EdgeKDError
from edgekd.export.formats import ExportConfig
from edgekd.files import sha256_json
from edgekd.models import ModelConfig
from edgekd.yaml_bounded import MAX_BYTES, load_yaml

__all__ = ["Recipe", "load_recipe", "parse_recipe", "apply_overrides"]

# The sections a recipe picks by name: section -> (tag key, {name: settings class}), and the
# name used when a section gives none.
_CHOICES: dict[str, tuple[str, dict[str, type[BaseModel]]]] = {
    "data": ("source", {name: DATA_SOURCES[name].config for name in sorted(DATA_SOURCES.names())}),
    "distill": ("method", {name: METHOD_CONFIGS[name] for name in sorted(METHOD_CONFIGS.names())}),
}
_DEFAULT_CHOICE = {"data": "trifeature", "distill": "kd"}


def _tagged_union(section: str):
    tag, choices = _CHOICES[section]
    return Annotated[Union[tuple(choices.values())], Field(discriminator=tag)]  # noqa: UP007


DataConfig = _tagged_union("data")
DistillConfig = _tagged_union("distill")


def _teacher() -> ModelConfig:
    return ModelConfig(arch="efficientnet_b3", epochs=8)


def _student() -> ModelConfig:
    return ModelConfig(arch="efficientnet_b0", epochs=8)


def _default(section: str):
    return _CHOICES[section][1][_DEFAULT_CHOICE[section]]()


class Recipe(Section):
    """A whole build. See ``recipes/quickstart.yaml`` for an annotated example."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    version: str = Field("0.1.0", pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    seed: int = Field(0, ge=0)
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=2, description="training seeds of the multi-seed study (Welch test)"
    )
    threads: int | Literal["auto"] = Field(
        "auto",
        description="CPU threads of torch and onnxruntime; auto: the cores this process "
        "may use less the busy ones (1-minute load average), see edgekd.threads",
    )
    data: DataConfig = Field(default_factory=lambda: _default("data"))
    teacher: ModelConfig = Field(default_factory=_teacher)
    student: ModelConfig = Field(default_factory=_student)
    distill: DistillConfig = Field(default_factory=lambda: _default("distill"))
    debias: DebiasConfig = Field(default_factory=DebiasConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    bundle: BundleConfig = Field(default_factory=BundleConfig)

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if value is None:  # what recipes written before auto say
            return "auto"
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be auto or a whole number of threads, at least 1")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    def to_yaml(self) -> str:
        """The fully resolved recipe as YAML (what goes into the bundle)."""
        return yaml.safe_dump(self.model_dump(mode="json", by_alias=True), sort_keys=False)

    def sha256(self) -> str:
        """sha256 of the fully resolved recipe (the card's provenance; a sweep point's identity)."""
        return sha256_json(self.model_dump(mode="json", by_alias=True))


# ---------------------------------------------------------------------------------- loading
def load_recipe(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, check_models: bool = True
) -> Recipe:
    """Read, override (``key.path=value``) and validate a recipe file.

    ``check_models=False`` leaves out the checks of ``teacher``/``student`` arch names against
    timm's registry, which import torch (seconds): a first look that reports any other mistake
    at once (``edgekd build`` looks first, then loads torch and checks the rest)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"recipe {str(path)!r} does not exist or is not a file")
    if path.stat().st_size > MAX_BYTES:  # before reading it: a recipe is small
        raise EdgeKDError(f"{path}: {path.stat().st_size} bytes, above the {MAX_BYTES} a recipe may have")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EdgeKDError(f"{path}: not a text file; a recipe is UTF-8 YAML") from None
    raw = _parse_yaml(text, str(path))
    raw = apply_overrides(raw, overrides)
    return parse_recipe(raw, source=str(path), base_dir=path.parent, check_models=check_models)


def _parse_yaml(text: str, source: str) -> dict:
    try:
        raw = load_yaml(text, source)
    except yaml.constructor.ConstructorError as err:
        line = f" line {err.problem_mark.line + 1}:" if err.problem_mark else ""
        tag = (err.problem or "").split("tag ")[-1]
        raise EdgeKDError(
            f"{source}:{line} YAML tag {tag} is not allowed; a recipe is plain data "
            "(mappings, lists, strings, numbers)"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise EdgeKDError(f"{source}: not valid YAML:{where} {problem}") from None
    if raw is None:
        raise EdgeKDError(f"{source}: the recipe is empty; it needs at least a 'name' key")
    if not isinstance(raw, dict):
        raise EdgeKDError(
            f"{source}: the top level must be a mapping of keys (name, data, teacher, ...), "
            f"not a {type(raw).__name__}"
        )
    return raw


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``--set key.path=value`` overrides; values are parsed as YAML scalars or lists.

    Switching a choice (``--set distill.method=rkd`` on a recipe written for ``kd``) keeps the
    section's keys the new choice also has (``temperature``) and drops the ones it has not
    (``alpha``), so a method can be swapped or swept from the command line; a key set explicitly
    in the same command is always kept and validated.
    """
    raw = json.loads(json.dumps(raw, default=str))  # deep copy of plain data
    explicit = {item.partition("=")[0] for item in overrides}
    for section, (tag, choices) in _CHOICES.items():
        before = raw.get(section)
        chosen = f"{section}.{tag}"
        if chosen not in explicit or not isinstance(before, dict):
            continue
        new = next(
            (
                _parse_yaml_value(i.partition("=")[2], chosen)
                for i in overrides
                if i.partition("=")[0] == chosen
            ),
            None,
        )
        if new != before.get(tag) and new in choices:
            fields = {f.alias or name for name, f in choices[new].model_fields.items()}
            raw[section] = {k: v for k, v in before.items() if k in fields or f"{section}.{k}" in explicit}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise EdgeKDError(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. distill.temperature=8"
            )
        value = _parse_yaml_value(text, key)
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise EdgeKDError(
                    f"--set {key}: {where} is a value, not a section; cannot set a key under it"
                )
            node = child
        node[parts[-1]] = value
    return raw


def _parse_yaml_value(text: str, key: str) -> Any:
    try:
        return load_yaml(text, f"--set {key}") if text.strip() else ""
    except yaml.YAMLError:
        raise EdgeKDError(f"--set {key}: value {text!r} is not a valid YAML value") from None


def parse_recipe(
    raw: dict, *, source: str = "recipe", base_dir: Path | str = ".", check_models: bool = True
) -> Recipe:
    """Validate plain data as a recipe, turning the first problems into one line each
    (``check_models``: see :func:`load_recipe`)."""
    raw = dict(raw)
    _check_finite(raw, source)
    for section, (tag, choices) in _CHOICES.items():
        value = raw.get(section)
        if isinstance(value, dict) and tag not in value:  # the default choice, as when absent
            raw[section] = value = {tag: _DEFAULT_CHOICE[section], **value}
        if isinstance(value, dict) and tag in value and value[tag] not in choices:
            raise EdgeKDError(
                f"{source}: {section}.{tag}: unknown value {value[tag]!r}; "
                f"choose one of: {', '.join(sorted(choices))}"
            )
    try:
        # first without the checks against timm's model names, which import torch (seconds):
        # a mistake anywhere else is one line before any of that loads
        first = Recipe.model_validate(raw, context={"base_dir": Path(base_dir), "timm": False})
        if not check_models:
            return first
        return Recipe.model_validate(raw, context={"base_dir": Path(base_dir)})
    except ValidationError as err:
        lines = [f"{source}: {_describe(e, raw)}" for e in err.errors()]
        raise EdgeKDError("\n".join(lines)) from None


def _check_finite(value: Any, source: str, path: str = "") -> None:
    """Every number of a recipe is finite: ``.inf`` or ``.nan`` (YAML's spellings) anywhere,
    even under a key whose schema would take any value, is one line naming the key. A
    non-finite weight decay or learning rate would train to NaN and ship it."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, source, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, source, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise EdgeKDError(
            f"{source}: {path or '(top level)'} = {value!r}: must be a finite number (not .inf or .nan)"
        )


def _describe(error: dict, raw: dict) -> str:
    """One line for one pydantic error: key path, value, what is allowed."""
    loc = _user_loc(error["loc"], raw)
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], raw)
        owner = _owner_of(loc, raw)
        if owner:
            return f"{key}: belongs to {owner}; allowed here: {', '.join(allowed)}"
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if "input" in error and kind not in ("model_type", "dict_type"):
        return f"{key} = {error['input']!r}: {message}"
    return f"{key}: {message}"


def _user_loc(loc: tuple, raw: dict) -> list:
    """Drop the union tags pydantic inserts (``distill.kd.alpha`` -> ``distill.alpha``)."""
    out: list = []
    node: Any = raw
    for part in loc:
        if isinstance(node, dict) and part not in node:
            tags = {v for t, _ in _CHOICES.values() for k, v in node.items() if k == t}
            if part in tags:
                continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out


def _owner_of(loc: list, raw: dict) -> str | None:
    """For a key of a tagged section (``distill``) that another choice has: name that choice."""
    if len(loc) != 2 or str(loc[0]) not in _CHOICES:
        return None
    tag, choices = _CHOICES[str(loc[0])]
    current = (raw.get(str(loc[0])) or {}).get(tag)
    owners = [
        name for name, model in choices.items() if name != current and str(loc[1]) in model.model_fields
    ]
    return f"{loc[0]}.{tag}: {' / '.join(owners)}, not {current}" if owners else None


def _allowed_keys(loc: list, raw: dict) -> list[str]:
    model: type[BaseModel] = Recipe
    node: Any = raw
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        if str(part) in _CHOICES and isinstance(node, dict):
            tag, choices = _CHOICES[str(part)]
            model = choices.get(node.get(tag), choices[_DEFAULT_CHOICE[str(part)]])
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]
