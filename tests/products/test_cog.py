"""COG writing through both staging paths: in memory (GDAL's MEM driver) and a
ZSTD GeoTIFF on disk (rasters over ``cog.MEMORY_STAGING_BYTES``)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.products import cog
from nationmap.products.layers import product_layers

PPD = 600
BLOCK = 256


@pytest.fixture(scope="module")
def lulc_layer():
    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)["lulc"]


@pytest.fixture(params=["memory", "disk"])
def staging_mode(request, monkeypatch):
    if request.param == "disk":
        monkeypatch.setattr(cog, "MEMORY_STAGING_BYTES", 0)
    return request.param


def classes(seed: int) -> np.ndarray:
    """(PPD, PPD) uint8 class codes 0..9 (0 = no data)."""
    return np.random.default_rng(seed).integers(0, 10, size=(PPD, PPD), dtype=np.uint8)


def write_cell(path, pixels: np.ndarray, layer, cell) -> None:
    staging = cog.open_staging(cog.part_path(path.with_name("staging-" + path.name)), layer, PPD, PPD, "EPSG:4326",
                               cell.transform(PPD))
    for r in range(0, PPD, BLOCK):
        for c in range(0, PPD, BLOCK):
            win = Window(c, r, min(BLOCK, PPD - c), min(BLOCK, PPD - r))
            staging.write(pixels[r:r + win.height, c:c + win.width], 1, window=win)
    cog.translate_to_cog(staging, path, layer, {"CELL": cell.name})


def test_cell_cog_round_trip(tmp_path, lulc_layer, staging_mode):
    cell = parse_cell("N35E138")
    pixels = classes(0)
    dst = tmp_path / "cell.tif"
    write_cell(dst, pixels, lulc_layer, cell)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.tif", "cell.tif.aux.xml"]  # no staging or part file left
    assert cog.is_valid_cog(dst)
    with rasterio.open(dst) as src:
        assert (src.read(1) == pixels).all()
        assert src.transform == cell.transform(PPD) and src.crs.to_epsg() == 4326
        assert src.nodata == lulc_layer.nodata and src.compression.name == "deflate"
        assert src.block_shapes[0] == (512, 512) and src.overviews(1) == [2]
        assert src.tags()["CELL"] == "N35E138" and src.descriptions == (lulc_layer.name,)
        assert src.colormap(1)[1] == lulc_layer.colormap()[1]


def test_failed_copy_leaves_nothing_behind(tmp_path, lulc_layer, staging_mode):
    cell = parse_cell("N35E138")
    staging = cog.open_staging(tmp_path / "staging.tif", lulc_layer, PPD, PPD, "EPSG:4326", cell.transform(PPD))
    with pytest.raises(Exception):
        cog.translate_to_cog(staging, tmp_path / "missing-dir" / "cell.tif", lulc_layer)
    assert staging.closed and list(tmp_path.iterdir()) == []
