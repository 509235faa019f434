"""The national layer on a tiny sparse layout: a VRT over the cell COGs and a sparse COG copied
from it, checked against the cells themselves, the same cells laid out densely, and GDAL."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest
import rasterio

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.products import cog
from nationmap.products.layers import product_layers
from nationmap.products.mosaic import build_mosaic, mosaic_grid, overview_factors, sparse_fraction, write_vrt

PPD = 600
# three cells with data spread over a 6 x 5 degree box (30 cells), as Japan's cells over its box
SPARSE = {"N30E130": 0, "N34E135": 1, "N32E133": 2}
CORNERS = ("N30E130", "N34E135")  # a cell-less corner pair that spans the box


@pytest.fixture(scope="module")
def layers():
    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)


def patches(seed: int, nodata: int) -> np.ndarray:
    """(PPD, PPD) uint8 classes 1..9 in 20 px patches, a no-data corner, like a coastal cell."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 10, size=(PPD // 20, PPD // 20), dtype=np.uint8)
    pixels = np.repeat(np.repeat(coarse, 20, 0), 20, 1)
    pixels[: PPD // 3, : PPD // 4] = nodata
    return pixels


def write_cell(path, pixels, layer, cell) -> None:
    staging = cog.open_staging(cog.part_path(path), layer, PPD, PPD, "EPSG:4326", cell.transform(PPD))
    staging.write(pixels, 1)
    cog.translate_to_cog(staging, path, layer, {"CELL": cell.name})


@pytest.fixture(scope="module")
def cells(tmp_path_factory, layers):
    root = tmp_path_factory.mktemp("run")
    layer = layers["lulc"]
    files = {}
    for name, seed in SPARSE.items():
        cell = parse_cell(name)
        files[cell] = root / "cells" / name / f"{name}_lulc.tif"
        files[cell].parent.mkdir(parents=True)
        write_cell(files[cell], patches(seed, layer.nodata), layer, cell)
    return root, files


def region_box(files):
    """Every cell of the box over ``files``; those without a file map to None."""
    lats = [c.lat for c in files]
    lons = [c.lon for c in files]
    box = {parse_cell(f"N{lat:02d}E{lon:03d}"): None for lat in range(min(lats), max(lats) + 1)
           for lon in range(min(lons), max(lons) + 1)}
    return {**box, **files}


def test_overview_factors_follow_the_cog_driver():
    assert overview_factors(600, 600) == [2]
    assert overview_factors(12_000, 12_000) == [2, 4, 8, 16, 32]  # 12,000 / 32 = 375 <= 512
    assert overview_factors(512, 100) == []
    assert overview_factors(384_000, 264_000)[-1] == 1024


def test_sparse_national_layer_matches_the_cells(cells, layers):
    root, files = cells
    layer = layers["lulc"]
    region = region_box(files)
    national = build_mosaic(region, layer, PPD, root / "mosaic" / "japan_lulc.tif", {"REGION": "japan"})
    assert national.vrt == root / "mosaic" / "japan_lulc.vrt" and national.cells_with_data == 3
    assert sorted(p.name for p in (root / "mosaic").iterdir()) == ["japan_lulc.tif", "japan_lulc.tif.aux.xml",
                                                                   "japan_lulc.vrt"]
    transform, width, height, _, _ = mosaic_grid(sorted(region), PPD)
    assert (national.width, national.height) == (width, height) == (6 * PPD, 5 * PPD)
    assert cog.is_valid_cog(national.cog)
    expected = np.full((height, width), layer.nodata, dtype=np.uint8)
    for cell, path in files.items():
        col, row = ~transform * (cell.lon, cell.lat + 1)
        with rasterio.open(path) as src:
            expected[round(row):round(row) + PPD, round(col):round(col) + PPD] = src.read(1)
    for path in (national.vrt, national.cog):
        with rasterio.open(path) as src:
            assert src.count == 1 and src.transform.almost_equals(transform) and src.crs.to_epsg() == 4326
            assert (src.read(1) == expected).all(), path.name
            assert src.nodata == layer.nodata and src.descriptions == ("lulc",)
            assert src.overviews(1) == [2, 4, 8]
            assert src.colormap(1)[1] == layer.colormap()[1] and src.tags(1)["CLASS_1"] == layer.classes[0].name
            assert src.tags()["REGION"] == "japan"


def test_overviews_come_from_the_cells(tmp_path, layers):
    """The national overviews are the cells' own: a cell whose overviews were made by nearest
    sampling of per-pixel noise keeps them in the national COG, which would differ had GDAL
    recomputed them from full resolution with the layer's mode."""
    layer = layers["lulc"]
    nearest = dataclasses.replace(layer, overview_resampling="nearest")
    cell = parse_cell("N32E133")
    path = tmp_path / "cells" / f"{cell.name}.tif"
    path.parent.mkdir()
    noise = np.random.default_rng(5).integers(1, 10, size=(PPD, PPD), dtype=np.uint8)
    write_cell(path, noise, nearest, cell)
    files = {**{parse_cell(n): None for n in ("N30E130", "N34E135")}, cell: path}
    national = build_mosaic(region_box(files), layer, PPD, tmp_path / "mosaic" / "lulc.tif")
    with rasterio.open(path, overview_level=0) as src:
        cell_ov = src.read(1)
    transform, *_ = mosaic_grid(sorted(region_box(files)), PPD)
    col, row = (round(v) // 2 for v in ~transform * (cell.lon, cell.lat + 1))
    with rasterio.open(national.cog, overview_level=0) as src:
        national_ov = src.read(1)[row:row + PPD // 2, col:col + PPD // 2]
    assert (national_ov == cell_ov).all()
    blocks = noise.reshape(PPD // 2, 2, PPD // 2, 2).transpose(0, 2, 1, 3).reshape(PPD // 2, PPD // 2, 4)
    assert (cell_ov != blocks[..., 0]).mean() < 0.5 and (national_ov != np.apply_along_axis(
        lambda v: np.bincount(v, minlength=10).argmax(), 2, blocks)).mean() > 0.3  # not a recomputed mode


def test_sparse_costs_what_the_cells_cost(cells, layers, tmp_path):
    """Exactly the tiles holding data are written, and the sparse box of 30 cells holds about the
    bytes of the same 3 cells laid out densely (more here only because 600 px cells straddle more
    512 px tiles when apart; at 12,000 px/degree that edge effect is small)."""
    root, files = cells
    layer = layers["lulc"]
    sparse = build_mosaic(region_box(files), layer, PPD, root / "sparse" / "lulc.tif")
    dense_files = {}
    for i, (cell, path) in enumerate(sorted(files.items())):
        target = parse_cell(f"N40E{140 + i:03d}")  # the same three cells side by side
        dense_files[target] = tmp_path / f"{target.name}.tif"
        with rasterio.open(path) as src:
            write_cell(dense_files[target], src.read(1), layer, target)
    dense = build_mosaic(dense_files, layer, PPD, tmp_path / "dense" / "lulc.tif")
    assert dense.width * dense.height * 10 == sparse.width * sparse.height
    ratio = sparse.cog.stat().st_size / dense.cog.stat().st_size
    assert 0.8 < ratio < 2.0, ratio
    assert sparse_fraction(dense.cog) == 0.0
    with rasterio.open(sparse.cog) as src:
        data = src.read(1)
    has_data = [(data[r:r + 512, c:c + 512] != layer.nodata).any()
                for r in range(0, data.shape[0], 512) for c in range(0, data.shape[1], 512)]
    assert sparse_fraction(sparse.cog) == pytest.approx(1 - np.mean(has_data))
    assert sparse_fraction(sparse.cog) > 0.6


def test_vrt_sources_are_relative(cells, layers, tmp_path):
    """A published version moves or is hard-linked as a whole: the VRT still finds its cells."""
    root, files = cells
    layer = layers["lulc"]
    vrt = write_vrt(region_box(files), layer, PPD, root / "rel" / "lulc.vrt")
    assert str(root) not in vrt.read_text()
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    with rasterio.open(moved / "rel" / "lulc.vrt") as a, rasterio.open(vrt) as b:
        assert (a.read(1) == b.read(1)).all() and (a.read(1) != layer.nodata).any()


def test_continuous_layers_keep_their_nodata_and_average_overviews(cells, layers, tmp_path):
    root, files = cells
    layer = layers["count"]  # no no-data value: 0 is a gap
    count_files = {}
    for cell in files:
        count_files[cell] = tmp_path / f"{cell.name}_count.tif"
        write_cell(count_files[cell], np.full((PPD, PPD), 3, np.uint8), layer, cell)
    national = build_mosaic(region_box(count_files), layer, PPD, tmp_path / "m" / "count.tif")
    with rasterio.open(national.cog) as src:
        data = src.read(1)
        assert src.nodata is None and set(np.unique(data)) == {0, 3}
        assert (data == 3).sum() == 3 * PPD * PPD
    assert "<NoDataValue>" not in national.vrt.read_text()
    conf = write_vrt(region_box(files), layers["confidence"], PPD, tmp_path / "c.vrt")
    assert 'resampling="average"' in conf.read_text()


def test_gdalinfo_opens_vrt_and_cog_as_one_layer_with_overviews(cells, layers):
    root, files = cells
    national = build_mosaic(region_box(files), layers["lulc"], PPD, root / "gdal" / "lulc.tif")
    for path in (national.vrt, national.cog):
        out = subprocess.run(["gdalinfo", str(path)], capture_output=True, text=True, check=True).stdout
        assert f"Size is {6 * PPD}, {5 * PPD}" in out and out.count("Band 1 ") == 1 and "Band 2" not in out
        assert "Overviews: 1800x1500, 900x750, 450x375" in out, out
        assert "Color Table" in out
