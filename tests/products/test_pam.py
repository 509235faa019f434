"""Class names every GIS reads: the PAM sidecar and VRT elements, read back by Debian's gdalinfo."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import ClassInfo, load_class_table
from nationmap.products import cog, pixels
from nationmap.products.layers import Layer, product_layers
from nationmap.products.mosaic import build_mosaic
from nationmap.products.pam import band_elements, category_names, sidecar_path

PPD = 600
CELL = parse_cell("N35E137")


@pytest.fixture(scope="module")
def layers():
    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)


def gdalinfo(path) -> dict:
    """Band 1 of ``gdalinfo -json`` (Debian's gdal-bin, a GDAL apart from rasterio's wheel), with
    its attribute table (GDAL 3.6 reports band 1's at the dataset's level)."""
    out = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True, text=True,
                                    check=True).stdout)
    band = out["bands"][0]
    return {**band, "rat": band.get("rat", out.get("rat"))}


def write_cell(path, layer, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = cog.open_staging(cog.part_path(path), layer, PPD, PPD, "EPSG:4326", CELL.transform(PPD))
    staging.write(pixels, 1)
    return cog.translate_to_cog(staging, path, layer)


def test_category_names_cover_every_code_up_to_the_largest_with_no_data_named():
    layer = Layer("x", 0, "mode", "test", pixels.lulc_class, classes=(ClassInfo(3, "C", "#000000"), ClassInfo(1, "A", "#ffffff")))
    assert category_names(layer) == ["no data", "A", "", "C"]
    water = Layer("w", 255, "mode", "test", pixels.water_class, classes=(ClassInfo(0, "Land", "#000000"), ClassInfo(1, "Water", "#0000ff")))
    names = category_names(water)
    assert len(names) == 256 and names[:2] == ["Land", "Water"] and names[255] == "no data" and names[2] == ""
    assert band_elements(Layer("c", None, "nearest", "continuous", pixels.acquisition_count, unit="n")) == []


def test_gdalinfo_lists_the_class_names_and_attribute_table_of_cell_and_national_cogs(tmp_path, layers):
    lulc = layers["lulc"]
    pixels = np.tile(np.arange(1, 10, dtype=np.uint8), (PPD, PPD // 9 + 1))[:, :PPD]
    cell = write_cell(tmp_path / "cell" / "lulc.tif", lulc, pixels)
    national = build_mosaic({CELL: cell}, lulc, PPD, tmp_path / "national" / "lulc.tif")
    names = [c.name for c in sorted(lulc.classes, key=lambda c: c.code)]
    for path in (cell, national.cog, national.vrt):
        band = gdalinfo(path)
        assert band["categories"] == ["no data", *names], path
        rat = band["rat"]
        assert rat["tableType"] == "thematic"
        assert [f["name"] for f in rat["fieldDefn"]] == ["Value", "Class", "Red", "Green", "Blue", "Alpha"]
        rows = {r["f"][0]: r["f"][1:] for r in rat["row"]}
        assert rows == {c.code: [c.name, *c.rgb, 255] for c in lulc.classes}
    # the COG driver's own sidecar under the temporary name is not left behind
    assert sorted(p.name for p in national.cog.parent.iterdir()) == ["lulc.tif", "lulc.tif.aux.xml", "lulc.vrt"]


def test_water_is_named_and_continuous_layers_get_no_sidecar(tmp_path, layers):
    water = write_cell(tmp_path / "water.tif", layers["water"], np.ones((PPD, PPD), np.uint8))
    assert gdalinfo(water)["categories"][:2] == ["Non-water", "Water"]
    conf = write_cell(tmp_path / "confidence.tif", layers["confidence"], np.full((PPD, PPD), 80, np.uint8))
    assert not sidecar_path(conf).exists()
    assert "categories" not in gdalinfo(conf) and gdalinfo(conf)["rat"] is None
