"""Map tiles, legends and pixel values of the national COGs, through rio-tiler.

Tiles are Web Mercator (rio-tiler's default WebMercatorQuad, what Leaflet asks for) read from
the COG's overviews with nearest resampling, so a class stays a class at every zoom. A
categorical layer is drawn with its own colour table (no data transparent); a continuous one
(confidence, count) with viridis over ``CONTINUOUS_RANGES``. Legends come from the COG itself:
the colour table and the class names in its band metadata (``CLASS_<code>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from rio_tiler.colormap import cmap
from rio_tiler.errors import PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader

CONTINUOUS_RANGES = {"confidence": (0.0, 100.0), "count": (0.0, 10.0)}  # drawn from dark to bright
PALETTE = "viridis"


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


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb[:3])


def legend(product: str, cog: Path) -> Legend:
    """The legend of a national COG, from its colour table and band metadata; read once per
    version of the file (path, inode, size, modification and change times), as every page load
    and click asks."""
    stat = Path(cog).stat()
    return _legend(product, str(cog), (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


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


def render_tile(product: str, cog: Path, x: int, y: int, z: int) -> bytes | None:
    """PNG of tile (``z``, ``x``, ``y``) of a national COG, or None where the COG has no data."""
    with Reader(str(cog)) as src:
        try:
            image = src.tile(x, y, z, resampling_method="nearest")
        except TileOutsideBounds:
            return None
        if src.colormap:
            return image.render(img_format="PNG", colormap=src.colormap)
        low, high = CONTINUOUS_RANGES.get(product, (0.0, 255.0))
        image.rescale(in_range=((low, high),), out_range=((0, 255),))
        return image.render(img_format="PNG", colormap=cmap.get(PALETTE))


def pixel_value(cog: Path, lon: float, lat: float) -> int | None:
    """The value of band 1 of ``cog`` at (``lon``, ``lat``) degrees; None outside it or at no data."""
    with Reader(str(cog)) as src:
        try:
            point = src.point(lon, lat)
        except PointOutsideBounds:
            return None
    if bool(np.ma.getmaskarray(point.array)[0]):
        return None
    return int(point.array[0])
