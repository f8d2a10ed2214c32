"""Gradient clipping and the EMA of the weights (``teacher``/``student``: ``grad_clip_norm``,
``ema_decay``): what the loop does with them, and their bad values."""

from __future__ import annotations

import pytest
import torch

from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe

DATA = {"image_size": 32, "num_classes": 2, "train_size": 320, "val_size": 32, "test_size": 16}


def _fit(tmp_path, **student):
    from edgekd.data import load_data
    from edgekd.distill import CrossEntropy
    from edgekd.models import create_model
    from edgekd.stages import Stage
    from edgekd.train import fit

    recipe = parse_recipe({"name": "aids", "seed": 0, "data": DATA,
                           "student": {"arch": "test_efficientnet", "epochs": 1, "batch_size": 32,
                                       **student}})
    data = load_data(recipe.data, seed=0)
    torch.manual_seed(0)
    model = create_model(recipe.student, 2, key="student")
    stage = Stage(tmp_path, "student", {})
    stage.start()
    fit(model, CrossEntropy(), data, recipe.student, stage, seed=0, log=lambda m: None)
    return model, stage


def test_every_step_clips_the_gradient_norm_to_the_recipes_value(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        calls.append(max_norm)
        return real(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _fit(tmp_path / "clipped", grad_clip_norm=0.5)
    assert calls == [0.5] * 10  # 320 images / batch 32
    calls.clear()
    _fit(tmp_path / "plain")
    assert calls == []


def test_with_ema_the_averaged_weights_are_validated_kept_and_shipped(tmp_path):
    model, stage = _fit(tmp_path, ema_decay=0.5)
    last = torch.load(stage.path("last.pt"), weights_only=True)
    best = torch.load(stage.path("best.pt"), weights_only=True)["model"]
    shipped = model.state_dict()
    for key, value in last["ema"].items():
        assert torch.equal(best[key], value) and torch.equal(shipped[key], value), key
    assert any(not torch.equal(last["model"][k], last["ema"][k])
               for k in last["ema"] if last["ema"][k].is_floating_point())
    _, plain = _fit(tmp_path / "plain")
    assert "ema" not in torch.load(plain.path("last.pt"), weights_only=True)


@pytest.mark.parametrize("key, value, needle", [
    ("ema_decay", 1.5, "student.ema_decay = 1.5"),
    ("grad_clip_norm", -1, "student.grad_clip_norm = -1"),
])
def test_bad_training_aid_values_are_named(key, value, needle):
    with pytest.raises(EdgeKDError, match=needle):
        parse_recipe({"name": "x", "student": {"arch": "test_efficientnet", "epochs": 1, key: value}})
