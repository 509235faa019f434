"""``nationmap eval products`` under a foreign reference and over published products: codes the
class table does not know are never scored (no dtype wrap), a reference with none it knows is
one line, a published version is never written into, an agreement is replaced only with
``--overwrite``. The runs here are small hand-made ones (one cell at 60 px per degree)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.files import sha256_file, write_json
from nationmap.ops.publish import MonthDir, publish
from nationmap.records import CellRecord, FileEntry, RunManifest
from tests.reliability.conftest import assert_refused, run_cli, tree_hashes

CELL, PPD, MONTH = "N35E137", 60, "2022-09"


def _tif(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=PPD, width=PPD, count=1, dtype=values.dtype,
                       crs="EPSG:4326", transform=parse_cell(CELL).transform(PPD)) as ds:
        ds.write(values, 1)
    return path


def _truth() -> np.ndarray:
    """JAXA source codes 1..14 in bands (every class of the table present)."""
    return (np.arange(PPD * PPD).reshape(PPD, PPD) % 14 + 1).astype(np.uint8)


def _run(run_dir: Path, lulc: np.ndarray) -> RunManifest:
    """A run that mapped ``lulc`` (codes of the 9-class scheme) on the one cell."""
    name = f"{CELL}_{MONTH}_lulc.tif"
    cog = _tif(run_dir / "cells" / CELL / name, lulc)
    manifest = RunManifest(run_id="infer-demo-1", status="ok", region="demo", month=MONTH, cells=[CELL],
                           cell_results=[CellRecord(cell=CELL, key="k", status="ok",
                                                    files={"lulc": FileEntry(name, sha256_file(cog))})])
    write_json(run_dir / "manifest.json", manifest)
    return manifest


def _perfect_run(run_dir: Path) -> RunManifest:
    return _run(run_dir, load_class_table().scheme("lulc9").remap(_truth()))


def test_a_reference_of_codes_the_table_does_not_know_is_refused_not_wrapped(guarded):
    run = guarded.out / "run"
    _perfect_run(run)
    # uint16 codes 257..270: a cast to uint8 would read them as 1..14, the very codes the map holds
    wrapped = _tif(guarded.root / "wrapped" / f"LC_{CELL}.tif", _truth().astype(np.uint16) + 256)
    foreign = _tif(guarded.root / "foreign" / f"LC_{CELL}.tif", np.full((PPD, PPD), 200, np.uint8))
    guarded.snapshot()
    for reference in (wrapped.parent, foreign.parent):
        outcome = run_cli(["eval", "products", run, "--reference", reference])
        assert_refused(outcome, 2, "hold no code of the class table", f"{PPD * PPD:,} pixels")
    guarded.check()
    assert not (run / "agreement.json").exists()


def test_unknown_codes_are_counted_and_never_scored(tmp_path):
    run = tmp_path / "run"
    _perfect_run(run)
    truth = _truth().astype(np.uint16)
    truth[: PPD // 2] += 256  # the upper half: codes the table does not know, wrapping onto the map's
    _tif(tmp_path / "reference" / f"LC_{CELL}.tif", truth)
    outcome = run_cli(["eval", "products", run, "--reference", tmp_path / "reference"])
    assert outcome.code == 0, outcome.output
    written = json.loads((run / "agreement.json").read_text())
    assert written["reference_unknown_pixels"] == PPD * PPD // 2
    assert written["lulc"]["pixels"] == PPD * PPD // 2  # only the known half is scored
    assert "not scored" in outcome.output


def _published(products: Path) -> MonthDir:
    month = MonthDir(products / "demo" / MONTH)
    publish(month, month.staging, _perfect_run(month.staging), "refresh-1")
    return month


def test_eval_products_never_writes_into_a_published_version(guarded):
    month = _published(guarded.out / "products")
    reference = _tif(guarded.root / "reference" / f"LC_{CELL}.tif", _truth()).parent
    guarded.snapshot()
    for run in (month.version(1), month.latest, month.root.parent / "latest"):
        outcome = run_cli(["eval", "products", run, "--reference", reference])
        assert_refused(outcome, 2, "published version", "--out")
        outcome = run_cli(["eval", "products", run, "--reference", reference, "--out", month.version(1) / "eval"])
        assert_refused(outcome, 2, "published version")
    guarded.check()
    elsewhere = guarded.out / "agreement-v1"
    outcome = run_cli(["eval", "products", month.latest, "--reference", reference, "--out", elsewhere])
    assert outcome.code == 0, outcome.output
    assert json.loads((elsewhere / "agreement.json").read_text())["lulc"]["miou"] == 1.0
    assert not (month.version(1) / "agreement.json").exists()


def test_eval_products_replaces_an_agreement_only_with_overwrite(tmp_path):
    run = tmp_path / "run"
    _perfect_run(run)
    reference = _tif(tmp_path / "reference" / f"LC_{CELL}.tif", _truth()).parent
    assert run_cli(["eval", "products", run, "--reference", reference]).code == 0
    before = tree_hashes(run)
    _run(run, np.full((PPD, PPD), 5, np.uint8))  # the run is mapped again: all forest
    again = run_cli(["eval", "products", run, "--reference", reference])
    assert_refused(again, 2, "agreement.json exists", "--overwrite")
    assert tree_hashes(run)["agreement.json"] == before["agreement.json"]
    assert tree_hashes(run)["agreement.md"] == before["agreement.md"]
    replaced = run_cli(["eval", "products", run, "--reference", reference, "--overwrite"])
    assert replaced.code == 0, replaced.output
    assert json.loads((run / "agreement.json").read_text())["lulc"]["miou"] < 1.0
