"""Acquisition masks: JAXA mosaic mask and local incidence, scene sidecars, the DEM-based mask."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

from nationmap.data import masks as M
from nationmap.data.mosaic import parse_mosaic_name
from nationmap.errors import InputError

MOSAIC = "palsar2-mosaic-N23W161-2020"
UTM = rasterio.crs.CRS.from_epsg(32653)
SCENE = "IMG-HH-ALOS2454862905-220914-UBSR2.1GUD.tif"  # descending, right-looking


def _write(path, data, crs, transform, nodata=0):
    profile = dict(driver="GTiff", dtype=data.dtype.name, count=1, width=data.shape[1], height=data.shape[0],
                   crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


# -- the JAXA mosaic's layers ----------------------------------------------------------------

def test_real_tile_linci_in_degrees_and_no_mask(real_dir):
    hh = real_dir / MOSAIC / "N23W161_20_sl_HH_F02DAR.tif"
    tile = parse_mosaic_name(hh)
    assert tile.linci_path.name == "N23W161_20_linci_F02DAR.tif" and tile.mask_path.name == "N23W161_20_mask_F02DAR.tif"
    assert tile.read_mask() is None and M.mask_path(hh) is None and M.read_acquisition_mask(hh) is None
    window = Window(0, 3900, 4500, 600)  # the rows that hold data (the rest of the tile is no data)
    linci = tile.read_linci(window)
    # reference: the file read directly; 0 and the declared no-data value (1) mean no data
    with rasterio.open(tile.linci_path) as src:
        raw = src.read(1, window=window)
        assert src.nodata == 1
    expected = np.where((raw == 0) | (raw == 1), np.nan, raw.astype(np.float32))
    assert linci.dtype == np.float32 and linci.shape == (600, 4500)
    np.testing.assert_array_equal(linci, expected)
    valid = linci[np.isfinite(linci)]
    assert valid.size > 800_000 and valid.min() >= 0 and valid.max() <= 90
    # mostly flat: the local incidence is the beam's incidence, given by the tile's XML
    xml = ET.parse(tile.xml_path).getroot()
    near, far = (float(xml.find(f".//{t}").text) for t in ("IncAngleNearRange", "IncAngleFarRange"))
    assert near <= np.median(valid) <= far
    assert np.mean((valid >= near - 1) & (valid <= far + 1)) > 0.95
    np.testing.assert_array_equal(M.read_acquisition_linci(hh, window), linci)


def _mosaic_tile(tmp_path, mask_grid_shift=0.0):
    """A small synthetic mosaic tile (HH + mask) in EPSG:4326; returns (HH path, mask codes)."""
    transform = Affine(1 / 4500, 0, 137.0, 0, -1 / 4500, 36.0)
    hh = _write(tmp_path / "N35E137_22_sl_HH_F02DAR.tif", np.full((12, 10), 3000, np.uint16), "EPSG:4326", transform)
    codes = np.full((12, 10), M.MASK_LAND, np.uint8)
    codes[:, :2] = M.MASK_WATER
    codes[3:5, 4:7] = M.MASK_LAYOVER
    codes[8:10, 6:9] = M.MASK_SHADOW
    codes[11, :] = M.MASK_NODATA
    _write(tmp_path / "N35E137_22_mask_F02DAR.tif", codes, "EPSG:4326",
           transform * Affine.translation(mask_grid_shift, 0))
    return hh, codes


def test_mosaic_mask_read_by_window(tmp_path):
    hh, codes = _mosaic_tile(tmp_path)
    tile = parse_mosaic_name(hh)
    np.testing.assert_array_equal(tile.read_mask(), codes)
    window = Window(3, 2, 5, 8)
    np.testing.assert_array_equal(tile.read_mask(window), codes[2:10, 3:8])
    assert M.mask_path(hh) == tile.mask_path
    np.testing.assert_array_equal(M.read_acquisition_mask(hh, window), codes[2:10, 3:8])
    assert tile.read_linci() is None and M.read_acquisition_linci(hh) is None
    with pytest.raises(InputError, match="outside"):
        M.read_acquisition_mask(hh, Window(8, 0, 5, 5))


def test_mask_on_another_grid_is_refused(tmp_path):
    hh, _ = _mosaic_tile(tmp_path, mask_grid_shift=0.5)  # half a pixel off
    with pytest.raises(InputError, match="not on the grid") as err:
        M.read_acquisition_mask(hh, Window(0, 0, 4, 4))
    assert "\n" not in str(err.value)


# -- scene sidecars ----------------------------------------------------------------------------

def test_scene_sidecar_names(tmp_path):
    scene = tmp_path / SCENE
    assert M.sidecar_name(M.MASK_PREFIX, scene) == "MSK-ALOS2454862905-220914-UBSR2.1GUD.tif"
    assert M.sidecar_name(M.LINCI_PREFIX, "IMG-HV-ALOS2454862905-220914-UBSR2.1GUD.tif") == \
        "LINCI-ALOS2454862905-220914-UBSR2.1GUD.tif"
    assert M.mask_path(scene) is None and M.linci_path(scene) is None  # an acquisition without
    (tmp_path / "MSK-ALOS2454862905-220914-UBSR2.1GUD.tif").write_bytes(b"")
    assert M.mask_path(tmp_path / SCENE.replace("IMG-HH", "IMG-HV")).name == "MSK-ALOS2454862905-220914-UBSR2.1GUD.tif"
    with pytest.raises(InputError, match="not an acquisition"):
        M.mask_path(tmp_path / "MSK-ALOS2454862905-220914-UBSR2.1GUD.tif")


# -- the DEM-based mask ------------------------------------------------------------------------

GRID = dict(crs=UTM, transform=Affine(30.0, 0, 400_000.0, 0, -30.0, 3_900_000.0), width=101, height=40)


def _plane_dem(tmp_path, gradient_east, gradient_north=0.0, crs=UTM, pad=20):
    """A DEM (30 m, beyond the scene grid by ``pad`` px) of the plane h = 1000 + gx (x - x0) + gy (y - y0) m."""
    t = GRID["transform"]
    transform = Affine(30.0, 0, t.c - pad * 30.0, 0, -30.0, t.f + pad * 30.0)
    h, w = GRID["height"] + 2 * pad, GRID["width"] + 2 * pad
    x, y = transform * np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    heights = 1000.0 + gradient_east * (x - t.c) + gradient_north * (y - t.f)
    return _write(tmp_path / "dem.tif", heights.astype(np.float32), crs, transform, nodata=-9999.0)


def _mask(dem, heading=0.0, side="right", near=30.0, far=44.0):
    return M.terrain_mask(dem, GRID["crs"], GRID["transform"], GRID["width"], GRID["height"], heading, side, near, far)


@pytest.mark.parametrize("heading, side, sign", [(0.0, "right", 1), (180.0, "right", -1), (0.0, "left", -1)])
def test_planes_steeper_than_the_beam_are_layover_or_shadow(tmp_path, heading, side, sign):
    # heading 0 right-looking looks east: a plane rising eastward faces the sensor. Tilt 50 degrees
    # towards the sensor exceeds every incidence (30..44): layover; 61 degrees away from it puts
    # the local incidence at 91..105: shadow; a flat plane is land.
    toward = _plane_dem(tmp_path, sign * math.tan(math.radians(50.0)))
    assert (_mask(toward, heading, side) == M.MASK_LAYOVER).all()
    away = _plane_dem(tmp_path, -sign * math.tan(math.radians(61.0)))
    assert (_mask(away, heading, side) == M.MASK_SHADOW).all()
    flat = _plane_dem(tmp_path, 0.0)
    assert (_mask(flat, heading, side) == M.MASK_LAND).all()


def test_plane_between_near_and_far_incidence(tmp_path):
    # tilt 36.37 degrees towards an east-looking sensor; the incidence at column c of 101 is
    # 30 + 14 c / 100 (pixel centres of the grid's first and last columns are near and far), so
    # the local incidence 30 + 0.14 c - 36.37 is <= 0 for c <= 45: layover there, land beyond.
    dem = _plane_dem(tmp_path, math.tan(math.radians(36.37)))
    codes = _mask(dem)
    expected = np.where(np.arange(101) <= 45, M.MASK_LAYOVER, M.MASK_LAND)
    np.testing.assert_array_equal(codes, np.broadcast_to(expected, codes.shape))
    local = M.terrain_local_incidence(dem, GRID["crs"], GRID["transform"], 101, 40, 0.0, "right", 30.0, 44.0)
    np.testing.assert_allclose(local[:, 100], 44.0 - 36.37, atol=1e-3)


def test_dem_in_another_crs_and_partial_cover(tmp_path):
    # the same 50-degree plane as a lon/lat DEM that covers only the grid's eastern part: layover
    # where it covers, no data (0) outside it
    t = GRID["transform"]
    to_utm = Transformer.from_crs(4326, 32653, always_xy=True)
    to_ll = Transformer.from_crs(32653, 4326, always_xy=True)
    lon0, lat1 = to_ll.transform(t.c + 50 * 30.0, t.f + 600.0)
    lon1, lat0 = to_ll.transform(t.c + 101 * 30.0 + 600.0, t.f - 40 * 30.0 - 600.0)
    step = 0.0002
    transform = Affine(step, 0, lon0, 0, -step, lat1)
    w, h = int((lon1 - lon0) / step) + 1, int((lat1 - lat0) / step) + 1
    lon, lat = transform * np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, _ = to_utm.transform(lon, lat)
    heights = (1000.0 + math.tan(math.radians(50.0)) * (x - t.c)).astype(np.float32)
    dem = _write(tmp_path / "dem4326.tif", heights, "EPSG:4326", transform, nodata=-9999.0)
    codes = _mask(dem)
    covered = codes != M.MASK_NODATA
    assert not covered[:, :49].any()  # west of the DEM
    assert covered[:, 53:].all() and (codes[:, 53:] == M.MASK_LAYOVER).all()


def test_terrain_mask_refuses_a_geographic_grid(tmp_path):
    dem = _plane_dem(tmp_path, 0.0)
    with pytest.raises(InputError, match="projected"):
        M.terrain_mask(dem, rasterio.crs.CRS.from_epsg(4326), Affine(0.001, 0, 137, 0, -0.001, 36), 10, 10,
                       0.0, "right", 30.0, 44.0)
    with pytest.raises(InputError, match="look side"):
        _mask(dem, side="up")


def test_write_terrain_mask_sidecars(tmp_path):
    # a descending right-looking scene looks west-north-west (heading 190): near range is east.
    # A plane rising 20 degrees along the look direction faces the sensor: local incidence 10
    # (near) .. 24 (far), no layover or shadow; at 40 degrees the near part (incidence < 40) is in
    # layover.
    t = GRID["transform"]
    dn = np.zeros((GRID["height"], GRID["width"]), np.uint16)
    dn[5:35, 10:90] = 4000
    scene = _write(tmp_path / SCENE, dn, UTM, t)
    look_east, look_north = M.look_vector(190.0, "right")
    assert look_east < -0.98 and 0.17 < look_north < 0.18
    slope = math.tan(math.radians(20.0))
    _plane_dem(tmp_path, slope * look_east, slope * look_north)
    msk_path, linci_path = M.write_terrain_mask(scene, tmp_path / "dem.tif", block_rows=7)
    assert msk_path.name == "MSK-ALOS2454862905-220914-UBSR2.1GUD.tif" and M.mask_path(scene) == msk_path
    codes = M.read_acquisition_mask(scene)
    np.testing.assert_array_equal(codes, np.where(dn > 0, M.MASK_LAND, M.MASK_NODATA))
    linci = M.read_acquisition_linci(scene)
    assert np.isnan(linci[dn == 0]).all()
    valid = linci[dn > 0]
    assert valid.min() == pytest.approx(10.0, abs=1.0) and valid.max() == pytest.approx(24.0, abs=1.0)
    assert np.nanmean(linci[:, 80:90]) < np.nanmean(linci[:, 10:20])  # near range (east): the smaller local incidence

    slope = math.tan(math.radians(40.0))
    _plane_dem(tmp_path, slope * look_east, slope * look_north)
    M.write_terrain_mask(scene, tmp_path / "dem.tif", block_rows=7)
    codes = M.read_acquisition_mask(scene)
    assert (codes[dn > 0] == M.MASK_LAYOVER).any() and (codes[dn > 0] == M.MASK_LAND).any()
    assert (codes[:, 80:90][dn[:, 80:90] > 0] == M.MASK_LAYOVER).all()  # near range (east): incidence < 40
    # the blocks give the whole grid's answer
    span = M.range_span(t, GRID["width"], GRID["height"], (look_east, look_north), dn > 0)
    whole = M.terrain_mask(tmp_path / "dem.tif", UTM, t, GRID["width"], GRID["height"], 190.0, "right", 30.0, 44.0,
                           range_span_m=span)
    np.testing.assert_array_equal(codes, np.where(dn > 0, whole, M.MASK_NODATA))


def test_write_terrain_mask_needs_a_scene(tmp_path, real_dir):
    with pytest.raises(InputError, match="not an ALOS-2 product name"):
        M.write_terrain_mask(real_dir / MOSAIC / "N23W161_20_sl_HH_F02DAR.tif", tmp_path / "dem.tif")


def test_a_dem_void_never_drops_what_the_radar_saw(tmp_path):
    """Where the DEM has no height (a void, sea stored as no data) the mask says land: only
    layover and shadow may take a pixel from the models, never a hole in the DEM."""
    dn = np.zeros((GRID["height"], GRID["width"]), np.uint16)
    dn[5:35, 10:90] = 4000
    scene = _write(tmp_path / SCENE, dn, UTM, GRID["transform"])
    _plane_dem(tmp_path, 0.0)
    with rasterio.open(tmp_path / "dem.tif", "r+") as dem:
        heights = dem.read(1)
        heights[:, 40:70] = -9999.0  # a void across the scene
        dem.write(heights, 1)
    M.write_terrain_mask(scene, tmp_path / "dem.tif", block_rows=7)
    codes = M.read_acquisition_mask(scene)
    np.testing.assert_array_equal(codes, np.where(dn > 0, M.MASK_LAND, M.MASK_NODATA))
