"""Regions, months and the acquisition catalog."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

from nationmap.data.catalog import build_catalog, filter_catalog, footprints, read_catalog
from nationmap.data.grid import parse_cell
from nationmap.data.months import parse_month, parse_months
from nationmap.data.regions import resolve_region
from nationmap.errors import InputError


def test_regions():
    japan = resolve_region("japan")
    assert 110 <= len(japan.cells) <= 140 and "N35E139" in japan.cell_names and "N37E126" not in japan.cell_names
    assert resolve_region("demo").cell_names == ["N35E137", "N35E138", "N36E137", "N36E138"]
    assert resolve_region("n36e133,N35E132").cell_names == ["N35E132", "N36E133"]
    bbox = resolve_region("132.5,35.5,134,36.2")
    assert bbox.cell_names == ["N35E132", "N35E133", "N36E132", "N36E133"]
    assert parse_cell("S05W010").bounds == (-10.0, -5.0, -9.0, -4.0)
    for bad in ("atlantis", "N35E132,XX", "1,2,3", "140,36,139,37", "missing.geojson"):
        with pytest.raises(InputError):
            resolve_region(bad)


def test_geojson_region(tmp_path):
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
           "geometry": {"type": "Polygon", "coordinates": [[[137.2, 35.2], [138.4, 35.2], [138.4, 35.8], [137.2, 35.2]]]}}]}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(doc))
    assert resolve_region(str(path)).cell_names == ["N35E137", "N35E138"]
    path.write_text("{not json")
    with pytest.raises(InputError):
        resolve_region(str(path))


def test_months():
    assert str(parse_month("2022-09")) == "2022-09" and parse_month("2022-12").next() == parse_month("2023-01")
    assert [str(m) for m in parse_months("2022-11,2022-09,2022-11")] == ["2022-09", "2022-11"]
    for bad in ("2022-13", "2022-00", "22-09", "2022/09", "", "0000-01", "9999-12"):
        with pytest.raises(InputError):
            parse_months(bad)
    last = parse_month("9999-11")  # the last month whose end datetime can represent
    assert last.end.year == 9999 and parse_month("0001-01").start.year == 1


def test_catalog_rows(tiny_world, tiny_catalog):
    df = read_catalog(tiny_catalog)
    summary = json.loads((tiny_world / "synth.json").read_text())
    assert len(df) == len(summary["scenes"])
    row = df.iloc[0]
    assert row.kind == "scene" and row.polarisation == "HH" and row["mode"] == "UBS" and row.level == "2.1"
    assert row.crs in ("EPSG:32653", "EPSG:32654") and len(row.sha256) == 64
    # the footprint is the rotated swath, not the raster's bounding box
    with rasterio.open(row.path) as src:
        bbox = shapely.box(*rasterio.warp.transform_bounds(src.crs, 4326, *src.bounds))
    foot = footprints(df.iloc[[0]])[0]
    assert foot.area < 0.9 * bbox.area and bbox.buffer(1e-3).contains(foot)
    sep = filter_catalog(df, resolve_region("N35E138"), parse_months("2022-09"))
    assert 0 < len(sep) < len(df) and set(sep.month) == {"2022-09"}
    assert shapely.intersects(footprints(sep), resolve_region("N35E138").geometry).all()


def test_catalog_incremental_and_bad_files(world_copy, tmp_path):
    cat = tmp_path / "cat.parquet"
    first = build_catalog(world_copy, cat, executor="serial")
    assert first.added > 0 and not first.failed
    before = cat.read_bytes()
    again = build_catalog(world_copy, cat, executor="serial")
    assert (again.added, again.kept, again.removed) == (0, first.added, 0)
    assert cat.read_bytes() == before
    scenes = sorted((world_copy / "alos2").rglob("IMG-HH-*.tif"))
    # a truncated file, one without georeference, one all no data; one scene removed
    bad_dir = world_copy / "alos2" / "bad"
    bad_dir.mkdir()
    (bad_dir / "IMG-HH-ALOS2400000100-220905-UBSR2.1GUD.tif").write_bytes(scenes[0].read_bytes()[:5000])
    with rasterio.open(bad_dir / "IMG-HH-ALOS2400000200-220905-UBSR2.1GUD.tif", "w", driver="GTiff", dtype="uint16",
                       count=1, width=16, height=16) as dst:
        dst.write(np.full((16, 16), 300, np.uint16), 1)
    with rasterio.open(scenes[1]) as src:
        profile = src.profile
    with rasterio.open(bad_dir / "IMG-HH-ALOS2400000300-220905-UBSR2.1GUD.tif", "w", **profile) as dst:
        dst.write(np.zeros((profile["height"], profile["width"]), np.uint16), 1)
    shutil.rmtree(scenes[2].parent)
    os.utime(scenes[3], ns=(0, 0))  # touched: re-indexed
    report = build_catalog(world_copy, cat, executor="serial")
    reasons = {Path(f["path"]).name.split("-")[2][-3:]: f["reason"] for f in report.failed}
    assert set(reasons) == {"100", "200", "300"}
    assert "no georeference" in reasons["200"] and "no data" in reasons["300"]
    assert (report.added, report.removed) == (1, 2)
    assert report.total == first.added - 1


def test_catalog_real_mosaic(real_dir, tmp_path):
    report = build_catalog(real_dir, tmp_path / "real.parquet", executor="serial")
    df = read_catalog(tmp_path / "real.parquet")
    assert report.total == 2 and sorted(df.polarisation) == ["HH", "HV"]
    hh = df[df.polarisation == "HH"].iloc[0]
    assert hh.kind == "mosaic" and hh["mode"] == "FBD" and hh.month == "2020-09" and hh.pass_direction == "ascending"
    # valid data is a small strip in the south of the tile
    assert -161 <= hh.lon_min and hh.lon_max <= -160 and hh.lat_min == pytest.approx(22.0, abs=0.01) and hh.lat_max < 22.2


def test_a_catalogued_file_that_became_unreadable_keeps_its_row_without_checksum(world_copy, tmp_path):
    cat = tmp_path / "cat.parquet"
    build_catalog(world_copy, cat, executor="serial")
    before = read_catalog(cat)
    victim = Path(before.path.iloc[0])
    victim.write_bytes(victim.read_bytes()[:4096])  # truncated in place: size and mtime change
    report = build_catalog(world_copy, cat, executor="serial")
    after = read_catalog(cat)
    assert report.stale == 1 and [Path(f["path"]).resolve() for f in report.failed] == [victim.resolve()]
    assert len(after) == len(before) and report.removed == 0
    row = after[after.id == before.id.iloc[0]].iloc[0]
    assert row.sha256 == "unreadable" and row.sha256 != before.sha256.iloc[0]
    victim.unlink()  # gone for good: removed
    gone = build_catalog(world_copy, cat, executor="serial")
    assert gone.removed == 1 and before.id.iloc[0] not in set(read_catalog(cat).id)


def test_the_demo_heldout_region_is_apart_from_the_demo_region():
    demo, heldout = resolve_region("demo"), resolve_region("demo-heldout")
    assert heldout.cell_names == ["N35E140", "N35E141"]
    # a full cell column between them: wider than a 60 x 50 km scene, so no scene touches both
    assert heldout.bounds[0] - demo.bounds[2] >= 1.0 and heldout.bounds[1] == demo.bounds[1]


def test_the_demo_wide_region_holds_the_demo_region_and_keeps_the_gap():
    demo, wide, heldout = (resolve_region(r) for r in ("demo", "demo-wide", "demo-heldout"))
    assert len(wide.cell_names) == 12 and set(demo.cell_names) <= set(wide.cell_names)
    assert wide.bounds == (135.0, 34.0, 139.0, 37.0)
    assert heldout.bounds[0] - wide.bounds[2] >= 1.0  # the E139 column still lies between
