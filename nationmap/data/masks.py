"""The terrain and quality mask of an acquisition: no data, water, layover, radar shadow, land.

One interface for "what the radar could see here", per acquisition and on the acquisition's own
grid, whatever produced it. Codes are JAXA's, as the CARD4L mosaic XML declares them
(``PerPixelMetadata/DataMask/BitValues``): :data:`MASK_NODATA` 0, :data:`MASK_WATER` 50 (ocean
and water), :data:`MASK_LAYOVER` 100, :data:`MASK_SHADOW` 150, :data:`MASK_LAND` 255 (valid).

Where an acquisition's mask comes from (:func:`mask_path`):

- a PALSAR-2 mosaic tile ``<TILE>_<YY>_sl_<POL>_<CODE>.tif``: JAXA's ``<TILE>_<YY>_mask_<CODE>.tif``
  (not every tile ships one: the shared real tile N23W161 has none);
- an ALOS-2 scene ``IMG-<POL>-<SCENE ID>.tif``: a sidecar ``MSK-<SCENE ID>.tif`` in the same
  directory, uint8 on the scene's grid, JAXA's codes. JAXA's L1.5/L2.1 products carry no such
  file: nationmap's synthetic world writes it (the world's truth of layover and shadow), and
  :func:`write_terrain_mask` writes it from a DEM. Beside it, ``LINCI-<SCENE ID>.tif`` holds the
  local incidence angle (uint8 whole degrees, 0 = no data, values clipped to 1..180: layover
  slopes, whose local incidence is <= 0, read 1; the mask says which they are).

The DEM-based mask (:func:`terrain_mask`) uses the local slope test of the SAR imaging geometry
(as in Rees, *Physical Principles of Remote Sensing*, 2nd ed., Cambridge University Press 2001,
on the imaging geometry of side-looking radar): with ``theta`` the incidence angle on a flat
earth and ``alpha`` the surface tilt towards the sensor in the look direction, the local
incidence is ``theta - alpha``; a slope facing the sensor more steeply than ``theta`` (local
incidence <= 0) is in layover, a slope facing away more steeply than ``90 - theta`` (local
incidence >= 90 degrees) is in radar shadow. It is
the *active* test, slope by slope: the passive shadow that a ridge casts over gentler terrain
behind it and the passive layover of points at the same slant range are not marked. A DEM cannot
tell water, so this mask never says :data:`MASK_WATER`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from nationmap.data.alos2 import is_alos2_name, parse_alos2_name
from nationmap.data.mosaic import is_mosaic_name, parse_mosaic_name, read_local_incidence, read_uint8_layer
from nationmap.data.sar import SarRaster
from nationmap.errors import InputError, RasterError, first_line
from nationmap.files import atomic_path

MASK_NODATA = 0
"""No data: outside the acquisition (or, for a DEM-based mask, outside the DEM)."""
MASK_WATER = 50
"""Ocean and water (JAXA's OceanWater; the synthetic world marks its open sea)."""
MASK_LAYOVER = 100
"""Radar layover: a slope facing the sensor more steeply than the incidence angle."""
MASK_SHADOW = 150
"""Radar shadow: a slope facing away from the sensor more steeply than 90 degrees less the incidence."""
MASK_LAND = 255
"""Valid data (JAXA's ValidData)."""
MASK_CODES = {"no data": MASK_NODATA, "ocean and water": MASK_WATER, "layover": MASK_LAYOVER,
              "shadow": MASK_SHADOW, "land": MASK_LAND}
"""Name -> code, as JAXA's mosaic XML lists them."""

MASK_PREFIX = "MSK"
"""File name prefix of a scene's mask sidecar: ``MSK-<SCENE ID>.tif``."""
LINCI_PREFIX = "LINCI"
"""File name prefix of a scene's local incidence sidecar: ``LINCI-<SCENE ID>.tif``."""
LAYOVER_MAX_LOCAL_INCIDENCE_DEG = 0.0
"""Layover where the local incidence is at most this (degrees)."""
SHADOW_MIN_LOCAL_INCIDENCE_DEG = 90.0
"""Radar shadow where the local incidence is at least this (degrees)."""
ALOS2_HEADING_DEG = {"ascending": -10.0, "descending": 190.0}
"""Flight azimuth (degrees clockwise from north) of ALOS-2 over Japan by pass direction: its
sun-synchronous orbit (97.9 degrees inclination) crosses 25-45 N about 10 degrees off north-south
(the synthetic world flies the same headings)."""
LAYER_PROFILE = dict(driver="GTiff", dtype="uint8", count=1, compress="deflate", tiled=True,
                     blockxsize=256, blockysize=256)
"""GeoTIFF profile of the mask and local incidence sidecars (uint8, deflate, 256 px tiles)."""


def sidecar_name(prefix: str, scene_name: str | Path) -> str:
    """``MSK-<SCENE ID>.tif`` (or ``LINCI-...``) of an ALOS-2 scene file name ``IMG-<POL>-<SCENE ID>.tif``:
    one per acquisition, shared by its polarisations."""
    return f"{prefix}-{parse_alos2_name(scene_name).scene_id}.tif"


def _sidecars(acquisition_path: str | Path) -> tuple[Path, Path]:
    """(mask, local incidence) paths that belong to an acquisition, existing or not."""
    path = Path(acquisition_path)
    if is_alos2_name(path.name):
        return path.with_name(sidecar_name(MASK_PREFIX, path)), path.with_name(sidecar_name(LINCI_PREFIX, path))
    if is_mosaic_name(path.name):
        tile = parse_mosaic_name(path)
        return tile.mask_path, tile.linci_path
    raise InputError(f"{path.name}: not an acquisition (an ALOS-2 IMG-<POL>-... scene or a mosaic ..._sl_<POL>_... tile)")


def mask_path(acquisition_path: str | Path) -> Path | None:
    """The mask file of an acquisition (see the module's notes), or ``None`` when it has none."""
    path = _sidecars(acquisition_path)[0]
    return path if path.is_file() else None


def linci_path(acquisition_path: str | Path) -> Path | None:
    """The local incidence angle file of an acquisition, or ``None`` when it has none."""
    path = _sidecars(acquisition_path)[1]
    return path if path.is_file() else None


def read_acquisition_mask(acquisition_path: str | Path, window: Window | None = None,
                          mask: str | Path | None = None) -> np.ndarray | None:
    """(h, w) uint8 JAXA mask codes of ``window`` of the acquisition's own grid (``None``: all of
    it), or ``None`` when the acquisition has no mask file. ``mask``: the file to read instead of
    the acquisition's own (a DEM-derived mask written elsewhere, :func:`write_terrain_mask`). A
    mask on another grid (CRS, transform or size) than the acquisition's, or a window outside the
    grid, is refused with InputError."""
    path = Path(mask) if mask else mask_path(acquisition_path)
    if path is None:
        return None
    _check_layer(acquisition_path, path, window)
    return read_uint8_layer(path, window)[0]


def read_acquisition_linci(acquisition_path: str | Path, window: Window | None = None) -> np.ndarray | None:
    """(h, w) float32 local incidence in degrees (NaN: no data) of ``window`` of the acquisition's
    grid, or ``None`` when it has no local incidence file; grids checked as for the mask."""
    path = linci_path(acquisition_path)
    if path is None:
        return None
    _check_layer(acquisition_path, path, window)
    return read_local_incidence(path, window)


def _open_grid(path: Path) -> tuple[CRS | None, Affine, int, int]:
    try:
        with rasterio.open(path) as src:
            return src.crs, src.transform, src.width, src.height
    except RasterioError as exc:
        raise RasterError(f"{path.name}: cannot open ({first_line(exc)})") from None


def same_grid(a: tuple, b: tuple) -> bool:
    """Whether two ``(crs, transform, width, height)`` grids are the same: equal CRS and size, and
    transforms within a thousandth of a pixel."""
    (crs_a, t_a, w_a, h_a), (crs_b, t_b, w_b, h_b) = a, b
    if (w_a, h_a) != (w_b, h_b) or crs_a is None or crs_b is None or crs_a != crs_b:
        return False
    tolerance = 1e-3 * math.sqrt(abs(t_a.determinant))  # a thousandth of a pixel
    return all(abs(x - y) <= tolerance for x, y in zip(t_a[:6], t_b[:6]))


def _check_layer(acquisition_path: str | Path, layer: Path, window: Window | None) -> None:
    """InputError unless ``layer`` lies on the acquisition's grid and ``window`` inside it."""
    grid = _open_grid(Path(acquisition_path))
    if not same_grid(grid, _open_grid(layer)):
        raise InputError(f"{layer.name}: not on the grid of {Path(acquisition_path).name} (CRS, transform or size differ)")
    width, height = grid[2], grid[3]
    if window is not None and not (window.col_off >= 0 and window.row_off >= 0 and window.width >= 0
                                   and window.height >= 0 and window.col_off + window.width <= width
                                   and window.row_off + window.height <= height):
        raise InputError(f"window {window} lies outside {Path(acquisition_path).name} ({width} x {height} px)")


def mask_codes(valid: np.ndarray, water: np.ndarray | None, layover: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """(H, W) uint8 JAXA codes from (H, W) bool fields: no data outside ``valid``; there, shadow
    before layover before water before land (a pixel the radar did not see is said so first)."""
    codes = np.full(valid.shape, MASK_LAND, dtype=np.uint8)
    if water is not None:
        codes[water] = MASK_WATER
    codes[layover] = MASK_LAYOVER
    codes[shadow] = MASK_SHADOW
    codes[~valid] = MASK_NODATA
    return codes


def linci_codes(local_deg: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W) float local incidence in degrees -> the uint8 ``LINCI-`` layer: whole degrees clipped
    to 1..180 where ``valid`` and finite, 0 (no data) elsewhere."""
    ok = valid & np.isfinite(local_deg)
    out = np.zeros(local_deg.shape, dtype=np.uint8)
    out[ok] = np.clip(np.rint(local_deg[ok]), 1, 180).astype(np.uint8)
    return out


def write_layer(path: str | Path, data: np.ndarray, crs: CRS, transform: Affine, nodata: int | None = 0,
                description: str = "") -> Path:
    """Write a (H, W) uint8 sidecar (mask or local incidence) atomically as a deflate GeoTIFF."""
    path = Path(path)
    profile = dict(LAYER_PROFILE, width=data.shape[1], height=data.shape[0], crs=crs, transform=transform,
                   nodata=nodata)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        if description:
            dst.set_band_description(1, description)
    return path


# -- the DEM-based mask ----------------------------------------------------------------------

def _check_geometry(crs: CRS, transform: Affine, look_side: str, near_deg: float, far_deg: float) -> None:
    if crs is None or not crs.is_projected or crs.linear_units not in ("metre", "meter"):
        raise InputError(f"a terrain mask needs a projected grid in metres (UTM), not {crs}")
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise InputError("a terrain mask needs a north-up grid (no rotation)")
    if look_side not in ("right", "left"):
        raise InputError(f"look side must be right or left, not {look_side!r}")
    if not 0.0 < near_deg <= far_deg < 90.0:
        raise InputError(f"incidence angles must satisfy 0 < near <= far < 90 degrees, not {near_deg}, {far_deg}")


def look_vector(heading_deg: float, look_side: str) -> tuple[float, float]:
    """(east, north) unit vector of the look direction on the ground: 90 degrees right (or left)
    of the flight azimuth ``heading_deg`` (degrees clockwise from north)."""
    a = math.radians(heading_deg)
    east, north = math.cos(a), -math.sin(a)  # heading + 90 degrees
    return (east, north) if look_side == "right" else (-east, -north)


def range_span(transform: Affine, width: int, height: int, look: tuple[float, float],
               valid: np.ndarray | None = None) -> tuple[float, float]:
    """(near, far) ground position (m, CRS units) along the look direction ``look`` of the pixel
    centres of a grid: all of them, or those where the (H', W') bool ``valid`` is True (a
    decimated mask of the same extent is fine)."""
    if valid is not None and valid.any():
        rows, cols = np.nonzero(valid)
        sy, sx = height / valid.shape[0], width / valid.shape[1]
        x, y = transform * ((cols + 0.5) * sx, (rows + 0.5) * sy)
    else:
        x, y = transform * (np.array([0.5, width - 0.5, 0.5, width - 0.5]), np.array([0.5, 0.5, height - 0.5, height - 0.5]))
    along = np.asarray(x) * look[0] + np.asarray(y) * look[1]
    return float(along.min()), float(along.max())


def local_incidence_deg(height_m: np.ndarray, transform: Affine, heading_deg: float, look_side: str,
                        near_incidence_deg: float, far_incidence_deg: float,
                        range_span_m: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W) float32 local incidence (degrees; NaN where a height or a neighbour's is NaN) of the
    (H, W) surface ``height_m`` (m) on the north-up metric grid ``transform``.

    The incidence on a flat earth grows linearly from ``near_incidence_deg`` to
    ``far_incidence_deg`` across ``range_span_m`` (ground positions along the look direction, m;
    default: the grid's extent); the tilt is the arctangent of the height gradient along the look
    direction (central differences); local incidence = incidence - tilt.
    """
    if min(height_m.shape) < 2:
        raise InputError(f"a terrain mask needs a grid of at least 2 x 2 pixels, not {height_m.shape}")
    height, width = height_m.shape
    look = look_vector(heading_deg, look_side)
    d_row, d_col = np.gradient(height_m.astype(np.float64), -transform.e, transform.a)
    slope = d_col * look[0] - d_row * look[1]  # rows run south: d/d(north) = -d/d(row)
    near, far = range_span_m or range_span(transform, width, height, look)
    x = transform.c + (np.arange(width) + 0.5) * transform.a  # north-up: columns give x, rows y
    y = transform.f + (np.arange(height) + 0.5) * transform.e
    along = np.add.outer(y * look[1], x * look[0])
    t = np.clip((along - near) / max(far - near, 1e-9), 0.0, 1.0)
    incidence = near_incidence_deg + (far_incidence_deg - near_incidence_deg) * t
    return (incidence - np.degrees(np.arctan(slope))).astype(np.float32)


def classify_local_incidence(local_deg: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8 JAXA codes of a local incidence field (degrees): layover at <= 0, shadow at >= 90
    (the module's rule), land elsewhere, no data where NaN or outside ``valid``."""
    ok = np.isfinite(local_deg) if valid is None else valid & np.isfinite(local_deg)
    with np.errstate(invalid="ignore"):
        layover = local_deg <= LAYOVER_MAX_LOCAL_INCIDENCE_DEG
        shadow = local_deg >= SHADOW_MIN_LOCAL_INCIDENCE_DEG
    return mask_codes(ok, None, layover, shadow)


def dem_on_grid(dem_path: str | Path, crs: CRS, transform: Affine, width: int, height: int) -> np.ndarray:
    """(H, W) float32 DEM heights (m) reprojected by GDAL (bilinear) onto a grid, NaN outside the
    DEM and where it has no data. The DEM may be in any CRS (its heights in metres)."""
    dem_path = Path(dem_path)
    if not dem_path.is_file():
        raise InputError(f"{dem_path}: DEM not found")
    out = np.full((height, width), np.nan, dtype=np.float32)
    try:
        with rasterio.open(dem_path) as src:
            if src.crs is None:
                raise InputError(f"{dem_path.name}: DEM without a CRS")
            rasterio.warp.reproject(rasterio.band(src, 1), out, src_nodata=src.nodata, dst_transform=transform,
                                    dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    except RasterioError as exc:
        raise RasterError(f"{dem_path.name}: cannot read the DEM ({first_line(exc)})") from None
    return out


def terrain_local_incidence(dem_path: str | Path, crs: CRS, transform: Affine, width: int, height: int,
                            heading_deg: float, look_side: str, near_incidence_deg: float, far_incidence_deg: float,
                            range_span_m: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W) float32 local incidence (degrees, NaN outside the DEM) of a DEM on a scene's grid
    (see :func:`local_incidence_deg`)."""
    _check_geometry(crs, transform, look_side, near_incidence_deg, far_incidence_deg)
    heights = dem_on_grid(dem_path, crs, transform, width, height)
    return local_incidence_deg(heights, transform, heading_deg, look_side, near_incidence_deg, far_incidence_deg,
                               range_span_m)


def terrain_mask(dem_path: str | Path, crs: CRS, transform: Affine, width: int, height: int, heading_deg: float,
                 look_side: str, near_incidence_deg: float, far_incidence_deg: float,
                 range_span_m: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W) uint8 JAXA codes of the layover and radar shadow a DEM causes on a scene's grid.

    Args:
        dem_path: a GeoTIFF of heights in metres, any CRS; reprojected by GDAL (bilinear).
        crs, transform, width, height: the scene's grid (projected, metres, north-up).
        heading_deg: flight azimuth, degrees clockwise from north (ALOS-2: :data:`ALOS2_HEADING_DEG`).
        look_side: ``"right"`` or ``"left"``.
        near_incidence_deg, far_incidence_deg: incidence angle at near and far range (degrees).
        range_span_m: (near, far) ground positions along the look direction where those angles
            hold (m); default: the grid's extent (see :func:`range_span`).

    Returns 100 where the local incidence is <= 0, 150 where it is >= 90 degrees (the module's
    rule), 255 elsewhere and 0 outside the DEM.
    """
    local = terrain_local_incidence(dem_path, crs, transform, width, height, heading_deg, look_side,
                                    near_incidence_deg, far_incidence_deg, range_span_m)
    return classify_local_incidence(local)


def write_terrain_mask(scene_path: str | Path, dem_path: str | Path, *, near_incidence_deg: float = 30.0,
                       far_incidence_deg: float = 44.0, heading_deg: float | None = None,
                       block_rows: int = 256, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write the ``MSK-`` and ``LINCI-`` sidecars of an ALOS-2 scene from a DEM; returns their paths
    (beside the scene, or in ``out_dir``: an inference run keeps them in its work directory and
    never writes into the archive).

    Look side and pass direction come from the scene's file name, the heading from the pass
    direction (:data:`ALOS2_HEADING_DEG`) unless given; the incidence goes from
    ``near_incidence_deg`` to ``far_incidence_deg`` across the scene's valid pixels (defaults: the
    synthetic world's 30..44 degrees; give a real product's from its metadata). Pixels where the
    scene has no data are 0 in both; where the scene has data but the DEM no height (voids, its
    edge), the mask says land (255) and the local incidence 0. Written in blocks of ``block_rows`` rows
    (memory bounded for large scenes), each file atomically (whole or not at all).
    """
    scene_path = Path(scene_path)
    name = parse_alos2_name(scene_path)
    heading = ALOS2_HEADING_DEG[name.pass_direction] if heading_deg is None else heading_deg
    with SarRaster(scene_path) as scene:
        crs, transform, width, height = scene.crs, scene.transform, scene.width, scene.height
        _check_geometry(crs, transform, name.look_side, near_incidence_deg, far_incidence_deg)
        scale = max(1.0, max(width, height) / 1024)
        shape = (max(1, round(height / scale)), max(1, round(width / scale)))
        span = range_span(transform, width, height, look_vector(heading, name.look_side),
                          scene.valid_mask(scene.read_raw(out_shape=shape)))
        where = Path(out_dir) if out_dir is not None else scene_path.parent
        where.mkdir(parents=True, exist_ok=True)
        paths = (where / sidecar_name(MASK_PREFIX, scene_path), where / sidecar_name(LINCI_PREFIX, scene_path))
        profile = dict(LAYER_PROFILE, width=width, height=height, crs=crs, transform=transform, nodata=0)
        with atomic_path(paths[0]) as tmp_mask, atomic_path(paths[1]) as tmp_linci, \
                rasterio.open(tmp_mask, "w", **profile) as mask_out, rasterio.open(tmp_linci, "w", **profile) as linci_out:
            for r0 in range(0, height, block_rows):
                r1 = min(height, r0 + block_rows)
                valid = scene.valid_mask(scene.read_raw(Window(0, r0, width, r1 - r0)))
                local = _block_local_incidence(dem_path, crs, transform, width, height, (r0, r1), heading,
                                               name.look_side, (near_incidence_deg, far_incidence_deg), span)
                window = Window(0, r0, width, r1 - r0)
                codes = classify_local_incidence(local, valid)
                # where the DEM has no height (a void, sea left as no data, beyond its edge) it cannot
                # say layover or shadow: the radar's own data stands (never drop a pixel it saw)
                codes[valid & ~np.isfinite(local)] = MASK_LAND
                mask_out.write(codes, 1, window=window)
                linci_out.write(linci_codes(local, valid), 1, window=window)
            mask_out.set_band_description(1, "JAXA data mask from a DEM: 0 no data, 100 layover, 150 shadow, 255 land")
            linci_out.set_band_description(1, "local incidence angle (degrees) from a DEM")
    return paths


def _block_local_incidence(dem_path, crs, transform, width, height, rows, heading, look_side, angles, span):
    """Local incidence of rows ``rows = (r0, r1)`` of a grid, computed with one halo row on each
    side so the block's slopes are the whole grid's (central differences across block edges)."""
    r0, r1 = rows
    h0, h1 = max(0, r0 - 1), min(height, r1 + 1)
    block = transform * Affine.translation(0, h0)
    local = terrain_local_incidence(dem_path, crs, block, width, h1 - h0, heading, look_side, *angles, range_span_m=span)
    return local[r0 - h0:r1 - h0]
