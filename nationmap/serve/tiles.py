"""Map tiles, legends and pixel values of the national COGs.

Tiles are Web Mercator (WebMercatorQuad, what Leaflet asks for) read from the COG's overviews
with nearest resampling, so a class stays a class at every zoom. A categorical layer is drawn
with its own colour table (no data transparent); a continuous one with viridis over the range its
declaration gives (:mod:`nationmap.products.layers`, ``CONTINUOUS_RANGES``). Legends come from the COG itself: the colour table and the
class names in its band metadata (``CLASS_<code>``), and the names of its bands (their descriptions:
``p_<class>`` of the class probabilities).

Every national file is opened by :func:`open_raster`, with the one GDAL driver its suffix names
(GTiff for ``.tif``, VRT for ``.vrt``): GDAL would otherwise pick the driver from the content, and
open a VRT saved under a ``.tif`` name, with whatever files it names. What a VRT may name, and
the sidecars beside a raster, are checked before it is indexed (:mod:`nationmap.serve.safety`).

The national COGs are north-up EPSG:4326, and Web Mercator is separable in longitude and
latitude, so a tile is cut without a warp: one source column per tile column, one source row per
tile row, from the coarsest overview still as fine as the tile (what GDAL's warp picks; the pixels
are rio-tiler's, checked tile by tile), and written as a paletted PNG. A COG in another CRS goes
through rio-tiler (GDAL's warp).

The reads here are blocking (GDAL) and run in the server's worker threads, never in its event
loop. Each thread keeps its opened datasets (``READERS_PER_THREAD`` files, least recently used
first out), keyed by the file's version (inode, size, times), so a tile costs a read and no open,
and a file replaced on disk is opened afresh. Coordinates are checked against the tile matrix
(:func:`tile_in_matrix`) and the COG's bounds (:func:`overlaps`) before any read.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from PIL import Image
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_tiler.colormap import cmap
from rio_tiler.errors import PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader

from nationmap.errors import first_line
from nationmap.products.layers import declared_layers

CONTINUOUS_RANGES = {name: layer.palette_range for name, layer in declared_layers().items()
                     if layer.palette_range}  # the declared ranges, drawn from dark to bright
PALETTE = "viridis"
TMS = morecantile.tms.get("WebMercatorQuad")
MAX_ZOOM = 30  # beyond, a tile is a fraction of a millimetre: nothing to draw
READERS_PER_THREAD = 16
READ_ERRORS = (RasterioError, CPLE_BaseError, OSError, ValueError)  # what GDAL raises on a damaged file
DRIVERS = {".tif": "GTiff", ".vrt": "VRT"}  # the one GDAL driver that opens a national file, by suffix
FORMATS = {"GTiff": "GeoTIFF", "VRT": "VRT"}

Bounds = tuple[float, float, float, float]  # west, south, east, north (degrees)


@dataclass(frozen=True)
class LegendEntry:
    value: int
    name: str
    colour: str  # "#rrggbb"


@dataclass(frozen=True)
class Legend:
    """How a product is drawn: its classes (categorical) or value range and unit (continuous), and
    the names of its bands (their descriptions, "" where a band has none)."""

    product: str
    description: str
    classes: tuple[LegendEntry, ...]
    range: tuple[float, float] | None
    unit: str | None
    colours: tuple[str, ...]  # the continuous palette, low to high (a few stops)
    bands: tuple[str, ...] = ()


@dataclass(frozen=True)
class CogInfo:
    """What the server needs to know of a national COG before serving it: its bounds in degrees and
    legend, or the ``problem`` that keeps it from being served (truncated, not a raster, ...)."""

    bounds: Bounds | None
    legend: Legend | None
    problem: str | None = None


class RasterReadError(Exception):
    """A COG that could be opened failed while being read (damaged after it was indexed)."""


def open_raster(path: str | Path, **options):
    """``path`` opened read-only by the GDAL driver its suffix names (:data:`DRIVERS`) and no other
    (``options``: rasterio's, e.g. ``overview_level``). RasterioIOError, one line, if the suffix is
    not one of them or the file is not of that format (a VRT saved as ``.tif``)."""
    name = Path(path).name
    driver = DRIVERS.get(Path(path).suffix.lower())
    if driver is None:
        raise RasterioIOError(f"{name} is neither a GeoTIFF (.tif) nor a VRT (.vrt)")
    try:
        dataset = rasterio.open(path, driver=driver, **options)
    except RasterioIOError as exc:
        raise RasterioIOError(f"{name} is not a {FORMATS[driver]} GDAL can read ({first_line(exc)})") from None
    if dataset.driver != driver:  # GDAL honours the list of drivers: never reached
        dataset.close()
        raise RasterioIOError(f"{name} opened as {dataset.driver}, not {driver}")
    return dataset


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
    return "#" + "".join(f"{int(v):02x}" for v in rgb[:3])


def legend(product: str, cog: Path) -> Legend:
    """The legend of a national COG, from its colour table and band metadata; read once per
    version of the file (path, inode, size, modification and change times)."""
    return _legend(product, str(cog), file_version(cog))


@lru_cache(maxsize=512)
def _legend(product: str, cog: str, version: tuple[int, ...]) -> Legend:
    with open_raster(cog) as ds:
        tags = ds.tags(1)
        bands = tuple(d or "" for d in ds.descriptions)
        try:
            table = ds.colormap(1)
        except ValueError:  # no colour table: a continuous layer
            table = None
    description = tags.get("DESCRIPTION", product)
    if table is not None:
        names = {int(k.removeprefix("CLASS_")): v for k, v in tags.items() if k.startswith("CLASS_")}
        classes = tuple(LegendEntry(code, name, _hex(table[code])) for code, name in sorted(names.items()))
        return Legend(product, description, classes, None, None, (), bands)
    stops = cmap.get(PALETTE)
    colours = tuple(_hex(stops[i]) for i in np.linspace(0, 255, 6).astype(int))
    return Legend(product, description, (), CONTINUOUS_RANGES.get(product, (0.0, 255.0)), tags.get("UNIT"), colours,
                  bands)


@lru_cache(maxsize=2048)
def inspect_cog(product: str, path: Path, version: tuple[int, ...]) -> CogInfo:
    """Open ``path`` (:func:`open_raster`) once per version of the file: its bounds and legend, or
    why it cannot be served."""
    try:
        with open_raster(path) as ds:
            if ds.crs is None or ds.count < 1:
                return CogInfo(None, None, "not a georeferenced raster")
            end = _data_end(ds)
            if end > version[1]:
                return CogInfo(None, None, f"truncated ({version[1]:,} bytes, its tiles need {end:,})")
            bounds = tuple(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
        legend_read = _legend(product, str(path), version)
    except READ_ERRORS as exc:
        return CogInfo(None, None, f"cannot be read ({first_line(exc)})")
    except (KeyError, IndexError) as exc:  # a class named in the metadata without a colour
        return CogInfo(None, None, f"its legend cannot be read ({type(exc).__name__}: {first_line(exc)})")
    return CogInfo(bounds, legend_read)


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


@dataclass
class _OpenCog:
    """One thread's open handles of a COG version: the dataset at full resolution and at each
    overview (finest first), its colour table, and rio-tiler's reader (over the dataset at full
    resolution, :meth:`reader_of`) for what is not separable and for points."""

    levels: list
    colormap: dict | None
    separable: bool  # north-up EPSG:4326 uint8: a Web Mercator tile is cut without a warp
    reader: Reader | None = None

    def reader_of(self) -> Reader:
        """rio-tiler's reader of the dataset already opened (it opens no file of its own)."""
        if self.reader is None:
            self.reader = Reader(self.levels[0].name, dataset=self.levels[0])
        return self.reader

    def close(self) -> None:
        if self.reader is not None:  # first: what it wrapped around the dataset (a WarpedVRT)
            self.reader.close()
        for ds in self.levels:
            ds.close()


def _open(path: Path, version: tuple[int, ...]) -> _OpenCog:
    """This thread's open handles of ``path`` at ``version`` (opened on first use)."""
    cogs: OrderedDict | None = getattr(_local, "cogs", None)
    if cogs is None:
        cogs = _local.cogs = OrderedDict()
    key = (str(path), version)
    if key in cogs:
        cogs.move_to_end(key)
        return cogs[key]
    full = open_raster(path)
    try:
        levels = [full] + [open_raster(path, overview_level=i) for i in range(len(full.overviews(1)))]
        try:
            colormap = full.colormap(1)
        except ValueError:  # no colour table: a continuous layer
            colormap = None
    except BaseException:
        full.close()
        raise
    t = full.transform
    separable = (full.crs is not None and full.crs.to_epsg() == 4326 and t.b == 0 and t.d == 0 and t.e < 0
                 and full.dtypes[0] == "uint8")
    cogs[key] = _OpenCog(levels, colormap, separable)
    while len(cogs) > READERS_PER_THREAD:
        cogs.popitem(last=False)[1].close()
    return cogs[key]


def _forget(path: Path, version: tuple[int, ...]) -> None:
    cog = getattr(_local, "cogs", {}).pop((str(path), version), None)
    if cog is not None:
        cog.close()


def _tile_pixels(levels: list, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, outside) of tile (z, x, y) from a north-up EPSG:4326 raster, nearest resampling, or
    None where it holds no pixel. Web Mercator is separable: a tile column is one longitude and a
    tile row one latitude, so each picks one source column or row of the coarsest level still as
    fine as the tile's pixels (GDAL's choice of overview, without the warp)."""
    pixel = 360.0 / (256 << z)
    ds = next((d for d in reversed(levels) if d.transform.a <= pixel * 1.2), levels[0])
    t = ds.transform
    centres = (np.arange(256) + 0.5) / 256
    lon = (x + centres) / (1 << z) * 360.0 - 180.0
    lat = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * (y + centres) / (1 << z)))))
    cols = np.floor((lon - t.c) / t.a).astype(np.int64)
    rows = np.floor((lat - t.f) / t.e).astype(np.int64)
    in_cols, in_rows = (cols >= 0) & (cols < ds.width), (rows >= 0) & (rows < ds.height)
    if not in_cols.any() or not in_rows.any():
        return None
    c0, c1, r0, r1 = cols[in_cols].min(), cols[in_cols].max(), rows[in_rows].min(), rows[in_rows].max()
    block = ds.read(1, window=Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1))
    values = block[np.ix_(np.where(in_rows, rows - r0, 0), np.where(in_cols, cols - c0, 0))]
    outside = ~(in_rows[:, None] & in_cols[None, :])
    if ds.nodata is not None:
        outside |= values == ds.nodata
    return None if outside.all() else (values, outside)


@lru_cache(maxsize=64)
def _palette(product: str, colormap: tuple | None) -> tuple[np.ndarray, bytes, bytes]:
    """(lookup table value -> palette index, RGB palette, alpha per index) of a layer; the last
    index with alpha 0 is where pixels outside the raster go."""
    rgba = np.zeros((256, 4), dtype=np.uint8)
    if colormap is not None:  # categorical: a value is its own index
        for value, colour in colormap:
            rgba[value] = colour
        lut = np.arange(256, dtype=np.uint8)
    else:  # continuous: CONTINUOUS_RANGES over indices 0..254 of the palette, 255 transparent
        stops = cmap.get(PALETTE)
        rgba[:255] = [stops[round(i * 255 / 254)] for i in range(255)]
        low, high = CONTINUOUS_RANGES.get(product, (0.0, 255.0))
        lut = np.clip(np.round((np.arange(256) - low) * 254 / (high - low)), 0, 254).astype(np.uint8)
    clear = np.flatnonzero(rgba[:, 3] == 0)
    rgba[clear[-1] if len(clear) else 255, 3] = 0
    lut = np.append(lut, clear[-1] if len(clear) else 255).astype(np.uint8)  # lut[256]: outside
    return lut, rgba[:, :3].tobytes(), rgba[:, 3].tobytes()


def _png(product: str, cog: _OpenCog, values: np.ndarray, outside: np.ndarray) -> bytes:
    """A paletted PNG (8 bits a pixel, transparency per palette entry) of a tile's values."""
    table = tuple(sorted(cog.colormap.items())) if cog.colormap else None
    lut, palette, alpha = _palette(product, table)
    indices = lut[np.where(outside, 256, values.astype(np.int64))]
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), np.ascontiguousarray(indices).tobytes())
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=alpha, compress_level=1)
    return buffer.getvalue()


def _render_warped(product: str, cog: _OpenCog, x: int, y: int, z: int) -> bytes | None:
    """A tile through rio-tiler (GDAL's warp): for a COG in another CRS or rotated."""
    reader = cog.reader_of()
    try:
        image = reader.tile(x, y, z, resampling_method="nearest")
    except TileOutsideBounds:
        return None
    if reader.colormap:
        return image.render(img_format="PNG", colormap=reader.colormap)
    low, high = CONTINUOUS_RANGES.get(product, (0.0, 255.0))
    image.rescale(in_range=((low, high),), out_range=((0, 255),))
    return image.render(img_format="PNG", colormap=cmap.get(PALETTE))


def render_tile(product: str, cog: Path, version: tuple[int, ...], x: int, y: int, z: int) -> bytes | None:
    """PNG of tile (``z``, ``x``, ``y``) of a national COG, or None where the COG has no data.
    RasterReadError if the file cannot be read."""
    try:
        opened = _open(cog, version)
        if not opened.separable:
            return _render_warped(product, opened, x, y, z)
        pixels = _tile_pixels(opened.levels, z, x, y)
        return None if pixels is None else _png(product, opened, *pixels)
    except READ_ERRORS as exc:
        _forget(cog, version)
        raise RasterReadError(first_line(exc)) from None


def pixel_value(cog: Path, version: tuple[int, ...], lon: float, lat: float) -> int | list[int] | None:
    """The value of ``cog`` at (``lon``, ``lat``) degrees (a list, one per band, for a multi-band
    raster); None outside it or at no data. RasterReadError if the file cannot be read."""
    try:
        point = _open(cog, version).reader_of().point(lon, lat)
    except PointOutsideBounds:
        return None
    except READ_ERRORS as exc:
        _forget(cog, version)
        raise RasterReadError(first_line(exc)) from None
    if bool(np.ma.getmaskarray(point.array)[0]):
        return None
    values = [int(v) for v in point.array]
    return values[0] if len(values) == 1 else values
