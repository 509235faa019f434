"""Red team of ``nationmap serve``: requests that froze the server, files outside the products root,
damaged or vanished versions, and the command line's host and port.

The server is driven through Starlette's TestClient over a products root written in a second
(:func:`benchmarks.serve.write_products_root`: two months, two versions each, 240 x 240 px COGs);
the command line through the red-team harness. Every answer the server cannot give is a status
and a JSON ``{"error": reason}``, never a 500 or a traceback, and no file outside the root is read."""

from __future__ import annotations

import json
import os
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

import pytest
import rasterio
from starlette.testclient import TestClient

from benchmarks.serve import write_products_root
from nationmap.serve.app import create_app
from tests.reliability.conftest import assert_refused, run_cli

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
