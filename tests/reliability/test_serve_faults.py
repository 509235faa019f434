"""Red team of ``nationmap serve``: requests that froze the server, files outside the products root,
damaged or vanished versions, and the command line's host and port.

The server is driven through Starlette's TestClient over a products root written in a second
(:func:`benchmarks.serve.write_products_root`: two months, two versions each, 240 x 240 px COGs);
the command line through the red-team harness. Every answer the server cannot give is a status
and a JSON ``{"error": reason}``, never a 500 or a traceback, and no file outside the root is read."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from starlette.testclient import TestClient

from benchmarks.serve import write_products_root
from nationmap.serve.app import create_app
from tests.reliability.conftest import assert_refused, run_cli
from tests.serve.helpers import PROBABILITIES, add_acquisitions, add_probabilities

SECRET = "SECRET-OUTSIDE-THE-ROOT"
REGION_DIR = "N35E138_N35E139_N36E138_N36E139"
OLD, LATEST = f"{REGION_DIR}/2022-10/v1", f"{REGION_DIR}/2022-10/v2"
TILE = "8/227/101"  # over the products (138.5-140.6 E, 34.3-35.5 N)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return write_products_root(tmp_path_factory.mktemp("serve-template") / "products", ppd=120, versions=2)


@pytest.fixture()
def root(template, tmp_path) -> Path:
    """A private copy of the products root (real copies: a test may damage any file)."""
    dst = tmp_path / "products"
    shutil.copytree(template, dst, symlinks=True)
    return dst


def client(root: Path, **kw) -> TestClient:
    return TestClient(create_app(root, **kw), raise_server_exceptions=False)


def product_file(root: Path, map_id: str, product: str) -> Path:
    return next((root / map_id / "mosaic").glob(f"*_{product}.tif"))


def edit_manifest(root: Path, map_id: str, edit) -> None:
    path = root / map_id / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def listing(c: TestClient) -> dict[str, dict]:
    answer = c.get("/api/maps")
    assert answer.status_code == 200, answer.text
    return {m["id"]: m for m in answer.json()["maps"]}


def assert_refusal(answer, *codes: int) -> str:
    """A status among ``codes`` with a JSON reason, no traceback; returns the reason."""
    assert answer.status_code in codes, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text and answer.headers["content-type"].startswith("application/json")
    return answer.json()["error"]


def assert_served(c: TestClient, map_id: str) -> None:
    """The map still answers tiles with data, clicks and its area table."""
    tile = c.get(f"/tiles/lulc/{TILE}.png?map={map_id}")
    assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG") and len(tile.content) > 400, tile.text[:200]
    point = c.get(f"/api/point?map={map_id}&lon=138.5&lat=35.5")
    assert point.status_code == 200 and point.json()["values"]["lulc"]["value"] is not None, point.text
    assert c.get(f"/api/areas?map={map_id}").json()["rows"]


@pytest.fixture()
def opened(monkeypatch) -> list[str]:
    """Every path rasterio opens from now on (rio-tiler opens through rasterio.open too)."""
    paths: list[str] = []
    real = rasterio.open

    def counting(path, *args, **kw):
        paths.append(str(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(rasterio, "open", counting)
    return paths


# ---------------------------------------------------------------------------- one request freezes the server


@pytest.mark.parametrize("zxy", ["8/256/101", "8/101/256", "8/10000000/1", "1024/0/0", "1025/3/3", "31/0/0"],
                         ids=["x-past-the-grid", "y-past-the-grid", "x-1e7", "z-1024", "z-1025", "z-31"])
def test_a_tile_off_the_tile_matrix_is_answered_before_any_read(root, opened, zxy):
    c = client(root)
    opened.clear()
    answer = c.get(f"/tiles/lulc/{zxy}.png?map={LATEST}")
    assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG"), answer.text[:300]
    assert opened == [], "a tile off the tile matrix opened a raster"


def test_a_tile_off_the_products_is_answered_before_any_read(root, opened):
    c = client(root)
    opened.clear()
    answer = c.get(f"/tiles/lulc/8/10/10.png?map={LATEST}")  # over the Atlantic
    assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
    assert opened == []


def test_a_slow_read_holds_neither_the_other_requests_nor_its_own_past_the_deadline(root, monkeypatch):
    """Every raster read takes 3 s: /api/maps and a tile already drawn are answered meanwhile (the
    old server read in its event loop: every request waited); with a 1 s deadline the slow tile is
    a 503 with the reason."""
    import rasterio.io
    import rasterio.vrt

    def slow(read):
        def slow_read(self, *args, **kw):
            time.sleep(3)
            return read(self, *args, **kw)
        return slow_read

    with TestClient(create_app(root), raise_server_exceptions=False) as c:
        assert c.get(f"/tiles/lulc/7/113/50.png?map={LATEST}").status_code == 200
        for cls in (rasterio.io.DatasetReader, rasterio.vrt.WarpedVRT):  # what the server (old and new) reads with
            monkeypatch.setattr(cls, "read", slow(cls.read))
        slow_tile = threading.Thread(target=c.get, args=(f"/tiles/lulc/{TILE}.png?map={LATEST}",))
        slow_tile.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        assert c.get("/api/maps").status_code == 200
        assert c.get(f"/tiles/lulc/7/113/50.png?map={LATEST}").status_code == 200
        waited = time.perf_counter() - t0
        slow_tile.join()
    assert waited < 1.0, f"/api/maps and a tile already drawn waited {waited:.1f} s behind one slow tile"
    with TestClient(create_app(root, deadline_s=1.0), raise_server_exceptions=False) as c:
        t0 = time.perf_counter()
        reason = assert_refusal(c.get(f"/tiles/lulc/{TILE}.png?map={LATEST}"), 503)
        assert "took over 1 s" in reason and time.perf_counter() - t0 < 2.5


def test_unknown_maps_do_not_rescan_the_root(root, monkeypatch):
    from nationmap.records import RunManifest

    c = client(root)
    reads = []
    real = RunManifest.read.__func__
    monkeypatch.setattr(RunManifest, "read", classmethod(lambda cls, path: reads.append(path) or real(cls, path)))
    for i in range(20):
        assert c.get(f"/tiles/lulc/{TILE}.png?map=nowhere/{i}").status_code == 404
        assert c.get(f"/api/point?map=nowhere/{i}&lon=138.5&lat=35.5").status_code == 404
    assert reads == [], f"{len(reads)} manifests read for 40 requests of unknown maps"


def test_a_month_published_while_serving_appears_and_a_removed_one_goes(root, monkeypatch):
    """The index is kept, not rebuilt per request, yet follows the tree (here looked at on every request)."""
    monkeypatch.setattr("nationmap.serve.catalog.REFRESH_S", 0.0, raising=False)
    c = client(root)
    assert len(listing(c)) == 4
    shutil.copytree(root / LATEST, root / REGION_DIR / "2022-10" / "v3", symlinks=True)
    assert f"{REGION_DIR}/2022-10/v3" in listing(c)
    assert_served(c, f"{REGION_DIR}/2022-10/v3")
    shutil.rmtree(root / REGION_DIR / "2022-09")
    assert sorted(listing(c)) == sorted([OLD, LATEST, f"{REGION_DIR}/2022-10/v3"])


# ---------------------------------------------------------------------------- files outside the root


def _outside(tmp_path: Path, root: Path) -> dict[str, Path]:
    """A COG and an area table outside the root, each carrying SECRET (a class name)."""
    out = tmp_path / "outside"
    out.mkdir()
    cog = out / "lulc.tif"
    shutil.copy(product_file(root, OLD, "lulc"), cog)
    with rasterio.open(cog, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(1, CLASS_1=SECRET)
    csv = out / "areas.csv"
    csv.write_text("region,month,scope,cell,layer,code,class,area_km2,share\n"
                   f"r,2022-10,region,r,lulc,1,{SECRET},10.0,1.0\n")
    aux = out / "lulc.tif.aux.xml"
    aux.write_text(f'<PAMDataset><PAMRasterBand band="1"><Metadata><MDI key="CLASS_1">{SECRET}</MDI>'
                   "</Metadata></PAMRasterBand></PAMDataset>")
    return {"cog": cog, "csv": csv, "aux": aux}


def _plant(case: str, root: Path, outside: dict[str, Path]) -> None:
    cog = product_file(root, OLD, "lulc")
    if case == "cog-symlink":
        cog.unlink()
        cog.symlink_to(outside["cog"])
    elif case == "areas-symlink":
        csv = next((root / OLD / "tables").glob("*_areas.csv"))
        csv.unlink()
        csv.symlink_to(outside["csv"])
    elif case == "sidecar-symlink":
        aux = cog.with_name(cog.name + ".aux.xml")
        aux.unlink()
        aux.symlink_to(outside["aux"])
    else:
        target = str(outside["cog"]) if case == "absolute-path" else os.path.relpath(outside["cog"], root / OLD)
        edit_manifest(root, OLD, lambda m: m["products"]["mosaic"]["lulc"].update(path=target))


@pytest.mark.parametrize("case", ["cog-symlink", "areas-symlink", "sidecar-symlink", "climbing-path", "absolute-path"])
def test_a_file_outside_the_root_is_never_read(root, tmp_path, opened, case):
    outside = _outside(tmp_path, root)
    _plant(case, root, outside)
    opened.clear()
    c = client(root)
    answers = [c.get("/api/maps"), c.get(f"/tiles/lulc/{TILE}.png?map={OLD}"),
               c.get(f"/api/point?map={OLD}&lon=138.5&lat=35.5"), c.get(f"/api/areas?map={OLD}")]
    assert not any(SECRET.encode() in a.content for a in answers), "served what a file outside the root holds"
    assert not [p for p in opened if Path(p).resolve().is_relative_to(outside["cog"].parent)]
    maps = listing(c)
    assert maps[OLD]["available"] is False and "outside" in maps[OLD]["reason"], maps[OLD]
    for answer in answers[1:]:
        assert_refusal(answer, 503)
    assert_served(c, LATEST)


SECRET_VALUE = 77  # every pixel of the raster outside the root
CELL_SOURCE = "../cells/N35E138/N35E138_2022-10_probabilities.tif"  # the click's cell in OLD's probabilities VRT
LOW_ZOOM_TILE = "6/56/25"  # over the click, coarse enough to read an overview


@pytest.fixture()
def gdal_opened(monkeypatch, caplog):
    """A function listing every file GDAL has opened so far, from GDAL's debug messages
    (``GDALOpen(<file>, ...) succeeds``): the sources a VRT names and the overviews beside a
    raster too, which GDAL opens itself, never through rasterio.open."""
    monkeypatch.setenv("CPL_DEBUG", "ON")
    caplog.set_level(logging.DEBUG, logger="rasterio")
    return lambda: [r.getMessage() for r in caplog.records if "GDALOpen(" in r.getMessage()]


def _secret_raster(tmp_path: Path) -> Path:
    """A 3-band raster outside the root over the click's cell (N35E138), every pixel SECRET_VALUE."""
    path = tmp_path / "outside" / "secret.tif"
    path.parent.mkdir(exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=120, height=120, count=3, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(138, 36, 1 / 120, 1 / 120)) as ds:
        ds.write(np.full((3, 120, 120), SECRET_VALUE, dtype=np.uint8))
    return path


_GRID = '<SRS>EPSG:4326</SRS><GeoTransform>138, 0.008333333333333333, 0, 36, 0, -0.008333333333333333</GeoTransform>'


def _plain_vrt(secret: Path, bands: int) -> str:
    """A VRT of ``bands`` bands of ``secret`` by its absolute name."""
    band = ('<VRTRasterBand dataType="Byte" band="{i}"><SimpleSource><SourceFilename relativeToVRT="0">{src}'
            '</SourceFilename><SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>')
    body = "".join(band.format(i=i, src=secret) for i in range(1, bands + 1))
    return f'<VRTDataset rasterXSize="120" rasterYSize="120">{_GRID}{body}</VRTDataset>'


def _warped_vrt(secret: Path) -> str:
    """A warped VRT (subClass VRTWarpedDataset) of ``secret``'s 3 bands: its <SourceDataset> names it."""
    grid = "138, 0.008333333333333333, 0, 36, 0, -0.008333333333333333"
    inverse = "-16560, 120, 0, 4320, 0, -120"
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{i}" subClass="VRTWarpedRasterBand"/>' for i in (1, 2, 3))
    mapping = "".join(f'<BandMapping src="{i}" dst="{i}"/>' for i in (1, 2, 3))
    return (f'<VRTDataset rasterXSize="120" rasterYSize="120" subClass="VRTWarpedDataset">{_GRID}{bands}'
            "<BlockXSize>120</BlockXSize><BlockYSize>120</BlockYSize><GDALWarpOptions>"
            "<WarpMemoryLimit>6.7e7</WarpMemoryLimit><ResampleAlg>NearestNeighbour</ResampleAlg>"
            f'<WorkingDataType>Byte</WorkingDataType><SourceDataset relativeToVRT="0">{secret}</SourceDataset>'
            f"<Transformer><GenImgProjTransformer><SrcGeoTransform>{grid}</SrcGeoTransform>"
            f"<SrcInvGeoTransform>{inverse}</SrcInvGeoTransform><DstGeoTransform>{grid}</DstGeoTransform>"
            f"<DstInvGeoTransform>{inverse}</DstInvGeoTransform></GenImgProjTransformer></Transformer>"
            f"<BandList>{mapping}</BandList></GDALWarpOptions></VRTDataset>")


def _plant_gdal(case: str, root: Path, secret: Path) -> None:
    """Make OLD name ``secret`` where GDAL, not the path rule, would follow it."""
    vrt = add_probabilities(root / OLD)  # the class probabilities: the national VRT, as inference writes it
    cog = product_file(root, OLD, "lulc")
    if case == "nested-vrt":  # a source inside the run that is a VRT naming the secret
        (vrt.parent / "inner.vrt").write_text(_plain_vrt(secret, 3))
        vrt.write_text(vrt.read_text().replace(CELL_SOURCE, "inner.vrt"))
    elif case == "warped-vrt":
        vrt.write_text(_warped_vrt(secret))
    elif case == "gdal-syntax-name":  # relativeToVRT="1", yet GDAL opens the absolute name inside it
        vrt.write_text(vrt.read_text().replace(CELL_SOURCE, f"GTIFF_DIR:1:{secret}"))
    elif case == "vrt-named-tif":  # GDAL sniffs the content, whatever the name says
        cog.write_text(_plain_vrt(secret, 1))
    elif case == "ovr-sidecar":  # an external overview beside the COG: GDAL opens it with any driver
        cog.with_name(cog.name + ".ovr").write_text(_plain_vrt(secret, 1).replace('"120"', '"60"'))
    else:  # the COG's PAM sidecar names an overview file
        pam = cog.with_name(cog.name + ".aux.xml")
        pam.write_text(pam.read_text().replace("<PAMDataset>", '<PAMDataset><Metadata domain="OVERVIEWS">'
                                               f'<MDI key="OVERVIEW_FILE">{secret}</MDI></Metadata>', 1))


@pytest.mark.parametrize("case, words", [
    ("nested-vrt", "inner.vrt, is not a GeoTIFF"),
    ("warped-vrt", "has a subClass"),
    ("gdal-syntax-name", "not a plain file name"),
    ("vrt-named-tif", "is not a GeoTIFF"),
    ("ovr-sidecar", "external overview"),
    ("pam-overview-file", "names an overview file"),
])
def test_a_file_that_would_make_gdal_open_one_outside_the_root_is_never_opened(root, tmp_path, gdal_opened, case,
                                                                             words):
    """The path rule checked the names the server reads, but GDAL opens more: what a VRT names
    (nested, warped, a GDAL syntax name), a VRT saved as .tif, an overview beside a COG. The run
    is unavailable with the reason, and GDAL never opened the file outside."""
    secret = _secret_raster(tmp_path)
    _plant_gdal(case, root, secret)
    c = client(root)
    answers = [c.get(f"/tiles/lulc/{tile}.png?map={OLD}") for tile in (TILE, LOW_ZOOM_TILE)]
    answers.append(c.get(f"/api/point?map={OLD}&lon=138.5&lat=35.5"))
    maps = listing(c)
    assert not [m for m in gdal_opened() if str(secret.parent) in m], "GDAL opened a file outside the root"
    assert maps[OLD]["available"] is False and words in maps[OLD]["reason"], maps[OLD]
    assert str(tmp_path) not in maps[OLD]["reason"]
    for answer in answers:
        assert_refusal(answer, 503)
    assert_served(c, LATEST)


def test_a_probabilities_vrt_as_inference_writes_it_is_served(root):
    add_probabilities(root / OLD)
    c = client(root)
    assert listing(c)[OLD]["available"], listing(c)[OLD]
    point = c.get(f"/api/point?map={OLD}&lon=138.5&lat=35.5").json()
    assert point["values"]["probabilities"]["value"] == list(PROBABILITIES)
    assert_served(c, OLD)


def test_the_map_list_names_no_absolute_path(root):
    body = client(root).get("/api/maps").text
    assert str(root) not in body and str(root.resolve()) not in body and '"root"' not in body


# ---------------------------------------------------------------------------- damaged and vanished versions


def _damage(case: str, root: Path) -> str:
    """Damage one version as the red team did; returns its id."""
    if case.startswith("truncated-cog"):
        cog = product_file(root, OLD, "water")
        keep = 300 if case == "truncated-cog-header" else cog.stat().st_size // 2
        os.truncate(cog, keep)
        return OLD
    v3 = f"{REGION_DIR}/2022-10/v3"
    shutil.copytree(root / LATEST, root / v3, symlinks=True)
    if case == "half-written-manifest":
        manifest = root / v3 / "manifest.json"
        os.truncate(manifest, manifest.stat().st_size // 2)
    elif case == "half-written-cogs":
        for cog in (root / v3 / "mosaic").glob("*.tif"):
            os.truncate(cog, cog.stat().st_size // 3)
    elif case == "no-manifest":
        (root / v3 / "manifest.json").unlink()
    elif case == "bad-cell-name":
        edit_manifest(root, v3, lambda m: m.update(cells=["N35E138", "X99"]))
    else:  # a manifest naming a non-raster as a layer
        edit_manifest(root, v3, lambda m: m["products"]["mosaic"]["lulc"].update(
            path=m["products"]["tables"]["areas_csv"]["path"]))
    return v3


@pytest.mark.parametrize("case", ["truncated-cog-header", "truncated-cog-tail", "half-written-manifest",
                                  "half-written-cogs", "no-manifest", "non-raster-layer", "bad-cell-name"])
def test_a_damaged_version_is_listed_unavailable_and_the_rest_keeps_working(root, case):
    damaged = _damage(case, root)
    c = client(root)
    maps = listing(c)
    assert maps[damaged]["available"] is False and maps[damaged]["reason"], maps[damaged]
    assert all(m["available"] for i, m in maps.items() if i != damaged), maps
    for path in (f"/tiles/lulc/{TILE}.png", f"/tiles/water/{TILE}.png", "/api/point", "/api/areas"):
        reason = assert_refusal(c.get(f"{path}?map={damaged}&lon=138.5&lat=35.5"), 503)
        assert "unavailable" in reason and str(root) not in reason
    for healthy in (m for m in maps if m != damaged):
        assert_served(c, healthy)


def test_a_cog_damaged_while_serving_is_a_503_then_listed_unavailable(root):
    c = client(root)
    assert_served(c, OLD)
    cog = product_file(root, OLD, "lulc")
    os.truncate(cog, cog.stat().st_size // 2)
    reason = assert_refusal(c.get(f"/tiles/lulc/7/113/50.png?map={OLD}"), 503)
    assert "truncated" in reason, reason
    assert listing(c)[OLD]["available"] is False
    assert_served(c, LATEST)


@pytest.mark.parametrize("damage", ["row-cut", "header-cut", "garbage", "removed"])
def test_a_damaged_acquisition_table_costs_the_source_label_only(root, damage):
    """A click reads every layer; only the deciding acquisition cannot be named (it was a 503 of the
    whole click)."""
    csv = add_acquisitions(root / OLD)
    c = client(root)
    url = f"/api/point?map={OLD}&lon=138.5&lat=35.5"
    before = c.get(url).json()["values"]
    assert before["source"]["label"].startswith("ALOS2"), before
    data = csv.read_bytes()
    if damage == "removed":
        csv.unlink()
    elif damage == "garbage":
        csv.write_bytes(random.Random(0).randbytes(len(data)))
    else:
        keep = 40 if damage == "header-cut" else len(data) // 2
        csv.write_bytes(data[:keep].rstrip(b"\n"))
    answer = c.get(url)
    assert answer.status_code == 200, answer.text
    values = answer.json()["values"]
    index = before["source"]["value"]
    assert values["source"] == {"value": index, "label": f"acquisition {index} (the acquisition table cannot be read)"}
    assert {p: v for p, v in values.items() if p != "source"} == {p: v for p, v in before.items() if p != "source"}
    assert listing(c)[OLD]["available"]
    assert_served(c, OLD)


@pytest.mark.parametrize("keep", [40, "half"], ids=["header-cut", "row-cut"])
def test_a_truncated_area_table_is_a_503_with_a_reason(root, keep):
    csv = next((root / OLD / "tables").glob("*_areas.csv"))
    size = csv.stat().st_size
    os.truncate(csv, 40 if keep == 40 else size // 2 + 7)
    c = client(root)
    reason = assert_refusal(c.get(f"/api/areas?map={OLD}"), 503)
    assert "area table" in reason
    assert c.get(f"/tiles/lulc/{TILE}.png?map={OLD}").status_code == 200  # the layers are unharmed
    assert_served(c, LATEST)


def test_a_version_removed_while_serving_is_410_gone(root):
    c = client(root)
    assert listing(c)[OLD]["available"]
    shutil.rmtree(root / OLD)
    assert "was removed" in assert_refusal(c.get(f"/tiles/lulc/7/113/50.png?map={OLD}"), 410)
    for path in ("/api/point", "/api/areas"):  # 410 or, once the index has dropped it, 404
        reason = assert_refusal(c.get(f"{path}?map={OLD}&lon=138.5&lat=35.5"), 410, 404)
        assert "was removed" in reason or "no map" in reason
    assert OLD not in listing(c)
    assert_served(c, LATEST)


# ---------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("args, words", [
    (["--port", "99999"], "--port 99999"),
    (["--port", "0"], "--port 0"),
    (["--host", ""], "--host is empty"),
    (["--host", "   "], "--host is empty"),
    (["--host", "no-such-host.invalid"], "no-such-host.invalid"),
], ids=["port-99999", "port-0", "empty-host", "blank-host", "unknown-host"])
def test_serve_refuses_a_bad_address_in_one_line(root, args, words):
    assert_refused(run_cli(["serve", root, *args]), 2, words)


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(root):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert_refused(run_cli(["serve", root, "--port", port]), 1, "in use", str(port))


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_until_listening(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _get(f"{base}/api/maps", timeout=5)
            return
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow  # a server process: 5-30 s on 2 busy cores, most of it importing
def test_serve_answers_hostile_tiles_at_once_and_stops_on_sigterm(root):
    """The real server process: tiles with x = 1e23 and z = 1024 are answered at once, /api/maps
    stays quick, and SIGTERM stops the server within seconds (the old one computed for minutes
    in its event loop and did not stop)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "nationmap.cli.main", "serve", str(root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "nationmap serve:" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        _wait_until_listening(base)
        for zxy in (f"8/{10**23}/1", "1024/1/1"):
            status, body = _get(f"{base}/tiles/lulc/{zxy}.png?map={LATEST}", timeout=5)
            assert status == 200 and body.startswith(b"\x89PNG")
        t0 = time.perf_counter()
        assert _get(f"{base}/api/maps", timeout=5)[0] == 200 and time.perf_counter() - t0 < 1.0
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in proc.stdout.read()
