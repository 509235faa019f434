"""The synthetic world's truth of layover and shadow: MSK-/LINCI- sidecars beside every scene."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from nationmap.data import masks as M
from nationmap.data.calibration import dn_to_db
from nationmap.data.catalog import build_catalog, find_sar_files
from nationmap.data.months import parse_months
from nationmap.data.synth.backscatter import NESZ_DB
from nationmap.data.synth.generate import SynthConfig, synthesize
from nationmap.data.synth.scenes import plan_scenes, render_scene
from nationmap.data.synth.world import STEEP_RELIEF_M, WorldConfig

# 20 x 20 km scenes at the demo's 75 m over the world's mountains north of 36 N (seed 0)
MOUNTAINS = (137.6, 36.0, 138.4, 36.6)


@pytest.fixture(scope="module")
def mountain_scenes():
    plans = plan_scenes(MOUNTAINS, parse_months("2022-09"), 0, length_km=20, width_km=20, pixel_m=75,
                        missing_fraction=0.0)[::3]
    steep = WorldConfig(seed=0, pixel_m=75.0, relief_m=STEEP_RELIEF_M)
    return [(render_scene(p, steep, 4.0, 0), render_scene(p, WorldConfig(seed=0, pixel_m=75.0), 4.0, 0)) for p in plans]


def test_steep_relief_gives_layover_and_shadow_where_the_dn_says_so(mountain_scenes):
    lay = shadow = swath = 0
    db_shadow, db_layover, db_land = [], [], []
    for steep, _ in mountain_scenes:
        db = dn_to_db(steep.dn)
        np.testing.assert_array_equal(steep.mask == M.MASK_NODATA, steep.dn == 0)  # 0: outside the swath
        swath += int((steep.dn > 0).sum())
        lay += int((steep.mask == M.MASK_LAYOVER).sum())
        shadow += int((steep.mask == M.MASK_SHADOW).sum())
        db_shadow.append(db[steep.mask == M.MASK_SHADOW])
        db_layover.append(db[(steep.mask == M.MASK_LAYOVER) & (steep.codes != 1)])
        db_land.append(db[steep.mask == M.MASK_LAND])
        # local incidence: layover slopes read 1 (clipped), shadow beyond 85 degrees
        assert (steep.linci[steep.mask == M.MASK_LAYOVER] == 1).all()
        assert (steep.linci[steep.mask == M.MASK_SHADOW] >= 85).all()
        assert (steep.linci[steep.dn > 0] > 0).all() and (steep.linci[steep.dn == 0] == 0).all()
    assert (lay + shadow) / swath > 0.01 and lay > 0 and shadow > 0
    db_shadow, db_layover, db_land = (np.concatenate(v) for v in (db_shadow, db_layover, db_land))
    # shadow: nothing but the noise floor (NESZ under 4-look speckle: median 0.37 dB below it)
    assert abs(np.median(db_shadow) - NESZ_DB) < 1.0 and np.percentile(db_shadow, 95) < NESZ_DB + 4.0
    # layover: brightened by the foreshortened area, far above the land's median
    assert np.median(db_layover) > np.median(db_land) + 5.0


def test_default_relief_has_neither_and_relief_leaves_land_cover_alone(mountain_scenes):
    for steep, default in mountain_scenes:
        assert not np.isin(default.mask, (M.MASK_LAYOVER, M.MASK_SHADOW)).any()
        np.testing.assert_array_equal(steep.codes, default.codes)
        np.testing.assert_array_equal(steep.mask == M.MASK_WATER, default.mask == M.MASK_WATER)


def test_sidecars_on_the_scene_grid_and_not_in_the_catalog(tmp_path):
    cfg = SynthConfig(cells=("N36E137",), months=("2022-09",), seed=0, lulc_pixels_per_degree=300,
                      scene_pixel_m=200.0, scene_length_km=40.0, scene_width_km=40.0, relief_m=STEEP_RELIEF_M)
    summary = synthesize(tmp_path, cfg, executor="serial")
    scenes = [tmp_path / s["path"] for s in summary["scenes"]]
    assert scenes and find_sar_files(tmp_path) == sorted(scenes)  # sidecars are not scenes
    for scene in scenes:
        for sidecar in (M.mask_path(scene), M.linci_path(scene)):
            assert sidecar is not None and sidecar.parent == scene.parent
            with rasterio.open(scene) as a, rasterio.open(sidecar) as b:
                assert M.same_grid((a.crs, a.transform, a.width, a.height), (b.crs, b.transform, b.width, b.height))
                assert b.dtypes[0] == "uint8" and b.compression.value == "DEFLATE"
                dn = a.read(1)
        mask = M.read_acquisition_mask(scene)
        np.testing.assert_array_equal(mask == M.MASK_NODATA, dn == 0)
        assert set(np.unique(mask)) <= set(M.MASK_CODES.values())
    st = summary["statistics"]
    assert st["scene_layover_pixels"] == sum(s["layover_px"] for s in summary["scenes"]) > 0
    assert summary["config"]["world"]["relief_m"] == STEEP_RELIEF_M
    report = build_catalog(tmp_path, tmp_path / "catalog.parquet", executor="serial")
    assert report.added == len(scenes) and not report.failed
