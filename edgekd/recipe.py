"""The recipe: one YAML file that is the whole truth of a build.

A recipe is data. It is read with ``yaml.safe_load`` (no tags, no code) and validated against
the pydantic schema below; every mistake becomes one :class:`~edgekd.errors.EdgeKDError` line
that names the key path, the value and what is allowed::

    recipe = load_recipe("recipes/quickstart.yaml", overrides=["distill.temperature=8"])
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgekd.errors import EdgeKDError

__all__ = [
    "Recipe",
    "TrifeatureData",
    "ModelConfig",
    "KDConfig",
    "DISTILL_METHODS",
    "load_recipe",
    "parse_recipe",
    "apply_overrides",
    "recipe_hash",
    "dump_recipe",
]


class _Section(BaseModel):
    """A recipe section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------- data
class TrifeatureData(_Section):
    """``data.source: trifeature``: the generated, deliberately biased shapes set."""

    source: Literal["trifeature"] = "trifeature"
    image_size: int = Field(64, ge=16, le=512, description="height and width in pixels")
    num_classes: int = Field(4, ge=2, le=10, description="the first N of the 10 shapes")
    bias: float = Field(0.9, ge=0.0, le=1.0, description="P(majority colour group) in train/val")
    train_size: int = Field(3200, ge=8)
    val_size: int = Field(400, ge=8)
    test_size: int = Field(800, ge=8, description="balanced over (class, group) cells")
    max_rotation: float = Field(180.0, ge=0.0, le=180.0, description="rotation range in degrees (+/-)")
    fresh_train_each_epoch: bool = Field(
        True, description="draw new training images every epoch (no overfitting to a small set)"
    )


def _resolve(path: Path | None, info: ValidationInfo, *, folder: bool) -> Path | None:
    """A path from the recipe, relative to the recipe's folder, that must exist."""
    if path is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    full = (base / path.expanduser()).resolve()
    if not (full.is_dir() if folder else full.is_file()):
        kind = "folder" if folder else "file"
        raise ValueError(f"{kind} {str(path)!r} does not exist (relative to {base.resolve()})")
    return full


class _FileData(_Section):
    """What every file-based source shares: a root folder, the size, the decode cache."""

    root: Path = Field(description="dataset folder, relative to the recipe's folder")
    image_size: int = Field(224, ge=16, le=1024)
    cache_dir: Path | None = Field(None, description="decoded-image cache (default ~/.cache/edgekd)")
    workers: int = Field(0, ge=0, le=64, description="image-decoding threads (0: one per core, max 8)")
    on_bad_image: Literal["skip", "error"] = Field(
        "skip", description="a missing or corrupt image: left out and counted on the card, or fatal")
    max_image_pixels: int = Field(
        89_478_485, ge=1, description="an image with more pixels is a bad image (decompression bombs)")
    mean: tuple[float, float, float] | None = Field(None, description="per-channel mean (ImageNet's)")
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = Field(
        None, description="per-channel std (ImageNet's)")

    @field_validator("root")
    @classmethod
    def _root_exists(cls, path: Path, info: ValidationInfo) -> Path:
        return _resolve(path, info, folder=True)

    @model_validator(mode="after")
    def _default_cache(self):
        if self.cache_dir is None:
            from edgekd.data._images import default_cache_dir

            object.__setattr__(self, "cache_dir", default_cache_dir())
        return self


class CsvData(_FileData):
    """``data.source: csv``: a folder of images and one CSV per split."""

    source: Literal["csv"] = "csv"
    train_csv: str = "train.csv"
    val_csv: str = "val.csv"
    test_csv: str = "test.csv"
    path_column: str = "path"
    label_column: str = "label"
    group_column: str = "group"
    classes: list[str] | None = Field(None, description="class names in index order")
    groups: list[str] | None = Field(None, description="group names in index order")
    protected_attribute: str = "group"


class CelebAData(_FileData):
    """``data.source: celeba``: CelebA's aligned images and attribute files."""

    source: Literal["celeba"] = "celeba"
    target: str = "Smiling"
    protected: str = "Male"
    undersample: bool = Field(False, description="balance the target in the training split")
    max_per_split: int | None = Field(None, ge=1, description="seeded subset per split")


class WiderAttributeData(_FileData):
    """``data.source: wider_attribute``: WIDER Attribute events with gender as the group."""

    source: Literal["wider_attribute"] = "wider_attribute"
    annotations: Path | None = Field(None, description="folder of the two JSON files")
    label_map: Literal["events30", "clusters16"] = "events30"
    threshold: float = Field(0.5, ge=0.0, lt=1.0, description="male share above which: male")
    unknown: Literal["exclude", "as_group"] = "exclude"
    crop: Literal["none", "person"] = "none"

    @field_validator("annotations")
    @classmethod
    def _annotations_exist(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(path, info, folder=True)


class FashionMnistColoredData(_Section):
    """``data.source: fashion_mnist_colored``: Fashion-MNIST tinted by a biased colour group."""

    source: Literal["fashion_mnist_colored"] = "fashion_mnist_colored"
    path: Path = Field(Path("/usr/share/dataset-fashion-mnist"), description="folder of idx files")
    image_size: int = Field(32, ge=16, le=512)
    bias: float = Field(0.9, ge=0.0, le=1.0)
    val_size: int = Field(5000, ge=1)


DATA_SOURCES: dict[str, type[_Section]] = {
    "trifeature": TrifeatureData, "csv": CsvData, "celeba": CelebAData,
    "wider_attribute": WiderAttributeData, "fashion_mnist_colored": FashionMnistColoredData,
}
DataConfig = Annotated[Union[TrifeatureData, CsvData, CelebAData, WiderAttributeData,  # noqa: UP007
                             FashionMnistColoredData], Field(discriminator="source")]


# ------------------------------------------------------------------------------------- models
class ModelConfig(_Section):
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
    sync_batchnorm: bool = Field(
        False, description="under torchrun on GPUs: BatchNorm statistics over the global batch")

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
        return _resolve(path, info, folder=False)

    @model_validator(mode="after")
    def _weights_for_zero_epochs(self) -> ModelConfig:
        if self.epochs == 0 and self.checkpoint is None and not self.pretrained:
            raise ValueError("epochs: 0 needs a checkpoint or pretrained: true")
        return self


def _teacher() -> ModelConfig:
    return ModelConfig(arch="efficientnet_b3", epochs=8)


def _student() -> ModelConfig:
    return ModelConfig(arch="efficientnet_b0", epochs=8)


# -------------------------------------------------------------------------------- distillation
class _DistillSection(_Section):
    cache_teacher: bool = Field(
        True, description="compute the teacher's outputs once per split and keep them on disk"
    )


class KDConfig(_DistillSection):
    """``distill.method: kd``: Hinton et al. (2015) soft-target distillation."""

    method: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="weight of the KD term vs CE")


class RKDConfig(_DistillSection):
    """``distill.method: rkd``: relational KD (Park et al. 2019) on pooled features."""

    method: Literal["rkd"] = "rkd"
    distance_weight: float = Field(25.0, ge=0.0)
    angle_weight: float = Field(50.0, ge=0.0)
    kd_weight: float = Field(0.0, ge=0.0, description="optional classic KD term")
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="for the optional KD term")


class CTKDConfig(_DistillSection):
    """``distill.method: ctkd``: curriculum temperature KD (Li et al. 2023)."""

    method: Literal["ctkd"] = "ctkd"
    t_min: float = Field(1.0, gt=0.0)
    t_range: float = Field(20.0, gt=0.0)
    initial_temperature: float = Field(4.0, gt=0.0, description="inside (t_min, t_min + t_range)")
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    curriculum_epochs: int = Field(10, ge=1, description="capped at the student's epochs")

    @model_validator(mode="after")
    def _initial_inside(self) -> CTKDConfig:
        if not self.t_min < self.initial_temperature < self.t_min + self.t_range:
            raise ValueError(f"initial_temperature {self.initial_temperature:g} must lie strictly "
                             f"between t_min {self.t_min:g} and t_min + t_range "
                             f"{self.t_min + self.t_range:g}")
        return self


class KDPPConfig(_DistillSection):
    """``distill.method: kdpp``: KD++ / ND loss (Wang et al. 2023)."""

    method: Literal["kdpp"] = "kdpp"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    warmup_epochs: int = Field(20, ge=0, description="KD weight = min(1, epoch / warmup)")
    nd_weight: float = Field(2.0, ge=0.0)


class AdaptiveConfig(_DistillSection):
    """``distill.method: adaptive``: per-subgroup KD weights after "Teacher's pet" (2021)."""

    method: Literal["adaptive"] = "adaptive"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="weight where the teacher is best")
    per: Literal["class", "cell"] = Field("class", description="class, or (class, group) cell")


DISTILL_METHODS: dict[str, type[_Section]] = {
    "kd": KDConfig, "rkd": RKDConfig, "ctkd": CTKDConfig, "kdpp": KDPPConfig,
    "adaptive": AdaptiveConfig,
}
DistillConfig = Annotated[KDConfig | RKDConfig | CTKDConfig | KDPPConfig | AdaptiveConfig,
                          Field(discriminator="method")]


# ------------------------------------------------------------------------------------ debias
class DebiasConfig(_Section):
    """``debias``: an adversary on the protected group (Zhang, Lemoine & Mitchell 2018)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    method: Literal["none", "adversarial"] = "none"
    lambda_: float = Field(0.5, alias="lambda", ge=0.0, le=100.0,
                           description="weight of the reversed adversary loss")
    criterion: Literal["demographic_parity", "equalized_odds"] = Field(
        "demographic_parity", description="equalized_odds also gives the adversary the true label")
    input: Literal["probabilities", "features"] = Field(
        "probabilities", description="what the adversary sees: softmax outputs or pooled features")
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [64], max_length=4, description="adversary MLP hidden widths")
    warmup_epochs: int = Field(0, ge=0, description="epochs that train the adversary alone")
    schedule: Literal["constant", "linear"] = "constant"
    ramp_epochs: int = Field(0, ge=0, description="linear: epochs to ramp lambda from 0")
    apply_to: list[Literal["student", "baseline"]] = Field(
        default_factory=lambda: ["student"], min_length=1,
        description="stages trained with the adversary")


# ------------------------------------------------------------------------------------- export
class OnnxConfig(_Section):
    """``export.onnx``: the fp32 ONNX file every other artifact starts from."""

    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: int = Field(17, ge=13, le=23)
    min_agreement: float = Field(
        0.999, ge=0.0, le=1.0, description="argmax agreement with torch below which the build fails"
    )

    @model_validator(mode="after")
    def _dynamo_opset(self) -> OnnxConfig:
        if self.exporter == "dynamo" and self.opset < 18:
            raise ValueError("exporter: dynamo writes opset 18 or newer; use opset >= 18 or "
                             "exporter: torchscript")
        return self


class Int8Config(_Section):
    """``export.int8``: onnxruntime static quantization (QDQ, per-channel weights)."""

    enabled: bool = False
    calibration_samples: int = Field(256, ge=1, le=100_000, description="training images")
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    activations: Literal["uint8", "int8"] = Field(
        "uint8", description="uint8 (U8S8): fast on onnxruntime's x86 CPU kernels; int8 (S8S8): "
                             "symmetric, for TensorRT and GPU execution providers")


class Fp16Config(_Section):
    """``export.fp16``: float16 weights and compute, float32 inputs and outputs."""

    enabled: bool = False


class TensorRTConfig(_Section):
    """``export.tensorrt``: an engine for the GPU of the build machine (see edgekd.export.tensorrt)."""

    enabled: bool = False
    required: bool = Field(False, description="fail the build when TensorRT or a GPU is missing")
    via: Literal["onnx", "torch_tensorrt"] = "onnx"
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    workspace_mb: int = Field(1024, ge=16)
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(8, ge=1)
    max_batch: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _batch_order(self) -> TensorRTConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"needs min_batch <= opt_batch <= max_batch, got {self.min_batch}, "
                             f"{self.opt_batch}, {self.max_batch}")
        return self


class ExportConfig(_Section):
    onnx: OnnxConfig = Field(default_factory=OnnxConfig)
    int8: Int8Config = Field(default_factory=Int8Config)
    fp16: Fp16Config = Field(default_factory=Fp16Config)
    tensorrt: TensorRTConfig = Field(default_factory=TensorRTConfig)


# --------------------------------------------------------------------------------------- card
class GatesConfig(_Section):
    """``card.gates``: release thresholds on the student and every exported artifact (off when
    unset). A failed gate makes ``edgekd build`` and ``edgekd card --check`` exit 1."""

    min_top1: float | None = Field(None, ge=0.0, le=1.0)
    max_mean_abs_disparity: float | None = Field(None, ge=0.0, le=1.0)
    max_dpd: float | None = Field(None, ge=0.0, le=1.0)
    max_eod: float | None = Field(None, ge=0.0, le=1.0)
    max_disparity_increase_vs_teacher: float | None = Field(None, ge=-1.0, le=1.0)
    min_agreement_vs_student: float | None = Field(
        None, ge=0.0, le=1.0, description="exported artifacts: argmax agreement with the torch student")
    max_top1_drop_vs_student: float | None = Field(
        None, ge=0.0, le=1.0, description="exported artifacts: top-1 lost against the torch student")


class CardConfig(_Section):
    """``card``: the statistics on the fairness card and the release gates."""

    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="false discovery rate of the class tests")
    bootstrap_resamples: int = Field(1000, ge=0, le=100_000, description="0 turns intervals off")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    gates: GatesConfig = Field(default_factory=GatesConfig)


# ------------------------------------------------------------------------------------- bundle
class BundleConfig(_Section):
    """``bundle``: what goes into the release bundle besides the models and the card."""

    include_eval_set: bool = Field(
        False, description="ship the test split as eval_set.npz for edgekd bench --eval")


# ------------------------------------------------------------------------------------- recipe
class Recipe(_Section):
    """A whole build. See ``recipes/quickstart.yaml`` for an annotated example."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    version: str = Field("0.1.0", pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    seed: int = Field(0, ge=0)
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=2, description="training seeds of the multi-seed study (Welch test)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    data: DataConfig = Field(default_factory=TrifeatureData)
    teacher: ModelConfig = Field(default_factory=_teacher)
    student: ModelConfig = Field(default_factory=_student)
    distill: DistillConfig = Field(default_factory=KDConfig)
    debias: DebiasConfig = Field(default_factory=DebiasConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    bundle: BundleConfig = Field(default_factory=BundleConfig)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


# ---------------------------------------------------------------------------------- loading
_CHOICES = {"data": ("source", DATA_SOURCES), "distill": ("method", DISTILL_METHODS)}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (``key.path=value``) and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"recipe {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EdgeKDError(f"{path}: not a text file; a recipe is UTF-8 YAML") from None
    raw = _parse_yaml(text, str(path))
    raw = apply_overrides(raw, overrides)
    return parse_recipe(raw, source=str(path), base_dir=path.parent)


def _parse_yaml(text: str, source: str) -> dict:
    try:
        raw = yaml.safe_load(text)
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
        new = next((_parse_yaml_value(i.partition("=")[2], chosen) for i in overrides
                    if i.partition("=")[0] == chosen), None)
        if new != before.get(tag) and new in choices:
            fields = {f.alias or name for name, f in choices[new].model_fields.items()}
            raw[section] = {k: v for k, v in before.items()
                            if k in fields or f"{section}.{k}" in explicit}
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
                    f"--set {key}: {where} is a value, not a section; cannot set a key under it")
            node = child
        node[parts[-1]] = value
    return raw


def _parse_yaml_value(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise EdgeKDError(f"--set {key}: value {text!r} is not a valid YAML value") from None


def parse_recipe(raw: dict, *, source: str = "recipe", base_dir: Path | str = ".") -> Recipe:
    """Validate plain data as a recipe, turning the first problems into one line each."""
    raw = dict(raw)
    for section, (tag, choices) in _CHOICES.items():
        value = raw.get(section)
        if isinstance(value, dict) and tag not in value:  # the default choice, as when absent
            raw[section] = value = {tag: next(iter(choices)), **value}
        if isinstance(value, dict) and tag in value and value[tag] not in choices:
            raise EdgeKDError(
                f"{source}: {section}.{tag}: unknown value {value[tag]!r}; "
                f"choose one of: {', '.join(sorted(choices))}"
            )
    try:
        return Recipe.model_validate(raw, context={"base_dir": Path(base_dir)})
    except ValidationError as err:
        lines = [f"{source}: {_describe(e, raw)}" for e in err.errors()]
        raise EdgeKDError("\n".join(lines)) from None


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
        message = message[len("Value error, "):]
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
    owners = [name for name, model in choices.items()
              if name != current and str(loc[1]) in model.model_fields]
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
            model = choices.get(node.get(tag), next(iter(choices.values())))
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


# ---------------------------------------------------------------------------------- output
def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (what goes into the bundle)."""
    return yaml.safe_dump(recipe.model_dump(mode="json", by_alias=True), sort_keys=False)


def recipe_hash(recipe: Recipe) -> str:
    return hashlib.sha256(
        canonical_json(recipe.model_dump(mode="json", by_alias=True)).encode()).hexdigest()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
