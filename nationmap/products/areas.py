"""Areas of the products in km^2 on the WGS84 ellipsoid: what a map user reports.

A pixel of a north-up grid in degrees (EPSG:4326) is bounded by two meridians and two
parallels, so every pixel of a row has the same area: :func:`row_areas_km2` takes it from
pyproj's geodesic polygon area on the WGS84 ellipsoid, not square degrees: a pixel of 1/12,000
degree is 85.5 m^2 at the equator, 70.3 m^2 at 35 N and 60.8 m^2 at 45 N. A raster's class areas are then its pixel counts weighted by their row's area,
accumulated strip by strip (:func:`class_areas_km2`), and a change between two months is the
same sum over (before, after) pairs of codes (:func:`change_km2`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.windows import Window

WGS84 = pyproj.Geod(ellps="WGS84")
STRIP_ROWS = 512  # rows read at once: a 12,000 px wide uint8 strip is 6 MB
CODES = 256  # uint8 products: every code has a slot


def row_areas_km2(transform: Affine, height: int) -> np.ndarray:
    """(height,) area in km^2 of one pixel in each row of a north-up grid whose ``transform``
    is in degrees (pixel width ``transform.a``, height ``-transform.e``)."""
    if transform.b or transform.d or transform.e >= 0:
        raise ValueError("row areas need a north-up grid (no rotation, negative pixel height)")
    lon0, width = transform.c, transform.a
    tops = transform.f + transform.e * np.arange(height + 1)
    areas = np.empty(height)
    for i in range(height):
        north, south = tops[i], tops[i + 1]
        area, _ = WGS84.polygon_area_perimeter([lon0, lon0 + width, lon0 + width, lon0],
                                               [south, south, north, north])
        areas[i] = abs(area) / 1e6
    return areas


def _strips(height: int):
    for top in range(0, height, STRIP_ROWS):
        yield top, min(STRIP_ROWS, height - top)


def class_areas_km2(path: str | Path) -> np.ndarray:
    """(256,) km^2 covered by each code of band 1 of a uint8 raster in degrees (the no-data code
    included: callers drop it)."""
    with rasterio.open(path) as ds:
        rows = row_areas_km2(ds.transform, ds.height)
        total = np.zeros(CODES)
        for top, n in _strips(ds.height):
            codes = ds.read(1, window=Window(0, top, ds.width, n))
            weights = np.broadcast_to(rows[top:top + n, None], codes.shape)
            total += np.bincount(codes.ravel(), weights.ravel(), minlength=CODES)[:CODES]
    return total


def change_km2(before: str | Path, after: str | Path) -> np.ndarray:
    """(256, 256) km^2 whose code was ``i`` in ``before`` and ``j`` in ``after``: two uint8 rasters
    on the same grid (the same cell in two months)."""
    with rasterio.open(before) as a, rasterio.open(after) as b:
        if (a.shape, a.transform) != (b.shape, b.transform):
            raise ValueError(f"{before} and {after} are not on the same grid")
        rows = row_areas_km2(a.transform, a.height)
        total = np.zeros(CODES * CODES)
        for top, n in _strips(a.height):
            window = Window(0, top, a.width, n)
            pairs = a.read(1, window=window).astype(np.int32) * CODES + b.read(1, window=window)
            weights = np.broadcast_to(rows[top:top + n, None], pairs.shape)
            total += np.bincount(pairs.ravel(), weights.ravel(), minlength=CODES * CODES)
    return total.reshape(CODES, CODES)
