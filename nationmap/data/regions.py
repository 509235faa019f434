"""Regions: named sets of national-grid cells plus the exact area they stand for.

A region spec is one of:
- ``japan``: the cells holding land of Japan (``tables/japan_cells.txt``, 123 cells; with a
  LULC directory, the set of ``LC_*.tif`` tiles present there, as JAXA's 131-tile index);
- ``demo``: the synthetic demo region (4 cells around the UTM zone 53/54 border);
- ``demo-heldout``: the demo's held-out region (2 cells east of it beyond a gap, never trained on);
- ``demo-wide``: 12 cells around the demo region (N34-N36, E135-E138: three times its land, still
  west of the held-out region's gap), the land of the longer CPU recipe;
- cell names: ``N35E132,N36E133``;
- a bbox: ``lon_min,lat_min,lon_max,lat_max`` in degrees;
- a GeoJSON file (Feature, FeatureCollection or geometry) in EPSG:4326.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import shapely

from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from nationmap.data.grid import Cell, cells_covering, parse_cell
from nationmap.errors import InputError, NationmapError

TABLES_DIR = Path(__file__).parent / "tables"
DEMO_CELLS = ("N35E137", "N35E138", "N36E137", "N36E138")
# The demo's held-out region: two cells east of the demo's with the E139 column between them, so no 60 x 50 km scene touches both (held-out maps are scored on scenes and land
# the models never saw).
DEMO_HELDOUT_CELLS = ("N35E140", "N35E141")
DEMO_WIDE_CELLS = tuple(f"N{lat}E{lon}" for lat in (34, 35, 36) for lon in (135, 136, 137, 138))
NAMED_CELL_REGIONS = {"demo": DEMO_CELLS, "demo-heldout": DEMO_HELDOUT_CELLS, "demo-wide": DEMO_WIDE_CELLS}

_HELP = "expected japan, demo, demo-heldout, demo-wide, cell names like N35E132,N36E133, a bbox lon_min,lat_min,lon_max,lat_max, or a GeoJSON file"


@dataclass(frozen=True)
class Region:
    """A named area and the grid cells covering it.

    Attributes:
        name: the spec it came from (``japan``, ``demo``, ``N35E132,N36E133``, ...).
        cells: sorted cells covering ``geometry``.
        geometry: the area itself in EPSG:4326 (a bbox or GeoJSON area may cover cells
            only partly; named cells stand for whole cells).
        from_file: read from a GeoJSON file (named by the file's stem, which may be anything).
    """

    name: str
    cells: tuple[Cell, ...]
    geometry: BaseGeometry
    from_file: bool = False

    @property
    def slug(self) -> str:
        """The region's directory under a products root. A GeoJSON region's also carries a hash of
        its geometry: a file named like a cell, a bbox or another file elsewhere must never share
        that region's directory (and overwrite its products)."""
        if not self.from_file:
            return region_slug(self.name)
        digest = hashlib.sha256(shapely.to_wkb(shapely.normalize(self.geometry))).hexdigest()[:8]
        return f"{region_slug(self.name)[:71]}-{digest}"

    @property
    def cell_names(self) -> list[str]:
        return [c.name for c in self.cells]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.geometry.bounds


def japan_cells(lulc_dir: str | Path | None = None) -> list[Cell]:
    """Cells of the ``japan`` region: the LULC tiles present in ``lulc_dir`` when given."""
    if lulc_dir is not None:
        from nationmap.data.lulc import find_lulc_tiles

        tiles = find_lulc_tiles(lulc_dir)
        if tiles:
            return sorted(parse_cell(name) for name in tiles)
    lines = (TABLES_DIR / "japan_cells.txt").read_text().splitlines()
    return sorted(parse_cell(line) for line in lines if line.strip() and not line.startswith("#"))


def _from_cells(name: str, cells: list[Cell]) -> Region:
    cells = sorted(set(cells))
    return Region(name, tuple(cells), unary_union([c.polygon for c in cells]))


def _from_geometry(name: str, geometry: BaseGeometry) -> Region:
    if geometry.is_empty or not geometry.is_valid:
        raise InputError(f"region {name!r}: empty or invalid geometry")
    lon0, lat0, lon1, lat1 = geometry.bounds
    if lon0 < -180 or lon1 > 180 or lat0 < -90 or lat1 > 90:
        raise InputError(f"region {name!r}: coordinates must be lon/lat degrees (EPSG:4326)")
    cells = cells_covering(geometry)
    return Region(name, tuple(cells), geometry)


def _parse_bbox(spec: str) -> BaseGeometry | None:
    parts = spec.split(",")
    if len(parts) != 4:
        return None
    try:
        lon0, lat0, lon1, lat1 = (float(p) for p in parts)
    except ValueError:
        return None
    if not (lon0 < lon1 and lat0 < lat1):
        raise InputError(f"bbox {spec!r}: need lon_min < lon_max and lat_min < lat_max")
    return box(lon0, lat0, lon1, lat1)


def _read_geojson(path: Path) -> BaseGeometry:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable GeoJSON file ({exc})") from None
    try:
        if doc.get("type") == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in doc["features"] if f.get("geometry")]
        elif doc.get("type") == "Feature":
            geoms = [shape(doc["geometry"])]
        else:
            geoms = [shape(doc)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not a GeoJSON geometry ({exc})") from None
    if not geoms:
        raise InputError(f"{path}: GeoJSON holds no geometry")
    return unary_union(geoms)


def resolve_region(spec: str, lulc_dir: str | Path | None = None) -> Region:
    """Turn a region spec into a :class:`Region`; InputError with the accepted forms otherwise."""
    spec = spec.strip()
    if not spec:
        raise InputError(f"empty region: {_HELP}")
    if spec.lower() == "japan":
        return _from_cells("japan", japan_cells(lulc_dir))
    if spec.lower() in NAMED_CELL_REGIONS:
        return _from_cells(spec.lower(), [parse_cell(c) for c in NAMED_CELL_REGIONS[spec.lower()]])
    if spec.lower().endswith((".geojson", ".json")) or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"region file {spec} not found")
        return replace(_from_geometry(path.stem, _read_geojson(path)), from_file=True)
    bbox = _parse_bbox(spec)
    if bbox is not None:
        return _from_geometry(spec, bbox)
    try:
        cells = [parse_cell(part) for part in spec.split(",") if part.strip()]
    except NationmapError:
        raise InputError(f"unknown region {spec!r}: {_HELP}") from None
    return _from_cells(spec.upper(), cells)


def region_slug(name: str) -> str:
    """A directory name for a region spec that cannot leave the products directory."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem if name.endswith((".json", ".geojson")) else name)
    slug = re.sub(r"(?<![A-Za-z0-9])-(?=\d)", "m", slug)  # bbox -1,... and 1,... must not meet
    slug = slug.strip("_-")
    if not slug:
        raise InputError(f"region {name!r} gives no usable directory name")
    return slug[:80]
