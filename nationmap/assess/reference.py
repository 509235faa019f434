"""The reference class of sample points from reference LULC tiles (JAXA's ``LC_N36E140.tif``, or the
synthetic world's truth in the same form), where a tile covers them.

A point reads the tile pixel holding its centre; the tile's code is remapped to the map's scheme
(``lulc9`` for an LULC map, ``water`` for a water map) by the class table. A point with no tile,
on the tile's no-data or on a code the table does not know keeps an empty reference (a person
labels it, or the estimate leaves it out with ``--drop-unlabelled``). A reference already in the
file (a person's label) is kept unless ``overwrite``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from nationmap.assess.samples import read_design, read_points, write_geopackage
from nationmap.data.grid import Cell
from nationmap.data.lulc import DEFAULT_TABLE, LabelScheme, check_lulc_tile, find_lulc_tiles, load_class_table
from nationmap.errors import InputError
from nationmap.files import atomic_path

SCHEMES = {"lulc": "lulc9", "water": "water"}  # the label scheme of each map product


@dataclass(frozen=True)
class ReferenceOutcome:
    """What filling gave: points labelled now, points without a reference, labels kept."""

    path: Path
    labelled: int
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


def reference_classes(lons: np.ndarray, lats: np.ndarray, tiles: dict[str, Path], scheme: LabelScheme,
                      known: list[int]) -> np.ndarray:
    """(n,) the scheme's class at each point (lon, lat in degrees); -1 where no tile covers it
    or the tile holds no data or an unknown code there."""
    cells = [Cell(math.floor(lat), math.floor(lon)).name for lon, lat in zip(lons, lats)]
    out = np.full(len(lons), -1, dtype=int)
    for cell in sorted(set(cells)):
        if cell not in tiles:
            continue
        mine = np.array([c == cell for c in cells])
        codes = _tile_codes(tiles[cell], lons[mine], lats[mine])
        usable = (codes >= 0) & np.isin(codes, known)
        mapped = np.where(usable, scheme.lut[np.clip(codes, 0, 255)], -1).astype(int)
        out[mine] = np.where(mapped == scheme.nodata, -1, mapped)
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
    if not (np.isfinite(lons) & np.isfinite(lats)).all():
        raise InputError(f"{sample}: every point needs a numeric lon and lat")
    found = reference_classes(lons, lats, tiles, scheme, classes.codes)
    had = points["reference"].astype(str).str.strip() != ""
    write = (found >= 0) & (overwrite | ~had)
    points.loc[write, "reference"] = found[write].astype(str)
    _write_points(sample, points)
    return ReferenceOutcome(sample, int(write.sum()), int(((found < 0) & ~had).sum()), int((had & ~write).sum()))
