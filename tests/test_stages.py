"""Stage reuse (hash-keyed) and resume after an interrupted build."""

import shutil

import numpy as np
import pytest

from edgekd.pipeline import build


def test_changing_only_the_student_does_not_retrain_the_teacher(tiny_build, tiny_recipe, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(tiny_build.run_dir, out / "tiny")
    teacher_ckpt = out / "tiny/stages/teacher/best.pt"
    before = teacher_ckpt.stat().st_mtime_ns
    again = build(tiny_recipe, out=out, overrides=("student.epochs=1",), log=lambda m: None)
    assert again.stage_status["teacher"] == "reused"
    assert again.stage_status["student"] == "trained"
    assert again.stage_status["baseline"] == "trained"  # the baseline is a student too
    assert teacher_ckpt.stat().st_mtime_ns == before
    # the original recipe is back to reusing everything but what --set changed
    third = build(tiny_recipe, out=out, log=lambda m: None)
    assert third.stage_status["teacher"] == "reused"


def test_interrupted_build_resumes_from_its_last_epoch(tiny_build, tiny_recipe, tmp_path):
    class Stop(KeyboardInterrupt):
        pass

    def stop_in_student(stage, epoch, record):
        if stage == "student" and epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        build(tiny_recipe, out=tmp_path, log=lambda m: None, on_epoch_end=stop_in_student)
    stage = tmp_path / "tiny/stages/student"
    assert (stage / "last.pt").exists() and not (stage / "done.json").exists()
    assert not (tmp_path / "tiny/bundle").exists()

    lines = []
    resumed = build(tiny_recipe, out=tmp_path, log=lines.append)
    assert resumed.stage_status["student"] == "resumed"
    assert resumed.stage_status["teacher"] == "reused"
    assert "student: resuming after epoch 1 of 2" in lines
    assert not any(line.startswith("student epoch 1/2") for line in lines)
    # the same weights as a build that was never stopped
    ours = np.load(stage / "test_predictions.npz")["logits"]
    reference = np.load(tiny_build.run_dir / "stages/student/test_predictions.npz")["logits"]
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_seeds_train_each_seed_once_and_put_welch_on_the_card(tiny_recipe, tmp_path):
    from scipy import stats

    out = tmp_path / "runs"
    result = build(
        tiny_recipe,
        out=out,
        overrides=("seeds=[0, 1]", "teacher.epochs=1", "student.epochs=1"),
        log=lambda m: None,
    )
    run = out / "tiny"
    assert not (run / "seeds/2").exists()
    for seed in (1,):
        for stage in ("teacher", "baseline", "student"):
            assert (run / f"seeds/{seed}/stages/{stage}/done.json").exists()
    welch = result.card["significance"]["across_seeds"]
    assert welch["seeds"] == [0, 1]  # two a side: the fewest Welch's test takes
    test = welch["teacher_to_student"]
    assert test["seeds"] == [2, 2] and len(test["per_class"]) == 4

    # recompute class 0 by hand from the saved predictions of each seed
    labels = np.load(run / "stages/teacher/test_predictions.npz")["labels"]

    def normalised(stage: str) -> list[float]:
        values = []
        for root in (run, run / "seeds/1"):
            pred = np.load(root / f"stages/{stage}/test_predictions.npz")["logits"].argmax(1)
            values.append(((pred == 0) & (labels == 0)).sum() / (labels == 0).sum() / (pred == labels).mean())
        return values

    a, b = normalised("teacher"), normalised("student")
    assert test["per_class"][0]["mean_normalised_a"] == pytest.approx(np.mean(a))
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    if np.isfinite(expected):
        assert test["per_class"][0]["p"] == pytest.approx(expected)
    else:  # no spread on either side: p is 1 for equal means, 0 otherwise
        assert test["per_class"][0]["p"] == (1.0 if np.isclose(np.mean(a), np.mean(b)) else 0.0)
    assert "### Across seeds (0, 1)" in (result.bundle_dir / "card.md").read_text()

    again = build(
        tiny_recipe,
        out=out,
        overrides=("seeds=[0, 1]", "teacher.epochs=1", "student.epochs=1"),
        log=lambda m: None,
    )
    assert again.card["significance"]["across_seeds"] == welch  # every seed's stages reused
