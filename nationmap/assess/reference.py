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
import rasterio

from nationmap.assess.estimators import OUTSIDE
from nationmap.assess.design import values_at
from nationmap.assess.samples import OUTSIDE_LABEL, point_coordinates, read_design, read_points, write_points
from nationmap.data.grid import Cell
from nationmap.data.lulc import DEFAULT_TABLE, LabelScheme, check_lulc_tile, find_lulc_tiles, load_class_table
from nationmap.errors import InputError

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
        values_at(ds, lons, lats, out)
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


def fill_reference(sample: str | Path, reference_dir: str | Path, table: str = DEFAULT_TABLE,
                   overwrite: bool = False) -> ReferenceOutcome:
    """Fill the ``reference`` column of ``sample`` (its CSV or GeoPackage, rewritten whole) from
    the tiles under ``reference_dir``."""
    sample = Path(sample)
    design = read_design(sample)
    points = read_points(sample)
    if "reference" not in points.columns:
        raise InputError(f"{sample}: missing column reference")
    classes = load_class_table(table)
    scheme = classes.scheme(SCHEMES.get(design.product, design.product))
    tiles = find_lulc_tiles(reference_dir)
    if not tiles:
        raise InputError(f"{reference_dir}: no reference tile (LC_<cell>.tif)")
    lons, lats = point_coordinates(points, str(sample))
    found = reference_classes(lons, lats, tiles, scheme, classes.codes, classes.nodata)
    had = points["reference"].astype(str).str.strip() != ""
    write = (found != MISSING) & (overwrite | ~had)
    points.loc[write, "reference"] = [OUTSIDE_LABEL if f == OUTSIDE else str(f) for f in found[write]]
    write_points(sample, points)
    return ReferenceOutcome(sample, int(write.sum()), int((write & (found == OUTSIDE)).sum()),
                            int(((found == MISSING) & ~had).sum()), int((had & ~write).sum()))
