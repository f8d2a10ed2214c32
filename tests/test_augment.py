"""Training-time augmentation (``teacher.augment`` / ``student.augment``, edgekd.data.augment):
pixels fixed by (seed, epoch, index), the teacher-outputs cache on the augmented images, the
evaluation path untouched, resume, stage keys, and bad values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.data.augment import AugmentConfig, Augmenter
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe

DATA = {"image_size": 24, "num_classes": 2, "train_size": 48, "val_size": 16, "test_size": 16}
ON = {"enabled": True, "policy": "randaugment", "num_ops": 2, "magnitude": 9}


def _images(n: int = 20, size: int = 24) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ----------------------------------------------------------------------- the same pixels
@pytest.mark.parametrize("policy", ["none", "randaugment", "trivialaugment"])
def test_same_seed_epoch_and_index_give_the_same_pixels_in_any_batch(policy):
    images = _images()
    augment = Augmenter(AugmentConfig(enabled=True, policy=policy), seed=3)
    rng_before = torch.get_rng_state()
    whole = augment(images, np.arange(20), epoch=5)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the loop's own draws are untouched
    assert whole.shape == images.shape and whole.dtype == np.uint8
    assert (whole != images).any(axis=(1, 2, 3)).all()  # every image was transformed
    # another batch composition, order and size; a new augmenter with the same settings
    picked = np.array([17, 2, 9])
    again = Augmenter(AugmentConfig(enabled=True, policy=policy), seed=3)
    np.testing.assert_array_equal(again(images[picked], picked, epoch=5), whole[picked])
    np.testing.assert_array_equal(augment(images[[9]], [9], epoch=5), whole[[9]])
    # two torchrun ranks each augmenting every other image of the epoch
    for rank in (0, 1):
        share = np.arange(rank, 20, 2)
        np.testing.assert_array_equal(augment(images[share], share, epoch=5), whole[share])


def test_another_epoch_or_seed_gives_other_pixels():
    images = _images()
    cfg = AugmentConfig(enabled=True, policy="trivialaugment")
    base = Augmenter(cfg, seed=3)(images, np.arange(20), epoch=5)
    for other in (
        Augmenter(cfg, seed=3)(images, np.arange(20), epoch=6),
        Augmenter(cfg, seed=4)(images, np.arange(20), epoch=5),
    ):
        assert (other != base).any(axis=(1, 2, 3)).all()


def test_off_is_the_identity_and_each_transform_can_be_turned_off():
    images = _images()
    assert Augmenter(AugmentConfig(), seed=0)(images, np.arange(20), epoch=0) is images
    assert Augmenter(None, seed=0)(images, np.arange(20), epoch=0) is images
    flip = Augmenter(AugmentConfig(enabled=True, crop_scale=None, hflip=1.0), seed=0)
    np.testing.assert_array_equal(flip(images, np.arange(20), epoch=0), images[:, :, ::-1])
    nothing = Augmenter(AugmentConfig(enabled=True, crop_scale=None, hflip=0.0), seed=0)
    np.testing.assert_array_equal(nothing(images, np.arange(20), epoch=0), images)


# ------------------------------------------------------------------------- in the loop
def _setup(student: dict, *, fresh: bool = False):
    from edgekd.data import load_data

    recipe = parse_recipe(
        {
            "name": "aug",
            "seed": 0,
            "data": {**DATA, "fresh_train_each_epoch": fresh},
            "teacher": {"arch": "test_efficientnet", "epochs": 1},
            "student": {
                "arch": "test_efficientnet",
                "epochs": 2,
                "batch_size": 8,
                "zero_head": False,
                **student,
            },
        }
    )
    return recipe, load_data(recipe.data, seed=0)


def _fit(tmp_path, name, recipe, data, objective=None, **kwargs):
    from edgekd.distill import CrossEntropy
    from edgekd.models import create_model
    from edgekd.stages import Stage
    from edgekd.train import fit

    torch.manual_seed(0)
    model = create_model(recipe.student, data.num_classes, key="student")
    stage = Stage(tmp_path, name, {})
    stage.start()
    history = fit(
        model, objective or CrossEntropy(), data, recipe.student, stage, seed=0, log=lambda m: None, **kwargs
    )
    return model, stage, history


def _recording_kd():
    from edgekd.distill import KDLoss

    class RecordingKD(KDLoss):
        """KD that keeps every batch's images and teacher outputs."""

        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, logits, batch):
            self.seen.append(
                (batch.images.detach().clone(), batch.teacher_logits.clone(), batch.teacher_features.clone())
            )
            return super().forward(logits, batch)

    return RecordingKD()


@pytest.mark.parametrize("fresh", [False, True], ids=["file-like", "fresh-each-epoch"])
def test_cached_teacher_outputs_are_the_teachers_on_the_augmented_batches(tmp_path, fresh):
    import timm

    from edgekd.models import pooled_features_and_logits
    from edgekd.models.tensors import to_input
    from edgekd.train.teacher_outputs import TeacherOutputs

    recipe, data = _setup({"augment": ON}, fresh=fresh)
    torch.manual_seed(1)
    teacher = timm.create_model("test_efficientnet", num_classes=2).eval()
    outputs = TeacherOutputs(teacher, data, cache_dir=tmp_path / "cache")
    cached, live = _recording_kd(), _recording_kd()
    _fit(tmp_path, "cached", recipe, data, cached, teacher_outputs=outputs, cache_teacher=True)
    _fit(
        tmp_path,
        "live",
        recipe,
        data,
        live,
        teacher_outputs=TeacherOutputs(teacher, data),
        cache_teacher=False,
    )
    assert outputs.computed == 2  # one teacher pass per epoch, over its augmented images
    assert len(list((tmp_path / "cache").glob("epoch-*-augmented-*.npz"))) == 2
    assert len(cached.seen) == len(live.seen) == 12  # 2 epochs x 48 images / batch 8
    raw = to_input(data.train.images, data.mean, data.std).flatten(1)
    for (images, logits, features), (live_images, live_logits, _) in zip(cached.seen, live.seen):
        torch.testing.assert_close(images, live_images, rtol=0, atol=0)  # same pixels, both ways
        with torch.no_grad():
            teacher_features, teacher_logits = pooled_features_and_logits(teacher, images)
        torch.testing.assert_close(logits, teacher_logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(features, teacher_features, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits, live_logits, rtol=1e-4, atol=1e-5)
        if not fresh:  # the student saw augmented images, none of them as it is in the split
            distance = (images.flatten(1)[:, None, :] - raw[None]).abs().amax(-1).amin(-1)
            assert (distance > 0.1).all()
    # another distillation of the same teacher with the same augmentation reads them back
    again = TeacherOutputs(teacher, data, cache_dir=tmp_path / "cache")
    _fit(tmp_path, "again", recipe, data, _recording_kd(), teacher_outputs=again)
    assert again.computed == 0


def test_validation_sees_the_images_as_they_are(tmp_path, monkeypatch):
    import edgekd.train.loop as loop
    from edgekd.models.tensors import predict_logits

    seen = []

    def spy(model, images, mean, std, batch_size=256):
        logits = predict_logits(model, images, mean, std, batch_size)
        seen.append((np.array(images), logits))
        return logits

    monkeypatch.setattr(loop, "predict_logits", spy)
    for name, augment in (("off", {}), ("on", ON)):
        recipe, data = _setup({"augment": augment, "epochs": 1})
        model, _, history = _fit(tmp_path, name, recipe, data)
        ((images, logits),) = seen
        seen.clear()
        np.testing.assert_array_equal(images, data.val.images)
        # the recorded validation is an unaugmented evaluation of the kept weights
        np.testing.assert_array_equal(logits, predict_logits(model, data.val.images, data.mean, data.std))
        assert history[0]["val_top1"] == float(np.mean(logits.argmax(1) == data.val.labels))


def test_a_resumed_augmented_run_equals_one_that_never_stopped(tmp_path):
    recipe, data = _setup({"augment": ON, "drop_rate": 0.2})

    class Stop(Exception):
        pass

    def stop_after_first(stage, epoch, record):
        if epoch == 1:
            raise Stop

    _, straight, _ = _fit(tmp_path, "straight", recipe, data)
    with pytest.raises(Stop):
        _fit(tmp_path, "stopped", recipe, data, on_epoch_end=stop_after_first)
    from edgekd.distill import CrossEntropy
    from edgekd.models import create_model
    from edgekd.stages import Stage
    from edgekd.train import fit

    model = create_model(recipe.student, data.num_classes, key="student")  # other initial weights
    stage = Stage(tmp_path, "stopped", {})
    assert stage.start()  # the same key: resumable
    history = fit(model, CrossEntropy(), data, recipe.student, stage, seed=0, log=lambda m: None)
    assert len(history) == 2
    a = torch.load(straight.path("last.pt"), weights_only=True)["model"]
    b = torch.load(stage.path("last.pt"), weights_only=True)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -------------------------------------------------------------------------- stage keys
def test_augmentation_settings_are_in_the_teacher_cache_and_model_keys():
    from edgekd.stages import Stage
    from edgekd.train.stage import model_key, teacher_outputs_inputs
    from edgekd.train.teacher_outputs import TeacherOutputs

    def keys(student: dict, teacher: dict | None = None) -> tuple[str, str, dict]:
        recipe = parse_recipe(
            {
                "name": "k",
                "student": {"arch": "test_efficientnet", "epochs": 1, **student},
                "teacher": {"arch": "test_efficientnet", "epochs": 1, **(teacher or {})},
            }
        )
        inputs = teacher_outputs_inputs({"data": {}, "seed": 0}, "teacher-key", recipe.student)
        return Stage("runs", "teacher_outputs", inputs).key, recipe.student, model_key(recipe.student)

    off, off_cfg, off_model = keys({})
    assert "augment" not in off_model  # off: the keys of runs made before augmentation existed
    # settings that do not act while augmentation is off change nothing
    assert keys({"augment": {"policy": "randaugment", "hflip": 0.1}})[0] == off
    assert keys({}, teacher={"augment": ON})[0] == off  # the teacher's own augmentation: no
    on, on_cfg, on_model = keys({"augment": ON})
    stronger, stronger_cfg, _ = keys({"augment": {**ON, "magnitude": 10}})
    assert len({off, on, stronger}) == 3
    assert on_model["augment"] == {
        "enabled": True,
        "crop_scale": [0.08, 1.0],
        "crop_ratio": [0.75, 4 / 3],
        "hflip": 0.5,
        "policy": "randaugment",
        "num_ops": 2,
        "magnitude": 9,
    }
    # the cache file's name too: other settings or another training seed never read it
    outputs = TeacherOutputs(None, type("D", (), {"description": {}})())
    names = {
        outputs.epoch_key(3, Augmenter(on_cfg.augment, seed=0)),
        outputs.epoch_key(3, Augmenter(on_cfg.augment, seed=1)),
        outputs.epoch_key(3, Augmenter(stronger_cfg.augment, seed=0)),
        outputs.epoch_key(4, Augmenter(on_cfg.augment, seed=0)),
    }
    assert len(names) == 4
    assert outputs.epoch_key(3, Augmenter(off_cfg.augment, seed=0)) == "epoch-0"


# -------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    "augment, needles",
    [
        ({"crop_scale": [0.9, 0.1]}, ["student.augment.crop_scale", "min 0.9 is larger than max 0.1"]),
        ({"crop_scale": [0, 1]}, ["student.augment.crop_scale", "greater than 0"]),
        ({"crop_ratio": [2, 0.5]}, ["student.augment.crop_ratio", "min 2.0 is larger than max 0.5"]),
        ({"hflip": 1.5}, ["student.augment.hflip = 1.5", "less than or equal to 1"]),
        (
            {"policy": "autoaugment"},
            ["student.augment.policy = 'autoaugment'", "'randaugment'", "'trivialaugment'"],
        ),
        ({"magnitude": 31}, ["student.augment.magnitude = 31", "less than or equal to 30"]),
        ({"flip": 0.5}, ["student.augment.flip", "unknown key", "hflip"]),
    ],
)
def test_bad_augmentation_values_are_one_line_errors(augment, needles):
    with pytest.raises(EdgeKDError) as caught:
        parse_recipe({"name": "x", "student": {"arch": "test_efficientnet", "epochs": 1, "augment": augment}})
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, (needle, message)
