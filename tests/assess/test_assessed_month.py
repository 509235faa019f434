"""A month's products published with their accuracy: `nationmap infer --assessment SAMPLE` on a
run whose LULC map the sample was drawn on (the tiny world, its truth as the reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest
from starlette.testclient import TestClient

from nationmap.assess.protocol import design_sample, estimate_sample, fill_reference
from nationmap.assess.report import AccuracyReport
from nationmap.errors import InputError
from nationmap.infer.pipeline import run_inference
from nationmap.products.stac_validate import validate_catalog
from nationmap.serve.app import create_app
from tests.infer.test_pipeline import config

TABLES = ("lulc_accuracy_json", "lulc_accuracy_md", "lulc_areas-estimated_csv")


@pytest.fixture(scope="module")
def assessed(tiny_catalog, tiny_world, tiny_bundles, tmp_path_factory):
    """(run dir, first manifest, sample CSV, manifest of the rerun with the sample)."""
    out = tmp_path_factory.mktemp("assessed")
    first = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out))
    run_dir = Path(first.run_dir)
    stem = tmp_path_factory.mktemp("samples") / "tiny"
    design_sample(run_dir, stem, n=60, allocation="min-per-class=4", seed=2)
    sample = stem.with_name("tiny.csv")
    fill_reference(sample, tiny_world / "lulc")
    again = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out, assessment=str(sample)))
    return run_dir, first, sample, again


def test_the_accuracy_tables_join_the_month(assessed, tmp_path):
    run_dir, first, sample, again = assessed
    assert all(c.skipped for c in again.cell_results)  # the map is the one the sample was drawn on
    assert set(TABLES) <= set(again.products.tables) and not set(TABLES) & set(first.products.tables)
    published = AccuracyReport.read(run_dir / again.products.tables["lulc_accuracy_json"].path)
    alone = estimate_sample(sample, out=tmp_path).report  # the CLI's estimate of the same sample
    assert published.overall == alone.overall and published.classes == alone.classes
    assert published.points == 60
    md = (run_dir / again.products.tables["lulc_accuracy_md"].path).read_text()
    assert "Overall accuracy" in md


def test_stac_carries_the_accuracy_of_the_lulc_collection_only(assessed):
    run_dir, _, _, again = assessed
    catalog = run_dir / again.products.stac
    assert validate_catalog(catalog) > 1  # offline, every object valid (it raises otherwise)
    root = pystac.Catalog.from_file(str(catalog))
    lulc, water = root.get_child("nationmap-lulc"), root.get_child("nationmap-water")
    assert {"lulc-accuracy-json", "lulc-accuracy-md", "lulc-areas-estimated-csv"} <= set(lulc.assets)
    assert lulc.assets["lulc-accuracy-json"].media_type == "application/json"
    assert 0 <= lulc.extra_fields["nationmap:overall_accuracy"] <= 1
    assert lulc.extra_fields["nationmap:accuracy_sample_points"] == 60
    assert not any("accuracy" in key for key in water.assets) and "areas-csv" in water.assets


def test_the_web_map_shows_estimates_beside_the_counts(assessed):
    run_dir, _, _, again = assessed
    client = TestClient(create_app(run_dir.parents[1]), raise_server_exceptions=False)
    maps = client.get("/api/maps").json()["maps"]
    entry = next(m for m in maps if m["available"])
    assert entry["accuracy"] is True
    body = client.get("/api/areas", params={"map": entry["id"]}).json()
    accuracy = body["accuracy"]
    assert accuracy["points"] == 60 and 0 <= accuracy["overall"] <= 1
    published = json.loads((run_dir / again.products.tables["lulc_accuracy_json"].path).read_text())
    forest = next(c for c in published["classes"] if c["name"] == "Forest")
    assert accuracy["classes"][str(forest["code"])]["estimate_km2"] == forest["area_km2"]["estimate"]


def test_a_sample_of_another_map_is_refused_and_nothing_changes(assessed, tiny_catalog, tiny_world, tiny_bundles,
                                                                tmp_path):
    run_dir, _, sample, _ = assessed
    other = tmp_path / "other.csv"
    other.write_bytes(sample.read_bytes())
    design = json.loads(sample.with_name("tiny.design.json").read_text())
    first_file = next(iter(design["map_files"]))
    design["map_files"][first_file] = "0" * 64  # as if drawn on another month's map
    (tmp_path / "other.design.json").write_text(json.dumps(design))
    manifest = (run_dir / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="drawn on another lulc map"):
        run_inference(config(tiny_catalog, tiny_world, tiny_bundles, run_dir.parents[1], assessment=str(other)))
    assert (run_dir / "manifest.json").read_bytes() == manifest


def test_an_unlabelled_sample_is_refused_before_any_work(assessed, tiny_catalog, tiny_world, tiny_bundles, tmp_path):
    run_dir, _, sample, _ = assessed
    lines = sample.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("reference")] = ""
    unlabelled = tmp_path / "u.csv"
    unlabelled.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    (tmp_path / "u.design.json").write_bytes(sample.with_name("tiny.design.json").read_bytes())
    with pytest.raises(InputError, match="no reference class"):
        run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path / "never", assessment=str(unlabelled)))
    assert not (tmp_path / "never").exists()


def test_a_missing_accuracy_report_costs_the_estimates_only(assessed, tmp_path):
    import shutil

    run_dir, _, _, again = assessed
    root = tmp_path / "root"
    shutil.copytree(run_dir.parents[1], root, symlinks=True)
    copy = root / run_dir.relative_to(run_dir.parents[1])
    (copy / again.products.tables["lulc_accuracy_json"].path).unlink()
    client = TestClient(create_app(root), raise_server_exceptions=False)
    entry = next(m for m in client.get("/api/maps").json()["maps"] if m["available"])
    body = client.get("/api/areas", params={"map": entry["id"]})
    assert body.status_code == 200 and body.json()["rows"] and body.json()["accuracy"] is None
