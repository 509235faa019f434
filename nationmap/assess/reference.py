"""The reference class of sample points from reference LULC tiles (JAXA's ``LC_N36E140.tif``, or the
synthetic world's truth in the same form), where a tile covers them.

A point reads the tile pixel holding its centre; the tile's code is remapped to the map's scheme
(``lulc9`` for an LULC map, ``water`` for a water map) by the class table. On the tile's no-data
code the reference has no class: the point is ``outside`` its domain (JAXA's tiles and the
synthetic truth leave the open sea as no data), which the estimators take as such. A point with
no tile, or on a code the table does not know, keeps an empty reference (a person labels it, or
the estimate leaves it out with ``--drop-unlabelled``). A reference already in the file (a
person's label) is kept unless ``overwrite``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from nationmap.assess.estimators import OUTSIDE
from nationmap.assess.samples import OUTSIDE_LABEL, read_design, read_points, write_geopackage
from nationmap.data.grid import Cell
from nationmap.data.lulc import DEFAULT_TABLE, LabelScheme, check_lulc_tile, find_lulc_tiles, load_class_table
from nationmap.errors import InputError
from nationmap.files import atomic_path

SCHEMES = {"lulc": "lulc9", "water": "water"}  # the label scheme of each map product


@dataclass(frozen=True)
class ReferenceOutcome:
    """What filling gave: points labelled now (``outside`` of them outside the reference's domain),
    points left without a reference, labels kept."""

    path: Path
    labelled: int
    outside: int
    missing: int
    kept: int


def _tile_codes(tile: Path, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    """(n,) the tile's code at each point (-1 outside the tile)."""
    check_lulc_tile(tile)
    out = np.full(len(lons), -1, dtype=int)
    with rasterio.open(tile) as ds:
        for i, (lon, lat) in enumerate(zip(lons, lats)):
            row, col = ds.index(lon, lat)
            if 0 <= row < ds.height and 0 <= col < ds.width:
                out[i] = int(ds.read(1, window=Window(col, row, 1, 1))[0, 0])
    return out


MISSING = -2  # no tile covers the point, or its code is not the class table's


def reference_classes(lons: np.ndarray, lats: np.ndarray, tiles: dict[str, Path], scheme: LabelScheme,
                      known: list[int], nodata: int) -> np.ndarray:
    """(n,) the scheme's class at each point (lon, lat in degrees); OUTSIDE where the tile holds
    its no-data code ``nodata``; MISSING where no tile covers it or the code is unknown."""
    cells = [Cell(math.floor(lat), math.floor(lon)).name for lon, lat in zip(lons, lats)]
    out = np.full(len(lons), MISSING, dtype=int)
    for cell in sorted(set(cells)):
        if cell not in tiles:
            continue
        mine = np.array([c == cell for c in cells])
        codes = _tile_codes(tiles[cell], lons[mine], lats[mine])
        classes = scheme.lut.astype(int)[np.clip(codes, 0, 255)]
        out[mine] = np.where(codes == nodata, OUTSIDE,
                             np.where(np.isin(codes, known) & (classes != scheme.nodata), classes, MISSING))
    return out


def _write_points(path: Path, points: pd.DataFrame) -> None:
    if path.suffix.lower() == ".gpkg":
        write_geopackage(path, points)
        return
    with atomic_path(path) as tmp:
        points.to_csv(tmp, index=False)


def fill_reference(sample: str | Path, reference_dir: str | Path, table: str = DEFAULT_TABLE,
                   overwrite: bool = False) -> ReferenceOutcome:
    """Fill the ``reference`` column of ``sample`` (its CSV or GeoPackage, rewritten whole) from
    the tiles under ``reference_dir``."""
    sample = Path(sample)
    design = read_design(sample)
    points = read_points(sample)
    for column in ("lon", "lat", "reference"):
        if column not in points.columns:
            raise InputError(f"{sample}: missing column {column}")
    classes = load_class_table(table)
    scheme = classes.scheme(SCHEMES.get(design.product, design.product))
    tiles = find_lulc_tiles(reference_dir)
    if not tiles:
        raise InputError(f"{reference_dir}: no reference tile (LC_<cell>.tif)")
    lons = pd.to_numeric(points["lon"], errors="coerce").to_numpy(float)
    lats = pd.to_numeric(points["lat"], errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(lons) & np.isfinite(lats) & (np.abs(lats) < 90) & (np.abs(lons) <= 180))
    if bad.any():
        raise InputError(f"{sample} point {points['id'].iloc[int(np.argmax(bad))] if 'id' in points else ''}: "
                         "lon and lat must be degrees (-180..180, -90..90)")
    found = reference_classes(lons, lats, tiles, scheme, classes.codes, classes.nodata)
    had = points["reference"].astype(str).str.strip() != ""
    write = (found != MISSING) & (overwrite | ~had)
    points.loc[write, "reference"] = [OUTSIDE_LABEL if f == OUTSIDE else str(f) for f in found[write]]
    _write_points(sample, points)
    return ReferenceOutcome(sample, int(write.sum()), int((write & (found == OUTSIDE)).sum()),
                            int(((found == MISSING) & ~had).sum()), int((had & ~write).sum()))
