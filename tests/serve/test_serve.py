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
from nationmap.serve.app import create_app
from nationmap.serve.catalog import find_maps
from tests.infer.test_pipeline import config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def products(tiny_catalog, tiny_world, tiny_bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("served")
    runs = [Path(run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out, month=m)).run_dir)
            for m in ("2022-09", "2022-10")]
    return out, runs


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
    assert all(set(m.mosaics) == {"lulc", "water", "confidence", "count"} and m.areas for m in maps.values())


def test_page_legend_selector_and_tiles(page, products):
    _, (september, october) = products
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
    assert set(shown) == {"lulc", "water", "confidence", "count"} and shown["lulc"] not in ("", "0")
    for product, value in shown.items():
        with rasterio.open(next((october / "mosaic").glob(f"*_{product}.tif"))) as ds:
            expected = int(next(ds.sample([(lon, lat)]))[0])
            expected = "" if ds.nodata is not None and expected == ds.nodata else str(expected)
        assert value == expected, (product, lon, lat)
    assert page.locator(".leaflet-popup-content dd").count() == 4
