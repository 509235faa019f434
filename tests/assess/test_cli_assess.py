"""``nationmap assess`` as a user runs it: the three steps, and bad input refused with one line,
exit 2 and nothing written."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from nationmap.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def sample(world, tmp_path_factory):
    """A labelled sample: assess design, then assess reference, through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "s"
    done = runner.invoke(app, ["assess", "design", str(world["map"]), "--out", str(out), "--n", "120",
                               "--allocation", "min-per-class=10", "--seed", "5"])
    assert done.exit_code == 0, done.output
    assert "size guidance:" in done.output and "wrote" in done.output and "s.gpkg" in done.output
    done = runner.invoke(app, ["assess", "reference", str(out) + ".csv", "--reference", str(world["reference_dir"])])
    assert done.exit_code == 0, done.output
    assert "120 points labelled from the tiles" in done.output
    return out


def test_estimate_prints_accuracy_with_intervals(sample, tmp_path):
    done = runner.invoke(app, ["assess", "estimate", str(sample) + ".csv", "--out", str(tmp_path / "acc")])
    assert done.exit_code == 0, done.output
    assert "overall accuracy 0." in done.output and "± 0." in done.output and "(95 % CI, 120 points)" in done.output
    assert sorted(p.name for p in (tmp_path / "acc").iterdir()) == ["accuracy.json", "accuracy.md",
                                                                    "areas_estimated.csv"]


def _broken(sample, tmp_path, edit) -> str:
    """A copy of the sample (CSV and design) with ``edit`` applied to its rows."""
    stem = tmp_path / "broken"
    shutil.copy(str(sample) + ".design.json", str(stem) + ".design.json")
    points = pd.read_csv(str(sample) + ".csv", dtype=str, keep_default_na=False)
    edit(points).to_csv(str(stem) + ".csv", index=False)
    return str(stem) + ".csv"


def _set(column, value, row=0):
    def edit(points):
        points.loc[row, column] = value
        return points
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.drop(columns=["reference"]), "missing column(s) reference"),
    (_set("stratum", "42"), "stratum '42' is not one of"),
    (_set("reference", "Forrest"), "reference 'Forrest' is not one of 1 Water, 2 Built-up"),
    (_set("reference", "10"), "reference '10' is not one of"),
    (_set("reference", ""), "no reference class (1 unlabelled"),
    (_set("map_class", "12"), "map class '12' is not one of"),
    (_set("pixel_km2", "-1"), "pixel_km2 must be a positive number"),
    (lambda p: p[~((p.stratum == "8") & (p.index != p[p.stratum == "8"].index[0]))], "has 1 labelled point(s)"),
])
def test_bad_samples_are_refused_with_one_line(sample, tmp_path, edit, message):
    path = _broken(sample, tmp_path, edit)
    out = tmp_path / "acc"
    done = runner.invoke(app, ["assess", "estimate", path, "--out", str(out)])
    assert done.exit_code == 2, done.output
    assert message in done.output and len(done.output.strip().splitlines()) == 1 and "Traceback" not in done.output
    assert not out.exists()  # nothing published


def test_unlabelled_points_can_be_left_out(sample, tmp_path):
    path = _broken(sample, tmp_path, _set("reference", ""))
    done = runner.invoke(app, ["assess", "estimate", path, "--drop-unlabelled", "--out", str(tmp_path / "acc")])
    assert done.exit_code == 0, done.output
    assert "119 points" in done.output


@pytest.mark.parametrize("args, message", [
    (["--n", "5"], "--n 5 is too small"),
    (["--allocation", "random"], "allocation 'random'"),
    (["--expected-ua", "3=1.5"], "between 0 and 1"),
    (["--seed", "-1"], "--seed"),
    (["--target-se", "0"], "--target-se 0.0: expected between 0 and 1"),
])
def test_bad_designs_are_refused(world, tmp_path, args, message):
    done = runner.invoke(app, ["assess", "design", str(world["map"]), "--out", str(tmp_path / "s"), *args])
    assert done.exit_code == 2 and message in done.output, done.output
    assert list(tmp_path.iterdir()) == []


def test_design_of_a_directory_that_is_no_products(tmp_path):
    done = runner.invoke(app, ["assess", "design", str(tmp_path), "--out", str(tmp_path / "s")])
    assert done.exit_code == 2 and "no manifest.json" in done.output
