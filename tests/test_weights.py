"""First weights (issue 16, part 2): local safetensors / torch checkpoints with a re-sized
classifier, timm's pretrained weights with no hub (one line naming the model and the way out),
the recipe's checks, and what the card says the networks started from. Nothing is downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from edgekd.errors import EdgeKDError
from edgekd.models import ModelConfig, create_model, load_weights, weights_record
from edgekd.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[1]


def _source(num_classes: int, seed: int = 1):
    torch.manual_seed(seed)
    cfg = ModelConfig(arch="test_efficientnet", epochs=1, zero_head=False)
    return create_model(cfg, num_classes=num_classes, key="student")


def _assert_backbone_equal(model, state: dict, skip: set[str]) -> None:
    own = model.state_dict()
    checked = [k for k in state if k not in skip]
    assert len(checked) > 50
    for key in checked:
        assert torch.equal(own[key], state[key]), key


def test_a_safetensors_file_for_another_class_count_loads_and_resizes_the_head(tmp_path):
    source = _source(num_classes=10)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    lines = []
    cfg = ModelConfig(arch="test_efficientnet", epochs=1, checkpoint=tmp_path / "model.safetensors")
    model = create_model(cfg, num_classes=3, key="student", log=lines.append)
    head = model.get_classifier()
    assert head.weight.shape == (3, source.get_classifier().in_features)
    assert torch.equal(head.weight, torch.zeros_like(head.weight))  # new, and zero_head is on
    assert torch.equal(head.bias, torch.zeros(3))
    _assert_backbone_equal(model, state, skip={"classifier.weight", "classifier.bias"})
    assert lines == [
        "student.checkpoint: model.safetensors holds a classifier for 10 classes; "
        "the recipe has 3: loaded everything else, the classifier starts new"
    ]

    kept = create_model(cfg.model_copy(update={"zero_head": False}), num_classes=3, key="student", log=None)
    assert kept.get_classifier().weight.abs().sum() > 0  # timm's init when zero_head is off
    same = create_model(cfg, num_classes=10, key="student", log=lines.append)
    assert torch.equal(same.get_classifier().weight, state["classifier.weight"])  # fits: loaded
    assert len(lines) == 1


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module_prefix"])
def test_torch_checkpoints_with_a_wrapper_key_or_a_ddp_prefix_load(tmp_path, wrap):
    source = _source(num_classes=4, seed=2)
    state = source.state_dict()
    payload = (
        {"module." + k: v for k, v in state.items()}
        if wrap == "module_prefix"
        else {wrap: state, "epoch": 7, "optimizer": {"lr": torch.tensor(0.1)}}
    )
    torch.save(payload, tmp_path / "ckpt.pth")
    model = _source(num_classes=4, seed=3)
    assert load_weights(model, tmp_path / "ckpt.pth", key="teacher.checkpoint") is False
    _assert_backbone_equal(model, state, skip=set())


@pytest.mark.parametrize(
    "name, content, needle",
    [
        (
            "model.safetensors",
            b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
            "not a readable safetensors file",
        ),
        ("model.safetensors", b"", "not a readable safetensors file"),
        ("model.pth", b"PK\x03\x04 broken zip", "neither a safetensors nor a loadable torch weights file"),
    ],
)
def test_a_corrupt_weights_file_is_one_line(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EdgeKDError) as err:
        load_weights(_source(num_classes=2), path, key="student.checkpoint")
    message = str(err.value)
    assert needle in message and message.startswith("student.checkpoint: ") and "\n" not in message


def test_a_mismatch_outside_the_classifier_stays_an_error(tmp_path):
    state = _source(num_classes=4).state_dict()
    del state["conv_stem.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    with pytest.raises(
        EdgeKDError, match=r"do not fit EfficientNet with 4 classes \(missing conv_stem.weight\)"
    ):
        load_weights(_source(num_classes=4), tmp_path / "w.safetensors", key="student.checkpoint")
    torch.save({"model": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(EdgeKDError, match="holds a dict of other things, not a state dict"):
        load_weights(_source(num_classes=4), tmp_path / "list.pt", key="student.checkpoint")


def test_pretrained_weights_without_hub_or_cache_give_one_line_naming_the_model(tmp_path):
    """A real build, offline, with an empty Hugging Face cache: exit 2 and one line naming the
    exact weights and how to get them. HF_HUB_OFFLINE makes sure nothing is fetched."""
    recipe = {
        "name": "offline",
        "data": {"image_size": 32, "num_classes": 2, "train_size": 64, "val_size": 16, "test_size": 16},
        "teacher": {"arch": "test_efficientnet", "pretrained": True, "epochs": 1, "batch_size": 16},
        "student": {"arch": "test_efficientnet", "epochs": 1, "batch_size": 16},
        "export": {"onnx": {"exporter": "torchscript", "opset": 17}},
    }
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "edgekd", "build", str(path), "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert (
        "teacher.pretrained: timm's weights timm/test_efficientnet.r160_in1k (for test_efficientnet)"
    ) in lines[0]
    assert "data:" not in done.stdout  # stopped before reading any data
    assert str(tmp_path / "hf" / "hub") in lines[0]
    assert "`hf download timm/test_efficientnet.r160_in1k`" in lines[0]
    assert "HF_HUB_OFFLINE is set" in lines[0] and "teacher.checkpoint" in lines[0]
    assert not any((tmp_path / "hf").rglob("*.safetensors"))


def test_pretrained_weights_load_offline_from_the_hub_cache_with_a_new_zeroed_head(tmp_path, monkeypatch):
    """timm reads the hub's cache when offline: a cache laid out as huggingface_hub keeps it
    (refs/main -> snapshots/<commit>/model.safetensors), written here, serves pretrained: true."""
    from huggingface_hub import constants

    from edgekd.models.weights import fetch_pretrained

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # any request would raise
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--timm--test_efficientnet.r160_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    state = {k: v.contiguous() for k, v in _source(num_classes=1000).state_dict().items()}
    save_file(state, repo / "snapshots" / commit / "model.safetensors")

    cfg = ModelConfig(arch="test_efficientnet", pretrained=True, epochs=1)
    fetch_pretrained(cfg.arch, key="teacher.pretrained")
    model = create_model(cfg, num_classes=3, key="teacher")
    assert torch.equal(model.get_classifier().weight, torch.zeros(3, state["classifier.weight"].shape[1]))
    _assert_backbone_equal(model, state, skip={"classifier.weight", "classifier.bias"})
    imagenet = create_model(cfg, num_classes=1000, key="teacher")  # the head fits: loaded
    assert torch.equal(imagenet.get_classifier().weight, state["classifier.weight"])

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(
        EdgeKDError,
        match=r"^teacher.pretrained: timm's weights "
        r"timm/test_efficientnet.r160_in1k \(for test_efficientnet\)",
    ):
        create_model(cfg, num_classes=3, key="teacher")
    assert create_model(cfg, num_classes=3, key="teacher", load=False) is not None  # reused stage


@pytest.mark.parametrize(
    "teacher, needle",
    [
        (
            {"arch": "test_efficientnet.nope", "pretrained": True},
            "timm has no weights tagged 'nope' for test_efficientnet (it has: test_efficientnet.r160_in1k)",
        ),
        (
            {"arch": "efficientnet_b8", "pretrained": True},
            "timm has no pretrained weights for efficientnet_b8",
        ),
        (
            {"arch": "test_efficientnet", "pretrained": True, "checkpoint": "w.pt"},
            "pretrained: true and a checkpoint both give the first weights; keep one",
        ),
    ],
)
def test_recipe_errors_about_weights_name_the_key(tmp_path, teacher, needle):
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(EdgeKDError) as err:
        parse_recipe({"name": "x", "teacher": {"epochs": 1, **teacher}}, base_dir=tmp_path)
    assert "teacher" in str(err.value) and needle in str(err.value)


def test_a_tagged_arch_with_pretrained_is_accepted_and_recorded_with_its_tag():
    recipe = parse_recipe(
        {"name": "x", "teacher": {"arch": "test_efficientnet.r160_in1k", "pretrained": True, "epochs": 1}}
    )
    assert weights_record(recipe.teacher) == {
        "source": "pretrained",
        "hub_id": "timm/test_efficientnet.r160_in1k",
        "tag": "test_efficientnet.r160_in1k",
    }
    recipe.teacher.pretrained = False  # the tag then names the architecture only
    assert weights_record(recipe.teacher) == {"source": "scratch"}
    model = create_model(recipe.teacher, num_classes=2, key="teacher")
    assert type(model).__name__ == "EfficientNet" and model.num_classes == 2
    untagged = ModelConfig(arch="efficientnet_b3", pretrained=True, epochs=1)
    assert weights_record(untagged)["hub_id"] == "timm/efficientnet_b3.ra2_in1k"  # timm's default


def test_weights_record_of_a_checkpoint_names_its_hub_repo_when_it_sits_in_the_hf_cache(tmp_path):
    snapshot = tmp_path / "hub" / "models--timm--efficientnet_b0.ra_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    import hashlib

    sha = hashlib.sha256(b"weights").hexdigest()
    cfg = ModelConfig(arch="efficientnet_b0", epochs=1, checkpoint=snapshot / "model.safetensors")
    assert weights_record(cfg) == {
        "source": "checkpoint",
        "file": "model.safetensors",
        "sha256": sha,
        "hub_id": "timm/efficientnet_b0.ra_in1k",
    }
    (tmp_path / "b0.pt").write_bytes(b"weights")
    local = cfg.model_copy(update={"checkpoint": tmp_path / "b0.pt"})
    assert weights_record(local) == {"source": "checkpoint", "file": "b0.pt", "sha256": sha}
    assert weights_record(ModelConfig(arch="efficientnet_b0", epochs=1)) == {"source": "scratch"}


def _card(teacher: dict, student: dict) -> dict:
    entry = {"kind": "torch", "metrics": {"top1": 0.5}}
    return {
        "name": "c",
        "data": {"source": "wider_attribute"},
        "models": {
            "teacher": {**entry, "weights": teacher},
            "baseline": {**entry, "weights": student},
            "student": {**entry, "weights": student},
            "onnx": {**entry, "kind": "onnx"},
        },
    }


def test_front_matter_names_base_model_only_for_loaded_hub_weights():
    from edgekd.card.markdown import front_matter

    scratch = {"source": "scratch"}
    b3 = {
        "source": "pretrained",
        "hub_id": "timm/efficientnet_b3.ra2_in1k",
        "tag": "efficientnet_b3.ra2_in1k",
    }
    b0 = {"source": "pretrained", "hub_id": "timm/efficientnet_b0.ra_in1k", "tag": "efficientnet_b0.ra_in1k"}
    local = {"source": "checkpoint", "file": "b0.pt", "sha256": "0" * 64}

    none = front_matter(_card(scratch, scratch))
    assert "base_model" not in none and "base_model_relation" not in none
    assert "base_model" not in front_matter(_card(scratch, local))  # a local file is no hub repo
    teacher_only = front_matter(_card(b3, scratch))
    assert teacher_only["base_model"] == "timm/efficientnet_b3.ra2_in1k"
    assert teacher_only["base_model_relation"] == "finetune"
    both = front_matter(_card(b3, b0))
    assert both["base_model"] == ["timm/efficientnet_b0.ra_in1k", "timm/efficientnet_b3.ra2_in1k"]
    assert list(both).index("base_model") < list(both).index("model-index")


def test_card_md_says_where_each_network_started(tmp_path):
    from edgekd.card.markdown import _weights_sentence

    b3 = {"source": "pretrained", "hub_id": "timm/efficientnet_b3.ra2_in1k"}
    local = {"source": "checkpoint", "file": "b0.safetensors", "sha256": "ab" * 32}
    assert _weights_sentence(_card(b3, local)) == (
        "Training started: teacher from timm's pretrained weights timm/efficientnet_b3.ra2_in1k; "
        "baseline from the checkpoint b0.safetensors (sha256 abababababab); student from the "
        "checkpoint b0.safetensors (sha256 abababababab)."
    )
    old = _card(b3, local)
    for entry in old["models"].values():
        entry.pop("weights", None)
    assert _weights_sentence(old) == ""  # cards written before the key
