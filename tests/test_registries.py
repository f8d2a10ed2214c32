"""Every table of edgekd is one Registry, and every row of every table is tested here, the way
timm's tests run over ``list_models``: a new data source, distillation method, metric,
checkpoint metric, export format, artifact file or bench backend is tested without a new test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.bench.backends import BACKENDS, BenchBackend
from edgekd.config import Section
from edgekd.data import DATA_SOURCES
from edgekd.distill import OBJECTIVES, build_objective
from edgekd.errors import EdgeKDError
from edgekd.export.files import ARTIFACT_FILES
from edgekd.export.formats import EXPORT_FORMATS, ExportConfig
from edgekd.fairness.counts import CellCounts
from edgekd.fairness.metric_table import METRICS
from edgekd.registry import Registry, tag_of
from edgekd.train.objective import Batch
from edgekd.train.selection import SELECTION_METRICS

REGISTRIES = {
    "data source": DATA_SOURCES,
    "distillation method": OBJECTIVES,
    "metric": METRICS,
    "checkpoint metric": SELECTION_METRICS,
    "export format": EXPORT_FORMATS,
    "artifact": ARTIFACT_FILES,
    "bench backend": BACKENDS,
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_table_is_a_registry_that_names_what_it_has(kind):
    registry = REGISTRIES[kind]
    assert isinstance(registry, Registry) and registry.kind == kind and len(registry) > 0
    assert list(registry) == registry.names() == [name for name, _ in registry.items()]
    with pytest.raises(
        EdgeKDError,
        match=rf"^x\.y: unknown {kind} 'nope'; choose one of: " + ", ".join(sorted(registry.names())),
    ):
        registry.get("nope", key="x.y")


def test_a_name_is_registered_once_and_order_is_kept():
    table: Registry[int] = Registry("thing")
    table.add("b", 1)
    table.register("a")(2)
    assert table.names() == ["b", "a"] and table["a"] == 2
    with pytest.raises(ValueError, match="thing 'b' is registered twice"):
        table.add("b", 3)
    table.remove("b")
    assert table.names() == ["a"]


@pytest.mark.parametrize("name", DATA_SOURCES.names())
def test_every_data_source_declares_its_section(name):
    source = DATA_SOURCES[name]
    assert issubclass(source.config, Section) and tag_of(source.config, "source") == name
    assert callable(source.load) and source.config.__name__.endswith("Config")


class _StandInTeacher:
    """The teacher-outputs cache's interface: the teacher's logits and features on a split."""

    def for_split(self, split, key):
        rng = np.random.default_rng(len(split.labels))
        return (
            rng.normal(size=(len(split.labels), 4)).astype(np.float32),
            rng.normal(size=(len(split.labels), 16)).astype(np.float32),
        )


def _tiny_data():
    from edgekd.data.splits import DataSplits, Split

    def split(n):
        return Split(np.zeros((n, 8, 8, 3), np.uint8), np.arange(n) % 4, np.arange(n) % 2)

    return DataSplits(
        train=split(16),
        val=split(8),
        test=split(8),
        class_names=list("abcd"),
        group_names=["g", "h"],
        protected_attribute="colour",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_distillation_method_builds_and_gives_a_finite_loss(name):
    cfg_class = OBJECTIVES[name].config
    assert tag_of(cfg_class, "method") == name and cfg_class.__name__.endswith("Config")
    objective = build_objective(cfg_class(), label_smoothing=0.0)
    objective.prepare(teacher_outputs=_StandInTeacher(), student_features=16, data=_tiny_data())
    torch.manual_seed(0)
    logits = torch.randn(8, 4, requires_grad=True)
    batch = Batch(
        images=torch.zeros(8, 3, 8, 8),
        labels=torch.arange(8) % 4,
        groups=torch.arange(8) % 2,
        teacher_logits=torch.randn(8, 4),
        features=torch.randn(8, 16),
        teacher_features=torch.randn(8, 16),
    )
    objective.start_epoch(0, 2)
    loss = objective(logits, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def _hand_counts() -> CellCounts:
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    pred = np.array([0, 1, 1, 1, 0, 0, 0, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    return CellCounts(y, pred, groups, num_classes=2, num_groups=2)


@pytest.mark.parametrize("key", METRICS.names())
def test_every_card_metric_reads_counts_and_a_metrics_dict(key):
    from edgekd.fairness.metrics import evaluate_predictions

    metric = METRICS[key]
    value = metric.from_counts(_hand_counts())
    assert value is not None and 0.0 <= value <= 1.0
    counts = _hand_counts()
    metrics = evaluate_predictions(
        counts.y_true, counts.y_pred, counts.groups, class_names=["a", "b"], group_names=["g", "h"]
    )
    assert metric.read(metrics) == pytest.approx(value)  # the card's entry holds the same number
    assert metric.comparison in (">=", "<=")


@pytest.mark.parametrize("name", SELECTION_METRICS.names())
def test_every_checkpoint_metric_scores_counts(name):
    value = SELECTION_METRICS[name](_hand_counts())
    assert value is not None and 0.0 <= value <= 1.0


@pytest.mark.parametrize("key", EXPORT_FORMATS.names())
def test_every_export_format_is_a_recipe_section_naming_its_artifacts(key):
    fmt = EXPORT_FORMATS[key]
    assert fmt.key == key and key in ExportConfig.model_fields
    assert isinstance(getattr(ExportConfig(), key), fmt.config)
    assert all(name in ARTIFACT_FILES for name in fmt.artifacts)
    if fmt.exporter is not None:  # built from model.onnx, off unless the recipe asks
        assert getattr(ExportConfig(), key).enabled is False


@pytest.mark.parametrize("name", ARTIFACT_FILES.names())
def test_every_artifact_file_is_written_by_a_format_and_run_by_a_backend(name):
    row = ARTIFACT_FILES[name]
    assert row.name == name and row.file.startswith("model.") and row.file.endswith(".onnx")
    assert sum(name in fmt.artifacts for fmt in EXPORT_FORMATS.values()) == 1
    assert row.backend in BACKENDS and BACKENDS[row.backend].load is not None
    assert row.precision in ("fp32", "fp16", "int8")


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_bench_backend_names_the_files_it_runs(name):
    backend = BACKENDS[name]
    assert isinstance(backend, BenchBackend) and backend.name == name
    assert backend.files and set(backend.files) <= {"onnx", "engine", "torch"}
    assert backend.load is None or callable(backend.load)
    assert backend.needs is None or isinstance(backend.needs(), bool)
