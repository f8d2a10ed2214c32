"""The checkpoint metric: hand-worked scores, each setting picks its own epoch, and a real build
keeps (and the card names) the epoch the recipe's metric chose."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch

from edgekd.fairness.counts import CellCounts
from edgekd.models import ModelConfig
from edgekd.train.selection import (
    SELECTION_METRICS,
    best_epoch,
    cell_balanced_accuracy,
    resolve_select_by,
    validation_scores,
    worst_cell_recall,
)

# A validation split of 2 classes x 2 groups, biased like the quickstart's: 8 majority images and
# 2 minority images per class. Cells: (0, g0) 8 images, (0, g1) 2, (1, g0) 2, (1, g1) 8.
LABELS = np.array([0] * 10 + [1] * 10)
GROUPS = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8)


def _predict(wrong: list[int]) -> np.ndarray:
    pred = LABELS.copy()
    pred[wrong] = 1 - pred[wrong]
    return pred


# Epoch 1 follows the shortcut: right on all 16 majority images, wrong on all 4 minority ones.
SHORTCUT = _predict([8, 9, 10, 11])
# Epoch 2 reads the shape: 3 majority mistakes per class, minority cells all right.
SHAPE = _predict([0, 1, 2, 12, 13, 14])


def _scores(pred: np.ndarray) -> dict:
    return validation_scores(CellCounts(LABELS, pred, GROUPS, num_classes=2, num_groups=2))


def test_scores_hand_worked():
    shortcut = _scores(SHORTCUT)
    # top-1 16/20; cells recall 1, 0, 0, 1 -> mean 0.5, worst 0
    assert shortcut == {"val_top1": 0.8, "val_cell_balanced_accuracy": 0.5, "val_worst_cell_recall": 0.0}
    shape = _scores(SHAPE)
    # top-1 14/20; cells recall 5/8, 1, 1, 5/8 -> mean 13/16, worst 5/8
    assert shape["val_top1"] == pytest.approx(0.7)
    assert shape["val_cell_balanced_accuracy"] == pytest.approx(13 / 16)
    assert shape["val_worst_cell_recall"] == pytest.approx(5 / 8)


def test_empty_cells_are_left_out_not_counted_as_zero():
    counts = CellCounts(
        np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([0, 0, 0]), num_classes=2, num_groups=2
    )  # group 1 has no image
    assert cell_balanced_accuracy(counts) == pytest.approx((0.5 + 1.0) / 2)
    assert worst_cell_recall(counts) == 0.5


def test_each_setting_picks_its_own_epoch():
    history = [
        {"epoch": 1, **_scores(SHORTCUT)},
        {"epoch": 2, **_scores(SHAPE)},
        {"epoch": 3, **_scores(SHORTCUT)},
    ]
    assert best_epoch(history, "top1")["epoch"] == 1  # ties keep the first
    assert best_epoch(history, "cell_balanced_accuracy")["epoch"] == 2
    assert best_epoch(history, "worst_cell_recall")["epoch"] == 2
    undefined = [{"epoch": 1, "val_worst_cell_recall": None}, {"epoch": 2, "val_worst_cell_recall": 0.1}]
    assert best_epoch(undefined, "worst_cell_recall")["epoch"] == 2


def test_auto_is_group_aware_where_there_are_groups():
    assert resolve_select_by("auto", 2) == "cell_balanced_accuracy"
    assert resolve_select_by("auto", 1) == "top1"
    assert resolve_select_by("worst_cell_recall", 1) == "worst_cell_recall"


def test_recipe_choices_are_the_registered_metrics():
    choices = set(get_args(ModelConfig.model_fields["select_by"].annotation))
    assert choices == {"auto", *SELECTION_METRICS.names()}


def test_build_keeps_the_chosen_epoch_and_the_card_names_it(tiny_build):
    stage = tiny_build.run_dir / "stages" / "student"
    from edgekd.files import read_json

    history = read_json(stage / "history.json")
    assert all(r["selected_by"] == "cell_balanced_accuracy" for r in history)
    chosen = best_epoch(history, "cell_balanced_accuracy")
    assert torch.load(stage / "best.pt", weights_only=True)["epoch"] == chosen["epoch"]
    training = tiny_build.card["models"]["student"]["training"]
    assert training["selected_by"] == "cell_balanced_accuracy"
    assert training["best_epoch"] == chosen["epoch"]
    assert training["best_val_cell_balanced_accuracy"] == chosen["val_cell_balanced_accuracy"]
    card_md = (tiny_build.bundle_dir / "card.md").read_text()
    assert "best epoch chosen by validation cell_balanced_accuracy" in card_md
