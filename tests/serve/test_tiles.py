"""The web map's tiles are rio-tiler's: the cut without a warp (Web Mercator is separable over an
EPSG:4326 COG) gives the same pixels as rio-tiler's ``Reader.tile`` (GDAL's warp, nearest), at
every zoom, from every overview, in every layer; and the same PNG colours."""

from __future__ import annotations

import io
from pathlib import Path

import morecantile
import numpy as np
import pytest
from PIL import Image
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from benchmarks.serve import write_products_root
from nationmap.serve import tiles


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> Path:
    """1,200 x 1,200 px national COGs: two overviews besides the full resolution."""
    return write_products_root(tmp_path_factory.mktemp("tiles") / "products", ppd=600, months=("2022-10",))


def _rgba(png: bytes | None) -> np.ndarray:
    if png is None:
        return np.zeros((256, 256, 4), dtype=int)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(int)


def _rio_tiler(src: Reader, product: str, tile) -> bytes | None:
    try:
        image = src.tile(tile.x, tile.y, tile.z, resampling_method="nearest")
    except TileOutsideBounds:
        return None
    if src.colormap:
        return image.render(img_format="PNG", colormap=src.colormap)
    low, high = tiles.CONTINUOUS_RANGES.get(product, (0.0, 255.0))
    image.rescale(in_range=((low, high),), out_range=((0, 255),))
    return image.render(img_format="PNG", colormap=tiles.cmap.get(tiles.PALETTE))


@pytest.mark.parametrize("product", ["lulc", "water", "confidence", "count"])
def test_tiles_are_the_pixels_rio_tiler_draws(products, product):
    cog = next(products.rglob(f"*_{product}.tif"))
    version = tiles.file_version(cog)
    tms = morecantile.tms.get("WebMercatorQuad")
    every = list(tms.tiles(137.9, 34.9, 140.1, 37.1, zooms=[5, 7, 8, 9, 10, 11, 13]))
    grid = every[:: len(every) // 80] + [t for t in every if t.z <= 8]  # a sample at every zoom
    tolerance = 0 if product in ("lulc", "water") else 4  # viridis: 255 steps here, 256 in rio-tiler
    with Reader(str(cog)) as src:
        assert len(src.dataset.overviews(1)) >= 2
        drawn = 0
        for tile in grid:
            ours, theirs = _rgba(tiles.render_tile(product, cog, version, tile.x, tile.y, tile.z)), \
                _rgba(_rio_tiler(src, product, tile))
            shown, expected = ours[..., 3] > 0, theirs[..., 3] > 0
            assert (shown == expected).all(), tile
            colours = np.abs(ours[..., :3] - theirs[..., :3]).max(-1)[shown]
            assert (colours <= tolerance).all(), tile
            drawn += bool(shown.any())
    assert drawn > len(grid) // 3  # most tiles hold data: the comparison is not of empty tiles
