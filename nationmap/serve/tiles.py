"""Map tiles, legends and pixel values of the national COGs, through rio-tiler.

Tiles are Web Mercator (rio-tiler's default WebMercatorQuad, what Leaflet asks for) read from
the COG's overviews with nearest resampling, so a class stays a class at every zoom. A
categorical layer is drawn with its own colour table (no data transparent); a continuous one
(confidence, count) with viridis over ``CONTINUOUS_RANGES``. Legends come from the COG itself:
the colour table and the class names in its band metadata (``CLASS_<code>``).

The reads here are blocking (GDAL) and run in the server's worker threads, never in its event
loop. Each thread keeps its opened datasets (``READERS_PER_THREAD``, least recently used first
out), keyed by the file's version (inode, size, times), so a tile costs a read and no open, and a
file replaced on disk is opened afresh. Coordinates are checked against the tile matrix
(:func:`tile_in_matrix`) and the COG's bounds (:func:`overlaps`) before any read.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rio_tiler.colormap import cmap
from rio_tiler.errors import PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader

from nationmap.errors import first_line

CONTINUOUS_RANGES = {"confidence": (0.0, 100.0), "count": (0.0, 10.0)}  # drawn from dark to bright
PALETTE = "viridis"
TMS = morecantile.tms.get("WebMercatorQuad")
MAX_ZOOM = 30  # beyond, a tile is a fraction of a millimetre: nothing to draw
READERS_PER_THREAD = 16
READ_ERRORS = (RasterioError, CPLE_BaseError, OSError, ValueError)  # what GDAL raises on a damaged file

Bounds = tuple[float, float, float, float]  # west, south, east, north (degrees)


@dataclass(frozen=True)
class LegendEntry:
    value: int
    name: str
    colour: str  # "#rrggbb"


@dataclass(frozen=True)
class Legend:
    """How a product is drawn: its classes (categorical) or value range and unit (continuous)."""

    product: str
    description: str
    classes: tuple[LegendEntry, ...]
    range: tuple[float, float] | None
    unit: str | None
    colours: tuple[str, ...]  # the continuous palette, low to high (a few stops)


@dataclass(frozen=True)
class CogInfo:
    """What the server needs to know of a national COG before serving it: its bounds in degrees and
    legend, or the ``problem`` that keeps it from being served (truncated, not a raster, ...)."""

    bounds: Bounds | None
    legend: Legend | None
    problem: str | None = None


class RasterReadError(Exception):
    """A COG that could be opened failed while being read (damaged after it was indexed)."""


def file_version(path: str | Path) -> tuple[int, ...]:
    """(inode, size, modification and change times): a file replaced or rewritten gets a new one."""
    stat = Path(path).stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def sidecars(path: Path) -> tuple[Path, ...]:
    """The files GDAL may open beside a GeoTIFF: PAM metadata, external overviews and mask."""
    return tuple(path.with_name(path.name + suffix) for suffix in (".aux.xml", ".ovr", ".msk"))


def tile_in_matrix(z: int, x: int, y: int) -> bool:
    """Whether (z, x, y) is a tile of WebMercatorQuad at a zoom the server draws (0..MAX_ZOOM)."""
    return 0 <= z <= MAX_ZOOM and 0 <= x < (1 << z) and 0 <= y < (1 << z)


def tile_bounds(z: int, x: int, y: int) -> Bounds:
    """Bounds in degrees of a tile :func:`tile_in_matrix` accepted."""
    return tuple(TMS.bounds(x, y, z))


def overlaps(a: Bounds, b: Bounds) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def contains(bounds: Bounds, lon: float, lat: float) -> bool:
    return bounds[0] <= lon <= bounds[2] and bounds[1] <= lat <= bounds[3]


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb[:3])


def legend(product: str, cog: Path) -> Legend:
    """The legend of a national COG, from its colour table and band metadata; read once per
    version of the file (path, inode, size, modification and change times)."""
    return _legend(product, str(cog), file_version(cog))


@lru_cache(maxsize=512)
def _legend(product: str, cog: str, version: tuple[int, ...]) -> Legend:
    with rasterio.open(cog) as ds:
        tags = ds.tags(1)
        try:
            table = ds.colormap(1)
        except ValueError:  # no colour table: a continuous layer
            table = None
    description = tags.get("DESCRIPTION", product)
    if table is not None:
        names = {int(k.removeprefix("CLASS_")): v for k, v in tags.items() if k.startswith("CLASS_")}
        classes = tuple(LegendEntry(code, name, _hex(table[code])) for code, name in sorted(names.items()))
        return Legend(product, description, classes, None, None, ())
    stops = cmap.get(PALETTE)
    colours = tuple(_hex(stops[i]) for i in np.linspace(0, 255, 6).astype(int))
    return Legend(product, description, (), CONTINUOUS_RANGES.get(product, (0.0, 255.0)), tags.get("UNIT"), colours)


@lru_cache(maxsize=2048)
def inspect_cog(product: str, path: Path, version: tuple[int, ...]) -> CogInfo:
    """Open ``path`` once per version of the file: its bounds and legend, or why it cannot be served."""
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None or ds.count < 1:
                return CogInfo(None, None, "not a georeferenced raster")
            end = _data_end(ds)
            if end > version[1]:
                return CogInfo(None, None, f"truncated ({version[1]:,} bytes, its tiles need {end:,})")
            bounds = tuple(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
        return CogInfo(bounds, _legend(product, str(path), version))
    except READ_ERRORS as exc:
        return CogInfo(None, None, f"not a raster GDAL can read ({first_line(exc)})")


def _data_end(ds) -> int:
    """Where the last tile of band 1 at full resolution ends in a GeoTIFF (0 for other formats).
    A COG writes those tiles last, row by row, so a file cut short loses them first; absent tiles
    of a sparse COG have offset 0."""
    if ds.driver != "GTiff":
        return 0
    width, height = ds.block_shapes[0][1], ds.block_shapes[0][0]
    cols, rows = math.ceil(ds.width / width), math.ceil(ds.height / height)
    for index in reversed(range(cols * rows)):
        row, col = divmod(index, cols)
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
        if offset and int(offset):
            return int(offset) + int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1) or 0)
    return 0


_local = threading.local()


def _reader(path: Path, version: tuple[int, ...]) -> Reader:
    """This thread's open dataset of ``path`` at ``version`` (opened on first use)."""
    readers: OrderedDict | None = getattr(_local, "readers", None)
    if readers is None:
        readers = _local.readers = OrderedDict()
    key = (str(path), version)
    if key in readers:
        readers.move_to_end(key)
        return readers[key]
    readers[key] = Reader(str(path))
    while len(readers) > READERS_PER_THREAD:
        readers.popitem(last=False)[1].close()
    return readers[key]


def _forget(path: Path, version: tuple[int, ...]) -> None:
    reader = getattr(_local, "readers", {}).pop((str(path), version), None)
    if reader is not None:
        reader.close()


def render_tile(product: str, cog: Path, version: tuple[int, ...], x: int, y: int, z: int) -> bytes | None:
    """PNG of tile (``z``, ``x``, ``y``) of a national COG, or None where the COG has no data.
    RasterReadError if the file cannot be read."""
    try:
        src = _reader(cog, version)
        try:
            image = src.tile(x, y, z, resampling_method="nearest")
        except TileOutsideBounds:
            return None
        if src.colormap:
            return image.render(img_format="PNG", colormap=src.colormap)
        low, high = CONTINUOUS_RANGES.get(product, (0.0, 255.0))
        image.rescale(in_range=((low, high),), out_range=((0, 255),))
        return image.render(img_format="PNG", colormap=cmap.get(PALETTE))
    except READ_ERRORS as exc:
        _forget(cog, version)
        raise RasterReadError(first_line(exc)) from None


def pixel_value(cog: Path, version: tuple[int, ...], lon: float, lat: float) -> int | None:
    """The value of band 1 of ``cog`` at (``lon``, ``lat``) degrees; None outside it or at no data.
    RasterReadError if the file cannot be read."""
    try:
        point = _reader(cog, version).point(lon, lat)
    except PointOutsideBounds:
        return None
    except READ_ERRORS as exc:
        _forget(cog, version)
        raise RasterReadError(first_line(exc)) from None
    if bool(np.ma.getmaskarray(point.array)[0]):
        return None
    return int(point.array[0])
