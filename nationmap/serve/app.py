"""``nationmap serve``: a read-only web map of a products root (Starlette + rio-tiler + Leaflet).

    GET /                                     the page (static/index.html, Leaflet from xstatic-leaflet)
    GET /api/maps                             every products run: region, month, version, legends, cells
                                              (a run that cannot be shown: available false and the reason)
    GET /api/point?map=ID&lon=..&lat=..       every product's value at that pixel, with a label (a class
                                              name from the raster, a date, an acquisition of the month's table)
    GET /api/areas?map=ID                     the region's rows of the area table (km^2 per class)
    GET /tiles/{product}/{z}/{x}/{y}.png?map=ID   a Web Mercator tile of a national COG

Only GET; a map is chosen by its id among those the index (:class:`nationmap.serve.catalog.MapIndex`)
found, never by a path from the request; the index is built once and refreshed when the tree
changes, so a month published while the server runs appears. Leaflet is served from the
xstatic-leaflet package installed with nationmap: nothing is loaded from the internet.

The event loop never reads a raster: tile coordinates are checked against the tile matrix and the
COG's bounds first (an empty tile costs no I/O), rendered tiles are kept (``TILE_CACHE_BYTES``,
keyed by the file's version), and every GDAL read runs in a pool of worker threads within
``deadline_s``. A request the server cannot answer gets a status and a JSON ``{"error": reason}``:
404 (no such map, layer), 400 (bad point), 410 (the run was removed while serving), 503 (the run
is damaged, or a read ran past its deadline); never a traceback. A click on a run whose acquisition
table cannot be read still answers every value: only the ``source`` label says the table is damaged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import xstatic.pkg.leaflet as leaflet_pkg
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nationmap.data.months import parse_month
from nationmap.devices import available_cpus
from nationmap.errors import InputError, first_line
from nationmap.products.acquisitions import AcquisitionTable, read_acquisition_table
from nationmap.products.layers import declared_layers
from nationmap.serve.catalog import MapEntry, MapIndex, MosaicFile
from nationmap.serve.tiles import (
    RasterReadError,
    contains,
    file_version,
    overlaps,
    pixel_value,
    render_tile,
    tile_bounds,
    tile_in_matrix,
)

STATIC = Path(__file__).with_name("static")
LAYERS = declared_layers()  # the products' declarations: order, style, units
PRODUCT_ORDER = tuple(LAYERS)
SHORT_UNITS = {"percent": "%"}
DEADLINE_S = 10.0  # the longest a raster read may hold a request
TILE_CACHE_BYTES = 8 * 2**20  # about 2,000 tiles: the screens viewers looked at last
WORKERS = min(8, 2 * available_cpus())  # GDAL releases the GIL while it reads and decodes
log = logging.getLogger("nationmap.serve")


def _empty_tile() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


EMPTY_TILE = _empty_tile()


class TileCache:
    """Rendered tiles by (file, file version, z, x, y), least recently used out past ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            png = self._tiles.get(key)
            if png is not None:
                self._tiles.move_to_end(key)
            return png

    def put(self, key: tuple, png: bytes) -> None:
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = png
            self._bytes += len(png)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._tiles.popitem(last=False)[1])


class MapServer:
    """The state behind the routes: the index of the products root, the worker threads, the tiles."""

    def __init__(self, root: str | Path, deadline_s: float = DEADLINE_S, workers: int = WORKERS,
                 refresh_s: float | None = None):
        self.index = MapIndex(root, refresh_s)
        self.deadline_s = deadline_s
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="nationmap-serve")
        self.tiles = TileCache(TILE_CACHE_BYTES)
        self._listing: tuple[int, bytes] = (-1, b"")

    @property
    def maps(self) -> dict[str, MapEntry]:
        return self.index.maps

    async def refresh(self, force: bool = False) -> None:
        """Look for changes in the products root (rate-limited), off the event loop."""
        if force or self.index.due():
            await asyncio.to_thread(self.index.refresh, force)

    async def entry(self, request: Request) -> MapEntry:
        map_id = request.query_params.get("map", "")
        if map_id not in self.maps:
            await self.refresh()  # published since the last look?
        entry = self.maps.get(map_id)
        if entry is None:
            raise HTTPException(404, f"no map {map_id[:200]!r}")
        if not entry.available:
            raise HTTPException(503, f"map {entry.id} is unavailable: {entry.problem}")
        return entry

    async def version(self, entry: MapEntry, path: Path, what: str) -> tuple[int, ...]:
        """The version of a file of ``entry`` now: 410 if the run was removed, 503 if the file was."""
        try:
            return file_version(path)
        except OSError:
            await self.refresh(force=True)
            if not entry.root.is_dir():
                raise HTTPException(410, f"map {entry.id} was removed") from None
            raise HTTPException(503, f"map {entry.id}: its {what} is missing") from None

    async def read(self, entry: MapEntry, what: str, fn, *args, cog: tuple[Path, tuple[int, ...]] | None = None):
        """``fn(*args)`` in a worker thread, within the deadline; a damaged file is a 503 with the
        reason (a damaged ``cog``, path and version, also makes its run unavailable)."""
        future = self.pool.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.deadline_s)
        except TimeoutError:
            raise HTTPException(503, f"map {entry.id}: reading its {what} took over {self.deadline_s:g} s") from None
        except RasterReadError as exc:
            if not entry.root.is_dir():
                raise HTTPException(410, f"map {entry.id} was removed") from None
            reason = self.index.relative(str(exc))  # GDAL names the file: never its absolute path
            if cog is not None:
                await asyncio.to_thread(self.index.mark_damaged, *cog, f"cannot be read ({reason})")
            raise HTTPException(503, f"map {entry.id}: its {what} cannot be read ({reason})") from None

    async def index_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def list_maps(self, request: Request) -> Response:
        await self.refresh()
        generation, maps = self.index.generation, self.maps
        if self._listing[0] != generation:
            body = json.dumps({"maps": [describe(e) for e in maps.values()]}).encode()
            self._listing = (generation, body)
        return Response(self._listing[1], media_type="application/json")

    async def layer(self, request: Request) -> tuple[MapEntry, MosaicFile]:
        entry = await self.entry(request)
        product = request.path_params["product"]
        if product not in entry.mosaics or not _drawn(product):
            raise HTTPException(404, f"map {entry.id} has no {product} layer")
        return entry, entry.mosaics[product]

    async def tile(self, request: Request) -> Response:
        entry, mosaic = await self.layer(request)
        product = mosaic.product
        z, x, y = (request.path_params[k] for k in ("z", "x", "y"))
        if not tile_in_matrix(z, x, y) or not overlaps(tile_bounds(z, x, y), mosaic.info.bounds):
            return _png(EMPTY_TILE)  # off the grid or off the products: nothing to read
        version = await self.version(entry, mosaic.path, f"{product} layer")
        if version != mosaic.version:  # the file changed since it was indexed: look at it again
            await self.refresh(force=True)
            entry, mosaic = await self.layer(request)
        key = (str(mosaic.path), version, z, x, y)
        png = self.tiles.get(key)
        if png is None:
            png = await self.read(entry, f"{product} layer", render_tile, product, mosaic.path, version, x, y, z,
                                  cog=(mosaic.path, version))
            png = png or EMPTY_TILE
            self.tiles.put(key, png)
        return _png(png)

    async def point(self, request: Request) -> Response:
        entry = await self.entry(request)
        try:
            lon, lat = float(request.query_params["lon"]), float(request.query_params["lat"])
        except (KeyError, ValueError):
            raise HTTPException(400, "lon and lat (degrees) are required") from None
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise HTTPException(400, "lon and lat must be finite")
        mosaics = [entry.mosaics[p] for p in PRODUCT_ORDER if p in entry.mosaics]
        inside = [(m, await self.version(entry, m.path, f"{m.product} layer")) for m in mosaics
                  if contains(m.info.bounds, lon, lat)]
        read = await self.read(entry, "layers", _read_point, entry, inside, lon, lat) if inside else {}
        values = {m.product: {"value": None, "label": "no data"} | read.get(m.product, {}) for m in mosaics}
        return JSONResponse({"map": entry.id, "lon": lon, "lat": lat, "values": values})

    async def areas(self, request: Request) -> Response:
        entry = await self.entry(request)
        if entry.areas is None:
            return JSONResponse({"map": entry.id, "rows": []})
        version = await self.version(entry, entry.areas, "area table")
        rows = await self.read(entry, "area table", area_rows, entry.areas, version)
        accuracy = None
        if entry.accuracy is not None:  # damaged or removed: the counts are still shown, without estimates
            try:
                accuracy = await self.read(entry, "accuracy report", accuracy_summary, entry.accuracy,
                                           await self.version(entry, entry.accuracy, "accuracy report"))
            except HTTPException:
                accuracy = None
        return JSONResponse({"map": entry.id, "rows": rows, "accuracy": accuracy})


def _png(png: bytes) -> Response:
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=60"})


def _read_point(entry: MapEntry, inside: list[tuple[MosaicFile, tuple[int, ...]]], lon: float,
                lat: float) -> dict[str, dict]:
    """{product: {"value", "label"}} at a point (in a worker thread: rasters and tables are read)."""
    values = {m.product: pixel_value(m.path, version, lon, lat) for m, version in inside}
    return {m.product: {"value": values[m.product], "label": _label(entry, m, values[m.product])} for m, _ in inside}


@lru_cache(maxsize=64)
def _acquisitions(csv: Path, version: tuple[int, ...]) -> AcquisitionTable | None:
    """A month's acquisition table (read once per version of the file); None, logged, if it cannot
    be read whole (not the table, a row cut short)."""
    try:
        if not Path(csv).read_bytes().endswith(b"\n"):
            raise InputError(f"{csv}: the last row is cut short")
        return read_acquisition_table(csv)
    except (InputError, OSError) as exc:
        log.warning("acquisition table %s cannot be read: %s", csv, first_line(exc))
        return None


def acquisition_label(entry: MapEntry, index: int) -> str:
    """``<acquisition id>, <date>`` of row ``index`` of the map's acquisition table; the index alone,
    with why, where the map has no table or it cannot be read (the click's other values stand)."""
    if entry.acquisitions is None:
        return f"acquisition {index} (the map has no acquisition table)"
    try:
        table = _acquisitions(entry.acquisitions, file_version(entry.acquisitions))
    except OSError:  # removed since the index was built
        table = None
    if table is None:
        return f"acquisition {index} (the acquisition table cannot be read)"
    row = table.get(index)
    return f"acquisition {index} (not in the table)" if row is None else f"{row.id}, {row.datetime:%Y-%m-%d}"


AREA_COLUMNS = ["layer", "code", "class", "area_km2", "share"]


@lru_cache(maxsize=64)
def area_rows(csv: Path, version: tuple[int, ...]) -> list[dict]:
    """The region's rows of an area table (read once per version of the file); RasterReadError
    if the table is damaged (not CSV, columns missing, a row cut short)."""
    import pandas as pd

    try:
        text = Path(csv).read_text()
        table = pd.read_csv(io.StringIO(text))
        columns = table[["scope", *AREA_COLUMNS]]
    except (ValueError, KeyError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RasterReadError(f"not an area table: {type(exc).__name__}") from None
    if not text.endswith("\n") or columns.isna().any().any():
        raise RasterReadError("a row is incomplete: the file is cut short")
    return columns[columns["scope"] == "region"][AREA_COLUMNS].to_dict(orient="records")


@lru_cache(maxsize=64)
def accuracy_summary(path: Path, version: tuple[int, ...]) -> dict | None:
    """What the web map shows of a LULC accuracy report: overall accuracy, the sample's size and
    each class's estimated area with its 95 % half-width (read once per version of the file);
    None, logged, if the report is damaged (the area table is still shown)."""
    from nationmap.assess.report import AccuracyReport
    from nationmap.records import RecordError

    try:
        report = AccuracyReport.read(path)
    except RecordError as exc:
        log.warning("accuracy report %s cannot be read: %s", path, first_line(exc))
        return None
    return {"overall": report.overall.estimate, "overall_ci95": report.overall.ci95, "points": report.points,
            "classes": {str(c.code): {"estimate_km2": c.area_km2.estimate, "ci95_km2": c.area_km2.ci95,
                                      "users": c.users.estimate, "producers": c.producers.estimate}
                        for c in report.classes}}


def describe(entry: MapEntry) -> dict:
    """What /api/maps says of a map: where it is (relative to the root), what it holds, or why it
    cannot be shown."""
    head = {"id": entry.id, "region": entry.region, "month": entry.month, "version": entry.version,
            "latest": entry.latest, "status": entry.status, "available": entry.available}
    if not entry.available:
        return {**head, "reason": entry.problem}
    products = [p for p in PRODUCT_ORDER if p in entry.mosaics and _drawn(p)]
    cells = entry.cell_bounds()
    boxes = [b for _, b in cells] or [entry.mosaics[p].info.bounds for p in products]
    bounds = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    return {**head, "products": products, "bounds": bounds,
            "cells": [{"name": n, "bounds": list(b)} for n, b in cells],
            "legends": {p: dataclasses.asdict(entry.mosaics[p].info.legend) for p in products},
            "areas": entry.areas is not None, "accuracy": entry.accuracy is not None}


def _drawn(product: str) -> bool:
    """Whether the product is drawn as tiles (its declared style); the others show on a click."""
    return product not in LAYERS or LAYERS[product].style != "none"


def _label(entry: MapEntry, mosaic: MosaicFile, value: int | list[int] | None) -> str:
    """How a pixel's value reads: a class name, a value with its unit, a date, an acquisition."""
    if value is None:
        return "no data"
    layer = LAYERS.get(mosaic.product)
    if isinstance(value, list):  # one value per band: the classes, most probable first
        ranked = sorted(zip(value, _band_names(mosaic, len(value))), key=lambda t: -t[0])
        return ", ".join(f"{n} {v / 255:.2f}" for v, n in ranked if v > 0) or "no data"
    if layer is not None and layer.reading == "day":
        return f"{parse_month(entry.month).start.date() + timedelta(days=value)} (day {value + 1} of the month)"
    if layer is not None and layer.reading == "acquisition":
        return acquisition_label(entry, value)
    if layer is not None and layer.unit and not mosaic.info.legend.classes:
        return f"{value} {SHORT_UNITS.get(layer.unit, layer.unit)}"
    names = {c.value: c.name for c in mosaic.info.legend.classes}
    return names.get(value, str(value))


def _band_names(mosaic: MosaicFile, count: int) -> list[str]:
    """The names of a multi-band layer's ``count`` bands, from the raster's own band descriptions
    (``p_forest`` reads ``forest``: the run's class scheme, whatever it is); ``band N`` where a band
    has none."""
    names = mosaic.info.legend.bands if mosaic.info.legend else ()
    return [(names[i] if i < len(names) and names[i] else f"band {i + 1}").removeprefix("p_") for i in range(count)]


async def _error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _bug(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error (in the server's log)"}, status_code=500)


def create_app(root: str | Path, deadline_s: float = DEADLINE_S, workers: int = WORKERS,
               refresh_s: float | None = None) -> Starlette:
    """The web map of the products under ``root`` (indexed now; InputError if it is not a directory)."""
    server = MapServer(root, deadline_s, workers, refresh_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        server.pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/", server.index_page),
        Route("/api/maps", server.list_maps),
        Route("/api/point", server.point),
        Route("/api/areas", server.areas),
        Route("/tiles/{product}/{z:int}/{x:int}/{y:int}.png", server.tile),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Mount("/vendor/leaflet", StaticFiles(directory=leaflet_pkg.BASE_DIR), name="leaflet"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _error, Exception: _bug})
    app.state.server = server
    return app
