"""Cloud-Optimized GeoTIFF writing with GDAL's COG driver: profiles as constants, atomic renames.

Every product is first written block by block into a staging dataset, then copied into a COG
by GDAL's COG driver (``gdal_translate -of COG``: internal overviews, DEFLATE, 512 px tiles,
colour table, band and dataset tags), and renamed into place only when complete; a categorical
layer's class names follow in the PAM sidecar GDAL reads with it (:mod:`nationmap.products.pam`).
Staging rasters within ``MEMORY_STAGING_BYTES`` (all the layers of a cell together) live in
GDAL's MEM driver, so the driver reads plain memory, as ``gdal_translate`` reads an
uncompressed file; the others are ZSTD level 1 tiled GeoTIFFs next to the output, so nothing
needs every raster in memory. (The national COG is not staged: :mod:`nationmap.products.mosaic`
copies it from a VRT over the cell COGs.) ``benchmarks/products.py`` measured rio-cogeo's
``cog_translate`` on the same rasters at 2-3x the driver's time; rio-cogeo still validates
(:func:`is_valid_cog`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rio_cogeo.cogeo import cog_validate

from nationmap.files import atomic_path, temporary_name
from nationmap.products.layers import Layer
from nationmap.products.pam import write_sidecar

COG_OPTIONS = dict(driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512, NUM_THREADS=1)
"""Final COGs: 512 x 512 tiles, DEFLATE, overviews down to one tile (the driver's default)."""
STAGING_PROFILE = dict(driver="GTiff", tiled=True, blockxsize=512, blockysize=512, compress="zstd", zstd_level=1)
"""The intermediate tiled GeoTIFF a COG is copied from, for rasters over ``MEMORY_STAGING_BYTES``."""
MEMORY_STAGING_BYTES = 512 * 2**20
"""Staging rasters are held in memory up to this size, for one raster and for all the layers of a
cell together (a 12,000 px cell of uint8 is 144 MB a layer; the rest is staged on disk)."""


def part_path(path: Path) -> Path:
    """The staging raster's name for ``path`` (the write rule's temporary name)."""
    return temporary_name(path)


def open_staging(path: Path, layer: Layer, width: int, height: int, crs, transform, in_memory: bool | None = None):
    """A writable dataset of ``layer``'s bands to fill window by window and hand to
    :func:`translate_to_cog`: in memory (GDAL's MEM driver) when ``in_memory`` (default: when
    ``width`` x ``height`` x bands of ``layer.dtype`` fit ``MEMORY_STAGING_BYTES``), else a ZSTD-1
    tiled GeoTIFF at ``path``. Band descriptions, class names and colour table are set."""
    common = dict(dtype=layer.dtype, count=layer.count, width=width, height=height, crs=crs, transform=transform,
                  nodata=layer.nodata)
    if in_memory is None:
        in_memory = width * height * layer.count * np.dtype(layer.dtype).itemsize <= MEMORY_STAGING_BYTES
    if in_memory:
        dataset = rasterio.open(path.name, "w", driver="MEM", **common)
    else:
        dataset = rasterio.open(path, "w", **STAGING_PROFILE, **common)
    describe_band(dataset, layer)
    return dataset


def discard_staging(staging) -> None:
    """Close a staging dataset and remove its file, if it has one."""
    on_disk = staging.driver != "MEM"
    staging.close()
    if on_disk:
        Path(staging.name).unlink(missing_ok=True)


def describe_band(dst, layer: Layer) -> None:
    """Band descriptions, class names and colour table of ``layer`` on an open dataset."""
    for i, name in enumerate(layer.band_names, start=1):
        dst.set_band_description(i, name)
        dst.update_tags(i, **layer.band_tags())
    if layer.categorical:
        dst.write_colormap(1, layer.colormap())


def translate_to_cog(staging, dst: Path, layer: Layer, tags: dict | None = None) -> Path:
    """An open staging dataset (from :func:`open_staging`) -> COG at ``dst`` (atomic) and, for a
    categorical layer, its class names in ``dst.aux.xml``; the staging dataset is closed and its
    file, if any, removed."""
    options = {**COG_OPTIONS, "OVERVIEW_RESAMPLING": layer.overview_resampling.upper()}
    try:
        with atomic_path(dst) as tmp:
            if tags:
                staging.update_tags(**tags)
            if staging.driver == "MEM":
                rasterio.shutil.copy(staging, tmp, **options)
            else:
                staging.close()  # flushes the last blocks
                rasterio.shutil.copy(staging.name, tmp, **options)
    finally:
        discard_staging(staging)
    write_sidecar(dst, layer)
    return dst


def is_valid_cog(path: str | Path) -> bool:
    valid, _errors, _warnings = cog_validate(str(path), quiet=True)
    return bool(valid)

