"""Areas on the WGS84 ellipsoid, against the closed-form area of a band between two parallels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine

from nationmap.data.grid import Cell
from nationmap.products.areas import change_km2, class_areas_km2, row_areas_km2

A, F = 6378137.0, 1 / 298.257223563  # WGS84
E2 = F * (2 - F)


def band_area_km2(south: float, north: float, dlon: float) -> float:
    """Area between two parallels over ``dlon`` degrees of longitude on the ellipsoid:
    (b^2 dlon / 2) [q(north) - q(south)], q the authalic function (Snyder 1987, eq. 3-12)."""
    e = math.sqrt(E2)

    def q(lat):
        s = math.sin(math.radians(lat))
        return s / (1 - E2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    b2 = A * A * (1 - E2)
    return b2 * math.radians(dlon) / 2 * (q(north) - q(south)) / 1e6


def test_row_areas_match_the_closed_form():
    n = 1200
    transform = Cell(35, 139).transform(n)
    rows = row_areas_km2(transform, n)
    expected = [band_area_km2(36 - (i + 1) / n, 36 - i / n, 1 / n) for i in range(n)]
    assert np.allclose(rows, expected, rtol=1e-7)
    assert rows[0] < rows[-1]  # pixels shrink northwards
    cell = band_area_km2(35, 36, 1)
    assert rows.sum() * n == pytest.approx(cell, rel=1e-7)
    assert 10_050 < cell < 10_080  # 1 x 1 degree at 35-36 N: 111 km x 91 km, not 111 km x 111 km


def test_row_areas_refuse_a_rotated_or_south_up_grid():
    with pytest.raises(ValueError, match="north-up"):
        row_areas_km2(Affine(0.1, 0, 139, 0, 0.1, 35), 4)


def _write(path, codes: np.ndarray, transform: Affine) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=codes.shape[1], height=codes.shape[0], count=1,
                       dtype="uint8", crs="EPSG:4326", transform=transform) as dst:
        dst.write(codes, 1)
    return str(path)


def test_class_areas_weight_each_row_by_its_area(tmp_path, monkeypatch):
    monkeypatch.setattr("nationmap.products.areas.STRIP_ROWS", 7)  # strips that split the classes
    n = 100
    codes = np.zeros((n, n), np.uint8)
    codes[:30, :] = 1           # the northern 0.3 degree
    codes[30:, :50] = 2         # the south-west
    codes[30:, 50:] = 255       # no data in the south-east
    path = _write(tmp_path / "lulc.tif", codes, Cell(35, 139).transform(n))
    areas = class_areas_km2(path)
    assert areas[1] == pytest.approx(band_area_km2(35.7, 36, 1), rel=1e-7)
    assert areas[2] == pytest.approx(band_area_km2(35, 35.7, 0.5), rel=1e-7)
    assert areas[255] == pytest.approx(areas[2], rel=1e-9)
    assert areas.sum() == pytest.approx(band_area_km2(35, 36, 1), rel=1e-7)
    assert areas[0] == 0


def test_change_counts_each_pair_of_codes(tmp_path):
    n = 60
    transform = Cell(-10, 20).transform(n)  # the southern hemisphere
    before = np.full((n, n), 3, np.uint8)
    after = before.copy()
    after[:, :20] = 4  # the western third became 4
    m = change_km2(_write(tmp_path / "a.tif", before, transform), _write(tmp_path / "b.tif", after, transform))
    assert m[3, 4] == pytest.approx(band_area_km2(-10, -9, 1 / 3), rel=1e-7)
    assert m[3, 3] == pytest.approx(2 * m[3, 4], rel=1e-9)
    assert np.count_nonzero(m) == 2


def test_change_refuses_two_grids(tmp_path):
    a = _write(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), Cell(35, 139).transform(4))
    b = _write(tmp_path / "b.tif", np.zeros((4, 4), np.uint8), Cell(35, 140).transform(4))
    with pytest.raises(ValueError, match="same grid"):
        change_km2(a, b)
