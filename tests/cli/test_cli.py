"""The CLI: one-line errors with exit code 2; synth -> catalog -> prepare on a local Ray."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nationmap.cli.main import app
from tests.conftest import TINY_CELLS

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["data", "synth", "OUT", "--months", "2022-13"], "malformed month"),
    (["data", "synth", "OUT", "--region", "atlantis"], "unknown region"),
    (["data", "catalog", "/no/such/dir"], "not found"),
    (["data", "list", "/no/such/catalog.parquet"], "catalog not found"),
    (["data", "prepare", "--catalog", "/no/cat.parquet", "--lulc-dir", "/no/lulc", "--out", "OUT", "--region", "demo"], "not found"),
    (["data", "prepare", "--catalog", "c", "--lulc-dir", "l", "--out", "o", "--finetune-months", "2022-10",
      "--pretrain-months", "2022-10"], "both pretraining and finetuning"),
    (["data", "info", "/no/dataset"], "not a prepared dataset"),
    (["train", "lulc", "--data", "/no/dataset"], "not a prepared dataset"),
    (["train", "lulc", "--batch-size", "9", "--workers", "2"], "multiple of the 2 workers"),
    (["train", "pretrain", "--preset", "swin-q"], "unknown model preset"),
    (["train", "water", "--resume", "/no/run"], "not a training run directory"),
    (["export", "/no/run", "--out", "b"], "no checkpoint found"),
    (["eval", "lulc", "--model", "/no/bundle", "--data", "/no/dataset"], "not found"),
    (["infer", "--region", "demo", "--date", "2022-13"], "malformed month"),
    (["infer", "--region", "atlantis", "--date", "2022-09"], "unknown region"),
    (["infer", "--region", "demo", "--date", "2022-09", "--catalog", "/no/cat.parquet"], "catalog not found"),
    (["infer", "--region", "demo", "--date", "2022-09", "--config", "/no/infer.toml"], "/no/infer.toml not found"),
    (["infer", "--region", "demo", "--date", "2022-09", "--blend", "gauss"], "blend must be one of"),
    (["infer", "--region", "japan", "--date", "2022-09"], "data/lulc: LULC directory not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_finetuning_needs_init_or_no_pretrain(tiny_dataset, tmp_path):
    result = runner.invoke(app, ["train", "lulc", "--data", str(tiny_dataset), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--init PRETRAINED" in result.output and "--no-pretrain" in result.output
    missing = runner.invoke(app, ["train", "lulc", "--data", str(tiny_dataset), "--init", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "pretrained encoder" in missing.output and "not found" in missing.output


def test_console_script_bad_month_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nationmap.cli.main", "data", "synth", str(tmp_path / "w"),
                           "--months", "2022-13"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: malformed month '2022-13': month must be 01..12"
    assert not (tmp_path / "w").exists()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.ray
def test_synth_catalog_prepare_on_ray(ray_local, tmp_path, tiny_world, tiny_dataset):
    raw, cat, ds = tmp_path / "raw", tmp_path / "cat.parquet", tmp_path / "ds"
    region = ",".join(TINY_CELLS)
    r = runner.invoke(app, ["data", "synth", str(raw), "--region", region, "--months", "2022-09,2022-10",
                            "--lulc-pixels-per-degree", "600", "--scene-pixel-m", "200", "--scene-length-km", "50",
                            "--scene-width-km", "45"])
    assert r.exit_code == 0, r.output
    # Ray tasks write exactly what the serial path writes
    for tile in sorted((tiny_world / "lulc").glob("*.tif")):
        assert _sha(raw / "lulc" / tile.name) == _sha(tile)
    r = runner.invoke(app, ["data", "catalog", str(raw), "--out", str(cat)])
    assert r.exit_code == 0 and "0 failed" in r.output, r.output
    r = runner.invoke(app, ["data", "list", str(cat), "--region", "N35E138", "--month", "2022-09"])
    assert r.exit_code == 0 and "acquisitions" in r.output
    r = runner.invoke(app, ["data", "prepare", "--catalog", str(cat), "--lulc-dir", str(raw / "lulc"), "--out", str(ds),
                            "--region", region, "--pretrain-months", "2022-10", "--finetune-months", "2022-09",
                            "--anchors", "4000", "--patch-size", "32"])
    assert r.exit_code == 0, r.output
    assert "train/val/test pairs" in r.output
    for name in ("index.parquet", "anchors.parquet"):
        assert _sha(ds / name) == _sha(tiny_dataset / name)
    r = runner.invoke(app, ["data", "prepare", "--catalog", str(cat), "--lulc-dir", str(raw / "lulc"), "--out", str(ds),
                            "--region", region])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["data", "info", str(ds)])
    assert r.exit_code == 0 and "Solar panel" in r.output


def test_regions_command():
    r = runner.invoke(app, ["data", "regions", "japan"])
    assert r.exit_code == 0 and "japan: 123 cells" in r.output
