"""Quicklook PNGs of the national layers: decimated from the COG overviews, coloured, RGBA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from matplotlib import colormaps
from PIL import Image
from rasterio.enums import Resampling

from nationmap.files import atomic_path
from nationmap.products.layers import Layer

MAX_SIDE = 1024


def render(data: np.ndarray, layer: Layer) -> np.ndarray:
    """(H, W) layer values -> (H, W, 4) uint8 RGBA; no data transparent."""
    rgba = np.zeros((*data.shape, 4), dtype=np.uint8)
    if layer.categorical:
        lut = np.zeros((256, 4), dtype=np.uint8)
        for value, colour in layer.colormap().items():
            lut[value] = colour
        rgba[:] = lut[data]
    else:
        top = 100.0 if layer.unit == "percent" else max(float(data.max()), 1.0)
        rgba[:] = (colormaps["viridis"](np.clip(data / top, 0, 1)) * 255).astype(np.uint8)
    if layer.nodata is not None:
        rgba[data == layer.nodata] = 0
    return rgba


def write_quicklook(cog: str | Path, dst: str | Path, layer: Layer, max_side: int = MAX_SIDE) -> Path:
    """PNG of ``cog`` with its long side at most ``max_side`` px (atomic write)."""
    dst = Path(dst)
    with rasterio.open(cog) as ds:
        scale = max(ds.width, ds.height) / max_side
        shape = (ds.height, ds.width) if scale <= 1 else (max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        Image.fromarray(render(data, layer), mode="RGBA").save(tmp, format="PNG", optimize=False)
    return dst
