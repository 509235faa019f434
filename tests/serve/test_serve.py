"""``nationmap serve`` in a real browser: Debian's Chromium driven by Playwright over two tiny
products runs (September and October). The page loads, tiles draw with the classes' colours, the
legend names the classes, the selector offers both months (the newest by default), and a click
reads the same values as rasterio at that point of the national COGs."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from nationmap.infer.pipeline import run_inference
from nationmap.products.acquisitions import read_acquisition_table
from nationmap.serve.app import create_app
from nationmap.serve.catalog import find_maps
from tests.infer.test_pipeline import config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def products(tiny_catalog, tiny_world, tiny_bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("served")
    runs = [Path(run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out, month=m,
                                      probabilities=m == "2022-10")).run_dir)
            for m in ("2022-09", "2022-10")]
    return out, runs


SEPTEMBER = ("lulc", "water", "confidence", "reason", "source", "date", "count")  # the declared products
OCTOBER = SEPTEMBER + ("probabilities",)  # ... with --probabilities


def _national(run: Path, product: str) -> Path:
    """The national file of a product: its COG, or its VRT where it has none (probabilities)."""
    cog = next((run / "mosaic").glob(f"*_{product}.tif"), None)
    return cog or next((run / "mosaic").glob(f"*_{product}.vrt"))


@pytest.fixture(scope="module")
def server(products):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(products[0]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(server)
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        yield page
        browser.close()


def test_the_catalog_finds_both_months_newest_first(products):
    maps = find_maps(products[0])
    assert [m.month for m in maps.values()] == ["2022-10", "2022-09"]
    october, september = maps.values()
    assert set(october.mosaics) == set(OCTOBER) and set(september.mosaics) == set(SEPTEMBER)
    assert all(m.areas and m.acquisitions for m in maps.values())


def test_page_legend_selector_and_tiles(page, products):
    _, (_, october) = products
    options = page.locator("#map-select option").all_text_contents()
    assert len(options) == 2 and "2022-10" in options[0]
    assert "2022-10" in page.locator("#map-select option:checked").text_content()
    with rasterio.open(next((october / "mosaic").glob("*_lulc.tif"))) as ds:
        names = [v for k, v in sorted(ds.tags(1).items(), key=lambda kv: kv[0]) if k.startswith("CLASS_")]
        present = {int(v) for v in np.unique(ds.read(1))} - {ds.nodata}
        colours = {code: ds.colormap(1)[code][:3] for code in present}
    assert sorted(page.locator("#legend .name").all_text_contents()) == sorted(names)
    page.wait_for_function("document.querySelectorAll('.product-tiles img.leaflet-tile-loaded').length > 0",
                           timeout=30_000)
    page.wait_for_timeout(500)
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB"))
    seen = {tuple(c) for c in shot.reshape(-1, 3)}
    drawn = [code for code, rgb in colours.items() if tuple(rgb) in seen]
    assert len(drawn) >= min(3, len(colours)), (colours, drawn)  # the classes' own colours, exactly
    assert page.locator("#areas tbody tr").count() > 0
    offered = [i.get_attribute("value") for i in page.locator("#products input").all()]
    assert offered == [p for p in OCTOBER if p not in ("source", "probabilities")]  # drawn as declared
    page.locator("#product-reason").check()  # the no-data reasons: their own legend
    page.wait_for_function("document.getElementById('legend-title').textContent.includes('why the pixel')")
    reasons = page.locator("#legend .name").all_text_contents()
    assert {"mapped", "layover", "radar shadow", "not observed this month"} <= set(reasons)
    page.locator("#product-lulc").check()


def test_a_click_reads_the_pixel_as_rasterio_does(page, products):
    _, (_, october) = products
    with rasterio.open(next((october / "mosaic").glob("*_lulc.tif"))) as ds:  # a mapped pixel, off centre
        rows, cols = np.nonzero(ds.read(1) != ds.nodata)
        i = len(rows) // 3
        target_lon, target_lat = ds.xy(rows[i], cols[i])
    point = page.evaluate("([lat, lon]) => map.latLngToContainerPoint([lat, lon])", [target_lat, target_lon])
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_selector("#pixel dl", timeout=10_000)
    lon = float(page.locator("#pixel dl").get_attribute("data-lon"))
    lat = float(page.locator("#pixel dl").get_attribute("data-lat"))
    shown = {d.get_attribute("data-product"): d.get_attribute("data-value")
             for d in page.locator("#pixel dd").all()}
    labels = {d.get_attribute("data-product"): d.inner_text() for d in page.locator("#pixel dd").all()}
    assert set(shown) == set(OCTOBER) and shown["lulc"] not in ("", "0")
    for product, value in shown.items():
        with rasterio.open(_national(october, product)) as ds:
            sample = [int(v) for v in next(ds.sample([(lon, lat)]))]
            expected = "" if ds.nodata is not None and sample[0] == ds.nodata else ",".join(map(str, sample))
        assert value == expected, (product, lon, lat)
    table = read_acquisition_table(next((october / "tables").glob("*_acquisitions.csv")))
    deciding = table.get(int(shown["source"]))
    assert labels["source"] == f"{deciding.id}, {deciding.datetime:%Y-%m-%d}"  # the click names the acquisition
    assert labels["date"].startswith(f"2022-10-{1 + int(shown['date']):02d}") and deciding.day == int(shown["date"])
    assert labels["reason"] == "mapped" and sum(map(int, shown["probabilities"].split(","))) in range(251, 260)
    assert page.locator(".leaflet-popup-content dd").count() == len(OCTOBER)


def _get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("path, code, words", [
    ("/api/point?map=nowhere/2022-09/v9&lon=137.5&lat=35.5", 404, "no map"),
    ("/api/areas?map=../../etc", 404, "no map"),
    ("/tiles/lulc/8/227/101.png?map=nowhere", 404, "no map"),
    ("/api/point?map={map}&lon=137.5", 400, "lon and lat"),
    ("/api/point?map={map}&lon=east&lat=35.5", 400, "lon and lat"),
    ("/api/point?map={map}&lon=nan&lat=35.5", 400, "finite"),
    ("/api/point?map={map}&lon=inf&lat=35.5", 400, "finite"),
    ("/tiles/elevation/8/227/101.png?map={map}", 404, "no elevation layer"),
], ids=["point-unknown-map", "areas-traversal", "tile-unknown-map", "no-lat", "word-lon", "nan-lon", "inf-lon",
        "unknown-layer"])
def test_bad_requests_are_refused_with_a_reason(server, products, path, code, words):
    map_id = next(iter(find_maps(products[0])))
    status, body = _get(server + path.format(map=map_id))
    assert status == code and words in body.decode(), (status, body)


@pytest.mark.parametrize("query", ["lon=10&lat=-80", "lon=137.5&lat=95", "lon=-400&lat=35.5"])
def test_a_point_outside_the_products_reads_no_data(server, products, query):
    map_id = next(iter(find_maps(products[0])))
    status, body = _get(f"{server}/api/point?map={map_id}&{query}")
    assert status == 200, body
    import json

    values = json.loads(body)["values"]
    assert set(values) == set(OCTOBER)
    assert all(v["value"] is None for v in values.values()), values


@pytest.mark.parametrize("zxy", ["8/227/101", "3/0/0", "0/0/0", "8/9999/9999", "30/1/1"])
def test_tiles_anywhere_are_png(server, products, zxy):
    """Tiles away from the products (or off the tile grid) are transparent PNGs, never a 500."""
    map_id = next(iter(find_maps(products[0])))
    status, body = _get(f"{server}/tiles/lulc/{zxy}.png?map={map_id}")
    assert status == 200, body[:200]
    assert body.startswith(b"\x89PNG")


def test_a_legend_is_read_once_per_version_of_the_file(products, tmp_path):
    import os

    from nationmap.serve.tiles import legend

    _, (_, october) = products
    cog = tmp_path / "lulc.tif"
    shutil.copy(next((october / "mosaic").glob("*_lulc.tif")), cog)
    first = legend("lulc", cog)
    assert legend("lulc", cog) is first  # cached: no second read
    code = first.classes[0].value
    with rasterio.open(cog, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(1, **{f"CLASS_{code}": "renamed class"})
    stat = cog.stat()
    os.utime(cog, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a new version, even within one tick
    again = legend("lulc", cog)
    assert again is not first and again.classes[0].name == "renamed class"
