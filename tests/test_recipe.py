"""Bad recipes: exit code 2 and one line that names the key, the value and what is allowed."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.recipe import apply_overrides, load_recipe, parse_recipe

TINY = Path(__file__).parent / "tiny.yaml"


def _tiny() -> dict:
    return yaml.safe_load(TINY.read_text())


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def _with(**sections) -> dict:
    raw = _tiny()
    for dotted, value in sections.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return raw


BAD = {
    "unknown key": (_with(distill__temprature=8), ["distill.temprature", "unknown key", "temperature"]),
    "unknown top-level key": (_with(trainer={}), ["trainer", "unknown key", "teacher"]),
    "wrong type": (_with(distill__temperature="hot"), ["distill.temperature", "'hot'", "number"]),
    "negative epochs": (_with(teacher__epochs=-3), ["teacher.epochs", "-3", "greater than or equal to 0"]),
    "bias 1.5": (_with(data__bias=1.5), ["data.bias", "1.5", "less than or equal to 1"]),
    "missing checkpoint": (
        _with(teacher__checkpoint="nowhere/b3.pt"),
        ["teacher.checkpoint", "nowhere/b3.pt", "does not exist"],
    ),
    "unknown arch": (_with(student__arch="efficientnet_b99"), ["student.arch", "efficientnet_b99", "timm"]),
    "unknown data source": (_with(data__source="imagenet"), ["data.source", "imagenet", "trifeature"]),
    "unknown method": (_with(distill__method="magic"), ["distill.method", "magic", "kd"]),
    "empty file": ("", ["empty", "name"]),
    "not yaml": ("name: [unclosed\n  teacher: {", ["not valid YAML", "line"]),
    "python tag": (
        "name: x\nseed: !!python/object/apply:os.system ['echo hacked']\n",
        ["tag", "not allowed"],
    ),
    "top level list": ("- a\n- b\n", ["mapping", "list"]),
    "missing name": ({"seed": 1}, ["name", "required"]),
    "zero epochs without weights": (_with(student__epochs=0), ["student", "checkpoint or pretrained"]),
    "one seed in seeds": (_with(seeds=[3]), ["seeds", "at least 2"]),
    "repeated seeds": (_with(seeds=[0, 1, 1]), ["seeds", "distinct", "[0, 1, 1]"]),
    "bad image policy": (
        _with(data={"source": "csv", "root": ".", "on_bad_image": "ignore"}),
        ["data.on_bad_image", "'ignore'", "skip", "error"],
    ),
    "dynamo opset": (
        _with(export={"onnx": {"exporter": "dynamo", "opset": 17}}),
        ["export.onnx", "opset 18"],
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_recipe_exits_2_with_one_line_naming_the_key(tmp_path, case):
    content, needles = BAD[case]
    path = _write(tmp_path, content)
    result = CliRunner().invoke(main, ["build", str(path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # stdout: progress
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "runs").exists(), "a rejected recipe must leave nothing behind"


def test_missing_recipe_file(tmp_path):
    result = CliRunner().invoke(main, ["build", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "does not exist" in result.output


def test_set_overrides_any_key_and_is_validated(tmp_path):
    recipe = load_recipe(TINY, ["distill.temperature=8", "data.bias=0.5", "teacher.lr=1e-3"])
    assert recipe.distill.temperature == 8.0
    assert recipe.data.bias == 0.5
    assert recipe.teacher.lr == pytest.approx(1e-3)
    with pytest.raises(EdgeKDError, match=r"distill\.temperature = -1"):
        load_recipe(TINY, ["distill.temperature=-1"])
    with pytest.raises(EdgeKDError, match=r"distill\.temp: unknown key"):
        load_recipe(TINY, ["distill.temp=3"])
    with pytest.raises(EdgeKDError, match="expected KEY=VALUE"):
        load_recipe(TINY, ["distill.temperature"])
    with pytest.raises(EdgeKDError, match="seed is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


def test_set_error_through_the_cli(tmp_path):
    result = CliRunner().invoke(main, ["build", str(TINY), "--out", str(tmp_path), "--set", "data.bias=2"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {TINY}: data.bias = 2: Input should be less than or equal to 1")


def test_relative_checkpoint_is_read_from_the_recipe_folder(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "t.pt").write_bytes(b"x")
    path = _write(tmp_path, _with(teacher__checkpoint="weights/t.pt"))
    recipe = load_recipe(path)
    assert recipe.teacher.checkpoint == (tmp_path / "weights" / "t.pt").resolve()


def test_resolved_recipe_round_trips():
    recipe = load_recipe(TINY)
    again = parse_recipe(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe
    assert again.teacher.warmup_fraction == 0.25  # defaults are written out in full


@pytest.mark.parametrize("name", ["quickstart.yaml", "fashion-mnist.yaml"])
def test_shipped_recipes_are_valid(name):
    """(wider_attribute_study.yaml needs its data folder: tests/test_data_files.py checks it.)"""
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / name)
    assert recipe.name and recipe.teacher.epochs >= 1
