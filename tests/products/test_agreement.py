"""Map agreement (``nationmap eval products``): a run beside a baseline run on the same pixels,
checked against a direct count from the COGs and the reference tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from nationmap.baseline.bundle import fit_baseline
from nationmap.data.lulc import find_lulc_tiles, load_class_table
from nationmap.errors import InputError
from nationmap.infer.pipeline import run_inference
from nationmap.metrics import BASELINE_ROW, MODEL_ROW
from nationmap.products.agreement import map_agreement
from tests.infer.test_pipeline import config


@pytest.fixture(scope="module")
def runs(tiny_catalog, tiny_world, tiny_bundles, train_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("agreement")
    baseline = fit_baseline(train_dataset, "lulc", root / "baseline-lulc", max_pixels=20_000, log=lambda *_: None)
    model = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, root / "model"))
    # the baseline maps LULC only (as in the demo): its water rows are left out, not faked
    base = run_inference(config(tiny_catalog, tiny_world, {"lulc": baseline, "water": ""}, root / "base"))
    return Path(model.run_dir), Path(base.run_dir)


def _direct_lulc_confusion(run_dir: Path, base_dir: Path, reference: Path) -> np.ndarray:
    """The model's LULC confusion counted here, independently of the metrics code."""
    scheme = load_class_table().scheme("lulc9")
    k = len(scheme.classes)
    counts = np.zeros((k, k), np.int64)
    for cell, tile in sorted(find_lulc_tiles(reference).items()):
        truth = scheme.remap(rasterio.open(tile).read(1))  # scheme codes 1..9, 0 = no data
        pred = rasterio.open(run_dir / "cells" / cell / f"{cell}_2022-09_lulc.tif").read(1)
        other = rasterio.open(base_dir / "cells" / cell / f"{cell}_2022-09_lulc.tif").read(1)
        both = (truth > 0) & (pred > 0) & (other > 0)
        np.add.at(counts, (truth[both].astype(int) - 1, pred[both].astype(int) - 1), 1)
    return counts


def test_agreement_counts_match_a_direct_count(runs, tiny_world):
    run_dir, base_dir = runs
    result = map_agreement(run_dir, tiny_world / "lulc", baseline_run=base_dir)
    expected = _direct_lulc_confusion(run_dir, base_dir, tiny_world / "lulc")
    lulc = result.products["lulc"]
    assert np.array_equal(np.asarray(lulc.confusion_matrix), expected)
    report = lulc.report
    assert [m.name for m in report.methods] == [MODEL_ROW, BASELINE_ROW, "majority class (Forest)"]
    # the fitted baseline beats random weights and the majority class; a constant map has no boundary
    assert report.baseline.headline > max(report.model.headline, report.majority.headline)
    assert report.majority.boundary_f == 0.0
    for row in report.methods:
        assert 0.0 <= row.boundary_f <= 1.0 and row.structures.tolerance == 2
    written = json.loads((run_dir / "agreement.json").read_text())
    assert written["baseline_run"] == str(base_dir) and written["format"] == "nationmap-agreement/1"
    assert written["lulc"]["methods"][BASELINE_ROW]["miou"] == report.baseline.headline
    assert list(written["water"]["methods"]) == [MODEL_ROW, "reference's majority class (Non-water)"]
    table = (run_dir / "agreement.md").read_text()
    assert "per-pixel baseline (GBT)" in table and "thin-water recall" in table


def test_baseline_run_of_another_month_is_refused(runs, tiny_world, tmp_path):
    run_dir, base_dir = runs
    manifest = json.loads((base_dir / "manifest.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({**manifest, "month": "2022-10"}))
    with pytest.raises(InputError, match="maps .* 2022-10, not"):
        map_agreement(run_dir, tiny_world / "lulc", baseline_run=other, write=False)


def test_eval_products_cli(runs, tiny_world):
    from tests.reliability.conftest import run_cli

    run_dir, base_dir = runs
    outcome = run_cli(["eval", "products", run_dir, "--reference", tiny_world / "lulc", "--baseline-run", base_dir,
                       "--overwrite"])  # the module's first test wrote the run's agreement
    assert outcome.code == 0, outcome.output
    assert "Boundaries and thin water" in outcome.output and "majority class (Forest)" in outcome.output
    outcome = run_cli(["eval", "products", tiny_world, "--reference", tiny_world / "lulc"])
    assert outcome.code == 2 and "no run manifest" in outcome.output


def test_without_a_baseline_run_the_majority_is_the_references(runs, tiny_world):
    run_dir, _ = runs
    result = map_agreement(run_dir, tiny_world / "lulc", write=False)
    assert [m.name for m in result.products["lulc"].report.methods] == [MODEL_ROW, "reference's majority class (Forest)"]
    water = result.products["water"].report
    assert water.baseline is None  # the tiny world is mostly land:
    assert water.majority.name == "reference's majority class (Non-water)"
    assert water.majority.thin_water_recall in (0.0, None)
