"""Change events of the synthetic world: where they are, what they change, and their truth on disk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from shapely.affinity import rotate

from nationmap.data.grid import parse_cell
from nationmap.data.synth import world as W
from nationmap.data.synth.changes import KINDS, ChangeEvent, apply_changes, plan_changes
from nationmap.data.synth.generate import SynthConfig, change_events, lulc_tile, synthesize
from nationmap.data.synth.noise import lonlat_to_km
from nationmap.data.synth.scenes import plan_scenes, render_scene, touches_cells
from nationmap.data.months import parse_months
from nationmap.errors import InputError

MONTHS = ("2022-08", "2022-09", "2022-10", "2022-11")


def _config(rate: float = 20.0, **kw) -> SynthConfig:
    return SynthConfig(cells=("N35E137",), months=MONTHS, seed=3, lulc_pixels_per_degree=300, scene_pixel_m=200.0,
                       scene_length_km=40.0, scene_width_km=40.0, change_rate=rate, **kw)


def test_events_are_drawn_from_the_config_alone_after_the_first_month():
    cfg = _config()
    events = change_events(cfg)
    assert events and events == plan_changes(((137.0, 35.0),), MONTHS, cfg.world, 20.0, cfg.quiet_share)
    assert all(e.month in MONTHS[1:] for e in events)  # the first month is the epoch of lulc/
    assert {e.kind for e in events} <= set(KINDS)
    floods = [e for e in events if e.kind == "flood"]
    assert floods and all(e.until == str(parse_months(e.month)[0].next()) for e in floods)
    assert all(e.until == "" for e in events if e.kind != "flood")
    assert change_events(_config(rate=0.0)) == ()
    assert change_events(_config(quiet_share=1.0)) == ()  # every month quiet


def test_an_event_changes_its_source_classes_inside_its_rectangle_only():
    event = ChangeEvent(0, "clearing", "2022-09", "", lon=137.5, lat=35.5, length_m=3000.0, width_m=1000.0,
                        angle_deg=30.0)
    rng = np.random.default_rng(0)
    lon, lat = 137.5 + rng.uniform(-0.03, 0.03, 4000), 35.5 + rng.uniform(-0.03, 0.03, 4000)
    x, y = lonlat_to_km(lon, lat)
    codes = rng.choice([W.DBF, W.ENF, W.CROP, W.WATER], size=4000).astype(np.uint8)
    after = apply_changes(codes, x, y, "2022-10", (event,))
    # the rectangle, built independently with shapely in the km plane
    cx, cy = lonlat_to_km(137.5, 35.5)
    box = rotate(shapely.box(cx - 1.5, cy - 0.5, cx + 1.5, cy + 0.5), 30.0, origin=(cx, cy))
    inside = shapely.contains_xy(box, x, y)
    assert 50 < inside.sum() < 3950
    forest = np.isin(codes, [W.DBF, W.ENF])
    assert (after[inside & forest] == W.BARE).all()
    assert np.array_equal(after[~(inside & forest)], codes[~(inside & forest)])  # rivers and fields kept
    assert np.array_equal(apply_changes(codes, x, y, "2022-08", (event,)), codes)  # not yet on the ground


def test_a_flood_retreats_the_month_after():
    flood = ChangeEvent(0, "flood", "2022-09", "2022-10", lon=137.5, lat=35.5, length_m=2000.0, width_m=2000.0,
                        angle_deg=0.0)
    x, y = lonlat_to_km(np.array([137.5]), np.array([35.5]))
    paddy = np.array([W.PADDY], dtype=np.uint8)
    assert [apply_changes(paddy, x, y, m, (flood,))[0] for m in MONTHS] == [W.PADDY, W.WATER, W.PADDY, W.PADDY]


def test_config_rejects_bad_change_settings():
    with pytest.raises(InputError, match="change rate"):
        _config(rate=-1.0)
    with pytest.raises(InputError, match="quiet share"):
        _config(quiet_share=1.5)


def test_world_on_disk_documents_its_changes_and_their_truth(tmp_path):
    cfg = _config(missing_fraction=0.0)
    summary = synthesize(tmp_path, cfg, executor="serial")
    events = pd.read_parquet(tmp_path / "changes.parquet")
    assert len(events) == summary["changes"]["events"] == len(change_events(cfg))
    cell = parse_cell("N35E137")
    with rasterio.open(tmp_path / "lulc" / "LC_N35E137.tif") as ds:
        first = ds.read(1)
    assert np.array_equal(first, lulc_tile(cell, cfg))  # lulc/ is the first month's
    for month in MONTHS[1:]:
        truth = lulc_tile(cell, cfg, month)
        changed = int((truth != first).sum())
        assert summary["changes"]["changed_pixels_by_month"][month] == changed
        path = tmp_path / "truth" / month / "LC_N35E137.tif"
        assert path.exists() == (changed > 0)
        if changed:
            with rasterio.open(path) as ds:
                assert np.array_equal(ds.read(1), truth)
            # every changed pixel is one an active event's kind may make
            targets = {KINDS[e.kind].target for e in change_events(cfg) if e.active(month)}
            assert set(np.unique(truth[truth != first])) <= targets


def test_scenes_show_the_land_of_their_month():
    cfg = _config()
    month = next(m for m in MONTHS[1:] if any(e.kind == "clearing" and e.active(m) for e in change_events(cfg)))
    plans = touches_cells(plan_scenes((137.0, 35.0, 138.0, 36.0), parse_months(month), cfg.seed, length_km=40.0,
                                      width_km=40.0, pixel_m=200.0, missing_fraction=0.0),
                          [parse_cell("N35E137").polygon])
    cleared = 0
    for plan in plans:
        before = render_scene(plan, cfg.world, cfg.looks, cfg.seed)
        after = render_scene(plan, cfg.world, cfg.looks, cfg.seed, change_events(cfg))
        felled = np.isin(before.codes, KINDS["clearing"].sources) & (after.codes == W.BARE)
        if felled.sum() >= 10:  # bare soil is darker than the forest it was (-16 against about -7 dB)
            assert np.nanmean(after.clean_db[felled]) < np.nanmean(before.clean_db[felled]) - 5.0
        cleared += int(felled.sum())
    assert cleared > 0
