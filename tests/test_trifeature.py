import hashlib

import numpy as np
import pytest

from edgekd.data.trifeature import GROUP_NAMES, SHAPES, generate_split


def _split(split="train", n=120, seed=0, bias=0.9, epoch=0, size=32, classes=4):
    return generate_split(split, n, seed=seed, num_classes=classes, image_size=size, bias=bias, epoch=epoch)


def test_same_seed_gives_identical_arrays():
    a, b = _split(), _split()
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.groups, b.groups)


def test_other_seed_split_or_epoch_gives_other_images():
    base = _split()
    assert not np.array_equal(base.images, _split(seed=1).images)
    assert not np.array_equal(base.images, _split(epoch=1).images)
    assert not np.array_equal(base.images, _split(split="val").images)


def test_arrays_are_the_same_on_any_machine():
    # Golden digest of a small draw: integer and IEEE add/multiply/compare only, plus math.cos/sin.
    s = _split(n=16, size=24, classes=10)
    digest = hashlib.sha256(s.images.tobytes() + s.labels.tobytes() + s.groups.tobytes()).hexdigest()
    assert digest == GOLDEN


GOLDEN = "32bf8eeddce52ec037baa3e5eade4cc89f3290980d8ee2e53a6ed7d182839621"


def test_bias_one_puts_every_train_image_in_its_majority_group():
    s = _split(n=400, bias=1.0)
    assert np.array_equal(s.groups, s.labels % len(GROUP_NAMES))


@pytest.mark.parametrize("bias", [0.9, 0.6])
def test_bias_sets_the_majority_share(bias):
    s = _split(n=4000, bias=bias, size=16)
    share = np.mean(s.groups == s.labels % 2)
    assert abs(share - bias) < 0.03


def test_test_split_is_balanced_per_class_and_group():
    s = _split("test", n=200, bias=1.0, classes=5)
    counts = np.zeros((5, 2), dtype=int)
    np.add.at(counts, (s.labels, s.groups), 1)
    assert (counts == 20).all()


def test_images_are_uint8_rgb_with_a_shape_on_grey():
    s = _split(n=8, size=40)
    assert s.images.shape == (8, 40, 40, 3) and s.images.dtype == np.uint8
    corner = s.images[:, :2, :2].astype(int)
    assert np.all(np.abs(corner - 128) <= 8)  # background is grey plus small noise
    centre = s.images[:, 18:22, 18:22].astype(int)
    assert np.all(np.abs(centre - 128).max(axis=(1, 2, 3)) > 8)  # a coloured shape covers the centre


def test_labels_cover_the_first_classes_only():
    s = _split(n=300, classes=3)
    assert set(np.unique(s.labels)) == {0, 1, 2}
    assert len(SHAPES) == 10
