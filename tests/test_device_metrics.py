"""The card's one metrics engine (counts, numpy only; what the device runs too) against fairlearn,
the independent reference, on random and edge-case predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from compare import assert_close_tree

from edgekd.errors import EdgeKDError
from edgekd.fairness.metrics import evaluate_predictions
from edgekd.fairness.reference import cross_check, fairlearn_metrics


@pytest.mark.parametrize("num_classes, num_groups, seed", [(4, 2, 0), (3, 3, 1), (5, 4, 2), (2, 2, 3)])
def test_count_metrics_equal_fairlearn_on_random_predictions(num_classes, num_groups, seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.integers(0, num_classes, n)
    groups = rng.integers(0, num_groups, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, num_classes, n))
    classes, group_names = [f"c{i}" for i in range(num_classes)], [f"g{i}" for i in range(num_groups)]
    assert_close_tree(
        evaluate_predictions(y, pred, groups, class_names=classes, group_names=group_names),
        fairlearn_metrics(y, pred, groups, class_names=classes, group_names=group_names),
    )


def test_count_metrics_equal_fairlearn_with_empty_cells_and_a_never_predicted_class():
    # class 2 never predicted, (class 1, group b) has no image, group c absent from the split
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 0, 2])
    groups = np.array([0, 1, 0, 0, 0, 1, 1, 0, 1, 1])
    pred = np.array([0, 1, 0, 1, 0, 0, 1, 1, 0, 0])
    names = dict(class_names=["x", "y", "z"], group_names=["a", "b", "c"])
    counted = evaluate_predictions(y, pred, groups, **names)
    assert_close_tree(counted, fairlearn_metrics(y, pred, groups, **names))
    assert counted["per_class"][1]["recall_by_group"] == {"a": 0.5, "b": None, "c": None}
    # predicted 0: 6 images, 3 right; predicted 1: 4 images, 1 right; 2 never predicted
    assert counted["macro_precision"] == pytest.approx((3 / 6 + 1 / 4 + 0) / 3)


def test_one_group_only_has_undefined_gaps():
    y, pred, groups = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.zeros(4, int)
    counted = evaluate_predictions(y, pred, groups, class_names=["x", "y"], group_names=["a", "b"])
    assert_close_tree(
        counted, fairlearn_metrics(y, pred, groups, class_names=["x", "y"], group_names=["a", "b"])
    )
    assert counted["mean_abs_disparity"] is None and counted["dpd"]["mean"] is None


def test_the_build_stops_in_one_line_when_the_engine_and_fairlearn_disagree():
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    groups = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    pred = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    names = dict(class_names=["x", "y"], group_names=["a", "b"])
    metrics = evaluate_predictions(y, pred, groups, **names)
    cross_check(metrics, y, pred, groups, what="student", **names)  # they agree: no error
    # hand-worked: P(pred=x | a) = 3/4, P(pred=x | b) = 1/4 -> DPD of each class 0.5
    assert metrics["dpd"]["mean"] == pytest.approx(0.5)
    broken = {**metrics, "dpd": {**metrics["dpd"], "mean": 0.25}}
    with pytest.raises(
        EdgeKDError,
        match=r"^student: dpd mean is 0.25 from the count engine and "
        r"0.5 from fairlearn; the two must agree",
    ):
        cross_check(broken, y, pred, groups, what="student", **names)


def test_device_commands_run_without_torch_fairlearn_scipy_or_matplotlib(tiny_build, tmp_path):
    """As after `pip install edgekd` on a device: the training stack cannot be imported."""
    import shutil
    import subprocess
    import sys
    import textwrap

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_build.bundle_dir, bundle)
    script = textwrap.dedent(f"""
        import sys
        BLOCK = ('torch', 'torchvision', 'timm', 'fairlearn', 'pandas', 'sklearn', 'scipy',
                 'matplotlib', 'PIL')
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in BLOCK:
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        from edgekd.cli import main
        b = {str(bundle)!r}
        for args in (['bench', b, '--iterations', '3', '--eval', '--update-card'], ['card', b],
                     ['card', b, '--format', 'html'], ['verify', b], ['card', b, '--check']):
            try:
                main(args, standalone_mode=False)
            except SystemExit as exit:
                assert exit.code in (0, None), (args, exit.code)
        print('LEAN OK')
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LEAN OK" in proc.stdout
    card = json.loads((bundle / "card.json").read_text())
    (result,) = [
        r
        for by_backend in card["bench"].values()
        for by_file in by_backend.values()
        for r in by_file.values()
    ]
    on_card = card["models"]["onnx"]["metrics"]  # the build's fairlearn numbers
    for key in ("top1", "mean_abs_disparity"):
        assert result["eval"][key] == pytest.approx(on_card[key])
