"""A cell's change layers from its COGs: the strips give what the rule gives on the whole cell."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from nationmap.change import cells as change_cells
from nationmap.change.cells import ChangeCellJob, change_cell
from nationmap.change.rule import CONFIRMED, ChangeRule, ChangeState, step
from nationmap.products.layers import declared_layers

LAYERS = {p: declared_layers()[p] for p in ("change", "change_classes")}
SIZE = 300


def _write(path, array, dtype="uint8", nodata=None):
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=dtype, crs="EPSG:4326",
                   transform=from_origin(137.0, 36.0, 1 / SIZE, 1 / SIZE), nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array.astype(dtype), 1)
    return path


def _maps(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A LULC map of smooth regions with speckled flicker and blobs of change, and a confidence."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), 12)
    lulc = np.digitize(field, np.quantile(field, [0.3, 0.6])).astype(np.uint8) + 1
    flicker = rng.uniform(size=lulc.shape) < 0.05
    lulc[flicker] = rng.integers(1, 5, flicker.sum())
    blobs = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), 3) > 0.25
    lulc[blobs] = 4
    lulc[:5] = 0  # a strip not mapped
    return lulc, rng.uniform(30, 100, lulc.shape)


def test_strips_give_the_rule_on_the_whole_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(change_cells, "STRIP_ROWS", 37)  # strips and margins cut patches everywhere
    rule = ChangeRule(confirm_months=2, confirm_confidence=95.0, min_confidence=40.0, min_patch_px=9)
    state = ChangeState.start(_maps(0)[0])
    previous = {"lulc": _write(tmp_path / "m0.tif", _maps(0)[0], nodata=0)}
    for i, month in enumerate(("2022-10", "2022-11"), start=1):
        lulc, conf = _maps(i)
        out = {p: tmp_path / f"{month}_{p}.tif" for p in LAYERS}
        job = ChangeCellJob("N35E137", month, _write(tmp_path / f"l{i}.tif", lulc, nodata=0),
                            _write(tmp_path / f"c{i}.tif", conf, nodata=255), previous, LAYERS, out, rule, {})
        written = change_cell(job)
        state = step(state, lulc, conf.astype(np.uint8).astype(np.float32), month, rule)
        with rasterio.open(written["change"]) as ds:
            assert np.array_equal(ds.read(1), state.status)
        with rasterio.open(written["change_classes"]) as ds:
            bands = ds.read()
            assert ds.descriptions == ("from_class", "to_class", "first_seen", "months_seen")
        for band, expected in zip(bands, (state.from_class, state.to_class, state.first_seen, state.months_seen)):
            assert np.array_equal(band, expected)
        previous = written  # the next month goes on from this month's change layers
    assert (state.status == CONFIRMED).sum() > 100


def test_the_status_table_counts_the_layers_on_the_ellipsoid(tmp_path):
    """The change status rows of a cell, recounted from its layers with each row's pixel area from
    pyproj's geodesic polygon area (independently of the table's code)."""
    import pyproj

    from nationmap.change.rule import CONFIRMED, PROVISIONAL
    from nationmap.products.areas import cell_status_rows

    lulc0, lulc1 = _maps(0)[0], _maps(1)[0]
    status = np.where((lulc0 > 0) & (lulc1 > 0) & (lulc1 != lulc0), CONFIRMED, 0)
    status[(status == 0) & (np.arange(SIZE)[None, :] < 20) & (lulc1 > 0)] = PROVISIONAL  # some provisional too
    classes = np.stack([lulc0, np.where(status > 0, lulc1, 0), np.zeros_like(lulc0), np.zeros_like(lulc0)])
    change = _write(tmp_path / "change.tif", status, nodata=255)
    with rasterio.open(tmp_path / "classes.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=4, dtype="uint16",
                       crs="EPSG:4326", transform=from_origin(137.0, 36.0, 1 / SIZE, 1 / SIZE)) as ds:
        ds.write(classes.astype(np.uint16))
    rows = cell_status_rows("N35E137", change, tmp_path / "classes.tif", declared_layers()["lulc"])
    geod, t = pyproj.Geod(ellps="WGS84"), from_origin(137.0, 36.0, 1 / SIZE, 1 / SIZE)
    west, east = 137.0, 137.0 + t.a
    pixel_km2 = [abs(geod.polygon_area_perimeter([west, east, east, west], [t.f + t.e * (r + 1)] * 2 + [t.f + t.e * r] * 2)[0])
                 / 1e6 for r in range(SIZE)]
    for code, name in ((CONFIRMED, "confirmed"), (PROVISIONAL, "provisional")):
        for a, b in {(int(x), int(y)) for x, y in zip(classes[0][status == code], classes[1][status == code])}:
            r, _ = np.nonzero((status == code) & (classes[0] == a) & (classes[1] == b))
            (row,) = [x for x in rows if (x.status, x.from_code, x.to_code) == (name, a, b)]
            assert row.km2 == pytest.approx(sum(pixel_km2[i] for i in r), rel=1e-9)
    assert len(rows) == len({(x.status, x.from_code, x.to_code) for x in rows})
    assert {x.status for x in rows} == {"confirmed", "provisional"}
