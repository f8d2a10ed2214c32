"""Reading hostile files: nothing outside its root is read, every malformed file is one line.

Each case asserts the exit code, the one line, and that a canary file outside the root stays
unread (its access time is set in the past, so any read would move it; see ``Canary``).
Signed bundles: a signed tiny bundle verifies, and one changed byte in any file, in the manifest
or in the signature fails with that file named.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from compare import REMOVED, key_paths, mutated, one_line
from PIL import Image

from edgekd.bundle.extract import extract_bundle
from edgekd.card.html import render_html
from edgekd.card.markdown import render_markdown
from edgekd.card.schema import CARD_SCHEMA_FILE, MAX_CARD_BYTES, check_card
from edgekd.cli import main
from edgekd.data import load_data
from edgekd.data._images import load_images, remove_orphans
from edgekd.errors import EdgeKDError
from edgekd.recipe import parse_recipe

TESTS = Path(__file__).parent


# ------------------------------------------------------------------------------------ helpers
class Canary:
    """A file outside the root whose access time is in the past: a read would move it."""

    def __init__(self, path: Path, data: bytes = b"canary") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stat = path.stat()
        os.utime(path, ns=(stat.st_mtime_ns - 10**15, stat.st_mtime_ns))  # relatime updates it
        self.path, self.atime = path, path.stat().st_atime_ns

    @property
    def unread(self) -> bool:
        return self.path.stat().st_atime_ns == self.atime


def _png_bytes(size=(40, 30), colour=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG header claiming width x height pixels (400 million), with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def run(tiny_build, tmp_path) -> Path:
    """A private copy of the tiny build's run folder (bundle, tarball)."""
    target = tmp_path / "run"
    shutil.copytree(tiny_build.run_dir, target, ignore=shutil.ignore_patterns("stages", "seeds"))
    return target


@pytest.fixture
def bundle(run) -> Path:
    return run / "bundle"


def _edit_card(bundle: Path, change) -> dict:
    card = json.loads((bundle / "card.json").read_text())
    change(card)
    (bundle / "card.json").write_text(json.dumps(card))
    return card


# ---------------------------------------------------------- 1. the HTML card and card.json
@pytest.mark.parametrize("plot", ["../../outside/canary.png", "ABSOLUTE", "plots/../../outside/canary.png"])
def test_html_card_embeds_no_file_outside_the_bundle(bundle, tmp_path, plot):
    canary = Canary(tmp_path / "outside" / "canary.png", _png_bytes())
    plot = str(canary.path) if plot == "ABSOLUTE" else plot
    _edit_card(bundle, lambda c: c.update(plots=[plot]))
    line = one_line(invoke("card", bundle, "--format", "html"))
    assert "card.json" in line and "plots" in line
    assert canary.unread


def test_html_card_refuses_a_plot_symlinked_out_of_the_bundle(bundle, tmp_path):
    canary = Canary(tmp_path / "outside" / "canary.png", _png_bytes())
    plot = bundle / "plots" / "recall_by_group.png"
    plot.unlink()
    plot.symlink_to(canary.path)
    line = one_line(invoke("card", bundle, "--format", "html"))
    assert "recall_by_group.png" in line and f"outside {bundle.resolve()}" in line
    assert canary.unread


def test_html_card_of_a_good_bundle_inlines_its_own_plots(bundle):
    result = invoke("card", bundle, "--format", "html")
    plots = json.loads((bundle / "card.json").read_text())["plots"]
    assert result.exit_code == 0 and result.output.count('src="data:image/png;base64,') == len(plots) == 4


def test_card_json_symlinked_out_of_the_bundle_is_not_read(bundle, tmp_path):
    canary = Canary(tmp_path / "outside" / "card.json", (bundle / "card.json").read_bytes())
    (bundle / "card.json").unlink()
    (bundle / "card.json").symlink_to(canary.path)
    line = one_line(invoke("card", bundle))
    assert "outside" in line and canary.unread


DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{}", "(top): 'schema' is a required property"),
        ("[]", "is not of type 'object'"),
        ('"card"', "is not of type 'object'"),
        ("null", "is not of type 'object'"),
        ("{not json", "not valid JSON"),
        (DEEP, "nested too deeply"),
        ("MODELS_STRING", "models.student.metrics: 'x' is not of type 'object'"),
        ("SHORT_PER_CLASS", "models.teacher.metrics.per_class has 3 rows for 4 classes"),
        ("MISSING_GROUP", "models.student.metrics.per_class[0].recall_by_group has no 'warm'"),
        ("MANY_CLASSES", "task.classes: "),
        ("DEEP_LEARNED", "nested too deeply"),
        ("HUGE", f"above the {MAX_CARD_BYTES} bytes a card may have"),
        ("GATE_VALUE", "gates[0].value: 'high' is not of type 'number', 'null'"),
    ],
)
def test_malformed_card_json_isone_line(bundle, content, needle):
    path = bundle / "card.json"
    card = json.loads(path.read_text())
    if content == "MODELS_STRING":
        card["models"]["student"]["metrics"] = "x"
    elif content == "SHORT_PER_CLASS":
        card["models"]["teacher"]["metrics"]["per_class"].pop()
    elif content == "MISSING_GROUP":
        del card["models"]["student"]["metrics"]["per_class"][0]["recall_by_group"]["warm"]
    elif content == "MANY_CLASSES":
        card["task"]["classes"] = [f"c{i}" for i in range(10_001)]
    elif content == "DEEP_LEARNED":
        card = json.dumps(card).replace('"learned": {}', '"learned": ' + DEEP.replace("][", "],["))
    elif content == "GATE_VALUE":
        card["gates"][0]["value"] = "high"
    if content == "HUGE":
        with open(path, "r+b") as fh:
            fh.truncate(MAX_CARD_BYTES + 1)  # sparse: no 32 MB written
    elif content in (
        "MODELS_STRING",
        "SHORT_PER_CLASS",
        "MISSING_GROUP",
        "MANY_CLASSES",
        "DEEP_LEARNED",
        "GATE_VALUE",
    ):
        path.write_text(card if isinstance(card, str) else json.dumps(card))
    else:
        path.write_text(content)
    for args in (["card", bundle], ["card", bundle, "--format", "html,json"], ["card", bundle, "--check"]):
        line = one_line(invoke(*args))
        assert str(path) in line and needle in line, line


def test_every_node_of_a_card_replaced_renders_or_isone_line(tiny_build):
    """Each node of a real card (to depth 4, the first item of each list) replaced by a value of
    the wrong shape or deleted: the card either renders (md, html, gates) or check_card names
    the problem; nothing else escapes."""
    from edgekd.card.gates import describe_gate, failed_gates

    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    refused = rendered = 0
    for path in list(key_paths(card))[1:]:
        for value in ("x", None, KeyError):
            if value is KeyError and isinstance(path[-1], int):
                continue
            broken = mutated(card, path, REMOVED if value is KeyError else value)
            try:
                check_card(broken)
            except EdgeKDError as err:
                assert "\n" not in str(err)
                refused += 1
                continue
            render_markdown(broken)
            render_html(broken, [])
            [describe_gate(g) for g in failed_gates(broken)]
            rendered += 1
    print(f"card mutations: {refused} refused in one line, {rendered} rendered")
    assert refused > 150 and rendered > 50, (refused, rendered)


def test_the_published_schema_is_in_the_package_and_accepts_a_real_card(tiny_build):
    schema = json.loads(CARD_SCHEMA_FILE.read_text())
    assert schema["$schema"].endswith("2020-12/schema") and schema["properties"]["schema"] == {
        "const": "edgekd.card/v1"
    }
    check_card(json.loads((tiny_build.bundle_dir / "card.json").read_text()))


# ------------------------------------------------------------------------------ 2. data paths
@pytest.fixture
def shop(tmp_path) -> Path:
    root = tmp_path / "shop"
    (root / "img").mkdir(parents=True)
    for name, colour in (("a.png", (255, 0, 0)), ("b.png", (0, 255, 0)), ("c.png", (0, 0, 255))):
        (root / "img" / name).write_bytes(_png_bytes(colour=colour))
    rows = ["path,label,group", "img/a.png,cat,x", "img/b.png,dog,y", "img/c.png,dog,x"]
    for split in ("train", "val", "test"):
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def _csv_cfg(tmp_path, **extra):
    data = {"source": "csv", "root": "shop", "image_size": 16, "cache_dir": str(tmp_path / "cache"), **extra}
    return parse_recipe({"name": "files", "data": data}, base_dir=tmp_path).data


def _add_row(root: Path, path: str, split: str = "test") -> int:
    with open(root / f"{split}.csv", "a") as fh:
        fh.write(f"{path},cat,y\n")
    return len((root / f"{split}.csv").read_text().splitlines())


def _csv_recipe(tmp_path, **data) -> Path:
    recipe = tmp_path / "files.yaml"
    settings = {
        "source": "csv",
        "root": "shop",
        "image_size": 16,
        "cache_dir": str(tmp_path / "cache"),
        **data,
    }
    recipe.write_text(
        json.dumps(
            {
                "name": "files",
                "threads": 1,
                "data": settings,
                "teacher": {"arch": "test_efficientnet", "epochs": 1, "batch_size": 2},
                "student": {"arch": "test_efficientnet", "epochs": 1, "batch_size": 2},
                "card": {"bootstrap_resamples": 20},
            }
        )
    )
    return recipe


@pytest.mark.parametrize("kind", ["climb", "absolute", "symlink"])
def test_a_csv_path_outside_data_root_is_one_line_and_never_opened(shop, tmp_path, kind):
    canary = Canary(tmp_path / "outside.png", _png_bytes())
    if kind == "climb":
        listed = "../outside.png"
    elif kind == "absolute":
        listed = str(canary.path)
    else:
        (shop / "img" / "link.png").symlink_to(canary.path)
        listed = "img/link.png"
    line_no = _add_row(shop, listed)
    out = tmp_path / "runs"
    line = one_line(invoke("build", _csv_recipe(tmp_path), "--out", out))
    assert f"{shop / 'test.csv'} line {line_no}: path {listed!r} is outside {shop.resolve()}" in line
    assert canary.unread
    assert not (tmp_path / "cache").exists()  # refused before any image was decoded


def test_etc_passwd_in_a_csv_is_refused_before_any_file_is_read(shop, tmp_path):
    _add_row(shop, "/etc/passwd")
    with pytest.raises(EdgeKDError, match=r"test.csv line 5: path '/etc/passwd' is outside"):
        load_data(_csv_cfg(tmp_path), seed=0)
    assert not (tmp_path / "cache").exists()  # refused before the cache is even made


def test_a_celeba_file_name_climbing_out_is_refused(tmp_path):
    root = tmp_path / "celeba"
    canary = Canary(tmp_path / "outside.jpg", _png_bytes())
    names = ["5_o_Clock_Shadow", "Male", "Smiling"] + [f"Attr{i}" for i in range(37)]
    files = [f"{i:06d}.jpg" for i in range(1, 6)] + ["../../outside.jpg"]
    lines = [str(len(files)), " ".join(names)]
    for i, name in enumerate(files):
        lines.append(name + " " + " ".join(["1" if (i + k) % 2 else "-1" for k in range(40)]))
        if "/" not in name:
            (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
            (root / "img_align_celeba" / name).write_bytes(_png_bytes())
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{f} {min(i // 2, 2)}" for i, f in enumerate(files)) + "\n"
    )
    cfg = parse_recipe(
        {
            "name": "c",
            "data": {
                "source": "celeba",
                "root": "celeba",
                "image_size": 16,
                "cache_dir": str(tmp_path / "c"),
            },
        },
        base_dir=tmp_path,
    ).data
    with pytest.raises(EdgeKDError, match=r"list_eval_partition.txt: path .*outside.jpg' is outside"):
        load_data(cfg, seed=0)
    assert canary.unread


def test_a_wider_annotation_file_name_climbing_out_is_refused(tmp_path):
    root = tmp_path / "wider"
    canary = Canary(tmp_path / "outside.jpg", _png_bytes())
    target = {"bbox": [2, 2, 10, 10], "attribute": [1] + [0] * 13}
    trainval = [("train/0--Parade/a.jpg", 0), ("val/0--Parade/b.jpg", 0)]
    test = [("test/0--Parade/../../../../outside.jpg", 0)]
    for name, _ in trainval:
        (root / "Image" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "Image" / name).write_bytes(_png_bytes())
    for filename, items in (("wider_attribute_trainval.json", trainval), ("wider_attribute_test.json", test)):
        doc = {
            "images": [{"file_name": n, "scene_id": s, "targets": [target]} for n, s in items],
            "attribute_id_map": {"0": "Male"},
            "scene_id_map": {"0": "Parade"},
        }
        root.mkdir(exist_ok=True)
        (root / filename).write_text(json.dumps(doc))
    cfg = parse_recipe(
        {
            "name": "w",
            "data": {
                "source": "wider_attribute",
                "root": "wider",
                "image_size": 16,
                "cache_dir": str(tmp_path / "c"),
            },
        },
        base_dir=tmp_path,
    ).data
    with pytest.raises(
        EdgeKDError,
        match=r"the WIDER Attribute annotations \(test file_name\): path "
        r".*outside.jpg' is outside",
    ):
        load_data(cfg, seed=0)
    assert canary.unread


# ---------------------------------------------------------------------------- 3. verify
@pytest.mark.parametrize("entry", ["../outside/canary.bin", "ABSOLUTE", "plots/../../outside/canary.bin"])
def test_verify_reads_no_manifest_entry_outside_the_bundle(bundle, tmp_path, entry):
    canary = Canary(tmp_path / "run" / "outside" / "canary.bin")
    entry = str(canary.path) if entry == "ABSOLUTE" else entry
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][entry] = {"sha256": "0" * 64, "size": 6}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    line = one_line(invoke("verify", bundle))
    assert "manifest.json" in line and f"is outside {bundle.resolve()}" in line
    assert canary.unread


def test_verify_follows_no_symlink_out_of_the_bundle(bundle, tmp_path):
    copy = Canary(tmp_path / "elsewhere" / "model.onnx", (bundle / "model.onnx").read_bytes())
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").symlink_to(copy.path)  # identical bytes: the hash would match
    line = one_line(invoke("verify", bundle))
    assert "'model.onnx' is outside" in line and copy.unread


def test_verify_does_not_enter_a_directory_linked_out_of_the_bundle(bundle, tmp_path):
    canary = Canary(tmp_path / "etc" / "hostname")
    (bundle / "plots" / "etcdir").symlink_to(canary.path.parent, target_is_directory=True)
    line = one_line(invoke("verify", bundle))
    assert "plots/etcdir is a symlink to" in line and "outside the bundle" in line
    assert canary.unread


def test_a_symlink_inside_the_bundle_is_reported_not_followed(bundle):
    (bundle / "plots" / "again.png").symlink_to(bundle / "plots" / "recall_by_group.png")
    result = invoke("verify", bundle)
    assert result.exit_code == 1 and "symlink: plots/again.png" in result.output


@pytest.mark.parametrize(
    "files, needle",
    [
        ([], "'files' must map each file"),
        ({"card.json": "abc"}, "'files' must map each file"),
        ({"manifest.sig": {"sha256": "0", "size": 1}}, "which a manifest cannot list"),
    ],
)
def test_a_manifest_of_the_wrong_shape_isone_line(bundle, files, needle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = files
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert needle in one_line(invoke("verify", bundle))


# ------------------------------------------------------------------- 4. eval_set.npz ranges
@pytest.mark.parametrize(
    "change, needle",
    [
        (
            lambda e: e["groups"].__setitem__(3, -5),
            "groups[3] is -5; preprocess.json protected_groups allows 0 to 1",
        ),
        (
            lambda e: e["labels"].__setitem__(0, 99),
            "labels[0] is 99; preprocess.json class_names allows 0 to 3",
        ),
        (lambda e: e.__setitem__("images", e["images"][:, :16]), "images must be uint8 (N, 32, 32, 3)"),
        (lambda e: e.__setitem__("labels", e["labels"][:-1]), "labels must be 128 integers"),
        (lambda e: e.__setitem__("groups", e["groups"].astype(np.float32)), "groups must be 128 integers"),
    ],
    ids=["group -5", "label 99", "image size", "labels count", "float groups"],
)
def test_a_bad_eval_set_is_one_line_in_bench_eval(bundle, change, needle):
    with np.load(bundle / "eval_set.npz") as stored:
        arrays = {k: stored[k].copy() for k in stored.files}
    change(arrays)
    np.savez_compressed(bundle / "eval_set.npz", **arrays)
    line = one_line(invoke("bench", bundle, "--eval", "--warmup", "0", "--iterations", "1"))
    assert "eval_set.npz" in line and needle in line, line


def test_an_eval_set_that_is_not_an_npz_isone_line(bundle):
    (bundle / "eval_set.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert "not an edgekd evaluation set" in one_line(
        invoke("bench", bundle, "--eval", "--warmup", "0", "--iterations", "1")
    )


# ------------------------------------------------------------------------- 5. pixel limits
def test_a_decompression_bomb_is_skipped_and_counted_orone_line(shop, tmp_path):
    (shop / "img" / "bomb.png").write_bytes(_bomb_png())
    _add_row(shop, "img/bomb.png", split="train")
    data = load_data(_csv_cfg(tmp_path, max_bad_fraction=1), seed=0)  # 1 file of a tiny split
    assert data.description["skipped_bad_images"] == {"train": 1, "val": 0, "test": 0}
    reason = data.description["skipped_bad_image_examples"][0]
    assert "bomb.png" in reason and "data.max_image_pixels 89478485" in reason
    line = one_line(invoke("build", _csv_recipe(tmp_path, on_bad_image="error"), "--out", tmp_path / "runs"))
    assert "bomb.png" in line and "data.max_image_pixels" in line
    assert not (tmp_path / "runs" / "files" / "stages").exists()


def test_the_recipe_sets_the_pixel_limit(shop, tmp_path):
    (shop / "img" / "c.png").write_bytes(_png_bytes(size=(80, 60)))  # 4800 pixels, the others 1200
    small = load_data(_csv_cfg(tmp_path, max_image_pixels=2000, max_bad_fraction=1), seed=0)
    assert small.description["skipped_bad_images"] == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(
        EdgeKDError,
        match=r"c.png: 80 x 60 pixels, above data.max_image_pixels 2000; "
        r"raise it in the recipe",
    ):
        load_data(_csv_cfg(tmp_path, max_image_pixels=2000, on_bad_image="error"), seed=0)
    assert len(load_data(_csv_cfg(tmp_path, max_image_pixels=5000), seed=0).train) == 3


# --------------------------------------------------------------- 6. image cache and stage keys
def test_orphans_of_dead_decoders_are_swept_and_live_ones_kept(tmp_path):
    import socket

    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    host = socket.gethostname()
    orphan = cache / f".images-abc-16px.npy.{host}.{dead}.tmp"
    live = cache / f".images-def-16px.npy.{host}.{os.getpid()}.tmp"
    other_host = cache / f".images-ghi-16px.npy.elsewhere.{dead}.tmp"
    for path in (orphan, live, other_host):
        path.write_bytes(b"half")
    assert remove_orphans(cache) == [orphan]
    assert live.exists() and other_host.exists() and not orphan.exists()
    image = tmp_path / "a.png"
    image.write_bytes(_png_bytes())
    orphan.write_bytes(b"half")
    loaded = load_images([image], size=16, cache_dir=cache)  # a load sweeps them too
    assert not orphan.exists() and loaded.images.flags.writeable


def test_moving_the_cache_retrains_nothing_and_a_single_test_group_is_said(shop, tmp_path):
    import warnings

    from edgekd.pipeline import build

    (shop / "test.csv").write_text("path,label,group\nimg/a.png,cat,x\nimg/b.png,dog,x\n")
    logs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = build(_csv_recipe(tmp_path), out=tmp_path / "runs", log=logs.append)
    assert not [w for w in caught if "not writable" in str(w.message)]
    line = (
        "data: the test split has images of only one group of group (x of x, y); every "
        "disparity, DPD and EOD on the card is undefined (-)"
    )
    assert f"warning: {line}" in logs
    assert f"- {line}" in (first.bundle_dir / "card.md").read_text()
    moved = build(
        _csv_recipe(tmp_path, cache_dir=str(tmp_path / "moved"), workers=3, on_bad_image="error"),
        out=tmp_path / "runs",
        log=lambda m: None,
    )
    assert set(moved.stage_status.values()) == {"reused"}
    assert (tmp_path / "moved").is_dir()


# ----------------------------------------------------------------------- 7. bounded extraction
def _rebuilt_tarball(run: Path, tmp_path: Path, change) -> Path:
    source, target = run / "tiny-0.1.0.tar.gz", tmp_path / "hostile.tar.gz"
    with tarfile.open(source) as src, tarfile.open(target, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            member, data = change(member, data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return target


def test_a_member_larger_than_its_manifest_says_is_never_written(run, tmp_path):
    def grow(member, data):
        if member.name.endswith("model.onnx"):
            data = data + b"\0" * 4096
            member.size = len(data)
        return member, data

    archive = _rebuilt_tarball(run, tmp_path, grow)
    line = one_line(invoke("verify", archive))
    assert "tiny-0.1.0/model.onnx" in line and "but its manifest says" in line
    with pytest.raises(EdgeKDError, match="manifest says"):
        extract_bundle(archive, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_extraction_caps_each_member_and_the_total(run, tmp_path):
    archive = run / "tiny-0.1.0.tar.gz"
    with pytest.raises(EdgeKDError, match=r"\d+ bytes, above the cap of 100000 bytes per file"):
        extract_bundle(archive, tmp_path / "a", max_member_bytes=100_000)
    with pytest.raises(EdgeKDError, match="refusing to extract more than 500000 bytes in all"):
        extract_bundle(archive, tmp_path / "b", max_total_bytes=500_000)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert (extract_bundle(archive, tmp_path / "c") / "card.json").is_file()


def test_a_tarball_without_a_manifest_is_refused(run, tmp_path):
    archive = _rebuilt_tarball(
        run,
        tmp_path,
        lambda m, d: (tarfile.TarInfo("tiny-0.1.0/x"), b"") if m.name.endswith("manifest.json") else (m, d),
    )
    assert "found 0; not an edgekd bundle" in one_line(invoke("verify", archive))


# ------------------------------------------------------------------------- 8. signed bundles
@pytest.fixture
def keys(tmp_path):
    result = invoke("keygen", tmp_path / "keys" / "release")
    assert result.exit_code == 0, result.output
    private = tmp_path / "keys" / "release"
    assert private.stat().st_mode & 0o777 == 0o600
    return private, Path(f"{private}.pub")


@pytest.fixture
def signed(bundle, keys):
    result = invoke("sign", bundle, "--key", keys[0])
    assert result.exit_code == 0, result.output
    assert "tarball:" in result.output  # the tarball beside the bundle carries the signature
    return bundle


def test_a_signed_bundle_and_its_tarball_verify(signed, keys):
    for target in (signed, signed.parent / "tiny-0.1.0.tar.gz"):
        result = invoke("verify", target, "--key", keys[1])
        assert result.exit_code == 0, result.output
        assert "signature by key" in result.output and "holds" in result.output
    assert "signed, signature not checked" in invoke("verify", signed).output


def _files_of(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def test_one_changed_byte_in_any_file_fails_with_the_file_named(signed, keys, tmp_path):
    files = _files_of(signed)
    assert {"manifest.json", "manifest.sig", "model.onnx", "card.json", "eval_set.npz"} <= set(files)
    for rel in files:
        copy = tmp_path / "copies" / rel.replace("/", "_")
        shutil.copytree(signed, copy)
        data = bytearray((copy / rel).read_bytes())
        at = len(data) // 2
        data[at] = (data[at] + 1) % 256 if rel != "manifest.sig" else ord("A" if data[at] != 65 else "B")
        (copy / rel).write_bytes(bytes(data))
        result = invoke("verify", copy, "--key", keys[1])
        assert result.exit_code == 1, (rel, result.output)
        assert rel in result.output, (rel, result.output)


def test_a_swapped_model_with_a_fixed_manifest_fails_only_the_signature(signed, keys):
    from edgekd.files import sha256_file

    model = signed / "model.onnx"
    model.write_bytes(model.read_bytes()[::-1])
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = {"sha256": sha256_file(model), "size": model.stat().st_size}
    (signed / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    assert invoke("verify", signed).exit_code == 0  # the checksums alone cannot tell
    result = invoke("verify", signed, "--key", keys[1])
    assert result.exit_code == 1
    assert "signature mismatch: manifest.json changed after it was signed" in result.output


def test_another_key_or_no_signature_fails(bundle, signed, tmp_path, keys):
    other = invoke("keygen", tmp_path / "other")
    assert other.exit_code == 0
    result = invoke("verify", signed, "--key", f"{tmp_path / 'other'}.pub")
    assert result.exit_code == 1 and "wrong signer: manifest.sig was made by key" in result.output
    (signed / "manifest.sig").unlink()
    result = invoke("verify", signed, "--key", keys[1])
    assert result.exit_code == 1 and "unsigned: manifest.sig is missing" in result.output
    line = one_line(invoke("verify", signed, "--key", keys[0]))
    assert "that is the private key; give the .pub file" in line


def test_bench_update_card_drops_or_renews_the_signature(signed, keys):
    bench = ["bench", signed, "--warmup", "0", "--iterations", "2", "--update-card"]
    renewed = invoke(*bench, "--key", keys[0])
    assert renewed.exit_code == 0, renewed.output
    assert "re-signed" in renewed.output
    assert invoke("verify", signed, "--key", keys[1]).exit_code == 0
    dropped = invoke(*bench)
    assert dropped.exit_code == 0, dropped.output
    assert "no longer held and was removed; sign again with `edgekd sign" in dropped.output
    assert not (signed / "manifest.sig").exists()
    refused = invoke(*bench, "--key", keys[0])  # nothing signed to renew
    assert "unsigned: manifest.sig is missing" in one_line(refused)


def test_bench_update_card_never_re_signs_a_swapped_model(signed, keys):
    from edgekd.files import sha256_file

    model = signed / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = {"sha256": sha256_file(model), "size": model.stat().st_size}
    (signed / "manifest.json").write_text(json.dumps(manifest))
    before = {rel: (signed / rel).read_bytes() for rel in _files_of(signed)}
    line = one_line(
        invoke("bench", signed, "--warmup", "0", "--iterations", "2", "--update-card", "--key", keys[0])
    )
    assert "manifest.json changed after it was signed" in line
    assert {rel: (signed / rel).read_bytes() for rel in _files_of(signed)} == before


def test_signing_refuses_a_bundle_that_does_not_match_its_manifest(bundle, keys):
    (bundle / "card.md").write_text("forged")
    line = one_line(invoke("sign", bundle, "--key", keys[0]))
    assert "size mismatch: card.md" in line and not (bundle / "manifest.sig").exists()


# ------------------------------------------------------------------------------- 9. the lock
def test_bench_update_card_on_a_folder_in_use_is_one_line_and_touches_nothing(bundle, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from edgekd.lock import run_lock\n"
            "with run_lock(sys.argv[1], command='edgekd build held'):\n"
            "    print('held', flush=True); sys.stdin.read()",
            str(bundle.parent),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {rel: (bundle / rel).read_bytes() for rel in _files_of(bundle)}
        line = one_line(invoke("bench", bundle, "--warmup", "0", "--iterations", "2", "--update-card"))
        assert line == (
            f"error: {bundle.resolve().parent}: in use by pid {holder.pid} on "
            f"{__import__('socket').gethostname()}, `edgekd build held`, since " + line.split(", since ")[1]
        )
        assert {rel: (bundle / rel).read_bytes() for rel in _files_of(bundle)} == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing anything: its lock is taken over
    result = invoke("bench", bundle, "--warmup", "0", "--iterations", "2", "--update-card")
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------- 10. bench reads its bundle
@pytest.mark.parametrize("name", ["preprocess.json", "eval_set.npz", "model.onnx"])
def test_bench_reads_no_bundle_file_symlinked_out(bundle, tmp_path, name):
    canary = Canary(tmp_path / "elsewhere" / name, (bundle / name).read_bytes())
    (bundle / name).unlink()
    (bundle / name).symlink_to(canary.path)
    line = one_line(invoke("bench", bundle, "--eval", "--warmup", "0", "--iterations", "1"))
    assert f"'{name}' is outside {bundle.resolve()}" in line
    assert canary.unread


def test_a_malformed_bench_result_never_reaches_the_card(bundle, tmp_path):
    from edgekd.bench.runner import run_bench

    result = run_bench(bundle, warmup=0, iterations=2)
    result["results"][0]["batch"] = "many"
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    before = {rel: (bundle / rel).read_bytes() for rel in _files_of(bundle)}
    merged = invoke("bench", bundle, "--from-json", saved, "--update-card")
    line = one_line(merged)  # refused as it is read, before any table or write
    assert (
        line.startswith(f"error: --from-json: {saved}: results[0].batch: ")
        and "'many' is not of type 'integer'" in line
    )
    assert {rel: (bundle / rel).read_bytes() for rel in _files_of(bundle)} == before
    from edgekd.bench.card_update import update_card  # the library refuses it too, by the schema

    with pytest.raises(EdgeKDError, match=r"bench result 1 of 1: results\[0\]\.batch"):
        update_card(bundle, result, log=None)
    assert {rel: (bundle / rel).read_bytes() for rel in _files_of(bundle)} == before
