"""Cloud-Optimized GeoTIFF writing with rio-cogeo: profiles as constants, atomic renames.

Every product is first written as a plain tiled GeoTIFF (block by block, so nothing needs the
whole raster in memory), then turned into a COG by ``rio_cogeo.cog_translate`` with internal
overviews, and renamed into place only when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from nationmap.products.layers import Layer

COG_PROFILE = {**cog_profiles.get("deflate"), "blockxsize": 512, "blockysize": 512}
"""Final COGs: 512 x 512 tiles, DEFLATE."""
STAGING_PROFILE = dict(driver="GTiff", tiled=True, blockxsize=512, blockysize=512, compress="deflate")
"""The intermediate tiled GeoTIFF a COG is translated from."""
GDAL_CONFIG = {"GDAL_NUM_THREADS": "1", "GDAL_TIFF_INTERNAL_MASK": "TRUE"}


def part_path(path: Path) -> Path:
    """A sibling temporary name for ``path`` (hidden, unique per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def staging_profile(layer: Layer, width: int, height: int, crs, transform) -> dict:
    return {**STAGING_PROFILE, "dtype": layer.dtype, "count": 1, "width": width, "height": height,
            "crs": crs, "transform": transform, "nodata": layer.nodata}


def describe_band(dst, layer: Layer) -> None:
    """Band description, class names and colour table of ``layer`` on an open dataset."""
    dst.set_band_description(1, layer.name)
    tags = {"DESCRIPTION": layer.description, **layer.class_tags()}
    if layer.unit:
        tags["UNIT"] = layer.unit
    dst.update_tags(1, **tags)
    if layer.categorical:
        dst.write_colormap(1, layer.colormap())


def translate_to_cog(staging: Path, dst: Path, layer: Layer, tags: dict | None = None) -> Path:
    """``staging`` (tiled GeoTIFF) -> COG at ``dst`` (atomic); ``staging`` is removed."""
    tmp = part_path(dst)
    try:
        cog_translate(staging, tmp, COG_PROFILE, overview_resampling=layer.overview_resampling,
                      forward_band_tags=True, additional_cog_metadata=tags or None, quiet=True,
                      in_memory=False, config=GDAL_CONFIG, colormap=layer.colormap())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
        staging.unlink(missing_ok=True)
    return dst


def is_valid_cog(path: str | Path) -> bool:
    valid, _errors, _warnings = cog_validate(str(path), quiet=True)
    return bool(valid)

