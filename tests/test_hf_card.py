"""card.md as the Hugging Face Hub reads it: one model-index result, the shipped model's, a license
and a datasets entry only for a real Hub dataset id. Parsed with huggingface_hub itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgekd.card.build import build_card
from edgekd.card.evaluation import evaluate
from edgekd.card.markdown import render_markdown
from edgekd.errors import EdgeKDError
from edgekd.fairness.metric_table import METRICS
from edgekd.recipe import parse_recipe

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub.repocard_data import model_index_to_eval_results  # noqa: E402

CLASSES = ["cat", "dog", "fox", "owl"]


class _Split(SimpleNamespace):
    def __len__(self):
        return len(self.labels)


def _card(card_settings: dict | None = None, *, source: str = "handmade") -> dict:
    """A card from hand-made predictions: teacher, baseline and student differ, and the ONNX
    file disagrees with the torch student on 8 images, so every model's numbers differ."""
    rng = np.random.default_rng(3)
    n = 400
    y = np.repeat(np.arange(4), n // 4)
    groups = np.tile([0, 1], n // 2)

    def noisy(p_right):
        return np.where(rng.random(n) < p_right, y, (y + 1) % 4)

    preds = {"teacher": noisy(0.95), "baseline": noisy(0.7), "student": noisy(0.8)}
    onnx_pred = preds["student"].copy()
    onnx_pred[:8] = (onnx_pred[:8] + 1) % 4
    recipe = parse_recipe(
        {
            "name": "made",
            "export": {"onnx": {"min_agreement": 0.9}},
            "card": {"bootstrap_resamples": 0, **(card_settings or {})},
        }
    )
    data = SimpleNamespace(
        test=_Split(labels=y, groups=groups),
        train=[0] * 10,
        val=[0] * 5,
        num_classes=4,
        class_names=CLASSES,
        group_names=["day", "night"],
        protected_attribute="lighting",
        description={"source": source, "synthetic": False, "summary": "hand-made predictions"},
    )
    evaluations = {
        name: evaluate(name, pred, data, kind="torch", size_bytes=1_000_000) for name, pred in preds.items()
    }
    evaluations["onnx"] = evaluate(
        "onnx",
        onnx_pred,
        data,
        kind="onnx",
        size_bytes=1_000_000,
        file="model.onnx",
        precision="fp32",
        runtime="onnxruntime 1.20.0 (CPUExecutionProvider)",
        details={"export": {"argmax_agreement": 0.98}},
        reference=evaluations["student"],
    )
    return build_card(recipe, data, evaluations)


def _expected(entry: dict) -> dict[str, float]:
    """The card.json numbers of one model, by Hub metric type."""
    metrics = entry["metrics"]
    out = {
        m.hub_type or m.key: round(m.read(metrics), 6)
        for m in METRICS.values()
        if m.read(metrics) is not None
    }
    out["worst_class_group_recall"] = round(metrics["worst_cell"]["recall"], 6)
    return out


def _parse(md: str):
    card = hub.ModelCard(md)
    return card, card.data.eval_results


def test_the_hub_reads_one_result_the_shipped_onnx_and_its_own_numbers():
    card = _card()
    assert len({round(e["metrics"]["top1"], 6) for e in card["models"].values()}) == 4  # all differ
    parsed, results = _parse(render_markdown(card))
    expected = _expected(card["models"]["onnx"])
    assert len(results) == len(expected) == 5  # one EvalResult per metric
    assert {r.metric_type: r.metric_value for r in results} == expected
    assert {r.unique_identifier for r in results} == {
        ("image-classification", "handmade", None, "test", None)
    }  # one result after merging
    assert all("model.onnx through onnxruntime 1.20.0" in r.metric_name for r in results)
    assert not any(
        word in r.metric_name + str(r.task_name)
        for r in results
        for word in ("teacher", "baseline", "student")
    )
    # the Hub writes the model-index back from these results: still one result
    assert len(parsed.data.to_dict()["model-index"][0]["results"]) == 1
    name, again = model_index_to_eval_results(parsed.data.to_dict()["model-index"])
    assert name == "made" and [r.metric_value for r in again] == [r.metric_value for r in results]
    worst = card["models"]["onnx"]["metrics"]["worst_cell"]
    [cell] = [r for r in results if r.metric_type == "worst_class_group_recall"]
    assert f"{worst['class']}, {worst['group']}" in cell.metric_name and "lighting" in cell.metric_name


def test_without_an_onnx_entry_the_torch_student_is_the_result():
    card = _card()
    del card["models"]["onnx"]
    _, results = _parse(render_markdown(card))
    assert {r.metric_type: r.metric_value for r in results} == _expected(card["models"]["student"])


def test_license_defaults_to_unknown_and_takes_a_hub_id():
    parsed, _ = _parse(render_markdown(_card()))
    assert parsed.data.license == "unknown"
    assert parsed.data.datasets is None  # handmade is no Hub dataset
    md = render_markdown(_card({"license": "apache-2.0"}))
    assert hub.ModelCard(md).data.license == "apache-2.0" and "License: apache-2.0." in md
    other = hub.ModelCard(render_markdown(_card({"license": "other", "license_name": "acme-eula"})))
    assert other.data.license == "other" and other.data.license_name == "acme-eula"


@pytest.mark.parametrize(
    ("card", "needle"),
    [
        (
            {"license": "apache2"},
            "card.license = 'apache2': not a Hugging Face Hub license id; use one of apache-2.0, mit,",
        ),
        ({"license": "other"}, "card.license_name = None: card.license is other: name the license here"),
        ({"dataset_id": "a b"}, "card.dataset_id = 'a b': not a Hugging Face Hub dataset id"),
    ],
)
def test_a_bad_license_or_dataset_id_is_one_line(card, needle):
    with pytest.raises(EdgeKDError) as err:
        parse_recipe({"name": "x", "card": card})
    assert len(str(err.value).splitlines()) == 1 and needle in str(err.value)


def test_datasets_only_for_a_real_hub_dataset():
    md = render_markdown(_card({"dataset_id": "acme/street-scenes"}))
    parsed, results = _parse(md)
    assert parsed.data.datasets == ["acme/street-scenes"]
    assert {r.dataset_type for r in results} == {"acme/street-scenes"}
    # a source whose images are a Hub dataset maps to it; the result's name says what was changed
    parsed, results = _parse(render_markdown(_card(source="fashion_mnist_colored")))
    assert parsed.data.datasets == ["zalando-datasets/fashion_mnist"]
    assert {(r.dataset_type, r.dataset_name) for r in results} == {
        ("zalando-datasets/fashion_mnist", "fashion_mnist_colored (from zalando-datasets/fashion_mnist)")
    }


def test_a_real_build_card_md_parses_to_the_onnx_numbers(tiny_build):
    import json

    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    parsed, results = _parse((tiny_build.bundle_dir / "card.md").read_text())
    assert {r.metric_type: r.metric_value for r in results} == _expected(card["models"]["onnx"])
    assert len(parsed.data.to_dict()["model-index"][0]["results"]) == 1
    assert parsed.data.license == "unknown" and parsed.data.datasets is None  # trifeature: generated
