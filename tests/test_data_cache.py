"""Decoded images on disk (data.cache_dir): read back without decoding, invalidated by a changed
image, rebuilt when damaged, read batch by batch with the same numbers as the in-memory path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgekd.data._images as images_module
from edgekd.data import load_data
from edgekd.data.rows import batches, mapped_file, prefetch, take
from edgekd.data.splits import Split
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe

REPO = Path(__file__).resolve().parents[1]
COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (250, 0, 250)]


@pytest.fixture
def shop(tmp_path) -> Path:
    """A CSV folder: 12 train, 6 val, 6 test images (in reverse order) of 6 colours; label =
    colour % 2 (cat, dog), group = colour // 3 (x, y). Every split lists other files, so every
    split has its own cache."""
    root = tmp_path / "shop"
    (root / "img").mkdir(parents=True)
    for c, colour in enumerate(COLOURS):
        pixels = np.zeros((20, 24, 3), np.uint8)
        pixels[:] = colour
        pixels[5:15, 6:18] = 255 - np.array(colour)  # a box, so a resize is not the identity
        Image.fromarray(pixels).save(root / "img" / f"{c}.png")
    for split, count in (("train", 12), ("val", 6), ("test", -6)):  # test: in reverse order
        order = [i % 6 for i in range(count)] if count > 0 else list(range(5, -1, -1))
        lines = ["path,label,group"] + [f"img/{c}.png,{['cat', 'dog'][c % 2]},{'xy'[c // 3]}" for c in order]
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def _cfg(tmp_path: Path, **extra):
    data = {"source": "csv", "root": "shop", "image_size": 16, "cache_dir": str(tmp_path / "cache"), **extra}
    return parse_recipe({"name": "cache", "data": data}, base_dir=tmp_path).data


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Every call of the decoder, which still decodes."""
    calls, decode = [], images_module._decode
    monkeypatch.setattr(images_module, "_decode", lambda *a: calls.append(a[0]) or decode(*a))
    return calls


def _cache_files(tmp_path: Path, suffix: str) -> list[Path]:
    return sorted((tmp_path / "cache").glob(f"images-*{suffix}"))


def test_a_second_load_reads_the_cache_without_decoding(shop, tmp_path, decodes):
    first = load_data(_cfg(tmp_path), seed=0)
    assert len(decodes) == 12 + 6 + 6  # every row of every split, once
    decodes.clear()
    again = load_data(_cfg(tmp_path), seed=0)
    assert decodes == []
    for name in ("train", "val", "test"):
        images = getattr(again, name).images
        assert isinstance(images, np.memmap) and mapped_file(images) is not None
        assert np.array_equal(images, getattr(first, name).images)
    # the box of image 1 (green ground, magenta box), resized from 24 x 20 to 16 x 16
    assert again.train.images[1, 0, 0].tolist() == [0, 250, 0]
    assert again.train.images[1, 8, 8].tolist() == [255, 5, 255]
    index = json.loads(_cache_files(tmp_path, ".json")[0].read_text())
    assert index["format"] == 2 and index["bad"] == [] and index["dtype"] == "uint8"


def test_a_changed_image_is_decoded_again(shop, tmp_path, decodes):
    load_data(_cfg(tmp_path), seed=0)
    decodes.clear()
    image = shop / "img" / "1.png"
    Image.new("RGB", (24, 20), (10, 20, 30)).save(image)
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # even on a coarse clock
    data = load_data(_cfg(tmp_path), seed=0)
    assert len(decodes) == 12 + 6 + 6  # each split lists image 1, so each is decoded again
    assert data.train.images[1, 8, 8].tolist() == [10, 20, 30]
    assert data.test.images[5, 8, 8].tolist() == [5, 255, 255]  # image 0 unchanged


@pytest.mark.parametrize("damage", ["truncated", "index_garbage", "index_missing", "other_shape"])
def test_a_damaged_cache_is_rebuilt(shop, tmp_path, decodes, damage):
    first = np.array(load_data(_cfg(tmp_path), seed=0).train.images)  # not the map damaged below
    train = next(p for p in _cache_files(tmp_path, ".npy") if np.load(p, mmap_mode="r").shape[0] == 12)
    index = train.with_suffix(".json")
    if damage == "truncated":  # a copy cut short, a full disk
        os.truncate(train, train.stat().st_size - 100)
    elif damage == "index_garbage":
        index.write_text("{not json")
    elif damage == "index_missing":  # killed between the rename and the index
        index.unlink()
    else:  # a file of the right size that is not these images
        np.save(train, np.zeros((12 * 16, 16, 3), np.uint8))
    decodes.clear()
    again = load_data(_cfg(tmp_path), seed=0)
    assert len(decodes) == 12  # the train split only
    assert np.array_equal(again.train.images, first)
    decodes.clear()
    load_data(_cfg(tmp_path), seed=0)
    assert decodes == []


def test_two_processes_wanting_one_cache_decode_it_once(tmp_path):
    for i in range(30):
        Image.new("RGB", (12, 10), (i * 8, 0, 0)).save(tmp_path / f"{i}.png")
    script = """
import sys, time
from pathlib import Path
import edgekd.data._images as images
calls, decode = [], images._decode
def slow(*args):
    calls.append(1)
    time.sleep(0.1)  # 3 s of decoding: the two loads overlap
    return decode(*args)
images._decode = slow
paths = [Path(sys.argv[1]) / f"{i}.png" for i in range(30)]
loaded = images.load_images(paths, size=8, cache_dir=Path(sys.argv[1]) / "cache", workers=1)
print(len(calls), int(loaded.images[29, 0, 0, 0]))
"""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert sorted(int(o[0]) for o in outs) == [0, 30]  # one decoded, the other waited and read
    assert [int(o[1]) for o in outs] == [232, 232]


def test_bad_files_are_left_out_of_the_cache_itself(shop, tmp_path):
    (shop / "img" / "2.png").write_bytes(b"not a png")
    data = load_data(_cfg(tmp_path, max_bad_fraction=1), seed=0)
    # train rows 2 and 8 show image 2: gone from the memory-mapped rows, not copied around them
    assert isinstance(data.train.images, np.memmap) and len(data.train) == 10
    assert [tuple(im[0, 0]) for im in data.train.images[:4]] == [COLOURS[c] for c in (0, 1, 3, 4)]
    assert data.train.labels.tolist()[:4] == [0, 1, 1, 0]
    assert data.description["skipped_bad_images"] == {"train": 2, "val": 1, "test": 1}
    assert [tuple(im[0, 0]) for im in data.test.images] == [COLOURS[c] for c in (5, 4, 3, 1, 0)]


def test_a_bad_cache_dir_is_one_line(shop, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(
        EdgeKDError,
        match=r"^data.cache_dir: .*a_file is a file, not a folder; set "
        r"data.cache_dir .* to a writable folder$",
    ):
        load_data(_cfg(tmp_path, cache_dir=str(tmp_path / "a_file")), seed=0)
    with pytest.raises(EdgeKDError, match=r"^data.cache_dir: .*a_file/cache cannot be created"):
        load_data(_cfg(tmp_path, cache_dir=str(tmp_path / "a_file" / "cache")), seed=0)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root writes anyway: take a folder no one may write to
        locked = next(
            (Path(p) for p in ("/sys", "/proc/sys") if Path(p).is_dir() and not _can_create_in(Path(p))), None
        )
        if locked is None:
            pytest.skip("no folder here refuses a new file to this user")
    with pytest.raises(EdgeKDError, match=rf"^data.cache_dir: {locked} is not writable \(.*\); set"):
        load_data(_cfg(tmp_path, cache_dir=str(locked)), seed=0)


def _can_create_in(folder: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- batch reading
def test_take_and_batches_read_what_indexing_reads(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, (50, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="c")
    index = np.array([3, 4, 5, 9, 0, -1, 48, 49])
    for images in (mapped, array):
        got = take(images, index)
        assert np.array_equal(got, array[index]) and got.flags.writeable and type(got) is np.ndarray
        assert np.array_equal(take(images[10:30], [0, 1, 19]), array[10:30][[0, 1, 19]])
        assert np.array_equal(take(images, slice(45, 60)), array[45:])
        assert np.array_equal(np.concatenate(list(batches(images, 7))), array)
        assert [len(b) for b in prefetch(images, [[1], [2, 3], []])] == [1, 2, 0]
    assert mapped_file(mapped[10:30]) == (mapped.filename, mapped.offset + 10 * 48)
    assert mapped_file(mapped[::2]) is None and mapped_file(array) is None
    with pytest.raises(IndexError):
        take(mapped, [50])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_a_pass_over_a_mapped_split_keeps_resident_memory_flat(tmp_path):
    np.save(tmp_path / "big.npy", np.ones((2048, 128, 128, 3), np.uint8))  # 96 MB
    script = """
import sys
import numpy as np
from edgekd.data.rows import batches
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')) / 1024
images = np.load(sys.argv[1], mmap_mode='c')
base = rss()
total = sum(int(b.sum(dtype='int64')) for b in batches(images, 32))
read = rss()
total += sum(int(images[i:i + 32].sum(dtype='int64')) for i in range(0, len(images), 32))
print(total, read - base, rss() - read)
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "big.npy")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    total, through_reader, through_map = int(out[0]), float(out[1]), float(out[2])
    assert total == 2 * 2048 * 128 * 128 * 3
    assert through_reader < 24  # MB: a few 1.5 MB batches and the allocator's slack, not 96 MB
    assert through_map > 80  # the map's pages stay resident: what the reader avoids


# --------------------------------------------------------------------------- other consumers
def test_eval_set_written_from_a_mapped_split(tmp_path):
    from edgekd.bundle.eval_set import read_eval_set, write_eval_set

    array = np.random.default_rng(1).integers(0, 255, (300, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "test.npy", array)
    labels, groups = np.arange(300) % 3, np.arange(300) % 2
    path = write_eval_set(
        tmp_path / "eval_set.npz", np.load(tmp_path / "test.npy", mmap_mode="c"), labels, groups
    )
    loaded = read_eval_set(
        path, {"input_size": [3, 8, 8], "class_names": ["a", "b", "c"], "protected_groups": ["x", "y"]}
    )
    assert np.array_equal(loaded.images, array) and loaded.labels.tolist() == labels.tolist()
    with np.load(path) as archive:  # what np.savez_compressed would hold
        assert archive["groups"].dtype == np.int64 and archive["images"].shape == (300, 8, 8, 3)


def test_cell_balanced_draw_reads_rows_of_a_mapped_split(tmp_path):
    array = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1).repeat(3, axis=3)
    np.save(tmp_path / "a.npy", array)
    labels, groups = np.arange(40) % 2, (np.arange(40) // 20)
    mapped = Split(np.load(tmp_path / "a.npy", mmap_mode="c"), labels, groups)
    drawn = mapped.cell_balanced(8, seed=3)
    same = Split(array, labels, groups).cell_balanced(8, seed=3)
    assert type(drawn.images) is np.ndarray and np.array_equal(drawn.images, same.images)
    assert sorted(zip(drawn.labels.tolist(), drawn.groups.tolist())) == [
        (0, 0),
        (0, 0),
        (0, 1),
        (0, 1),
        (1, 0),
        (1, 0),
        (1, 1),
        (1, 1),
    ]
    assert (
        drawn.images[:, 0, 0, 0].tolist()
        == np.flatnonzero(np.isin(np.arange(40), drawn.images[:, 0, 0, 0])).tolist()
    )  # rows in file order


def test_fashion_mnist_images_can_live_in_the_cache(tmp_path, monkeypatch):
    import edgekd.data.fashion_mnist as fashion
    from tests.test_data_files import _idx

    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (120, 28, 28)), gz=False)
    _idx(tmp_path / "train-labels-idx1-ubyte", np.arange(120) % 10, gz=False)
    _idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (20, 28, 28)), gz=False)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    data = {"source": "fashion_mnist_colored", "path": str(tmp_path), "val_size": 20, "image_size": 20}

    def parse(**extra):
        return parse_recipe({"name": "f", "data": {**data, **extra}}, base_dir=tmp_path).data

    in_memory = load_data(parse(), seed=0)
    cached = load_data(parse(cache_dir=str(tmp_path / "cache")), seed=0)
    calls = []
    colour = fashion._colour
    monkeypatch.setattr(fashion, "_colour", lambda *a: calls.append(1) or colour(*a))
    again = load_data(parse(cache_dir=str(tmp_path / "cache")), seed=0)
    assert calls == []
    for name in ("train", "val", "test"):
        assert type(getattr(in_memory, name).images) is np.ndarray
        assert isinstance(getattr(again, name).images, np.memmap)
        assert np.array_equal(getattr(cached, name).images, getattr(in_memory, name).images)
        assert np.array_equal(getattr(again, name).images, getattr(in_memory, name).images)
    load_data(parse(cache_dir=str(tmp_path / "cache"), bias=0.5), seed=0)  # other tints: made again
    assert calls


@pytest.mark.slow  # two tiny builds: about 45 s on a busy 2-core machine
def test_a_mapped_build_gives_the_card_of_the_in_memory_path(shop, tmp_path, monkeypatch):
    import edgekd.pipeline as pipeline
    from edgekd.bundle.eval_set import read_eval_set

    recipe = tmp_path / "shop.yaml"
    recipe.write_text(f"""
name: shop
threads: 1
data: {{source: csv, root: shop, image_size: 16, cache_dir: {tmp_path / "cache"}}}
teacher: {{arch: test_efficientnet, epochs: 1, batch_size: 4}}
student: {{arch: test_efficientnet, epochs: 1, batch_size: 4}}
export: {{onnx: {{exporter: torchscript, opset: 17}}}}
card: {{bootstrap_resamples: 20}}
bundle: {{include_eval_set: true}}
""")
    load, seen = pipeline.load_data, []

    def in_memory(cfg, *, seed):
        data = load(cfg, seed=seed)
        for name in ("train", "val", "test"):
            split = getattr(data, name)
            seen.append(type(split.images))
            setattr(data, name, Split(np.array(split.images), split.labels, split.groups))
        return data

    mapped = pipeline.build(recipe, out=tmp_path / "mapped", log=lambda m: None)
    monkeypatch.setattr(pipeline, "load_data", in_memory)
    memory = pipeline.build(recipe, out=tmp_path / "memory", log=lambda m: None)
    assert seen == [np.memmap] * 3  # the in-memory build's copies came from the cache
    assert set(mapped.card["models"]) == {"teacher", "baseline", "student", "onnx"}
    for name, entry in mapped.card["models"].items():
        assert entry["metrics"] == memory.card["models"][name]["metrics"], name
    compared = 0
    for stage in ("teacher", "baseline", "student", "export", "teacher_outputs"):
        for path in sorted((mapped.run_dir / "stages" / stage).glob("*.npz")):
            if path.name != "eval_set.npz":  # the logits and features themselves, bit for bit
                with np.load(path) as a, np.load(memory.run_dir / "stages" / stage / path.name) as b:
                    assert all(np.array_equal(a[k], b[k]) for k in a.files), path
                compared += 1
    assert compared == 6  # four test_predictions.npz, the teacher's outputs of epoch 0, predictions.npz
    ours, theirs = read_eval_set(mapped.bundle_dir), read_eval_set(memory.bundle_dir)
    assert np.array_equal(ours.images, theirs.images) and len(ours.images) == 6
