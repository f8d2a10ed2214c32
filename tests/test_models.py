"""Model creation: a from-scratch network starts from uniform predictions (zero head)."""

from __future__ import annotations

import torch

from edgekd.models import ModelConfig, create_model


def _logits(zero_head: bool) -> torch.Tensor:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="test_efficientnet", epochs=1, zero_head=zero_head)
    model = create_model(cfg, num_classes=4, key="student").eval()
    with torch.no_grad():
        return model(torch.randn(3, 3, 32, 32))


def test_zero_head_starts_at_uniform_predictions():
    zero = _logits(True)
    assert torch.equal(zero, torch.zeros(3, 4))  # softmax 1/4 each: loss ln 4 at step 0
    timm_init = _logits(False)
    assert timm_init.abs().max() > 0.01  # timm's own init, kept when asked for


def test_zero_head_leaves_loaded_weights_alone(tmp_path):
    torch.manual_seed(1)
    source = create_model(
        ModelConfig(arch="test_efficientnet", epochs=1, zero_head=False), num_classes=4, key="student"
    )
    torch.save(source.state_dict(), tmp_path / "w.pt")
    cfg = ModelConfig(arch="test_efficientnet", epochs=1, checkpoint=tmp_path / "w.pt")
    loaded = create_model(cfg, num_classes=4, key="student")
    assert torch.equal(loaded.get_classifier().weight, source.get_classifier().weight)
