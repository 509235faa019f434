"""design -> reference -> estimate on a small map whose truth is known everywhere."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio

from nationmap.assess import design as design_mod
from nationmap.assess.protocol import design_sample, estimate_sample, fill_reference
from nationmap.assess.samples import read_design, read_points
from nationmap.errors import InputError
from nationmap.products.areas import class_areas_km2, row_areas_km2


@pytest.fixture(scope="module")
def labelled(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "sep"
    result = design_sample(world["map"], out, n=300, allocation="min-per-class=20", seed=7)
    fill_reference(out.with_name("sep.csv"), world["reference_dir"])
    return out, result


def test_design_strata_are_the_maps_classes_with_their_areas(world, labelled):
    _, result = labelled
    mapped = world["mapped"]
    counts = np.bincount(mapped.ravel(), minlength=256)
    areas = class_areas_km2(world["map"])
    strata = {s.code: s for s in result.design.strata}
    assert sorted(strata) == [c for c in range(1, 256) if counts[c]]  # no data (0) is not a stratum
    for code, s in strata.items():
        assert s.pixels == counts[code] and s.area_km2 == pytest.approx(areas[code], rel=1e-9)
        assert s.n >= min(20, s.pixels)
    assert result.design.n == 300 and sum(s.n for s in strata.values()) == 300
    assert result.design.classes["8"] == "Wetland"  # the legend, from the raster's class names


def test_points_lie_on_pixels_of_their_stratum(world, labelled):
    out, result = labelled
    points = pd.read_csv(out.with_name("sep.csv"))
    with rasterio.open(world["map"]) as ds:
        values = np.array([v[0] for v in ds.sample(zip(points.lon, points.lat))])
        rows = row_areas_km2(ds.transform, ds.height)
    assert (values == points.stratum).all() and (points.stratum == points.map_class).all()
    assert np.allclose(points.pixel_km2, rows[points.row])
    by_stratum = points.groupby("stratum").size()
    for s in result.design.strata:
        assert by_stratum[s.code] == s.n
        mine = points[points.stratum == s.code]
        assert np.allclose(mine.inclusion_probability, s.n / s.pixels)
    assert not points.duplicated(["row", "col"]).any()  # without replacement


def test_the_geopackage_is_what_a_gis_opens(labelled):
    out, _ = labelled
    gpkg = out.with_name("sep.gpkg")
    info = subprocess.run(["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True, check=True).stdout
    assert "Geometry: Point" in info and "Feature Count: 300" in info and "EPSG" in info and "4326" in info
    meta, _, geometry, fields = pyogrio.raw.read(str(gpkg), layer="sample")
    assert "reference" in list(meta["fields"]) and len(geometry) == 300


def test_same_seed_same_sample(world, tmp_path):
    a = design_sample(world["map"], tmp_path / "a", n=60, seed=3)
    b = design_sample(world["map"], tmp_path / "b", n=60, seed=3)
    c = design_sample(world["map"], tmp_path / "c", n=60, seed=4)
    read = [pd.read_csv(tmp_path / f"{k}.csv")[["row", "col"]] for k in "abc"]
    assert read[0].equals(read[1]) and not read[0].equals(read[2])
    assert a.design.seed == 3 and c.design.seed == 4 and b.files[0].name == "b.csv"


def test_every_pixel_of_a_stratum_is_equally_likely(tmp_path, monkeypatch):
    """A 12 x 10 map read in strips of 5 rows: over 3000 draws of 4 points from a stratum of 30
    pixels, each pixel is drawn 4/30 of the time (binomial tolerance: 5 standard deviations)."""
    monkeypatch.setattr(design_mod, "STRIP_ROWS", 5)
    codes = np.ones((12, 10), np.uint8)
    codes[np.random.default_rng(0).random(codes.shape) < 0.25] = 2
    path = tmp_path / "m.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=12, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=rasterio.transform.from_origin(140, 36.1, 0.01, 0.01)) as ds:
        ds.write(codes, 1)
    tally = design_mod.census([path])
    big_n = int(tally.pixels[0, 2])
    hits = np.zeros(codes.shape)
    rng = np.random.default_rng(1)
    draws = 3000
    for _ in range(draws):
        for p in design_mod.draw(tally, {2: 4}, rng):
            assert codes[p.row, p.col] == 2
            hits[p.row, p.col] += 1
    p = 4 / big_n
    tolerance = 5 * np.sqrt(draws * p * (1 - p))
    assert np.abs(hits[codes == 2] - draws * p).max() < tolerance and hits[codes == 1].sum() == 0


def _expected_reference(truth: np.ndarray, rows, cols) -> list[str]:
    """The reference column a point should get: the truth's class, or outside on its no data."""
    return ["outside" if v == 0 else str(v) for v in truth[np.asarray(rows, int), np.asarray(cols, int)]]


def test_reference_comes_from_the_tiles(world, labelled):
    out, _ = labelled
    points = pd.read_csv(out.with_name("sep.csv"), dtype=str)
    assert list(points.reference) == _expected_reference(world["truth"], points.row, points["col"])
    assert "outside" in set(points.reference)  # the open sea: mapped, no reference class there


def test_reference_keeps_a_persons_labels(world, tmp_path):
    design_sample(world["map"], tmp_path / "s", n=40, seed=1)
    sample = tmp_path / "s.csv"
    points = pd.read_csv(sample, dtype=str, keep_default_na=False)
    points.loc[0, "reference"] = "Forest"
    points.to_csv(sample, index=False)
    result = fill_reference(sample, world["reference_dir"])
    assert (result.kept, result.labelled, result.missing) == (1, 39, 0)
    assert read_points(sample)["reference"][0] == "Forest"


def test_estimates_cover_the_truth(world, labelled):
    """Area of each class and overall accuracy from 300 points, against the truth known at every
    pixel (area-weighted): within 3 standard errors (this seed: every class)."""
    out, _ = labelled
    result = estimate_sample(out.with_name("sep.csv"))
    report = result.report
    with rasterio.open(world["map"]) as ds:
        rows = row_areas_km2(ds.transform, ds.height)
    pixel_km2 = np.broadcast_to(rows[:, None], world["truth"].shape)
    land = world["mapped"] > 0  # the map's extent: the population sampled
    truth, mapped = world["truth"], world["mapped"]
    domain = land & (truth > 0)  # where the reference has a class: accuracy is of it
    true_oa = pixel_km2[domain & (truth == mapped)].sum() / pixel_km2[domain].sum()
    assert abs(report.overall.estimate - true_oa) < 3 * report.overall.se
    true_outside = pixel_km2[land & (truth == 0)].sum()
    assert report.points_outside > 0 and abs(report.outside_km2.estimate - true_outside) < 3 * report.outside_km2.se
    for c in report.classes:
        true_km2 = pixel_km2[land & (truth == c.code)].sum()
        if c.area_km2.se:
            assert abs(c.area_km2.estimate - true_km2) < 3 * c.area_km2.se, c.name
    wetland = next(c for c in report.classes if c.name == "Wetland")  # mapped only by mistake: never right
    assert wetland.mapped_km2 > 0 and wetland.users.estimate == 0 and wetland.producers.estimate == 0
    assert sum(c.area_km2.estimate for c in report.classes) + report.outside_km2.estimate == \
        pytest.approx(report.total_km2)
    written = out.parent / "sep-accuracy"  # beside the sample, after it: two samples never share a report
    assert [p.name for p in result.files] == ["accuracy.json", "accuracy.md", "areas_estimated.csv"]
    assert json.loads((written / "accuracy.json").read_text())["format"] == "nationmap-accuracy/1"
    md = (written / "accuracy.md").read_text()
    assert "Overall accuracy" in md and "| Forest |" in md
    table = pd.read_csv(written / "areas_estimated.csv")
    assert list(table.columns[:6]) == ["class", "name", "mapped_km2", "area_estimate_km2", "se_km2", "ci95_km2"]


def test_an_existing_sample_is_never_replaced(world, labelled):
    out, _ = labelled
    before = out.with_name("sep.csv").read_bytes()
    with pytest.raises(InputError, match="never overwritten"):
        design_sample(world["map"], out, n=50, seed=1)
    assert out.with_name("sep.csv").read_bytes() == before
    assert read_design(out.with_name("sep.csv")).n == 300


def test_a_relative_products_path_from_any_directory(world, tmp_path, monkeypatch):
    """The map given relative to the working directory (as typed), the sample elsewhere."""
    monkeypatch.chdir(world["map"].parent)
    result = design_sample(world["map"].name, tmp_path / "rel.csv", n=30, seed=1)  # --out s.csv: sample "s"
    assert result.design.map == str(world["map"].resolve()) and result.files[0] == tmp_path / "rel.csv"
    assert set(pd.read_csv(tmp_path / "rel.csv").raster) == {world["map"].name}


def test_the_geopackage_keeps_its_types_through_reference(world, tmp_path):
    """Labels filled into the GeoPackage a person opens in QGIS: numbers stay numbers."""
    design_sample(world["map"], tmp_path / "g", n=30, seed=4)
    result = fill_reference(tmp_path / "g.gpkg", world["reference_dir"])
    assert result.labelled == 30
    info = subprocess.run(["ogrinfo", "-so", "-al", str(tmp_path / "g.gpkg")], capture_output=True, text=True,
                          check=True).stdout
    assert "stratum: Integer64" in info and "pixel_km2: Real" in info and "stratum_name: String" in info
    points = read_points(tmp_path / "g.gpkg")
    assert list(points.reference) == _expected_reference(world["truth"], points.row, points["col"])
    assert read_points(tmp_path / "g.csv").reference.eq("").all()  # the CSV was not the one labelled


def test_buffer_strata_hold_the_pixels_near_a_rare_class(world, tmp_path, monkeypatch):
    """``--buffer 7=2``: a stratum of the mapped pixels within 2 px (8-neighbour steps) of solar
    panels and not solar panels, across strips of rows (read here in strips of 50); the points'
    map class stays the map's; the estimate uses the general estimator and the map's own areas."""
    monkeypatch.setattr(design_mod, "STRIP_ROWS", 50)
    mapped = world["mapped"]
    result = design_sample(world["map"], tmp_path / "b", n=120, allocation="min-per-class=10", seed=3,
                           buffers=(design_mod.Buffer(7, 2),))
    strata = {s.code: s for s in result.design.strata}
    assert strata[107].name == "within 2 px of Solar panel"
    solar = np.pad(mapped == 7, 2)
    near = np.zeros_like(mapped, dtype=bool)  # an independent dilation: any solar pixel in the 5 x 5 window
    for dr in range(5):
        for dc in range(5):
            near |= solar[dr:dr + mapped.shape[0], dc:dc + mapped.shape[1]]
    expected = near & (mapped != 7) & (mapped != 0)
    assert strata[107].pixels == int(expected.sum())
    assert strata[7].pixels == int((mapped == 7).sum())  # the class keeps its own pixels
    points = pd.read_csv(tmp_path / "b.csv")
    buffered = points[points.stratum == 107]
    assert len(buffered) == strata[107].n and expected[buffered.row, buffered["col"]].all()
    assert (points.map_class == mapped[points.row, points["col"]]).all()
    fill_reference(tmp_path / "b.csv", world["reference_dir"])
    report = estimate_sample(tmp_path / "b.csv").report
    areas = class_areas_km2(world["map"])
    assert [c.mapped_km2 for c in report.classes] == pytest.approx([areas[c.code] for c in report.classes], rel=1e-6)


def test_a_bad_buffer_is_refused():
    with pytest.raises(InputError, match="CODE=PX"):
        design_mod.Buffer.parse("solar")
    with pytest.raises(InputError, match="1-50 px"):
        design_mod.Buffer(7, 0)


@pytest.mark.parametrize("buffers, message", [
    ((design_mod.Buffer(3, 2), design_mod.Buffer(3, 1)), "has a buffer already"),
    ((design_mod.Buffer(0, 2),), "class 0 is not on the map"),  # the map's no data
    ((design_mod.Buffer(42, 2),), "class 42 is not on the map"),
])
def test_buffers_that_cannot_be_strata_are_refused(world, tmp_path, buffers, message):
    with pytest.raises(InputError, match=message):
        design_sample(world["map"], tmp_path / "x", n=60, seed=1, buffers=buffers)
    assert list(tmp_path.iterdir()) == []


def test_a_buffer_whose_stratum_code_is_on_the_map_is_refused(tmp_path):
    """A map with a class 107 of its own: a buffer around class 7 cannot take that code."""
    codes = np.full((20, 20), 7, np.uint8)
    codes[:10] = 107
    path = tmp_path / "m.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=rasterio.transform.from_origin(140, 36.1, 0.01, 0.01), nodata=0) as ds:
        ds.write(codes, 1)
    with pytest.raises(InputError, match="stratum code 107 is a code of the map"):
        design_sample(path, tmp_path / "x", n=20, seed=1, buffers=(design_mod.Buffer(7, 1),))


def test_the_sample_of_one_map_assesses_another(world, labelled, tmp_path):
    """``estimate --map``: the truth itself as the other map (same legend). The strata stay the
    first map's, the map classes are read from the truth: every accuracy is exactly 1 with no
    error, and the map areas are the truth's."""
    out, _ = labelled
    truth = tmp_path / "truth_map.tif"
    with rasterio.open(world["map"]) as src:
        profile = src.profile
    with rasterio.open(truth, "w", **profile) as ds:
        ds.write(world["truth"], 1)
    report = estimate_sample(out.with_name("sep.csv"), out=tmp_path / "acc", map_source=truth).report
    assert report.map == str(truth.resolve())
    assert report.overall.estimate == 1.0 and report.overall.se == 0.0
    for c in report.classes:
        if c.points_mapped:
            assert c.users.estimate == 1.0 and c.producers.estimate == 1.0
    areas = class_areas_km2(truth)
    assert [c.mapped_km2 for c in report.classes] == pytest.approx([areas[c.code] for c in report.classes], rel=1e-6)
