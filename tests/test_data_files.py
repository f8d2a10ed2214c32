"""File-based sources read the published formats: CSV folders, CelebA, WIDER Attribute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgekd.data._images as images_module
from edgekd.data import load_data
from edgekd.errors import EdgeKDError
from edgekd.recipe import load_recipe, parse_recipe

TESTS = Path(__file__).parent


def _image(path: Path, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _recipe(data: dict, base: Path):
    return parse_recipe({"name": "files", "data": data}, base_dir=base)


# -------------------------------------------------------------------------------------- csv
@pytest.fixture
def csv_root(tmp_path):
    root = tmp_path / "shop"
    rows = {
        "train": [("a.png", "cat", "x"), ("b.png", "dog", "y"), ("c.png", "dog", "x")],
        "val": [("a.png", "cat", "y")],
        "test": [("b.png", "1", "0"), ("c.png", "cat", "y")],
    }
    for name, colour in (("a.png", (255, 0, 0)), ("b.png", (0, 255, 0)), ("c.png", (0, 0, 255))):
        _image(root / "img" / name, colour)
    for split, items in rows.items():
        lines = ["file,animal,owner"] + [f"img/{p},{label},{group}" for p, label, group in items]
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_labels_by_name_or_index_and_images_resized(csv_root, tmp_path):
    recipe = _recipe(
        {
            "source": "csv",
            "root": "shop",
            "image_size": 16,
            "path_column": "file",
            "label_column": "animal",
            "group_column": "owner",
            "cache_dir": str(tmp_path / "cache"),
        },
        tmp_path,
    )
    data = load_data(recipe.data, seed=0)
    assert data.class_names == ["cat", "dog"] and data.group_names == ["x", "y"]
    assert data.train.labels.tolist() == [0, 1, 1] and data.train.groups.tolist() == [0, 1, 0]
    assert data.test.labels.tolist() == [1, 0] and data.test.groups.tolist() == [0, 1]
    assert data.train.images.shape == (3, 16, 16, 3) and data.train.images.dtype == np.uint8
    assert data.train.images[1, 8, 8].tolist() == [0, 255, 0]


def test_csv_cache_is_reused_without_decoding(csv_root, tmp_path, monkeypatch):
    cfg = _recipe(
        {
            "source": "csv",
            "root": "shop",
            "image_size": 16,
            "path_column": "file",
            "label_column": "animal",
            "group_column": "owner",
            "cache_dir": str(tmp_path / "cache"),
        },
        tmp_path,
    ).data
    first = load_data(cfg, seed=0)
    calls = []
    monkeypatch.setattr(images_module, "_decode", lambda *a: calls.append(a))
    again = load_data(cfg, seed=0)
    assert calls == [] and np.array_equal(first.val.images, again.val.images)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"label_column": "kind"}, "no column 'kind'"),
        ({"train_csv": "nope.csv"}, "CSV file"),
        (
            {"classes": ["cat", "bird"]},
            r"train.csv: 2 rows with labels not in data.classes: dog \(2\); "
            "allowed: cat, bird$",
        ),
    ],
)
def test_csv_errors_are_one_line(csv_root, tmp_path, change, needle):
    data = {
        "source": "csv",
        "root": "shop",
        "path_column": "file",
        "label_column": "animal",
        "group_column": "owner",
        "cache_dir": str(tmp_path / "cache"),
        **change,
    }
    with pytest.raises(EdgeKDError, match=needle):
        load_data(_recipe(data, tmp_path).data, seed=0)


def test_a_bad_image_is_skipped_and_counted_or_fatal(csv_root, tmp_path):
    (csv_root / "img" / "b.png").write_bytes(b"not a png")
    with open(csv_root / "val.csv", "a") as fh:
        fh.write("img/missing.png,dog,x\n")
    data = {
        "source": "csv",
        "root": "shop",
        "path_column": "file",
        "label_column": "animal",
        "group_column": "owner",
        "cache_dir": str(tmp_path / "cache"),
        "workers": 2,
        "max_bad_fraction": 1,
    }  # a third to a half of each tiny split
    loaded = load_data(_recipe(data, tmp_path).data, seed=0)
    # train had a (cat, x), b (dog, y), c (dog, x): a and c are left, with their labels and groups
    assert loaded.train.labels.tolist() == [0, 1] and loaded.train.groups.tolist() == [0, 0]
    assert loaded.train.images[1, 0, 0].tolist() == [0, 0, 255]
    assert loaded.description["skipped_bad_images"] == {"train": 1, "val": 1, "test": 1}
    assert any(
        "missing.png: image file not found" in line
        for line in loaded.description["skipped_bad_image_examples"]
    )
    assert any(
        "b.png: cannot decode this image" in line for line in loaded.description["skipped_bad_image_examples"]
    )
    again = load_data(_recipe(data, tmp_path).data, seed=0)  # from the cache: same count
    assert again.description["skipped_bad_images"] == loaded.description["skipped_bad_images"]
    with pytest.raises(
        EdgeKDError,
        match=r"b.png: cannot decode this image .*; set "
        r"data.on_bad_image: skip",
    ):
        load_data(_recipe({**data, "on_bad_image": "error"}, tmp_path).data, seed=0)
    (csv_root / "img" / "c.png").unlink()  # now no test image is readable
    with pytest.raises(EdgeKDError, match="no image of the test split could be read"):
        load_data(_recipe(data, tmp_path).data, seed=0)


def test_normalisation_defaults_to_imagenet_and_can_be_set(csv_root, tmp_path):
    data = {
        "source": "csv",
        "root": "shop",
        "path_column": "file",
        "label_column": "animal",
        "group_column": "owner",
        "cache_dir": str(tmp_path / "cache"),
    }
    assert load_data(_recipe(data, tmp_path).data, seed=0).mean == (0.485, 0.456, 0.406)
    custom = load_data(
        _recipe({**data, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}, tmp_path).data, seed=0
    )
    assert custom.mean == (0.5, 0.5, 0.5) and custom.std == (0.2, 0.2, 0.2)
    with pytest.raises(EdgeKDError, match="data.std"):
        _recipe({**data, "std": [0.2, 0, 0.2]}, tmp_path)


def test_tiny_build_on_a_csv_folder(csv_root, tmp_path):
    from edgekd.pipeline import build

    recipe = tmp_path / "files.yaml"
    recipe.write_text(f"""
name: files
threads: 2
data: {{source: csv, root: shop, image_size: 32, path_column: file, label_column: animal,
        group_column: owner, cache_dir: {tmp_path / "cache"}}}
teacher: {{arch: test_efficientnet, epochs: 1, batch_size: 2}}
student: {{arch: test_efficientnet, epochs: 1, batch_size: 2}}
card: {{bootstrap_resamples: 50}}
""")
    result = build(recipe, out=tmp_path / "runs", log=lambda m: None)
    assert result.card["data"]["source"] == "csv" and not result.card["data"]["synthetic"]
    assert result.card["models"]["onnx"]["metrics"]["n"] == 2


# ----------------------------------------------------------------------------------- celeba
@pytest.fixture
def celeba_root(tmp_path):
    root = tmp_path / "celeba"
    names = ["5_o_Clock_Shadow", "Male", "Smiling"] + [f"Attr{i}" for i in range(37)]
    files = [f"{i:06d}.jpg" for i in range(1, 9)]
    lines = [str(len(files)), " ".join(names)]
    for i, name in enumerate(files):
        values = ["-1"] * 40
        values[1] = "1" if i % 2 else "-1"  # Male
        values[2] = "1" if i < 3 else "-1"  # Smiling
        lines.append(name + "  " + "  ".join(values))  # several spaces, as published
        _image(root / "img_align_celeba" / name, (i * 30, 0, 0))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{f} {0 if i < 4 else 1 if i < 6 else 2}" for i, f in enumerate(files)) + "\n"
    )
    return root


def test_celeba_target_protected_partition_and_undersampling(celeba_root, tmp_path):
    cfg = _recipe(
        {"source": "celeba", "root": "celeba", "image_size": 16, "cache_dir": str(tmp_path / "c")}, tmp_path
    ).data
    data = load_data(cfg, seed=0)
    assert data.class_names == ["not Smiling", "Smiling"] and data.group_names == ["not Male", "Male"]
    assert data.train.labels.tolist() == [1, 1, 1, 0] and data.train.groups.tolist() == [0, 1, 0, 1]
    assert len(data.val) == 2 and len(data.test) == 2
    balanced = load_data(cfg.model_copy(update={"undersample": True}), seed=0)
    assert sorted(balanced.train.labels.tolist()) == [0, 1]


def test_celeba_unknown_attribute_lists_the_40(celeba_root, tmp_path):
    cfg = _recipe(
        {"source": "celeba", "root": "celeba", "target": "Smile", "cache_dir": str(tmp_path / "c")}, tmp_path
    ).data
    with pytest.raises(
        EdgeKDError,
        match="data.target: 'Smile' is not a CelebA attribute; "
        "choose one of: 5_o_Clock_Shadow, Male, Smiling",
    ):
        load_data(cfg, seed=0)


# ---------------------------------------------------------------------------------- wider
def _target(gender: int, bbox=(2, 2, 10, 10)) -> dict:
    return {"bbox": list(bbox), "attribute": [gender] + [0] * 13}


@pytest.fixture
def wider_root(tmp_path):
    root = tmp_path / "wider"
    scenes = {"0": "Parade", "1": "Handshaking", "3": "Riot", "58": "Hockey"}
    trainval = [
        ("train/0--Parade/a.jpg", 0, [_target(1), _target(1), _target(-1)]),  # 2/3 male
        ("train/58--Hockey/b.jpg", 58, [_target(-1)]),  # female
        ("train/1--Handshaking/c.jpg", 1, [_target(0)]),  # unknown
        ("val/3--Riot/d.jpg", 3, [_target(1), _target(-1)]),  # 1/2: female
    ]
    test = [("test/58--Hockey/e.jpg", 58, [_target(1, (0, 0, 20, 20))])]
    for name, _, _ in trainval + test:
        _image(root / "Image" / name, (10, 200, 10), size=(40, 40))
    (root / "Anno").mkdir()
    for filename, items in (("wider_attribute_trainval.json", trainval), ("wider_attribute_test.json", test)):
        doc = {
            "images": [{"file_name": n, "scene_id": s, "targets": t} for n, s, t in items],
            "attribute_id_map": {"0": "Male"},
            "scene_id_map": scenes,
        }
        (root / "Anno" / filename).write_text(json.dumps(doc))
    return root


def test_wider_events_groups_and_exclusions(wider_root, tmp_path):
    cfg = _recipe(
        {"source": "wider_attribute", "root": "wider", "image_size": 16, "cache_dir": str(tmp_path / "c")},
        tmp_path,
    ).data
    data = load_data(cfg, seed=0)
    assert data.class_names == ["Parade", "Handshaking", "Riot", "Hockey"]  # by id, not position
    assert data.train.labels.tolist() == [0, 3] and data.train.groups.tolist() == [1, 0]
    assert data.val.groups.tolist() == [0]  # a male share of exactly 0.5 is not above 0.5
    assert data.description["excluded_unknown_gender"] == {"train": 1, "val": 0, "test": 0}


def test_wider_clusters_crops_and_unknown_as_group(wider_root, tmp_path):
    cfg = _recipe(
        {
            "source": "wider_attribute",
            "root": "wider",
            "image_size": 16,
            "label_map": "clusters16",
            "crop": "person",
            "unknown": "as_group",
            "cache_dir": str(tmp_path / "c"),
        },
        tmp_path,
    ).data
    data = load_data(cfg, seed=0)
    assert len(data.class_names) == 16 and data.group_names == ["female", "male", "unknown"]
    assert len(data.train) == 5  # one sample per annotated person
    assert [data.class_names[k] for k in data.train.labels] == ["Parade"] * 3 + ["Team Sports", "Business"]
    assert data.train.groups.tolist() == [1, 1, 0, 0, 2]


def test_wider_bad_json_is_named(wider_root, tmp_path):
    (wider_root / "Anno" / "wider_attribute_test.json").write_text('{"images": 3}')
    cfg = _recipe(
        {"source": "wider_attribute", "root": "wider", "cache_dir": str(tmp_path / "c")}, tmp_path
    ).data
    with pytest.raises(EdgeKDError, match="wider_attribute_test.json: not WIDER Attribute"):
        load_data(cfg, seed=0)


def test_study_recipe_validates_with_a_root(wider_root):
    recipe = load_recipe(
        Path(__file__).parents[1] / "recipes" / "wider_attribute_study.yaml", [f"data.root={wider_root}"]
    )
    assert recipe.data.label_map == "clusters16" and recipe.debias.lambda_ == 0.5
    assert recipe.teacher.arch == "efficientnet_b3.ra2_in1k" and recipe.distill.temperature == 4
    assert recipe.teacher.pretrained and recipe.student.arch == "efficientnet_b0.ra_in1k"


def test_study_recipe_builds_on_a_wider_fixture(wider_root, tmp_path):
    """The study's recipe as shipped (B3 -> B0, KD T=4, adversary lambda 0.5, 16 clusters), made
    small only in size and epochs and started from scratch (tests download nothing), builds a
    bundle on WIDER-format files."""
    from edgekd.pipeline import build

    result = build(
        TESTS.parent / "recipes" / "wider_attribute_study.yaml",
        out=tmp_path / "runs",
        overrides=(
            f"data.root={wider_root}",
            "data.image_size=32",
            f"data.cache_dir={tmp_path / 'cache'}",
            "teacher.epochs=1",
            "teacher.pretrained=false",
            "student.pretrained=false",
            "student.epochs=1",
            "teacher.batch_size=2",
            "student.batch_size=2",
            "export.int8.calibration_samples=2",
            "card.bootstrap_resamples=20",
        ),
        log=lambda m: None,
    )
    card = result.card
    assert card["models"]["teacher"]["arch"] == "efficientnet_b3.ra2_in1k"
    assert card["models"]["student"]["arch"] == "efficientnet_b0.ra_in1k"
    assert card["models"]["student"]["weights"] == {"source": "scratch"}
    assert card["debias"]["lambda"] == 0.5 and card["data"]["label_map"] == "clusters16"
    assert card["data"]["excluded_unknown_gender"] == {"train": 1, "val": 0, "test": 0}
    assert {"onnx", "onnx_int8"} <= set(card["models"])
    assert (result.bundle_dir / "card.md").read_text().count("no annotated gender were excluded") == 1


def test_missing_root_is_one_line(tmp_path):
    with pytest.raises(EdgeKDError, match="data.root = 'absent': folder 'absent' does not exist"):
        _recipe({"source": "celeba", "root": "absent"}, tmp_path)


# ---------------------------------------------------------------------------- fashion-mnist
def _idx(path: Path, array: np.ndarray, gz: bool) -> None:
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def test_fashion_mnist_colored_reads_idx_and_plants_the_bias(tmp_path):
    rng = np.random.default_rng(0)
    train_y = np.arange(200) % 10
    test_y = np.arange(40) % 10
    _idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (200, 28, 28)), gz=True)
    _idx(tmp_path / "train-labels-idx1-ubyte", train_y, gz=True)
    _idx(tmp_path / "t10k-images-idx3-ubyte", np.full((40, 28, 28), 200), gz=False)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", test_y, gz=False)
    cfg = _recipe(
        {
            "source": "fashion_mnist_colored",
            "path": str(tmp_path),
            "bias": 1.0,
            "val_size": 50,
            "image_size": 16,
        },
        tmp_path,
    ).data
    data = load_data(cfg, seed=0)
    assert len(data.train) == 150 and len(data.val) == 50 and len(data.test) == 40
    assert (data.train.groups == data.train.labels % 2).all()  # bias 1: always the majority
    for c in range(10):  # test balanced per class and group
        assert np.bincount(data.test.groups[data.test.labels == c], minlength=2).tolist() == [2, 2]
    warm = data.test.images[data.test.groups == 0][0, 8, 8]
    cool = data.test.images[data.test.groups == 1][0, 8, 8]
    assert warm[0] > warm[2] and cool[2] > cool[0]
    assert data.train.images.shape == (150, 16, 16, 3)


def test_fashion_mnist_missing_files_are_named(tmp_path):
    cfg = _recipe({"source": "fashion_mnist_colored", "path": str(tmp_path)}, tmp_path).data
    with pytest.raises(EdgeKDError, match="train-images-idx3-ubyte\\(.gz\\) not found"):
        load_data(cfg, seed=0)


def test_fashion_mnist_train_size_keeps_a_seeded_subset(tmp_path):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (200, 28, 28)), gz=False)
    _idx(tmp_path / "train-labels-idx1-ubyte", np.arange(200) % 10, gz=False)
    _idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (20, 28, 28)), gz=False)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    cfg = _recipe(
        {"source": "fashion_mnist_colored", "path": str(tmp_path), "val_size": 50, "train_size": 60}, tmp_path
    ).data
    first, again = load_data(cfg, seed=0), load_data(cfg, seed=0)
    assert len(first.train) == 60 and len(first.val) == 50
    np.testing.assert_array_equal(first.train.images, again.train.images)
    too_many = _recipe(
        {"source": "fashion_mnist_colored", "path": str(tmp_path), "val_size": 50, "train_size": 151},
        tmp_path,
    ).data
    with pytest.raises(EdgeKDError, match="data.train_size = 151: only 150 training images"):
        load_data(too_many, seed=0)


def test_fashion_mnist_debian_package_when_installed():
    """The real files of Debian's dataset-fashion-mnist at the default path: 10 classes,
    60000 training and 10000 test images, and the tint that ``bias`` plants."""
    from edgekd.data.fashion_mnist import FashionMnistColoredConfig

    root = FashionMnistColoredConfig.model_fields["path"].default
    assert root == Path("/usr/share/datasets/fashion-mnist")
    if not root.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    data = load_data(_recipe({"source": "fashion_mnist_colored", "image_size": 28}, root).data, seed=0)
    assert len(data.class_names) == 10 and len(data.test) == 10000
    assert len(data.train) + len(data.val) == 60000
    assert sorted(np.unique(data.test.labels).tolist()) == list(range(10))
    majority = (data.train.groups == data.train.labels % 2).mean()
    assert 0.89 < majority < 0.91  # bias 0.9 over 55000 images
    assert (data.test.groups == 0).mean() == 0.5  # balanced test split
    # the tint: warm images are redder than blue, cool ones bluer than red (summed over pixels)
    for group, (more, less) in ((0, (0, 2)), (1, (2, 0))):
        pixels = data.test.images[data.test.groups == group][:200].reshape(-1, 3).sum(0)
        assert pixels[more] > 2 * pixels[less]


def test_cell_balanced_draw_evens_out_the_cells_a_bias_leaves():
    """90/10 split of 2 classes x 2 groups (45/5/5/45 images): 16 images are 4 per cell; 24 take
    all 5 of each minority cell and fill the rest from the majority cells (7 each)."""
    from edgekd.data.splits import Split

    labels = np.repeat([0, 0, 1, 1], [45, 5, 5, 45])
    groups = np.repeat([0, 1, 0, 1], [45, 5, 5, 45])
    split = Split(np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1).repeat(3, axis=3), labels, groups)

    def per_cell(drawn: Split) -> list[int]:
        return [int(np.sum((drawn.labels == c) & (drawn.groups == g))) for c in (0, 1) for g in (0, 1)]

    assert per_cell(split.cell_balanced(16)) == [4, 4, 4, 4]
    assert per_cell(split.cell_balanced(24)) == [7, 5, 5, 7]
    assert len(split.cell_balanced(1000)) == 100
    drawn = split.cell_balanced(16, seed=3)
    assert np.array_equal(drawn.images[:, 0, 0, 0], np.sort(drawn.images[:, 0, 0, 0]))  # no repeats
    assert len(set(drawn.images[:, 0, 0, 0].tolist())) == 16
    assert not np.array_equal(split.cell_balanced(16, seed=3).images, split.cell_balanced(16, seed=4).images)
