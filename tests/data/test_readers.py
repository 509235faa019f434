"""Readers: calibration, ALOS-2 names and scenes, PALSAR-2 mosaic tiles, LULC tables."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from nationmap.data.alos2 import format_alos2_name, parse_alos2_name, read_summary, scene_datetime
from nationmap.data.calibration import SIGMA0_DB_RANGE, db_to_dn, db_to_linear, dn_to_db, physical_db
from nationmap.data.lulc import find_lulc_tiles, load_class_table, parse_lulc_tile_name
from nationmap.data.mosaic import parse_mosaic_name
from nationmap.data.sar import SarRaster, read_sigma0
from nationmap.errors import InputError, RasterError


def test_calibration_matches_jaxa_formula():
    dn = np.array([0, 1, 100, 1000, 65535], dtype=np.uint16)
    db = dn_to_db(dn)
    assert np.isnan(db[0])
    # 10 log10(DN^2) - 83 by hand
    assert db[2] == pytest.approx(10 * np.log10(100.0**2) - 83.0, abs=1e-5)
    assert db[3] == pytest.approx(-23.0, abs=1e-5)
    assert db_to_linear(np.array([-23.0]))[0] == pytest.approx(10 ** -2.3, rel=1e-5)
    back = db_to_dn(db[1:])
    assert np.array_equal(back, dn[1:])


def test_every_product_dn_is_physical_sigma0():
    """The physical range that makes extreme values no data never drops a pixel of a uint16
    product (DN 1..65535 is -83..+13.3 dB), so normal scenes read, and predict, byte-identically."""
    db = dn_to_db(np.arange(1, 65536, dtype=np.uint16))
    assert physical_db(db).all()
    assert not physical_db(np.array([np.nan, np.inf, -np.inf, 3.4e38, SIGMA0_DB_RANGE[1] + 1], np.float32)).any()


def test_alos2_name_roundtrip():
    name = parse_alos2_name("IMG-HH-ALOS2237752900-181018-UBSR2.1GUD.tif")
    assert (name.polarisation, name.orbit, name.frame, name.date) == ("HH", 23775, 2900, dt.date(2018, 10, 18))
    assert (name.mode, name.look_side, name.level) == ("UBS", "right", "2.1")
    assert (name.processing_option, name.map_projection, name.pass_direction) == ("G", "U", "descending")
    assert name.scene_id == "ALOS2237752900-181018-UBSR2.1GUD"
    again = format_alos2_name("HH", 23775, 2900, dt.date(2018, 10, 18), "UBS", "right", "2.1", "G", "U", "descending")
    assert again == name.filename


@pytest.mark.parametrize("bad", ["IMG-HH-ALOS223775290-181018-UBSR2.1GUD.tif", "IMG-HH-ALOS2237752900-181318-UBSR2.1GUD.tif",
                                 "IMG-HH-ALOS2237752900-181018-XYZR2.1GUD.tif", "scene.tif"])
def test_alos2_bad_names(bad):
    with pytest.raises(InputError):
        parse_alos2_name(bad)


def _first_scene(world):
    return sorted((world / "alos2").rglob("IMG-HH-*.tif"))[0]


def test_scene_window_read_and_summary(tiny_world):
    path = _first_scene(tiny_world)
    with SarRaster(path) as raster:
        assert raster.units == "dn" and raster.crs.to_epsg() in (32653, 32654)
        sigma = raster.read(Window(10, 20, 64, 48))
        raw = raster.read_raw(Window(10, 20, 64, 48))
    assert sigma.db.shape == (48, 64)
    assert np.array_equal(sigma.valid, raw > 0)
    expected = 20 * np.log10(raw[raw > 0].astype(float)) - 83.0
    assert np.allclose(sigma.db[sigma.valid], expected, atol=1e-4)
    assert np.isnan(sigma.db[~sigma.valid]).all()
    assert sigma.transform.c == pytest.approx(raster.transform.c + 10 * raster.transform.a)
    summary = read_summary(path.with_name("summary.txt"))
    when = scene_datetime(parse_alos2_name(path), summary)
    assert when.date() == parse_alos2_name(path).date and when.hour in (2, 14)
    # no data at the scene edges (the swath is rotated inside the north-up raster)
    full = read_sigma0(path)
    assert not full.valid[0, 0] and full.valid.mean() > 0.6


def test_calibrated_float_rasters(tmp_path, real_dir):
    db = np.array([[-20.0, -10.0], [np.nan, -5.0]], dtype=np.float32)
    profile = dict(driver="GTiff", dtype="float32", count=1, width=2, height=2, crs="EPSG:32654",
                   transform=rasterio.transform.from_origin(500000, 4000000, 10, 10))
    tagged = tmp_path / "tagged.tif"
    with rasterio.open(tagged, "w", **profile) as dst:
        dst.write(db, 1)
        dst.units = ["dB"]
    s = read_sigma0(tagged)
    assert np.allclose(s.db[s.valid], [-20, -10, -5]) and not s.valid[1, 0]
    linear = tmp_path / "linear.tif"
    with rasterio.open(linear, "w", **profile) as dst:
        dst.write(np.power(10, db / 10), 1)
    with pytest.raises(InputError, match="declare units"):
        read_sigma0(linear)
    assert np.allclose(read_sigma0(linear, units="linear").db[s.valid], [-20, -10, -5], atol=1e-5)
    # real Sentinel-1 chip in dB with NaN no data (declared)
    s1 = read_sigma0(real_dir / "sen1floods11-spain-7370579" / "Spain_7370579_S1Hand.tif", units="db")
    assert s1.db.shape == (512, 512) and -30 < np.nanmedian(s1.db) < 0


def test_no_georeference_and_truncated(tmp_path, tiny_world):
    nogeo = tmp_path / "IMG-HH-ALOS2237752900-181018-UBSR2.1GUD.tif"
    with rasterio.open(nogeo, "w", driver="GTiff", dtype="uint16", count=1, width=8, height=8) as dst:
        dst.write(np.full((8, 8), 500, np.uint16), 1)
    with pytest.raises(RasterError, match="no georeference"):
        SarRaster(nogeo)
    src = _first_scene(tiny_world)
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(RasterError):
        with SarRaster(cut) as r:
            r.read()


def test_real_mosaic_tile(real_dir):
    tile = parse_mosaic_name(real_dir / "palsar2-mosaic-N23W161-2020" / "N23W161_20_sl_HH_F02DAR.tif")
    assert (tile.tile, tile.year, tile.polarisation) == ("N23W161", 2020, "HH")
    meta = tile.metadata()
    assert meta.first_date == dt.date(2020, 9, 9) and meta.mode == "FBD" and meta.pass_direction == "ascending"
    assert meta.zero_reference_date == dt.date(2014, 5, 24) and meta.measurement == "Gamma-0"
    with tile.open() as raster:
        sigma = raster.read()  # small enough to read whole
        # DN 1 is the mosaic's no data (most of the tile)
        assert 0.03 < sigma.valid.mean() < 0.06
        assert np.median(sigma.db[sigma.valid]) == pytest.approx(-18.0, abs=0.3)
        p5, p95 = np.percentile(sigma.db[sigma.valid], [5, 95])
        assert p5 == pytest.approx(-21.6, abs=0.3) and p95 == pytest.approx(-14.8, abs=0.3)
    dates = tile.read_dates(Window(4000, 4400, 100, 100))
    assert set(np.unique(dates[~np.isnat(dates)])) <= {np.datetime64("2020-09-09")}


def test_lulc_tables():
    table = load_class_table()
    assert table.codes == list(range(1, 15)) and table.nodata == 0
    lulc9 = table.scheme("lulc9")
    assert lulc9.names == ["Water", "Built-up", "Cropland", "Grassland", "Forest", "Bare", "Solar panel", "Wetland", "Greenhouse"]
    src = np.arange(0, 15, dtype=np.uint8)
    assert lulc9.remap(src).tolist() == [0, 1, 2, 3, 3, 4, 5, 5, 5, 5, 6, 5, 7, 8, 9]
    assert table.scheme("water").remap(src).tolist() == [255, 1] + [0] * 13
    # training targets: model output channels, 255 = ignore
    assert lulc9.to_targets(src).tolist() == [255, 0, 1, 2, 2, 3, 4, 4, 4, 4, 5, 4, 6, 7, 8]
    assert table.scheme("water").to_targets(src).tolist() == [255, 1] + [0] * 13
    assert parse_lulc_tile_name("LC_N36E140.tif") == "N36E140"
    with pytest.raises(InputError):
        table.scheme("nope")


def test_lulc_tiles_of_synthetic_world(tiny_world):
    tiles = find_lulc_tiles(tiny_world / "lulc")
    assert sorted(tiles) == ["N35E137", "N35E138"]
    with rasterio.open(tiles["N35E137"]) as src:
        assert src.crs.to_epsg() == 4326 and src.dtypes[0] == "uint8" and src.nodata == 0
        assert src.bounds.left == pytest.approx(137) and src.bounds.top == pytest.approx(36)
        assert src.colormap(1)[2][:3] == load_class_table().classes[1].rgb
