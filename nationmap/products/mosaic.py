"""The national layer: one COG per product and month over all cells of a region.

Cell COGs are opened lazily with rioxarray (dask chunks of one COG tile row band) and laid out
on the region's grid with ``dask.array.block``: cells share the national grid, so a cell is an
exact block of the mosaic at integer offsets and nothing is resampled. Cells without a product
(no data that month) become no-data blocks. The mosaic is written chunk by chunk
(``dask.array.store``) into a staging raster and copied into a COG with overviews by GDAL's COG
driver. The staging raster is held in memory up to ``cog.MEMORY_STAGING_BYTES`` (a few cells);
beyond that it is a tiled GeoTIFF on disk, so memory is bounded by the chunk size, not the region.
"""

from __future__ import annotations

import threading
from pathlib import Path

import dask.array as da
import numpy as np
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.windows import Window

from nationmap.data.grid import Cell
from nationmap.products.cog import discard_staging, open_staging, part_path, translate_to_cog
from nationmap.products.layers import Layer

CHUNK = 2048


def mosaic_grid(cells: list[Cell], pixels_per_degree: int) -> tuple[Affine, int, int, int, int]:
    """(transform, width, height, lon0, lat1) of the smallest cell-aligned grid over ``cells``."""
    lon0, lon1 = min(c.lon for c in cells), max(c.lon for c in cells) + 1
    lat0, lat1 = min(c.lat for c in cells), max(c.lat for c in cells) + 1
    n = pixels_per_degree
    transform = Affine(1.0 / n, 0.0, float(lon0), 0.0, -1.0 / n, float(lat1))
    return transform, (lon1 - lon0) * n, (lat1 - lat0) * n, lon0, lat1


def build_mosaic(cell_files: dict[Cell, Path | None], layer: Layer, pixels_per_degree: int, dst: str | Path,
                 tags: dict | None = None) -> Path:
    """Mosaic ``cell_files`` (a COG per cell, ``None`` for a cell without data) into COG ``dst``."""
    dst = Path(dst)
    cells = sorted(cell_files)
    n = pixels_per_degree
    transform, width, height, lon0, lat1 = mosaic_grid(cells, n)
    fill = layer.nodata if layer.nodata is not None else 0
    chunk = min(CHUNK, n)
    opened = []
    rows = []
    for lat in range(lat1 - 1, lat1 - height // n - 1, -1):  # north to south
        row = []
        for lon in range(lon0, lon0 + width // n):
            path = cell_files.get(Cell(lat, lon))
            if path is None:
                row.append(da.full((n, n), fill, dtype=layer.dtype, chunks=chunk))
            else:
                arr = rioxarray.open_rasterio(path, chunks={"band": 1, "y": chunk, "x": chunk}, lock=False, cache=False)
                opened.append(arr)
                if arr.shape[1:] != (n, n):
                    raise ValueError(f"{path}: {arr.shape[1:]} pixels, expected {(n, n)}")
                row.append(arr.data[0])
        rows.append(row)
    data = da.block(rows)
    xs = transform.c + (np.arange(width) + 0.5) * transform.a
    ys = transform.f + (np.arange(height) + 0.5) * transform.e
    mosaic = xr.DataArray(data, dims=("y", "x"), coords={"y": ys, "x": xs}, name=layer.name)
    mosaic = mosaic.rio.write_crs("EPSG:4326").rio.write_transform(transform)
    if layer.nodata is not None:
        mosaic = mosaic.rio.write_nodata(layer.nodata, encoded=False)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = open_staging(part_path(dst.with_name("staging-" + dst.name)), layer, width, height,
                           mosaic.rio.crs, mosaic.rio.transform())
    try:
        # chunk by chunk (dask's threads read and decode the cells) into the staging raster
        da.store(mosaic.data, _WindowWriter(staging), lock=threading.Lock())
        return translate_to_cog(staging, dst, layer, tags)
    finally:
        for arr in opened:
            arr.close()
        discard_staging(staging)


class _WindowWriter:
    """``dask.array.store`` target: each computed chunk goes to its window of an open dataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __setitem__(self, key: tuple[slice, slice], chunk: np.ndarray) -> None:
        self.dataset.write(chunk, 1, window=Window.from_slices(*key))
