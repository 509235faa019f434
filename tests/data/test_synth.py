"""The synthetic world: deterministic, long-tailed, thin rivers, overlapping UTM scenes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import rasterio
import rasterio.warp
from scipy import ndimage

from nationmap.data.grid import parse_cell
from nationmap.data.synth.generate import lulc_tile, synthesize
from nationmap.data.synth.scenes import pixel_lonlat, plan_footprint, plan_scenes, scene_grid, touches_cells
from nationmap.data.synth.world import WATER
from nationmap.data.months import parse_months
from tests.conftest import TINY_CELLS, tiny_synth_config

import shapely


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic_for_a_seed(tiny_world, tmp_path):
    cfg = tiny_synth_config()
    one_cell = type(cfg)(**{**cfg.to_dict(), "cells": (TINY_CELLS[0],), "months": ("2022-09",), "world": None})
    synthesize(tmp_path / "a", one_cell, executor="serial")
    synthesize(tmp_path / "b", one_cell, executor="serial")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tif"))
    assert files_a and files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.tif"))
    for rel in files_a:
        assert _digest(tmp_path / "a" / rel) == _digest(tmp_path / "b" / rel)
    # the tile is the same as in the two-cell world: cells are generated independently, seamlessly
    assert _digest(tmp_path / "a" / "lulc" / "LC_N35E137.tif") == _digest(tiny_world / "lulc" / "LC_N35E137.tif")
    other = type(cfg)(**{**one_cell.to_dict(), "seed": 1, "world": None})
    assert not np.array_equal(lulc_tile(parse_cell("N35E137"), other), lulc_tile(parse_cell("N35E137"), one_cell))


def test_long_tailed_classes_and_thin_rivers():
    cfg = tiny_synth_config()
    cfg = type(cfg)(**{**cfg.to_dict(), "lulc_pixels_per_degree": 900, "world": None})
    codes = lulc_tile(parse_cell("N35E137"), cfg)
    counts = np.bincount(codes.ravel(), minlength=15)[1:15]
    frac = counts / counts.sum()
    forest = frac[[5, 6, 7, 8, 10]].sum()
    assert forest > 0.3 and forest == max(forest, *frac)  # forest dominates, as in Japan
    for rare in (11, 12, 13):  # solar panel, wetland, greenhouse: present but rare
        assert 0 < frac[rare] < 0.02
    assert frac.max() / frac[frac > 0].min() > 50  # long tail
    # water bodies include features only 1-3 px wide: erode 2 px removes many water pixels
    water = codes == WATER
    opened = ndimage.binary_opening(water, structure=np.ones((3, 3)), iterations=1)
    assert (water & ~opened).sum() > 500  # river pixels in parts narrower than 3 px
    assert (codes == 0).any() and (codes == WATER).any()  # open sea outside the mapped area, and water


def test_scenes_overlap_cross_cells_and_miss_areas(tiny_world):
    summary = json.loads((tiny_world / "synth.json").read_text())
    scenes = summary["scenes"]
    assert len({s["filename"] for s in scenes}) == len(scenes)
    by_month = {}
    for s in scenes:
        by_month.setdefault(s["month"], []).append(s)
    assert set(by_month) == {"2022-09", "2022-10"}
    for month, group in by_month.items():
        assert len({s["date"] for s in group}) >= 3  # several acquisitions (dates) per month
        assert {"ascending", "descending"} <= {s["pass_direction"] for s in group}
    # frames dropped in some months
    plans = plan_scenes((137, 35, 139, 36), parse_months("2022-09,2022-10"), 0, length_km=50, width_km=45,
                        pixel_m=200, missing_fraction=0.0)
    assert len(plans) > len(scenes)
    feet = []
    epsgs = set()
    for s in scenes:
        with rasterio.open(tiny_world / s["path"]) as src:
            epsgs.add(src.crs.to_epsg())
            b = rasterio.warp.transform_bounds(src.crs, 4326, *src.bounds)
            feet.append(shapely.box(*b))
    assert epsgs == {32653, 32654}
    crossing = [f for f in feet if f.bounds[0] < 138 < f.bounds[2]]
    assert crossing
    overlaps = sum(feet[i].intersection(feet[j]).area > 0 for i in range(len(feet)) for j in range(i + 1, len(feet)))
    assert overlaps > len(feet) // 2


def test_backscatter_overlaps_between_classes(tiny_world):
    stats = json.loads((tiny_world / "synth.json").read_text())["statistics"]["hh_db_by_class"]
    water, forest, built = stats["Water"], stats["Evergreen needleleaf forest"], stats["Built-up"]
    assert water["mean_db"] < -18 and -10 < forest["mean_db"] < -5
    assert built["mean_db"] > forest["mean_db"] - 2
    # neighbouring classes overlap: their means are closer than one standard deviation
    crop, paddy = stats["Cropland"], stats["Paddy field"]
    assert abs(crop["mean_db"] - paddy["mean_db"]) < crop["std_db"]


def test_scene_grid_is_utm_with_rotated_swath():
    plan = plan_scenes((137.5, 35.2, 137.6, 35.3), parse_months("2022-09"), 3, length_km=30, width_km=20,
                       pixel_m=100, missing_fraction=0.0)[0]
    grid = scene_grid(plan)
    assert grid.crs.to_epsg() == 32653
    assert not grid.inside[0, 0] and not grid.inside[-1, -1] and grid.inside[grid.height // 2, grid.width // 2]
    assert abs(grid.inside.sum() * 0.01 - 30 * 20) < 15  # km^2


def test_plan_footprint_is_the_rendered_swath():
    """The lon/lat footprint used to select scenes is where the rendered raster has valid pixels."""
    plan = plan_scenes((138.9, 35.2, 139.0, 35.3), parse_months("2022-09"), 1, length_km=30, width_km=20,
                       pixel_m=200, missing_fraction=0.0)[0]
    grid = scene_grid(plan)
    rows, cols = np.nonzero(grid.inside)
    lon, lat = pixel_lonlat(grid.crs, grid.transform, rows, cols)
    footprint = plan_footprint(plan)
    inside = shapely.contains_xy(footprint, lon, lat)
    assert inside.mean() > 0.995  # pixel centres on the very edge may fall either way
    assert abs(footprint.area - shapely.MultiPoint(np.column_stack([lon, lat])).convex_hull.area) < 0.02 * footprint.area


def test_scenes_are_planned_only_where_they_touch_the_cells():
    """Two cells at opposite corners of a 6 x 6 degree box: the scenes over the open sea between
    them are not planned, and every cell is still covered."""
    months = parse_months("2022-09")
    cells = [parse_cell("N30E130"), parse_cell("N35E135")]
    plans = plan_scenes((130, 30, 136, 36), months, 0, length_km=60, width_km=50, pixel_m=150, missing_fraction=0.0)
    kept = touches_cells(plans, [c.polygon for c in cells])
    assert 0 < len(kept) < len(plans) // 4
    for p in plans:
        assert (p in kept) == any(plan_footprint(p).intersects(c.polygon) for c in cells)
    for cell in cells:
        covered = shapely.union_all([plan_footprint(p) for p in kept]).intersection(cell.polygon).area
        assert covered > 0.99 * cell.polygon.area


def test_synth_months_are_those_alos2_can_fly():
    """Months before ALOS-2's first whole month of positive orbit numbers (it was launched in
    2014-05) or past the five-digit orbit numbers of product names are refused, in one line."""
    import datetime as dt

    import pytest

    from nationmap.data.months import Month
    from nationmap.data.synth.scenes import ALOS2_LAUNCH, MAX_ORBIT, MAX_PATHS, orbit_number, synth_months
    from nationmap.errors import InputError

    cfg = tiny_synth_config()
    first, last = synth_months()
    assert first >= Month.of(ALOS2_LAUNCH)
    assert orbit_number(first.start.date()) >= 1
    assert orbit_number((last.end - dt.timedelta(days=1)).date(), MAX_PATHS) <= MAX_ORBIT
    before = Month(first.year - (first.month == 1), (first.month - 2) % 12 + 1)
    for ok in (first, last):
        type(cfg)(**{**cfg.to_dict(), "months": (str(ok),), "world": None})
    for bad in (before, last.next(), Month(1, 1)):
        with pytest.raises(InputError, match=f"month {bad}: the synthetic ALOS-2"):
            type(cfg)(**{**cfg.to_dict(), "months": (str(bad),), "world": None})
