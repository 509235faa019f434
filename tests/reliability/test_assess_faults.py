"""``nationmap assess`` under damaged input: a cut-short GeoPackage or CSV, a design that is not
one, a reference tile that is not class codes, a sample named to ``infer`` that does not exist.
Each is one ``error:`` line, exit 2, no traceback, and leaves every existing file as it was."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.reliability.conftest import assert_refused, run_cli


def _map(path, codes: np.ndarray, dtype: str = "uint8"):
    with rasterio.open(path, "w", driver="GTiff", width=codes.shape[1], height=codes.shape[0], count=1, dtype=dtype,
                       crs="EPSG:4326", transform=from_origin(140.0, 37.0, 0.01, 0.01), nodata=0) as ds:
        ds.write(codes.astype(dtype), 1)
    return path


@pytest.fixture()
def sample(guarded):
    """A designed sample of a small two-class map in ``guarded.out``, the sandbox snapshotted."""
    codes = np.ones((40, 40), np.uint8)
    codes[:, 20:] = 5
    map_path = _map(guarded.out / "map.tif", codes)
    done = run_cli(["assess", "design", map_path, "--out", guarded.out / "s", "--n", "20", "--seed", "1"])
    assert done.code == 0, done.output
    guarded.snapshot()
    return guarded


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(p.read_bytes()[:300]), ("not a sample GeoPackage",)),
    (lambda p: p.write_bytes(b"\x00\x01 not sqlite"), ("not a sample GeoPackage",)),
])
def test_a_damaged_geopackage_is_one_line(sample, damage, words):
    gpkg = sample.out / "s.gpkg"
    damage(gpkg)
    sample.snapshot()
    assert_refused(run_cli(["assess", "estimate", gpkg]), 2, *words)
    assert_refused(run_cli(["assess", "reference", gpkg, "--reference", sample.out]), 2, *words)
    sample.check()


def test_a_cut_short_or_binary_csv_is_one_line(sample):
    csv = sample.out / "s.csv"
    csv.write_bytes(b"\xff\xfe\x00garbage\x00\n\x80\x81")
    sample.snapshot()
    assert_refused(run_cli(["assess", "estimate", csv]), 2, "s.csv")
    sample.check()


@pytest.mark.parametrize("text, words", [
    ("{not json", ("not a readable JSON record",)),
    ('{"format": "nationmap-sample-design/9"}', ("format",)),
    ('{"format": "nationmap-sample-design/1", "map": "m", "product": "lulc", "classes": {"x": "A"}, "strata": '
     '[{"code": 1, "name": "A", "pixels": 4, "area_km2": 1.0, "n": 2}], "allocation": "equal", "seed": 1, "n": 2, '
     '"target_se": 0.01, "recommended_n": 2, "expected_overall_se": 0.1}', ("codes must be integers",)),
])
def test_a_design_that_is_not_one_is_one_line(sample, text, words):
    (sample.out / "s.design.json").write_text(text)
    sample.snapshot()
    assert_refused(run_cli(["assess", "estimate", sample.out / "s.csv"]), 2, *words)
    sample.check()


def test_a_reference_tile_that_is_not_class_codes_is_one_line(sample):
    tiles = sample.out / "tiles"
    tiles.mkdir()
    _map(tiles / "LC_N36E140.tif", np.full((40, 40), 3.5), dtype="float32")
    sample.snapshot()
    assert_refused(run_cli(["assess", "reference", sample.out / "s.csv", "--reference", tiles]), 2, "LC_N36E140.tif")
    sample.check()


def test_infer_with_a_missing_assessment_sample_is_one_line(guarded):
    guarded.snapshot()
    outcome = run_cli(["infer", "--region", "N36E140", "--date", "2022-09", "--lulc-model", guarded.root,
                       "--out", guarded.out, "--assessment", guarded.root / "nowhere.csv"])
    assert_refused(outcome, 2, "nowhere.csv")
    guarded.check()
