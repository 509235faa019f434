"""``nationmap serve``: a read-only web map of a products root (Starlette + rio-tiler + Leaflet).

    GET /                                     the page (static/index.html, Leaflet from xstatic-leaflet)
    GET /api/maps                             every products run: region, month, version, legends, cells
    GET /api/point?map=ID&lon=..&lat=..       lulc, water, confidence and count of that pixel
    GET /api/areas?map=ID                     the region's rows of the area table (km^2 per class)
    GET /tiles/{product}/{z}/{x}/{y}.png?map=ID   a Web Mercator tile of a national COG

Only GET; a map is chosen by its id among those :func:`nationmap.serve.catalog.find_maps` found
(rescanned by /api/maps, so a month published while the server runs appears), never by a path
from the request. Leaflet is served from the xstatic-leaflet package installed with nationmap:
nothing is loaded from the internet.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import xstatic.pkg.leaflet as leaflet_pkg
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nationmap.serve.catalog import MapEntry, find_maps
from nationmap.serve.tiles import legend, pixel_value, render_tile

STATIC = Path(__file__).with_name("static")
PRODUCT_ORDER = ("lulc", "water", "confidence", "count")
UNITS = {"confidence": "%", "count": "acquisitions"}


def _empty_tile() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


EMPTY_TILE = _empty_tile()


class MapServer:
    """The state behind the routes: the products root and the maps found in it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.maps = find_maps(self.root)

    def entry(self, request: Request) -> MapEntry:
        map_id = request.query_params.get("map", "")
        if map_id not in self.maps:
            self.maps = find_maps(self.root)  # published since the last scan?
        if map_id not in self.maps:
            raise HTTPException(404, f"no map {map_id!r}")
        return self.maps[map_id]

    def describe(self, entry: MapEntry) -> dict:
        products = [p for p in PRODUCT_ORDER if p in entry.mosaics]
        cells = entry.cell_bounds()
        bounds = [min(b[0] for _, b in cells), min(b[1] for _, b in cells),
                  max(b[2] for _, b in cells), max(b[3] for _, b in cells)]
        return {"id": entry.id, "region": entry.region, "month": entry.month, "version": entry.version,
                "latest": entry.latest, "status": entry.status, "products": products, "bounds": bounds,
                "cells": [{"name": n, "bounds": list(b)} for n, b in cells],
                "legends": {p: dataclasses.asdict(legend(p, entry.mosaics[p])) for p in products},
                "areas": entry.areas is not None}

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def list_maps(self, request: Request) -> Response:
        self.maps = find_maps(self.root)
        return JSONResponse({"root": str(self.root), "maps": [self.describe(e) for e in self.maps.values()]})

    async def tile(self, request: Request) -> Response:
        entry = self.entry(request)
        product = request.path_params["product"]
        if product not in entry.mosaics:
            raise HTTPException(404, f"map {entry.id} has no {product} layer")
        z, x, y = (request.path_params[k] for k in ("z", "x", "y"))
        png = render_tile(product, entry.mosaics[product], x, y, z)
        return Response(png or EMPTY_TILE, media_type="image/png", headers={"Cache-Control": "max-age=60"})

    async def point(self, request: Request) -> Response:
        entry = self.entry(request)
        try:
            lon, lat = float(request.query_params["lon"]), float(request.query_params["lat"])
        except (KeyError, ValueError):
            raise HTTPException(400, "lon and lat (degrees) are required") from None
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise HTTPException(400, "lon and lat must be finite")
        values = {}
        for product in (p for p in PRODUCT_ORDER if p in entry.mosaics):
            value = pixel_value(entry.mosaics[product], lon, lat)
            values[product] = {"value": value, "label": _label(product, value, entry)}
        return JSONResponse({"map": entry.id, "lon": lon, "lat": lat, "values": values})

    async def areas(self, request: Request) -> Response:
        from nationmap.products.areas import read_region_areas

        entry = self.entry(request)
        if entry.areas is None:
            return JSONResponse({"map": entry.id, "rows": []})
        rows = read_region_areas(entry.areas)
        return JSONResponse({"map": entry.id, "rows": rows.to_dict(orient="records")})


def _label(product: str, value: int | None, entry: MapEntry) -> str:
    if value is None:
        return "no data"
    if product in UNITS:
        return f"{value} {UNITS[product]}"
    names = {c.value: c.name for c in legend(product, entry.mosaics[product]).classes}
    return names.get(value, str(value))


def create_app(root: str | Path) -> Starlette:
    """The web map of the products under ``root``."""
    server = MapServer(root)
    routes = [
        Route("/", server.index),
        Route("/api/maps", server.list_maps),
        Route("/api/point", server.point),
        Route("/api/areas", server.areas),
        Route("/tiles/{product}/{z:int}/{x:int}/{y:int}.png", server.tile),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Mount("/vendor/leaflet", StaticFiles(directory=leaflet_pkg.BASE_DIR), name="leaflet"),
    ]
    app = Starlette(routes=routes)
    app.state.server = server
    return app
