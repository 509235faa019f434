"""Quicklook maps of the national layers: a picture a person reads, not only pixels.

Each quicklook is a matplotlib figure (Agg, PNG): the layer decimated from the COG overviews
(nearest, so classes stay classes) on its longitude/latitude extent with an aspect of
1 / cos(mid latitude) (equal ground distances east-west and north-south), a graticule with degree
labels, a scale bar (matplotlib-scalebar, in metres along the parallel at mid latitude), the
legend (class colours and names from the layer's colour table) or a colour bar with the unit,
and a title naming product, region, month and the product's version (models and code).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot's backend is chosen: quicklooks are written on headless nodes

import numpy as np
import pyproj
import rasterio
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib_scalebar.scalebar import ScaleBar
from rasterio.enums import Resampling

from nationmap.files import atomic_path
from nationmap.products.layers import Layer

MAX_SIDE = 1024  # pixels of the map's long side, read from the COG's overviews
FIGURE_INCHES, DPI = (10.0, 7.5), 120  # a 1200 x 900 px picture
WGS84 = pyproj.Geod(ellps="WGS84")
NO_DATA_COLOUR, NO_DATA_LABEL = "#8c8c8c", "no data (not mapped)"


def render(data: np.ndarray, layer: Layer) -> np.ndarray:
    """(H, W) layer values -> (H, W, 4) uint8 RGBA; no data transparent."""
    rgba = np.zeros((*data.shape, 4), dtype=np.uint8)
    if layer.categorical:
        lut = np.zeros((256, 4), dtype=np.uint8)
        for value, colour in layer.colormap().items():
            lut[value] = colour
        rgba[:] = lut[data]
    else:
        rgba[:] = (colormaps["viridis"](np.clip(data / _top(data, layer), 0, 1)) * 255).astype(np.uint8)
    if layer.nodata is not None:
        rgba[data == layer.nodata] = 0
    return rgba


def _top(data: np.ndarray, layer: Layer) -> float:
    """The value drawn brightest: the top of the declared range, else the data's maximum."""
    return layer.palette_range[1] if layer.palette_range else max(float(data.max()), 1.0)


def metres_per_degree_east(lat: float) -> float:
    """Length in metres of one degree of longitude along the parallel ``lat`` (WGS84)."""
    _, _, distance = WGS84.inv(0.0, lat, 1.0, lat)
    return distance


def _degrees(value: float, positive: str, negative: str) -> str:
    return f"{abs(value):g}°{positive if value >= 0 else negative}"


def draw_map(ax, data: np.ndarray, layer: Layer, bounds) -> None:
    """The layer on ``ax`` in degrees with graticule and scale bar."""
    left, bottom, right, top = bounds
    mid = (bottom + top) / 2
    ax.imshow(render(data, layer), extent=(left, right, bottom, top), interpolation="nearest")
    ax.set_aspect(1 / math.cos(math.radians(mid)))
    ax.set_facecolor(NO_DATA_COLOUR)  # no data (not mapped) shows through
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10], integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _degrees(v, "E", "W")))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _degrees(v, "N", "S")))
    ax.grid(True, color="#555555", linewidth=0.4, alpha=0.6)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    # metres along the parallel at mid latitude: the bar is horizontal, the aspect already equalises
    ax.add_artist(ScaleBar(metres_per_degree_east(mid), units="m", location="lower left", box_alpha=0.7,
                           rotation="horizontal-only"))


def draw_legend(fig, ax, layer: Layer, data: np.ndarray) -> None:
    """Class colours and names (categorical), or a colour bar with the unit."""
    if layer.categorical:
        handles = [Patch(facecolor=np.array(c.rgb) / 255, edgecolor="#333333", label=c.name)
                   for c in sorted(layer.classes, key=lambda c: c.code)]
        handles.append(Patch(facecolor=NO_DATA_COLOUR, edgecolor="#333333", label=NO_DATA_LABEL))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title=layer.name)
    else:
        image = matplotlib.cm.ScalarMappable(cmap=colormaps["viridis"],
                                             norm=matplotlib.colors.Normalize(0, _top(data, layer)))
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.03, shrink=0.7, label=f"{layer.name} ({layer.unit})")


def quicklook_figure(data: np.ndarray, bounds, layer: Layer, title: str = "", subtitle: str = "") -> Figure:
    """The quicklook of ``data`` ((H, W) layer values over ``bounds``: left, bottom, right, top in
    degrees): map, graticule, scale bar, legend, title."""
    fig = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    ax = fig.add_axes((0.08, 0.08, 0.66, 0.80))
    draw_map(ax, data, layer, bounds)
    draw_legend(fig, ax, layer, data)
    fig.suptitle(title or layer.description, x=0.08, ha="left", fontsize=14, fontweight="bold")
    if subtitle:
        fig.text(0.08, 0.905, subtitle, ha="left", fontsize=9, color="#444444")
    return fig


def write_quicklook(cog: str | Path, dst: str | Path, layer: Layer, title: str = "", subtitle: str = "",
                    max_side: int = MAX_SIDE) -> Path:
    """A PNG map of ``cog`` (``FIGURE_INCHES`` at ``DPI``, :func:`quicklook_figure`), its data read
    at most ``max_side`` px on the long side (atomic write)."""
    dst = Path(dst)
    with rasterio.open(cog) as ds:
        scale = max(ds.width, ds.height) / max_side
        shape = (ds.height, ds.width) if scale <= 1 else (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        bounds = tuple(ds.bounds)
    fig = quicklook_figure(data, bounds, layer, title, subtitle)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return dst
