"""Every declared product reaches every consumer: the test that fails when a consumer ignores a
product (issue 37). One tiny inference run with every option, then, for each declaration of
:func:`nationmap.products.layers.declared_layers`: its cell COGs (bands, type, no data), its
national VRT (and COG where declared), the class names GDAL reads (gdalinfo), its area rows
(where declared), its STAC collection and items, its quicklook (where drawn) and the web map's
listing, legend and pixel click."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from starlette.testclient import TestClient

from nationmap.infer.pipeline import run_inference
from nationmap.products.layers import declared_layers
from nationmap.serve.app import create_app
from tests.infer.test_pipeline import config

LAYERS = declared_layers()


@pytest.fixture(scope="module")
def run(tiny_catalog, tiny_world, tiny_bundles, tmp_path_factory):
    """The second month of the tiny world with every option: probabilities, and the month before
    (its own products root) for the change layers."""
    before = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path_factory.mktemp("before")))
    assert before.status == "ok", before.failures
    out = tmp_path_factory.mktemp("declared")
    manifest = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out, month="2022-10", probabilities=True,
                                    previous=before.run_dir))
    assert manifest.status == "ok", manifest.failures
    return out, manifest


def test_the_run_writes_every_declared_product(run):
    _, manifest = run
    assert list(LAYERS) == ["lulc", "water", "confidence", "probabilities", "reason", "source", "date", "count",
                            "change", "change_classes"]
    for cell in manifest.ok_cells():
        assert set(cell.files) == set(LAYERS), cell.cell
        for name, layer in LAYERS.items():
            with rasterio.open(Path(manifest.run_dir) / "cells" / cell.cell / cell.files[name].path) as ds:
                assert ds.count == layer.count and ds.dtypes[0] == layer.dtype and ds.nodata == layer.nodata
                assert ds.descriptions == layer.band_names
    assert set(manifest.products.vrt) == set(LAYERS)
    assert set(manifest.products.mosaic) == {n for n, layer in LAYERS.items() if layer.national_cog}
    assert set(manifest.products.quicklooks) == {n for n, layer in LAYERS.items() if layer.style != "none"}


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="needs Debian's gdal-bin (make setup-test installs it)")
def test_gdalinfo_names_every_band_and_class(run):
    _, manifest = run
    for name, layer in LAYERS.items():
        info = json.loads(subprocess.run(["gdalinfo", "-json", str(Path(manifest.run_dir) / manifest.products.vrt[name].path)],
                                         capture_output=True, text=True, check=True).stdout)
        assert [b["description"] for b in info["bands"]] == list(layer.band_names), name
        if layer.categorical:  # names of the classes, as GDAL shows them to QGIS
            names = info["bands"][0]["categories"] if "categories" in info["bands"][0] else []
            assert all(c.name in names for c in layer.classes), (name, names)


def test_area_tables_count_every_declared_area(run):
    _, manifest = run
    table = pd.read_csv(Path(manifest.run_dir) / manifest.products.tables["areas_csv"].path)
    region = table[table.scope == "region"]
    for name, layer in LAYERS.items():
        rows = region[region.layer == name]
        if layer.areas is None:
            assert rows.empty, name
        else:
            assert sorted(rows.code) == sorted(c.code for c in layer.classes), name
    total = region[(region.layer == "mapped")].area_km2.sum()
    reasons = region[(region.layer == "reason") & (region.code != 0)].area_km2.sum()
    assert region[region.layer == "lulc"].area_km2.sum() + reasons == pytest.approx(total, rel=1e-3)


def test_stac_describes_every_declared_product(run):
    _, manifest = run
    stac = Path(manifest.run_dir) / "stac"
    for name, layer in LAYERS.items():
        collection = json.loads((stac / f"nationmap-{name}" / "collection.json").read_text())
        items = [json.loads(p.read_text()) for p in (stac / f"nationmap-{name}").glob("*/*.json")]
        assert len(items) == len(manifest.ok_cells()) and collection["id"] == f"nationmap-{name}"
        assert "vrt" in collection["assets"] and ("mosaic" in collection["assets"]) == layer.national_cog
        for item in items:
            asset = item["assets"][name]
            assert len(asset["raster:bands"]) == layer.count and asset["raster:bands"][0]["data_type"] == layer.dtype
            assert ("classification:classes" in asset) == layer.categorical
            assert any(link["rel"] == "derived_from" for link in item["links"])


def test_the_web_map_lists_draws_and_reads_every_declared_product(run):
    out, manifest = run
    client = TestClient(create_app(out))
    (listed,) = client.get("/api/maps").json()["maps"]
    drawn = [n for n, layer in LAYERS.items() if layer.style != "none"]
    assert listed["products"] == drawn and set(listed["legends"]) == set(drawn)
    for name in drawn:
        legend = listed["legends"][name]
        layer = LAYERS[name]
        assert [c["value"] for c in legend["classes"]] == [c.code for c in layer.classes], name
        if not layer.categorical:
            assert tuple(legend["range"]) == layer.palette_range, name
    with rasterio.open(Path(manifest.run_dir) / manifest.products.mosaic["lulc"].path) as ds:
        rows, cols = np.nonzero(ds.read(1) != ds.nodata)
        lon, lat = ds.xy(rows[len(rows) // 2], cols[len(rows) // 2])
    values = client.get("/api/point", params={"map": listed["id"], "lon": lon, "lat": lat}).json()["values"]
    assert list(values) == list(LAYERS)
    assert all(v["value"] is not None and v["label"] not in ("", "no data") for v in values.values()), values


def test_products_follow_the_models_and_options_given():
    from nationmap.data.lulc import load_class_table
    from nationmap.products.layers import product_layers

    table = load_class_table()
    lulc, water = table.scheme("lulc9").classes, table.scheme("water").classes
    always = ["reason", "source", "date", "count"]
    assert list(product_layers(lulc, ())) == ["lulc", "confidence"] + always
    assert list(product_layers((), water)) == ["water"] + always
    assert list(product_layers(lulc, water, probabilities=True, change=True)) == list(LAYERS)
    assert list(product_layers(lulc, water, change=True))[-2:] == ["change", "change_classes"]
    assert "change" not in product_layers((), water, change=True)  # the change of the LULC map only
    assert product_layers(lulc, (), True)["probabilities"].band_names == tuple(f"p_{c.name}" for c in lulc)


def test_the_class_is_the_argmax_of_the_published_probabilities(run):
    _, manifest = run
    codes = np.array([c.code for c in LAYERS["lulc"].classes])
    for cell in manifest.ok_cells():
        folder = Path(manifest.run_dir) / "cells" / cell.cell
        with rasterio.open(folder / cell.files["lulc"].path) as ds:
            lulc, nodata = ds.read(1), ds.nodata
        with rasterio.open(folder / cell.files["probabilities"].path) as ds:
            p = ds.read().astype(int)
        has = lulc != nodata
        assert has.any() and (codes[p.argmax(0)][has] == lulc[has]).all()
        total = p.sum(0)
        assert (np.abs(total[has] - 255) <= len(codes) // 2 + 1).all() and (total[~has] == 0).all()


def test_the_national_reason_layer_is_no_data_beyond_the_cells_with_products(run, tmp_path):
    """A cell of the region without products (no acquisition covered it) reads no data in the
    national reason layer, never 0 (mapped)."""
    from nationmap.data.grid import parse_cell
    from nationmap.products.mosaic import build_mosaic

    _, manifest = run
    cell = manifest.ok_cells()[0]
    here = parse_cell(cell.cell)
    gap = parse_cell(f"N{here.lat:02d}E{here.lon + 5:03d}")
    national = build_mosaic({here: Path(manifest.run_dir) / "cells" / cell.cell / cell.files["reason"].path,
                             gap: None}, LAYERS["reason"], 600, tmp_path / "reason.tif")
    with rasterio.open(national.cog) as ds:
        (value,) = next(ds.sample([(gap.lon + 0.5, gap.lat + 0.5)]))
        assert value == ds.nodata == 255


def test_the_change_status_table_is_published_beside_the_change_layers(run):
    _, manifest = run
    table = pd.read_csv(Path(manifest.run_dir) / manifest.products.tables["change_status_csv"].path)
    assert list(table.columns) == ["region", "month", "previous_month", "scope", "cell", "status", "from_code",
                                   "from_class", "to_code", "to_class", "area_km2"]
    assert set(table.status) <= {"confirmed", "provisional"}  # counted against the layers in tests/change


def test_a_rerun_with_another_rule_redoes_the_change_layers_only(run, tiny_catalog, tiny_world, tiny_bundles,
                                                               tmp_path):
    out, manifest = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    cfg = dict(month="2022-10", probabilities=True, previous=manifest.config["previous"])
    same = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, copy, **cfg))
    assert all(c.skipped for c in same.cell_results) and same.timings["change_s"] < 1.0
    raw = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, copy, change_confirm_months=1,
                               change_min_patch_px=1, **cfg))
    assert all(c.skipped for c in raw.cell_results)  # the cells' own COGs are kept
    for old, new in zip(manifest.ok_cells(), raw.ok_cells()):
        assert new.files["lulc"] == old.files["lulc"] and new.change_key != old.change_key
        folder = Path(raw.run_dir) / "cells" / new.cell
        with rasterio.open(folder / new.files["change"].path) as ds:
            status = ds.read(1)
        assert not (status == 1).any()  # the raw difference: no change waits for a second month
