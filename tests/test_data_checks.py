"""What a newcomer's own data meets: labels outside the declared classes, the classes found when
none are declared, missing and corrupt files (named per split, ``data.max_bad_fraction``), the
``image_folder`` layout, and ``test_size`` on every source. Every data set is a handful of tiny
PNGs written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import edgekd.data._images as images_module
from edgekd.data import load_data
from edgekd.data._subset import stratified_subset
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe
from tests.test_data_files import _idx, celeba_root, wider_root  # noqa: F401 (fixtures)


def _png(path, colour=(200, 30, 30), size=(12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _cfg(tmp_path, **data):
    data = {"image_size": 16, "cache_dir": str(tmp_path / "cache"), **data}
    return parse_recipe({"name": "checks", "data": data}, base_dir=tmp_path).data


def _warnings(data) -> list[str]:
    return data.description.get("warnings", [])


# --------------------------------------------------------------------- csv: labels and classes
@pytest.fixture
def shirts(tmp_path):
    """11 train rows (t-shirt 4, trouser 4, and a typo tshirtt 3), 2 val, 2 test; the group
    alternates f, m by row."""
    root = tmp_path / "shirts"
    labels = {
        "train": ["t-shirt"] * 4 + ["trouser"] * 4 + ["tshirtt"] * 3,
        "val": ["t-shirt", "trouser"],
        "test": ["t-shirt", "trouser"],
    }
    for split, items in labels.items():
        lines = ["path,label,group"]
        for i, label in enumerate(items):
            _png(root / "img" / f"{split}{i}.png", (20 * i, 100, 0))
            lines.append(f"img/{split}{i}.png,{label},{'fm'[i % 2]}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_a_typo_outside_the_declared_classes_is_one_line_with_counts(shirts, tmp_path):
    cfg = _cfg(tmp_path, source="csv", root="shirts", classes=["t-shirt", "trouser"])
    with pytest.raises(EdgeKDError) as caught:
        load_data(cfg, seed=0)
    assert str(caught.value) == (
        f"{shirts}/train.csv: 3 rows with labels not in data.classes: tshirtt (3); allowed: t-shirt, trouser"
    )
    assert not (tmp_path / "cache").exists()  # refused before any image was decoded


def test_without_declared_classes_the_classes_found_are_one_warning_line(shirts, tmp_path):
    data = load_data(_cfg(tmp_path, source="csv", root="shirts"), seed=0)
    assert data.class_names == ["t-shirt", "trouser", "tshirtt"]
    assert _warnings(data) == [
        "data (csv): data.classes not given; 3 classes found in train.csv (images in "
        "train/val/test): t-shirt 4/1/1, trouser 4/1/1, tshirtt 3/0/0; set data.classes to make "
        "any other label an error",
        "data (csv): data.groups not given; 2 groups found in train.csv (images in "
        "train/val/test): f 6/1/1, m 5/1/1; set data.groups to make any other group value an error",
    ]
    declared = load_data(
        _cfg(
            tmp_path,
            source="csv",
            root="shirts",
            groups=["f", "m"],
            classes=["t-shirt", "trouser", "tshirtt"],
        ),
        seed=0,
    )
    assert "warnings" not in declared.description  # everything declared: nothing to say


def test_a_label_only_val_or_test_has_is_named_with_its_file(shirts, tmp_path):
    with open(shirts / "test.csv", "a") as fh:
        fh.write("img/test0.png,shirt,f\nimg/test1.png,shirt,m\nimg/test1.png,trouser,x\n")
    with pytest.raises(EdgeKDError) as caught:
        load_data(_cfg(tmp_path, source="csv", root="shirts"), seed=0)
    assert str(caught.value) == (
        f"{shirts}/test.csv: 2 rows with labels not in the labels of "
        "train.csv: shirt (2); allowed: t-shirt, trouser, tshirtt"
    )
    (shirts / "test.csv").write_text("path,label,group\nimg/test0.png,trouser,x\n")
    with pytest.raises(EdgeKDError) as caught:
        load_data(_cfg(tmp_path, source="csv", root="shirts", groups=["f", "m"]), seed=0)
    assert str(caught.value) == (
        f"{shirts}/test.csv: 1 rows with groups not in data.groups: x (1); allowed: f, m"
    )


# ----------------------------------------------------------- missing and corrupt image files
@pytest.fixture
def leaky(tmp_path):
    """train.csv: 20 rows, 2 of them missing files and 1 a corrupt PNG; val.csv: 10 rows, one
    missing; test.csv: 10 good rows."""
    root = tmp_path / "leaky"
    for i in range(20):
        _png(root / "img" / f"{i}.png", (10 * i, 0, 0))
    (root / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    train = [f"img/{i}.png" for i in range(17)] + ["img/gone1.png", "img/broken.png", "img/gone2.png"]
    val = [f"img/{i}.png" for i in range(9)] + ["img/gone3.png"]
    test = [f"img/{i}.png" for i in range(10, 20)]
    for split, paths in (("train", train), ("val", val), ("test", test)):
        rows = [f"{p},{'ab'[i % 2]},{'xy'[i // 2 % 2]}" for i, p in enumerate(paths)]
        (root / f"{split}.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n")
    return root


TRAIN_LINE = (
    "data: train split (train.csv): 3 of 20 image files left out (15%; "
    "data.max_bad_fraction 0.2): 2 missing (img/gone1.png, img/gone2.png), 1 unreadable "
    "(img/broken.png)"
)
VAL_LINE = (
    "data: val split (val.csv): 1 of 10 image files left out (10%; data.max_bad_fraction "
    "0.2): 1 missing (img/gone3.png)"
)


def test_missing_and_corrupt_files_are_one_warning_line_per_split(leaky, tmp_path, monkeypatch):
    cfg = _cfg(
        tmp_path, source="csv", root="leaky", classes=["a", "b"], groups=["x", "y"], max_bad_fraction=0.2
    )
    data = load_data(cfg, seed=0)
    assert _warnings(data) == [TRAIN_LINE, VAL_LINE]  # test lost nothing: no line
    assert (len(data.train), len(data.val), len(data.test)) == (17, 9, 10)
    assert data.description["skipped_bad_images"] == {"train": 3, "val": 1, "test": 0}

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(images_module, "_decode", no_decoding)
    cached = load_data(cfg, seed=0)  # the cache's record of bad files gives the same lines
    assert _warnings(cached) == [TRAIN_LINE, VAL_LINE]
    with pytest.raises(EdgeKDError) as caught:  # and the same refusal, without decoding
        load_data(cfg.model_copy(update={"max_bad_fraction": 0.1}), seed=0)
    assert str(caught.value) == (
        "data: train split (train.csv): 3 of 20 image files are missing or unreadable (15%), "
        "above data.max_bad_fraction 0.1: 2 missing (img/gone1.png, img/gone2.png), 1 unreadable "
        "(img/broken.png); fix or remove them, or raise data.max_bad_fraction"
    )


def test_the_default_bad_fraction_allows_one_file_in_a_hundred(leaky, tmp_path):
    """300 rows (the good ones repeat one file): 3 bad pass with a line, 4 stop the build."""
    good = ["img/0.png,a,x", "img/1.png,b,y"]
    (leaky / "val.csv").write_text("path,label,group\n" + "\n".join(good) + "\n")
    for bad, fails in ((3, False), (4, True)):
        rows = [good[i % 2] for i in range(300 - bad)] + [f"img/gone{i}.png,a,x" for i in range(bad)]
        (leaky / "train.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n")
        cfg = _cfg(tmp_path, source="csv", root="leaky")  # max_bad_fraction left at its default
        if fails:
            with pytest.raises(
                EdgeKDError,
                match=r"^data: train split \(train.csv\): 4 of 300 "
                r"image files are missing or unreadable \(1.33%\)"
                r", above data.max_bad_fraction 0.01: 4 missing "
                r"\(img/gone0.png, img/gone1.png, img/gone2.png "
                r"and 1 more\); fix",
            ):
                load_data(cfg, seed=0)
        else:
            data = load_data(cfg, seed=0)
            assert len(data.train) == 297
            assert (
                "data: train split (train.csv): 3 of 300 image files left out (1%; "
                "data.max_bad_fraction 0.01): 3 missing (img/gone0.png, img/gone1.png, "
                "img/gone2.png)"
            ) in _warnings(data)


# --------------------------------------------------------------------------- image_folder
COLOURS = {
    "train/cat/1.png": (250, 0, 0),
    "train/cat/2.png": (0, 250, 0),
    "train/cat/3.png": (0, 0, 250),
    "train/dog/1.png": (250, 250, 0),
    "train/dog/2.png": (0, 250, 250),
    "train/dog/sub/3.png": (250, 0, 250),
    "val/cat/1.png": (100, 0, 0),
    "val/dog/1.png": (0, 100, 0),
    "test/cat/1.png": (0, 0, 100),
    "test/dog/1.png": (100, 100, 0),
}
SEX = {
    "train/cat/1.png": "f",
    "train/cat/2.png": "m",
    "train/cat/3.png": "f",
    "train/dog/1.png": "m",
    "train/dog/2.png": "m",
    "train/dog/sub/3.png": "f",
    "val/cat/1.png": "m",
    "val/dog/1.png": "f",
    "test/cat/1.png": "f",
    "test/dog/1.png": "m",
}


@pytest.fixture
def folders(tmp_path):
    root = tmp_path / "pets"
    for path, colour in COLOURS.items():
        _png(root / path, colour)
    (root / "train" / "notes.txt").write_text("not an image")
    (root / "train" / ".DS_Store").write_text("hidden: passed over")
    rows = [f"{path},{sex},{'young' if i % 3 else 'old'}" for i, (path, sex) in enumerate(SEX.items())]
    (root / "groups.csv").write_text("path,sex,age\n" + "\n".join(rows) + "\ntrain/cat/9.png,m,old\n")
    return root


def test_image_folder_reads_classes_from_folders_and_groups_from_the_csv(folders, tmp_path):
    data = load_data(_cfg(tmp_path, source="image_folder", root="pets", group_column="sex"), seed=0)
    assert data.class_names == ["cat", "dog"] and data.group_names == ["f", "m"]
    # train, sorted by path: cat/1 f, cat/2 m, cat/3 f, dog/1 m, dog/2 m, dog/sub/3 f
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.train.groups.tolist() == [0, 1, 0, 1, 1, 0]
    assert data.val.labels.tolist() == [0, 1] and data.val.groups.tolist() == [1, 0]
    assert data.test.labels.tolist() == [0, 1] and data.test.groups.tolist() == [0, 1]
    assert data.train.images[5, 8, 8].tolist() == [250, 0, 250]  # dog/sub/3.png
    assert data.test.images[1, 8, 8].tolist() == [100, 100, 0]
    assert _warnings(data) == [
        "data (image_folder): 1 files not read (not an image in a class folder; images are .png "
        ".jpg .jpeg .bmp .webp .tif .tiff .ppm .pgm): train/notes.txt",
        f"data (image_folder): 1 rows of groups.csv name no image under {folders}: train/cat/9.png",
        "data (image_folder): data.classes not given; 2 classes found in train/'s class folders "
        "(images in train/val/test): cat 3/1/1, dog 3/1/1; set data.classes to make any other "
        "label an error",
        "data (image_folder): data.groups not given; 2 groups found in groups.csv (images in "
        "train/val/test): f 3/1/1, m 3/1/1; set data.groups to make any other group value an error",
    ]


def test_image_folder_intersections_of_several_group_columns(folders, tmp_path):
    data = load_data(
        _cfg(
            tmp_path,
            source="image_folder",
            root="pets",
            group_column=["sex", "age"],
            groups={"age": ["young", "old"]},
        ),
        seed=0,
    )
    assert data.group_names == ["sex=f,age=young", "sex=f,age=old", "sex=m,age=young", "sex=m,age=old"]
    # rows 0..5 of groups.csv are the train images: age old for rows 0 and 3, young otherwise
    assert data.train.groups.tolist() == [1, 2, 0, 3, 2, 0]


def test_image_folder_errors_name_the_folder_or_the_image(folders, tmp_path):
    _png(folders / "test" / "cta" / "1.png")
    with open(folders / "groups.csv", "a") as fh:
        fh.write("test/cta/1.png,f,old\n")
    with pytest.raises(EdgeKDError) as caught:
        load_data(
            _cfg(tmp_path, source="image_folder", root="pets", group_column="sex", classes=["cat", "dog"]),
            seed=0,
        )
    assert str(caught.value) == (
        f"{folders}/test: 1 images in class folders not in data.classes: cta (1); allowed: cat, dog"
    )
    with pytest.raises(EdgeKDError) as caught:  # undeclared: train's folders are the classes
        load_data(_cfg(tmp_path, source="image_folder", root="pets", group_column="sex"), seed=0)
    assert str(caught.value) == (
        f"{folders}/test: 1 images in class folders not in the class "
        "folders of train/: cta (1); allowed: cat, dog"
    )
    (folders / "groups.csv").write_text(
        "path,sex\n" + "\n".join(f"{p},{s}" for p, s in SEX.items() if p != "train/dog/2.png") + "\n"
    )
    (folders / "test" / "cta" / "1.png").unlink()
    with pytest.raises(EdgeKDError) as caught:
        load_data(_cfg(tmp_path, source="image_folder", root="pets", group_column="sex"), seed=0)
    assert str(caught.value) == (
        f"{folders}/groups.csv: no row for 1 of the 10 images: "
        "train/dog/2.png; give every image a row (path relative to root, sex)"
    )


def test_image_folder_without_val_carves_a_stratified_share_of_train(folders, tmp_path):
    import shutil

    shutil.rmtree(folders / "val")
    data = load_data(
        _cfg(tmp_path, source="image_folder", root="pets", group_column="sex", val_size=2), seed=0
    )
    # train cells (class, sex): cat-f 2, cat-m 1, dog-f 1, dog-m 2; 2 of 6 gives each 2/3, 1/3,
    # 1/3, 2/3: none whole, the two largest remainders (cat-f, dog-m) one image each
    assert data.val.labels.tolist() == [0, 1] and data.val.groups.tolist() == [0, 1]
    assert len(data.train) == 4 and sorted(zip(data.train.labels.tolist(), data.train.groups.tolist())) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert "val: 2 images carved from train/" in data.description["summary"]
    with pytest.raises(EdgeKDError, match="data.val_size = 6: train/ has 6 images"):
        load_data(_cfg(tmp_path, source="image_folder", root="pets", group_column="sex", val_size=6), seed=0)


def test_image_folder_bad_files_and_its_build_log(folders, tmp_path):
    """Two broken symlinks (missing files) and a corrupt PNG in train: one line naming them,
    printed by a real build as a warning line."""
    from edgekd.pipeline import build

    (folders / "train" / "dog" / "4.png").symlink_to(folders / "gone-a.png")
    (folders / "train" / "dog" / "5.png").symlink_to(folders / "gone-b.png")
    (folders / "train" / "cat" / "4.png").write_bytes(b"not a png")
    with open(folders / "groups.csv", "a") as fh:
        fh.write("train/dog/4.png,m,old\ntrain/dog/5.png,f,old\ntrain/cat/4.png,f,old\n")
    recipe = tmp_path / "pets.yaml"
    recipe.write_text(f"""
name: pets
threads: 2
data: {{source: image_folder, root: pets, image_size: 32, group_column: sex, classes: [cat, dog],
        groups: [f, m], max_bad_fraction: 0.5, cache_dir: {tmp_path / "cache"}}}
teacher: {{arch: test_efficientnet, epochs: 1, batch_size: 2}}
student: {{arch: test_efficientnet, epochs: 1, batch_size: 2}}
card: {{bootstrap_resamples: 20}}
""")
    logs: list[str] = []
    result = build(recipe, out=tmp_path / "runs", log=logs.append)
    line = (
        "data: train split (train/): 3 of 9 image files left out (33.3%; data.max_bad_fraction "
        "0.5): 2 missing (train/dog/4.png, train/dog/5.png), 1 unreadable (train/cat/4.png)"
    )
    assert f"warning: {line}" in logs
    assert f"- {line}" in (result.bundle_dir / "card.md").read_text()
    assert result.card["data"]["skipped_bad_images"] == {"train": 3, "val": 0, "test": 0}
    assert result.card["data"]["source"] == "image_folder"


# -------------------------------------------------------------------------------- test_size
def test_stratified_subset_allocates_by_largest_remainder():
    labels = np.array([0] * 6 + [1] * 3 + [2])
    groups = np.zeros(10, np.int64)
    picked = stratified_subset(labels, groups, 5, seed=3)
    assert np.bincount(labels[picked], minlength=3).tolist() == [3, 2, 0]  # the docstring's example
    assert picked.tolist() == sorted(set(picked.tolist()))
    assert np.array_equal(picked, stratified_subset(labels, groups, 5, seed=3))
    assert stratified_subset(labels, groups, 10, seed=0).tolist() == list(range(10))


def _fashion(tmp_path) -> None:
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (100, 28, 28)), gz=False)
    _idx(tmp_path / "train-labels-idx1-ubyte", np.arange(100) % 10, gz=False)
    _idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (40, 28, 28)), gz=True)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(40) % 10, gz=True)


def test_fashion_mnist_test_size_keeps_a_stratified_subset(tmp_path):
    _fashion(tmp_path)
    base = {"source": "fashion_mnist_colored", "path": str(tmp_path), "val_size": 20}
    full = load_data(_cfg(tmp_path, **base, cache_dir=None), seed=0)
    assert len(full.test) == 40  # unset: every test image
    half = load_data(_cfg(tmp_path, **base, cache_dir=None, test_size=20), seed=0)
    # 40 test images: 4 per class, 2 per (class, tint) cell; 20 of them: exactly 1 per cell
    cells = np.bincount(half.test.labels * 2 + half.test.groups, minlength=20)
    assert cells.tolist() == [1] * 20
    three_quarters = load_data(_cfg(tmp_path, **base, cache_dir=None, test_size=30), seed=0)
    # 30 of 40: 1.5 per cell, so 1 each and the 10 images owed to the first 10 cells (classes 0-4)
    assert np.bincount(three_quarters.test.labels, minlength=10).tolist() == [4] * 5 + [2] * 5
    assert np.bincount(three_quarters.test.groups).tolist() == [15, 15]
    picked = [tuple(im[::7, ::7, 0].ravel()) for im in half.test.images]
    again = load_data(_cfg(tmp_path, **base, cache_dir=None, test_size=20), seed=0)
    assert picked == [tuple(im[::7, ::7, 0].ravel()) for im in again.test.images]  # seeded
    assert all(p in {tuple(im[::7, ::7, 0].ravel()) for im in full.test.images} for p in picked)
    # its own random stream: the tints and the training split are those of the full build
    assert np.array_equal(half.train.groups, full.train.groups)
    assert np.array_equal(half.val.images, full.val.images)
    assert "(a stratified 20 of 40)" in half.description["summary"]
    with pytest.raises(EdgeKDError) as caught:
        load_data(_cfg(tmp_path, **base, test_size=41), seed=0)
    assert str(caught.value) == (
        "data.test_size = 41: the Fashion-MNIST test split has only 40 "
        "images; choose at most 40, or leave data.test_size unset to keep "
        "them all"
    )


def test_an_unset_test_size_leaves_the_resolved_recipe_and_stage_keys_as_they_were(tmp_path):
    from edgekd.data import PIXEL_NEUTRAL

    plain = _cfg(tmp_path, source="fashion_mnist_colored", path=str(tmp_path))
    assert "test_size" not in plain.model_dump(mode="json")
    assert (
        _cfg(tmp_path, source="fashion_mnist_colored", path=str(tmp_path), test_size=9).model_dump(
            mode="json"
        )["test_size"]
        == 9
    )
    assert "max_bad_fraction" in PIXEL_NEUTRAL  # a threshold never changes the pixels


def test_test_size_on_the_csv_celeba_and_wider_sources(shirts, celeba_root, wider_root, tmp_path):  # noqa: F811
    data = load_data(_cfg(tmp_path, source="csv", root="shirts", test_size=1), seed=0)
    # test.csv: t-shirt f, trouser m: two cells of one, the first keeps the one image
    assert data.test.labels.tolist() == [0] and data.test.groups.tolist() == [0]
    # CelebA's test partition: files 7 (not Male) and 8 (Male), neither Smiling
    celeba = load_data(_cfg(tmp_path, source="celeba", root="celeba", test_size=1, max_per_split=5), seed=0)
    assert celeba.test.labels.tolist() == [0] and celeba.test.groups.tolist() == [0]
    with pytest.raises(
        EdgeKDError,
        match=r"^data.test_size = 3: CelebA's test partition has only 2 "
        r"images; choose at most 2",
    ):
        load_data(_cfg(tmp_path, source="celeba", root="celeba", test_size=3), seed=0)
    wider = load_data(_cfg(tmp_path, source="wider_attribute", root="wider", test_size=1), seed=0)
    assert len(wider.test) == 1
    with pytest.raises(
        EdgeKDError,
        match=r"^data.test_size = 2: the WIDER Attribute test split "
        r"\(images\) has only 1 images",
    ):
        load_data(_cfg(tmp_path, source="wider_attribute", root="wider", test_size=2), seed=0)


def test_a_short_row_or_a_non_utf8_groups_csv_is_one_line(folders, tmp_path):
    cfg = _cfg(tmp_path, source="image_folder", root="pets", group_column="sex")
    (folders / "groups.csv").write_text("path,sex\ntrain/cat/1.png,f\ntrain/cat/2.png\n")
    with pytest.raises(EdgeKDError) as caught:
        load_data(cfg, seed=0)
    assert str(caught.value) == (
        f"{folders}/groups.csv line 3: fewer cells than the header; path, sex are needed"
    )
    (folders / "groups.csv").write_bytes(b"path,sex\ntrain/cat/1.png,\xff\n")
    with pytest.raises(EdgeKDError, match=r"groups.csv: not a UTF-8 CSV file \(UnicodeDecodeError"):
        load_data(cfg, seed=0)
