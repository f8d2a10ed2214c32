"""``edgekd sweep``: grid parsing, the Pareto front, a real two-point sweep and its errors."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.sweep import grid_points, pareto_front, parse_grid, point_name


def test_parse_grid_and_points():
    grid = parse_grid(["debias.lambda=0,0.5", "distill.method=kd,rkd"])
    assert grid == {"debias.lambda": [0, 0.5], "distill.method": ["kd", "rkd"]}
    assert grid_points(grid) == [
        {"debias.lambda": 0, "distill.method": "kd"},
        {"debias.lambda": 0, "distill.method": "rkd"},
        {"debias.lambda": 0.5, "distill.method": "kd"},
        {"debias.lambda": 0.5, "distill.method": "rkd"},
    ]


@pytest.mark.parametrize(
    "items, needle",
    [
        ([], "--grid: give at least one"),
        (["debias.lambda"], "expected KEY=V1,V2"),
        (["debias.lambda=0,,1"], "empty value"),
        (["a=1", "a=2"], "given twice"),
    ],
)
def test_parse_grid_errors(items, needle):
    with pytest.raises(EdgeKDError, match=needle):
        parse_grid(items)


def test_point_names_are_release_names():
    assert point_name("tiny", {"distill.temperature": 8}) == "tiny-distill.temperature-8"
    assert (
        point_name("q", {"distill.method": "kd", "debias.lambda": 0.5})
        == "q-distill.method-kd_debias.lambda-0.5"
    )
    assert point_name("q", {"data.crop": [1, 2]}) == "q-data.crop--1--2-"  # "[1, 2]": no brackets
    long = point_name("q" * 90, {"distill.temperature": 8})
    assert len(long) == 100 and long.startswith("q" * 87 + "-")


def test_pareto_front_hand_worked():
    # (top1, mean |disparity|): B beats A on both; C is more accurate but less fair than B; D is
    # beaten by C
    points = [(0.80, 0.30), (0.85, 0.20), (0.90, 0.25), (0.88, 0.28)]
    assert pareto_front(points) == [1, 2]


def test_two_point_sweep_writes_cards_csv_and_plots(tiny_recipe, tmp_path):
    runner = CliRunner()
    args = ["sweep", str(tiny_recipe), "--grid", "distill.temperature=2,8", "--out", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    sweep_dir = tmp_path / "tiny" / "sweep"
    cards = sorted(sweep_dir.glob("*/bundle/card.json"))
    assert [c.parent.parent.name for c in cards] == ["distill.temperature=2", "distill.temperature=8"]
    temperatures = [json.loads(c.read_text())["distillation"]["temperature"] for c in cards]
    assert temperatures == [2, 8]
    # each point is its own release: name in card and manifest, tarball named after it, verified
    tarballs = []
    for card, t in zip(cards, (2, 8)):
        name = f"tiny-distill.temperature-{t}"
        manifest = json.loads((card.parent / "manifest.json").read_text())
        assert json.loads(card.read_text())["name"] == manifest["name"] == name
        tarballs.append(card.parent.parent / f"{name}-0.1.0.tar.gz")
        assert sorted(p.name for p in card.parent.parent.glob("*.tar.gz")) == [tarballs[-1].name]
        checked = runner.invoke(main, ["verify", str(tarballs[-1]), "--name", name])
        assert checked.exit_code == 0, checked.output
    report = sweep_dir / "distill.temperature"
    with open(report / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["distill.temperature"] for r in rows] == ["2", "8"]
    assert all(0.0 <= float(r["top1"]) <= 1.0 for r in rows)
    for row, card in zip(rows, cards):  # each exported file's agreement with its student
        exported = json.loads(card.read_text())["models"]["onnx"]["vs_student"]
        assert float(row["onnx_agreement"]) == pytest.approx(exported["prediction_agreement"])
    table = result.output.split("\n\n")[-2]  # the sweep table, between the build logs and results:
    header = table.splitlines()[0]
    assert "top-1 [95% CI]" in header and "mean |disp| [95% CI]" in header
    for row, card, tarball in zip(rows, cards, tarballs):  # the intervals are the card's
        student = json.loads(card.read_text())["models"]["student"]
        for key in ("top1", "mean_abs_disparity", "dpd", "eod"):
            assert float(row[f"{key}_low"]) == student["ci"][key]["low"]
            assert float(row[f"{key}_high"]) == student["ci"][key]["high"]
        top1, ci = student["metrics"]["top1"], student["ci"]["top1"]
        line = next(x for x in table.splitlines() if x.startswith(row["distill.temperature"] + " "))
        assert f"{top1:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]" in line
        assert row["tarball"] == str(tarball)
    sizes = {"accuracy_vs_disparity.png": (605, 440), "metrics_vs_distill.temperature.png": (1408, 330)}
    for name, size in sizes.items():  # figsize x 110 dpi
        with Image.open(report / name) as image:
            assert image.format == "PNG" and image.size == size
    assert "Pareto" in result.output and "top-1" in result.output
    # teacher and baseline ride along as references: in the CSV, under the table, in the plot
    teacher = json.loads(cards[0].read_text())["models"]["teacher"]["metrics"]
    assert all(float(r["teacher_top1"]) == pytest.approx(teacher["top1"]) for r in rows)
    assert all(r["baseline_mean_abs_disparity"] != "" for r in rows)
    assert f"teacher: top-1 {teacher['top1']:.4f}" in result.output
    # the teacher was trained once, in the main run, for both points
    assert (tmp_path / "tiny" / "stages" / "teacher" / "done.json").is_file()
    assert not (sweep_dir / "distill.temperature=2" / "stages" / "teacher").exists()

    again = runner.invoke(main, args)
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2

    # a point is reproducible alone with build --set, reusing the same teacher
    alone = runner.invoke(
        main, ["build", str(tiny_recipe), "--set", "distill.temperature=8", "--out", str(tmp_path)]
    )
    assert alone.exit_code == 0, alone.output
    built = json.loads((tmp_path / "tiny" / "bundle" / "card.json").read_text())
    swept = json.loads(cards[1].read_text())
    assert built["models"]["student"]["metrics"]["top1"] == swept["models"]["student"]["metrics"]["top1"]
    assert "teacher reused" in alone.output


@pytest.mark.parametrize(
    "grid, needle",
    [
        ("distill.temprature=2,8", "distill.temprature: unknown key"),
        ("debias.lambda=0,abc", "debias.lambda = 'abc'"),
        ("data.bias=0.5,1.5", "data.bias = 1.5"),
    ],
)
def test_bad_grid_key_or_value_is_one_line_and_trains_nothing(tiny_recipe, tmp_path, grid, needle):
    result = CliRunner().invoke(main, ["sweep", str(tiny_recipe), "--grid", grid, "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: --grid point")
    assert not (tmp_path / "tiny").exists()


def test_sweep_table_shows_adversary_against_its_reference_and_the_references(tmp_path):
    from edgekd.sweep import _error_bars, format_sweep_table, write_sweep_plots

    rows = [
        {
            "debias.lambda": lam,
            "top1": acc,
            "mean_abs_disparity": disp,
            "adversary_top1": adv,
            "adversary_reference": 0.5,
            "teacher_top1": 0.7,
            "teacher_mean_abs_disparity": 0.36,
            "baseline_top1": 0.62,
            "baseline_mean_abs_disparity": 0.5,
        }
        for lam, acc, disp, adv in ((0, 0.6, 0.5, 0.97), (1, 0.7, 0.2, 0.55))
    ]
    rows[1].update(
        top1_low=0.65, top1_high=0.74, mean_abs_disparity_low=0.1, mean_abs_disparity_high=0.3, ci_level=0.95
    )  # the first point has no interval
    for row in rows:
        row.update({k: None for k in ("dpd", "eod") if k not in row})
    table = format_sweep_table(rows, ["debias.lambda"])
    header = table.splitlines()[0]
    assert "adversary acc." in header and "no-leak ref." in header
    assert "0.9700" in table and "0.5000" in table
    assert "top-1 [95% CI]" in header and "0.7000 [0.6500, 0.7400]" in table
    assert "0.2000 [0.1000, 0.3000]" in table and "0.6000 " in table.splitlines()[2]
    assert table.splitlines()[-1] == (
        "teacher: top-1 0.7000, mean |disparity| 0.3600; baseline: top-1 0.6200, mean |disparity| 0.5000"
    )
    plots = write_sweep_plots(rows, ["debias.lambda"], tmp_path)
    with Image.open(plots[0]) as image:
        assert image.format == "PNG" and image.size == (605, 440)
    assert _error_bars(rows, "top1", [0.6, 0.7]) == [[0.0, pytest.approx(0.05)], [0.0, pytest.approx(0.04)]]
