"""Areas of the products in km^2 on the WGS84 ellipsoid: what a map user reports.

A pixel of a north-up grid in degrees (EPSG:4326) is bounded by two meridians and two
parallels, so every pixel of a row has the same area: :func:`row_areas_km2` takes it from
pyproj's geodesic polygon area on the WGS84 ellipsoid, not square degrees: a pixel of 1/12,000
degree is 85.5 m^2 at the equator, 70.3 m^2 at 35 N and 60.8 m^2 at 45 N. A raster's class areas are then its pixel counts weighted by their row's area,
accumulated strip by strip (:func:`class_areas_km2`), and a change between two months is the
same sum over (before, after) pairs of codes (:func:`change_km2`).

The tables a map user quotes (:func:`write_tables`, CSV and Parquet): per cell and for the region,
the km^2 and share of every class of the layers that declare areas (lulc and water classes,
the no-data reasons) and of the mapped area (reason 0) (:class:`AreaRow`), and the class-to-class change from the previous month (:class:`ChangeRow`).
A change table states the area it covers: its ``mapped`` rows give the km^2 mapped in both
months (code 1 -> 1, always present for the region, 0 when the months share no mapped pixel)
and mapped in only one of them (1 -> 0, 0 -> 1) (:func:`cell_coverage_rows`, :func:`read_common_area`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.windows import Window

from nationmap.files import atomic_path
from nationmap.products.layers import Layer

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


# ---------------------------------------------------------------------------- tables

MAPPED = "mapped"  # the pseudo-layer of the area with a class (reason 0; without a reason layer, count > 0)
MAPPED_NAME, UNMAPPED_NAME = "mapped (has a class)", "not mapped"
AREA_COLUMNS = ("region", "month", "scope", "cell", "layer", "code", "class", "area_km2", "share")
CHANGE_COLUMNS = ("region", "month", "previous_month", "scope", "cell", "layer", "from_code", "from_class",
                  "to_code", "to_class", "area_km2")


@dataclass(frozen=True)
class AreaRow:
    """km^2 of one class of one layer over a cell or the region (``scope`` ``cell`` or
    ``region``). ``share``: of the mapped area for lulc and water; of the whole area for the
    ``mapped`` layer (code 1: mapped, 0: not mapped)."""

    scope: str
    cell: str  # the cell's name, or the region's
    layer: str
    code: int
    name: str
    km2: float
    share: float


@dataclass(frozen=True)
class ChangeRow:
    """km^2 whose class of ``layer`` was ``from_code`` in the previous month and ``to_code`` now."""

    scope: str
    cell: str
    layer: str
    from_code: int
    from_name: str
    to_code: int
    to_name: str
    km2: float


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def geometry_km2(geometry) -> float:
    """Area in km^2 on the WGS84 ellipsoid of a shapely geometry in degrees."""
    area, _ = WGS84.geometry_area_perimeter(geometry)
    return abs(area) / 1e6


def cell_area_rows(cell: str, files: dict[str, Path], layers: dict[str, Layer]) -> list[AreaRow]:
    """The area rows of one cell from its COGs (``files``: product -> path; ``count`` required):
    mapped and not mapped (mapped: the no-data reason is 0, or without a reason layer count > 0),
    then every class of each layer that declares areas: per class of the mapped area
    (``classes``), per code of the whole area (``reasons``)."""
    km2 = {p: class_areas_km2(files[p]) for p, layer in layers.items() if layer.areas and p in files}
    count = class_areas_km2(files["count"])
    total = count.sum()
    mapped = next((a[0] for p, a in km2.items() if layers[p].areas == "reasons"), total - count[0])
    rows = [AreaRow("cell", cell, MAPPED, 1, MAPPED_NAME, mapped, _share(mapped, total)),
            AreaRow("cell", cell, MAPPED, 0, UNMAPPED_NAME, total - mapped, _share(total - mapped, total))]
    for product, areas in km2.items():
        whole = total if layers[product].areas == "reasons" else mapped
        rows += [AreaRow("cell", cell, product, c.code, c.name, areas[c.code], _share(areas[c.code], whole))
                 for c in sorted(layers[product].classes, key=lambda c: c.code)]
    return rows


def unmapped_cell_rows(cell: str, inside_km2: float, outside_km2: float, layers: dict[str, Layer]) -> list[AreaRow]:
    """The area rows of a cell without products (no acquisition of the month covered it): all of
    it not mapped, and for a ``reasons`` layer not observed (inside the region) or outside it."""
    from nationmap.products.pixels import NOT_OBSERVED, OUTSIDE

    total = inside_km2 + outside_km2
    rows = [AreaRow("cell", cell, MAPPED, 1, MAPPED_NAME, 0.0, 0.0),
            AreaRow("cell", cell, MAPPED, 0, UNMAPPED_NAME, total, _share(total, total))]
    for product, layer in layers.items():
        if layer.areas == "classes":
            rows += [AreaRow("cell", cell, product, c.code, c.name, 0.0, 0.0) for c in layer.classes]
        elif layer.areas == "reasons":
            km2 = {NOT_OBSERVED: inside_km2, OUTSIDE: outside_km2}
            rows += [AreaRow("cell", cell, product, c.code, c.name, km2.get(c.code, 0.0),
                             _share(km2.get(c.code, 0.0), total)) for c in layer.classes]
    return rows


def region_area_rows(cell_rows: list[AreaRow], region: str, layers: dict[str, Layer]) -> list[AreaRow]:
    """The region's rows: the cells' km^2 summed per layer and class, shares recomputed (of the
    whole area for ``mapped`` and a ``reasons`` layer, of the mapped area otherwise)."""
    sums: dict[tuple[str, int, str], float] = {}
    for r in cell_rows:
        sums[(r.layer, r.code, r.name)] = sums.get((r.layer, r.code, r.name), 0.0) + r.km2
    total = sum(km2 for (layer, _, _), km2 in sums.items() if layer == MAPPED)
    mapped = sums.get((MAPPED, 1, MAPPED_NAME), 0.0)
    of_whole = {MAPPED} | {p for p, layer in layers.items() if layer.areas == "reasons"}
    return [AreaRow("region", region, layer, code, name, km2, _share(km2, total if layer in of_whole else mapped))
            for (layer, code, name), km2 in sums.items()]


def cell_change_rows(cell: str, before: Path, after: Path, layer: Layer) -> list[ChangeRow]:
    """The class-to-class km^2 of ``layer`` between a cell's COG of the previous month and of
    this one (pixels mapped in both months; pairs with no area left out)."""
    km2 = change_km2(before, after)
    classes = sorted(layer.classes, key=lambda c: c.code)
    return [ChangeRow("cell", cell, layer.name, a.code, a.name, b.code, b.name, float(km2[a.code, b.code]))
            for a in classes for b in classes if km2[a.code, b.code] > 0]


def mapped_codes(by_reason: bool) -> np.ndarray:
    """(256,) bool: the codes that mean "mapped" in a ``reason`` COG (0) or a ``count`` COG (> 0)."""
    mapped = np.zeros(CODES, dtype=bool)
    if by_reason:
        mapped[0] = True
    else:
        mapped[1:] = True
    return mapped


def cell_coverage_rows(cell: str, before: Path, after: Path, by_reason: bool = True) -> list[ChangeRow]:
    """The change table's ``mapped`` rows of one cell, from its ``reason`` COGs (``by_reason``;
    a pixel is mapped where its reason is 0) or ``count`` COGs (mapped where count > 0: months
    published before the reason layer) of the previous month and this one: km^2 mapped in both
    months (1 -> 1, always given: the area the class-to-class rows cover), mapped then but not
    now (1 -> 0) and now but not then (0 -> 1)."""
    km2, m = change_km2(before, after), mapped_codes(by_reason)
    both, lost, gained = (float(km2[np.ix_(a, b)].sum()) for a, b in ((m, m), (m, ~m), (~m, m)))
    rows = [ChangeRow("cell", cell, MAPPED, 1, MAPPED_NAME, 1, MAPPED_NAME, both)]
    rows += [ChangeRow("cell", cell, MAPPED, 1, MAPPED_NAME, 0, UNMAPPED_NAME, lost)] if lost > 0 else []
    rows += [ChangeRow("cell", cell, MAPPED, 0, UNMAPPED_NAME, 1, MAPPED_NAME, gained)] if gained > 0 else []
    return rows


def region_change_rows(cell_rows: list[ChangeRow], region: str) -> list[ChangeRow]:
    """The region's rows: the cells' km^2 summed per layer and pair of classes; the area mapped in
    both months is always stated, 0 when no cell was mapped in both."""
    return _region_sums(cell_rows, region, ChangeRow, always=((MAPPED, 1, MAPPED_NAME, 1, MAPPED_NAME),))


def _region_sums(cell_rows: list, region: str, row_type, always: tuple = ()) -> list:
    """Rows of ``row_type`` (scope, cell, *key, km2) for the region: the cells' km^2 summed per key
    (the fields between cell and km2), in first-seen order; the keys ``always`` come first, 0 when
    no cell has them."""
    sums: dict[tuple, float] = dict.fromkeys(always, 0.0)
    for r in cell_rows:
        key = dataclasses.astuple(r)[2:-1]
        sums[key] = sums.get(key, 0.0) + r.km2
    return [row_type("region", region, *key, km2) for key, km2 in sums.items()]


STATUS_COLUMNS = ("region", "month", "previous_month", "scope", "cell", "status", "from_code", "from_class",
                  "to_code", "to_class", "area_km2")


@dataclass(frozen=True)
class StatusChangeRow:
    """km^2 of the change layer's ``status`` (provisional, or confirmed this month) from the LULC
    class ``from_code`` (confirmed before) to ``to_code``."""

    scope: str
    cell: str
    status: str
    from_code: int
    from_name: str
    to_code: int
    to_name: str
    km2: float


def cell_status_rows(cell: str, change: Path, change_classes: Path, lulc: Layer) -> list[StatusChangeRow]:
    """The provisional and confirmed change of one cell from its ``change`` (status) and
    ``change_classes`` (from, to, ...) COGs: km^2 per status and pair of LULC classes."""
    from nationmap.change.rule import CONFIRMED, PROVISIONAL, STATUS_NAMES

    with rasterio.open(change) as st, rasterio.open(change_classes) as cl:
        rows = row_areas_km2(st.transform, st.height)
        total = np.zeros(3 * CODES * CODES)
        for top, n in _strips(st.height):
            window = Window(0, top, st.width, n)
            status, (before, after) = st.read(1, window=window), cl.read((1, 2), window=window)
            sel = (status == PROVISIONAL) | (status == CONFIRMED)
            index = (status[sel].astype(np.int64) * CODES + before[sel]) * CODES + np.minimum(after[sel], CODES - 1)
            weights = np.broadcast_to(rows[top:top + n, None], status.shape)[sel]
            total += np.bincount(index, weights, minlength=total.size)
    km2 = total.reshape(3, CODES, CODES)
    classes = sorted(lulc.classes, key=lambda c: c.code)
    return [StatusChangeRow("cell", cell, STATUS_NAMES[s], a.code, a.name, b.code, b.name, float(km2[s, a.code, b.code]))
            for s in (CONFIRMED, PROVISIONAL) for a in classes for b in classes if km2[s, a.code, b.code] > 0]


def region_status_rows(cell_rows: list[StatusChangeRow], region: str) -> list[StatusChangeRow]:
    """The region's rows: the cells' km^2 summed per status and pair of classes."""
    return _region_sums(cell_rows, region, StatusChangeRow)


def write_tables(rows: list, columns: tuple[str, ...], fixed: dict, stem: Path) -> tuple[Path, Path]:
    """``rows`` (AreaRow or ChangeRow, with the ``fixed`` columns: region, month...) as
    ``stem.csv`` and ``stem.parquet`` (atomic writes); returns both paths."""
    import pandas as pd

    records = [{**fixed, **{k: v for k, v in zip(_ROW_COLUMNS[type(r)], dataclasses.astuple(r))}} for r in rows]
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, parquet = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    return csv, parquet


def read_region_areas(csv: str | Path):
    """The region's rows of an area table written by :func:`write_tables` (``*_areas.csv``), as
    a DataFrame of layer, code, class, area_km2 and share, in the table's order."""
    import pandas as pd

    table = pd.read_csv(csv)
    return table[table.scope == "region"][["layer", "code", "class", "area_km2", "share"]]


@dataclass(frozen=True)
class CommonArea:
    """What a change table covers: km^2 mapped in both months over the region, and the cells
    with any such area."""

    cells: tuple[str, ...]
    km2: float


def read_common_area(csv: str | Path) -> CommonArea:
    """The area a change table written by :func:`write_tables` (``*_change.csv``) covers, from
    its ``mapped`` 1 -> 1 rows (none in a table of an older nationmap: 0 km^2)."""
    import pandas as pd

    table = pd.read_csv(csv)
    both = table[(table.layer == MAPPED) & (table.from_code == 1) & (table.to_code == 1)]
    cells = both[(both.scope == "cell") & (both.area_km2 > 0)].cell
    return CommonArea(tuple(sorted(cells)), float(both[both.scope == "region"].area_km2.sum()))


def read_status_km2(csv: str | Path) -> dict[str, float]:
    """The region's km^2 per status (confirmed, provisional) of a change status table written by
    :func:`write_tables` (``*_change_status.csv``)."""
    import pandas as pd

    table = pd.read_csv(csv)
    return {str(k): float(v) for k, v in table[table.scope == "region"].groupby("status").area_km2.sum().items()}


_ROW_COLUMNS = {
    AreaRow: ("scope", "cell", "layer", "code", "class", "area_km2", "share"),
    ChangeRow: ("scope", "cell", "layer", "from_code", "from_class", "to_code", "to_class", "area_km2"),
    StatusChangeRow: ("scope", "cell", "status", "from_code", "from_class", "to_code", "to_class", "area_km2"),
}
