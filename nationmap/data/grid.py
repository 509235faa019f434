"""The national grid: 1 x 1 degree cells in EPSG:4326 named like the JAXA tiles.

A cell ``N36E140`` spans latitude 36..37 N and longitude 140..141 E (named by its south-west
corner). Pixel size defaults to 1/12,000 degree (about 10 m), as the JAXA LULC tiles.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from affine import Affine
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from nationmap.errors import InputError

DEFAULT_PIXELS_PER_DEGREE = 12_000
_CELL = re.compile(r"^(?P<ns>[NS])(?P<lat>\d{2})(?P<ew>[EW])(?P<lon>\d{3})$")


@dataclass(frozen=True, order=True)
class Cell:
    """A 1 x 1 degree cell; ``lat``/``lon`` are its south-west corner in degrees."""

    lat: int
    lon: int

    def __post_init__(self):
        if not (-90 <= self.lat < 90 and -180 <= self.lon < 180):
            raise InputError(f"cell corner out of range: lat {self.lat}, lon {self.lon}")

    @property
    def name(self) -> str:
        ns = "N" if self.lat >= 0 else "S"
        ew = "E" if self.lon >= 0 else "W"
        return f"{ns}{abs(self.lat):02d}{ew}{abs(self.lon):03d}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(lon_min, lat_min, lon_max, lat_max) in degrees."""
        return (float(self.lon), float(self.lat), float(self.lon + 1), float(self.lat + 1))

    @property
    def polygon(self):
        return box(*self.bounds)

    def transform(self, pixels_per_degree: int = DEFAULT_PIXELS_PER_DEGREE) -> Affine:
        """North-up affine of this cell's grid (upper-left corner at lat+1, lon)."""
        step = 1.0 / pixels_per_degree
        return Affine(step, 0.0, float(self.lon), 0.0, -step, float(self.lat + 1))

    def __str__(self) -> str:
        return self.name


def parse_cell(name: str) -> Cell:
    """``"N36E140"`` -> Cell(36, 140); raises InputError on a malformed name."""
    m = _CELL.match(name.strip().upper())
    if m is None:
        raise InputError(f"{name!r} is not a cell name (expected like N36E140)")
    lat = int(m["lat"]) * (1 if m["ns"] == "N" else -1)
    lon = int(m["lon"]) * (1 if m["ew"] == "E" else -1)
    return Cell(lat, lon)


def cells_covering(geometry: BaseGeometry) -> list[Cell]:
    """Every cell whose interior intersects ``geometry`` (EPSG:4326), sorted."""
    if geometry.is_empty:
        return []
    lon0, lat0, lon1, lat1 = geometry.bounds
    out = []
    for lat in range(math.floor(lat0), max(math.ceil(lat1), math.floor(lat0) + 1)):
        for lon in range(math.floor(lon0), max(math.ceil(lon1), math.floor(lon0) + 1)):
            if not (-90 <= lat < 90 and -180 <= lon < 180):
                continue
            cell = Cell(lat, lon)
            inter = cell.polygon.intersection(geometry)
            # a shared edge or corner is not coverage
            if not inter.is_empty and (inter.area > 0 or geometry.area == 0):
                out.append(cell)
    return sorted(out)
