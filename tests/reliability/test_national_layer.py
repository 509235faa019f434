"""The national layer under bad input: a cell COG of the wrong size or a missing one is a clear
error, and the national layer already written stays as it was (nothing half-written beside it)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.products import cog
from nationmap.products.layers import product_layers
from nationmap.products.mosaic import build_mosaic

PPD = 120


@pytest.fixture()
def national(tmp_path):
    table = load_class_table()
    layer = product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)["lulc"]
    files = {}
    for i, name in enumerate(("N30E130", "N32E133")):
        cell = parse_cell(name)
        files[cell] = tmp_path / "cells" / f"{name}.tif"
        files[cell].parent.mkdir(exist_ok=True)
        write(files[cell], np.full((PPD, PPD), i + 1, np.uint8), layer, cell, PPD)
    built = build_mosaic(files, layer, PPD, tmp_path / "mosaic" / "lulc.tif")
    before = {p.name: p.read_bytes() for p in built.vrt.parent.iterdir()}  # VRT, COG, its class names
    assert set(before) == {"lulc.vrt", "lulc.tif", "lulc.tif.aux.xml"}
    return layer, files, built, before


def write(path, pixels, layer, cell, ppd):
    staging = cog.open_staging(cog.part_path(path), layer, pixels.shape[1], pixels.shape[0], "EPSG:4326",
                               cell.transform(ppd))
    staging.write(pixels, 1)
    cog.translate_to_cog(staging, path, layer)


def unchanged(built, before) -> bool:
    now = {p.name: p.read_bytes() for p in built.vrt.parent.iterdir()}
    return now == before


def test_a_cell_of_the_wrong_size_is_refused(national):
    layer, files, built, before = national
    cell = parse_cell("N32E133")
    write(files[cell], np.full((PPD // 2, PPD // 2), 3, np.uint8), layer, cell, PPD // 2)  # another grid
    with pytest.raises(ValueError, match=f"{cell.name}.tif: 1 band\\(s\\) of 60 x 60 px, expected 1 of 120 x 120"):
        build_mosaic(files, layer, PPD, built.cog)
    assert unchanged(built, before)


def test_a_missing_cell_file_is_refused(national):
    layer, files, built, before = national
    files[parse_cell("N30E130")].unlink()
    with pytest.raises(rasterio.errors.RasterioIOError, match="N30E130.tif"):
        build_mosaic(files, layer, PPD, built.cog)
    assert unchanged(built, before)
