"""The acquisition catalog: one Parquet row per SAR file, updated incrementally.

``build_catalog(RAW_DIR, CATALOG)`` indexes every ALOS-2 scene (``IMG-<pol>-ALOS2...tif``) and
PALSAR-2 mosaic tile (``<tile>_<yy>_sl_<pol>_<code>.tif``) under RAW_DIR: id, time,
polarisation, mode, level, pass direction, the valid-data footprint in EPSG:4326 (WKB, with
GeoParquet metadata), CRS, size, path and SHA-256. A file whose path, size and modification
time are unchanged keeps its row without being read again; files that cannot be indexed are
reported with their reason and left out.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio.features
import rasterio.warp
import shapely
from affine import Affine
from shapely.geometry import shape
from shapely.ops import unary_union

from nationmap.data.alos2 import is_alos2_name, parse_alos2_name, read_summary, scene_datetime
from nationmap.data.months import Month
from nationmap.data.mosaic import MOSAIC_NODATA_DN, is_mosaic_name, parse_mosaic_name
from nationmap.data.regions import Region
from nationmap.data.sar import SarRaster
from nationmap.errors import InputError, NationmapError, describe, first_line
from nationmap.files import atomic_path, sha256_file
from nationmap.parallel import run_tasks

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("kind", pa.string()),  # "scene" | "mosaic"
    ("polarisation", pa.string()),
    ("datetime", pa.timestamp("us", tz="UTC")),
    ("month", pa.string()),
    ("mode", pa.string()),
    ("level", pa.string()),
    ("look_side", pa.string()),
    ("pass_direction", pa.string()),
    ("orbit", pa.int32()),
    ("frame", pa.int32()),
    ("units", pa.string()),
    ("crs", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("pixel_size", pa.float64()),  # CRS units (m for UTM, degrees for EPSG:4326)
    ("lon_min", pa.float64()),
    ("lat_min", pa.float64()),
    ("lon_max", pa.float64()),
    ("lat_max", pa.float64()),
    ("geometry", pa.binary()),  # valid-data footprint, WKB, EPSG:4326
    ("path", pa.string()),
    ("size_bytes", pa.int64()),
    ("mtime_ns", pa.int64()),
    ("sha256", pa.string()),
])
UNREADABLE = "unreadable"
"""The checksum of a catalogued file that cannot be read any more (its row is kept; see build_catalog)."""
FOOTPRINT_MAX_PX = 512
"""Long side (px) of the decimated mask the footprint is traced from."""


@dataclass
class CatalogReport:
    added: int = 0
    kept: int = 0
    removed: int = 0
    failed: list[dict] = field(default_factory=list)  # {"path", "reason"}
    total: int = 0
    stale: int = 0  # of ``failed``, files the catalog knew: their rows are kept (see build_catalog)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def find_sar_files(raw_dir: str | Path) -> list[Path]:
    """Every ALOS-2 scene or mosaic backscatter file under ``raw_dir`` (sorted)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise InputError(f"{raw_dir}: raw data directory not found")
    out = [p for p in raw_dir.rglob("*.tif*") if p.is_file() and (is_alos2_name(p.name) or is_mosaic_name(p.name))]
    return sorted(out)


def footprint(raster: SarRaster) -> shapely.Geometry:
    """Valid-data footprint (EPSG:4326) traced from a decimated read of the raster."""
    scale = max(1.0, max(raster.width, raster.height) / FOOTPRINT_MAX_PX)
    shape_out = (max(1, round(raster.height / scale)), max(1, round(raster.width / scale)))
    raw = raster.read_raw(out_shape=shape_out)
    valid = raster.valid_mask(raw)
    if not valid.any():
        raise NationmapError("all pixels are no data")
    transform = raster.transform @ Affine.scale(raster.width / shape_out[1], raster.height / shape_out[0])
    polys = [shape(geom) for geom, value in rasterio.features.shapes(valid.astype(np.uint8), mask=valid, transform=transform) if value]
    native = unary_union(polys).simplify(abs(transform.a) * 1.5)
    geom = rasterio.warp.transform_geom(raster.crs, "EPSG:4326", shapely.geometry.mapping(native), precision=7)
    return shapely.make_valid(shape(geom))


def _crs_string(crs) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def index_file(path: Path, units: str | None = None) -> dict:
    """One catalog row for ``path``; raises NationmapError with the reason it cannot be used."""
    stat = path.stat()
    if is_alos2_name(path.name):
        name = parse_alos2_name(path)
        summary_path = path.with_name("summary.txt")
        summary = read_summary(summary_path) if summary_path.exists() else None
        when = scene_datetime(name, summary)
        meta = dict(id=name.scene_id, kind="scene", polarisation=name.polarisation, mode=name.mode,
                    level=name.level, look_side=name.look_side, pass_direction=name.pass_direction,
                    orbit=name.orbit, frame=name.frame)
        raster = SarRaster(path, units=units)
    else:
        tile = parse_mosaic_name(path)
        xml = tile.metadata()
        when = xml.start_times[0] if xml.start_times else dt.datetime.combine(
            xml.first_date or dt.date(tile.year, 1, 1), dt.time(), tzinfo=dt.timezone.utc)
        meta = dict(id=tile.tile_id, kind="mosaic", polarisation=tile.polarisation, mode=xml.mode,
                    level="CARD4L-NRB", look_side=xml.look_side, pass_direction=xml.pass_direction,
                    orbit=None, frame=None)
        raster = SarRaster(path, units=units or "dn", extra_nodata=MOSAIC_NODATA_DN)
    with raster:
        geom = footprint(raster)
        lon_min, lat_min, lon_max, lat_max = geom.bounds
        row = dict(
            **meta, datetime=when, month=str(Month.of(when)), units=raster.units, crs=_crs_string(raster.crs),
            width=raster.width, height=raster.height, pixel_size=abs(raster.transform.a),
            lon_min=lon_min, lat_min=lat_min, lon_max=lon_max, lat_max=lat_max, geometry=shapely.to_wkb(geom),
            path=str(path.resolve()), size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns,
        )
    row["sha256"] = sha256_file(path)
    return row


def _index_task(args) -> dict:
    path, units = args
    try:
        return {"row": index_file(Path(path), units)}
    except NationmapError as exc:
        return {"error": str(exc), "path": str(path)}
    except Exception as exc:  # a reader error we did not foresee must not stop the catalog
        return {"error": describe(exc), "path": str(path)}


def read_catalog(path: str | Path) -> pd.DataFrame:
    """The catalog as a DataFrame (``geometry`` stays WKB; see :func:`footprints`), validated:
    a foreign schema or a bad footprint is one InputError naming the column or row."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: catalog not found (run `nationmap data catalog RAW_DIR` first)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable catalog ({first_line(exc)})") from None
    check_catalog_schema(table, path)
    df = table.to_pandas()
    check_catalog_rows(df, path)
    return df


# Columns a catalog row may leave empty (mosaic tiles have no orbit or frame; the metadata of
# some products lacks the mode, look side or pass direction).
NULLABLE = {"mode", "level", "look_side", "pass_direction", "orbit", "frame", "sha256", "size_bytes", "mtime_ns"}


def _type_fits(expected: pa.DataType, actual: pa.DataType) -> bool:
    """Whether a column of ``actual`` type serves as ``expected`` (any integer width, large
    strings and binaries written by other Parquet tools, a time-zone-aware timestamp)."""
    t = pa.types
    if t.is_string(expected):
        return t.is_string(actual) or t.is_large_string(actual)
    if t.is_binary(expected):
        return t.is_binary(actual) or t.is_large_binary(actual)
    if t.is_integer(expected):
        return t.is_integer(actual)
    if t.is_floating(expected):
        return t.is_floating(actual) or t.is_integer(actual)
    if t.is_timestamp(expected):
        return t.is_timestamp(actual) and actual.tz is not None
    return actual == expected


def check_catalog_schema(table: pa.Table, path: Path) -> None:
    """Refuse a Parquet file that is not a nationmap catalog: missing columns, wrong types, or
    empty values in the columns every row needs."""
    missing = [name for name in SCHEMA.names if name not in table.schema.names]
    if missing:
        raise InputError(f"{path}: not a nationmap catalog: missing column(s) {', '.join(missing)}")
    for field_ in SCHEMA:
        actual = table.schema.field(field_.name).type
        if pa.types.is_null(actual) and field_.name in NULLABLE:
            continue
        if not _type_fits(field_.type, actual):
            raise InputError(f"{path}: catalog column {field_.name} is {actual}, expected {field_.type}")
        if field_.name not in NULLABLE and table[field_.name].null_count:
            raise InputError(f"{path}: catalog column {field_.name} has {table[field_.name].null_count} empty value(s)")


def check_catalog_rows(df: pd.DataFrame, path: Path) -> None:
    """Refuse rows whose bounds, month or footprint cannot be used (non-finite or out-of-range
    degrees, a malformed month, a footprint that is not valid WKB of a valid, non-empty geometry)."""
    bounds = df[["lon_min", "lat_min", "lon_max", "lat_max"]].to_numpy(dtype=np.float64)
    lon_ok = (bounds[:, 0] >= -180) & (bounds[:, 0] <= bounds[:, 2]) & (bounds[:, 2] <= 180)
    lat_ok = (bounds[:, 1] >= -90) & (bounds[:, 1] <= bounds[:, 3]) & (bounds[:, 3] <= 90)
    _refuse_rows(df, ~(lon_ok & lat_ok), path, "bounds are not degrees lon_min <= lon_max, lat_min <= lat_max")
    _refuse_rows(df, ~df["month"].str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").to_numpy(dtype=bool), path,
                 "month is not YYYY-MM")
    try:
        geoms = shapely.from_wkb(df["geometry"].to_numpy(), on_invalid="raise")
    except (shapely.errors.GEOSException, TypeError, ValueError) as exc:
        raise InputError(f"{path}: catalog geometry is not WKB footprints ({first_line(exc)})") from None
    _refuse_rows(df, ~shapely.is_valid(geoms) | shapely.is_empty(geoms), path,
                 "footprint is empty or not a valid geometry (self-intersecting?)")


def _refuse_rows(df: pd.DataFrame, bad: np.ndarray, path: Path, what: str) -> None:
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: {int(bad.sum())} catalog row(s) unusable, e.g. row {first} "
                         f"(id {df['id'].iloc[first]}): {what}")


def footprints(df: pd.DataFrame) -> np.ndarray:
    """Shapely footprints (EPSG:4326) of catalog rows."""
    return shapely.from_wkb(df["geometry"].to_numpy())


def write_catalog(df: pd.DataFrame, path: Path) -> None:
    """Write atomically with GeoParquet 1.1 metadata for the WKB ``geometry`` column."""
    df = df.sort_values(["datetime", "id", "polarisation"], kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    bbox = [float(df.lon_min.min()), float(df.lat_min.min()), float(df.lon_max.max()), float(df.lat_max.max())] if len(df) else None
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon", "MultiPolygon"], **({"bbox": bbox} if bbox else {})}}}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def build_catalog(raw_dir: str | Path, catalog_path: str | Path, *, units: str | None = None,
                  rebuild: bool = False, executor: str = "ray") -> CatalogReport:
    """Index ``raw_dir`` into ``catalog_path``, reusing unchanged rows of an existing catalog.

    A catalogued file that changed and cannot be read any more keeps its old row: dropping it
    would let its month be mapped, and published ``ok``, with one acquisition fewer; kept, the
    month's inference fails that scene and says so. A file that is gone is removed."""
    raw_dir, catalog_path = Path(raw_dir), Path(catalog_path)
    files = find_sar_files(raw_dir)
    old = read_catalog(catalog_path) if catalog_path.exists() and not rebuild else pd.DataFrame(columns=SCHEMA.names)
    known = {(r.path, int(r.size_bytes), int(r.mtime_ns)): i for i, r in enumerate(old.itertuples())}
    report = CatalogReport()
    keep, todo = [], []
    for path in files:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in known:
            keep.append(known[key])
        else:
            todo.append((str(path), units))
    results = run_tasks(_index_task, todo, desc="cataloguing", executor=executor)
    rows = [r["row"] for r in results if "row" in r]
    report.failed = [{"path": r["path"], "reason": r["error"]} for r in results if "error" in r]
    by_path = {r.path: i for i, r in enumerate(old.itertuples())}
    stale = [by_path[p] for f in report.failed if (p := str(Path(f["path"]).resolve())) in by_path]
    keep, report.stale = keep + stale, len(stale)
    report.kept, report.added = len(keep), len(rows)
    report.removed = len(old) - len(keep)
    if stale:  # no checksum any more: the scene's unit key changes, so its month reads it again and fails it
        old = old.copy()
        old.loc[old.index[stale], "sha256"] = UNREADABLE
    parts = [old.iloc[keep]] if keep else []
    if rows:
        parts.append(pd.DataFrame(rows, columns=SCHEMA.names))
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCHEMA.names)
    report.total = len(df)
    if report.added or report.removed or stale or not catalog_path.exists():  # unchanged: leave the file as it is
        write_catalog(df, catalog_path)
    return report


def filter_catalog(df: pd.DataFrame, region: Region | None = None, months: list[Month] | None = None,
                   polarisation: str | None = "HH", kind: str | None = "scene") -> pd.DataFrame:
    """Rows whose footprint intersects ``region`` and whose time falls in one of ``months``."""
    mask = np.ones(len(df), dtype=bool)
    if polarisation:
        mask &= (df["polarisation"] == polarisation).to_numpy()
    if kind:
        mask &= (df["kind"] == kind).to_numpy()
    if months:
        mask &= df["month"].isin([str(m) for m in months]).to_numpy()
    if region is not None and mask.any():
        lon0, lat0, lon1, lat1 = region.bounds
        bbox_hit = ((df.lon_max >= lon0) & (df.lon_min <= lon1) & (df.lat_max >= lat0) & (df.lat_min <= lat1)).to_numpy()
        mask &= bbox_hit
        idx = np.flatnonzero(mask)
        hits = shapely.intersects(footprints(df.iloc[idx]), region.geometry)
        mask[idx[~hits]] = False
    return df[mask].reset_index(drop=True)
