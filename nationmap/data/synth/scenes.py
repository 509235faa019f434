"""ALOS-2-like L2.1 HH scenes of the synthetic world: layout, rendering, GeoTIFF + summary.txt.

A month's acquisitions are laid out on paths (columns of overlapping frames) with a jittered
grid per month; each path is flown once per month on its own date, ascending or descending,
and some frames are missing in some months. A scene is a north-up UTM raster whose valid
footprint is the rotated swath (heading +-10 degrees from north), DN 0 outside it.

Beside each ``IMG-HH-<SCENE ID>.tif`` the world writes its truth of what the radar could see
(:mod:`nationmap.data.masks`): ``MSK-<SCENE ID>.tif`` (JAXA's codes: 0 outside the swath, 50 open
sea, 100 layover, 150 radar shadow, 255 land) and ``LINCI-<SCENE ID>.tif`` (local incidence,
uint8 whole degrees). They follow the rendering's own terrain rule
(:func:`~nationmap.data.synth.backscatter.terrain_offset_db`): layover where the local incidence
is <= 0, shadow beyond 85 degrees, where the scene's DN is the noise floor. The default world's
slopes stay below both; ``WorldConfig.relief_m`` (:data:`~nationmap.data.synth.world.STEEP_RELIEF_M`)
makes a steep mountain range that has them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from scipy import ndimage
from shapely import LinearRing, Polygon, STRtree

from nationmap.data.alos2 import format_alos2_name
from nationmap.data.calibration import db_to_dn, db_to_linear, linear_to_db
from nationmap.data.masks import LINCI_PREFIX, MASK_PREFIX, linci_codes, mask_codes, sidecar_name, write_layer
from nationmap.data.months import Month
from nationmap.data.synth import backscatter as B
from nationmap.data.synth.changes import ChangeEvent, with_changes
from nationmap.data.synth.noise import fbm, lonlat_to_km
from nationmap.data.synth.world import WATER, Landscape, WorldConfig, landscape
from nationmap.errors import InputError
from nationmap.files import atomic_path

# Reference orbit from a real product name (IMG-HH-ALOS2237752900-181018-...): orbit 23775 on
# 2018-10-18; ALOS-2 flies about 15.214 revolutions a day (14-day repeat, 213 revolutions).
_REF_ORBIT, _REF_DATE, _REVS_PER_DAY = 23775, dt.date(2018, 10, 18), 213 / 14
ALOS2_LAUNCH = dt.date(2014, 5, 24)
MAX_ORBIT = 99_999  # product names carry the orbit number in five digits
MAX_PATHS = 1000  # orbit offsets of a month's paths: a region 400 degrees wide would need more


def orbit_number(date: dt.date, path: int = 0) -> int:
    """The synthetic orbit number of path ``path`` flown on ``date`` (the reference orbit, advanced
    by ALOS-2's revolutions per day, plus the path offset)."""
    return _REF_ORBIT + round((date - _REF_DATE).days * _REVS_PER_DAY) + path


def synth_months() -> tuple[Month, Month]:
    """(first, last) month the synthetic ALOS-2 can fly: not before launch, every day with an
    orbit number >= 1, and every path of the last day within the five digits of product names."""
    first = Month.of(ALOS2_LAUNCH)
    while orbit_number(first.start.date()) < 1:
        first = first.next()
    # the last day whose orbit numbers all fit (rounding a number below an integer stays below it)
    last_day = _REF_DATE + dt.timedelta(days=math.floor((MAX_ORBIT - MAX_PATHS - _REF_ORBIT) / _REVS_PER_DAY))
    last = Month.of(last_day)
    if (last_day + dt.timedelta(days=1)).month == last_day.month:  # the month is not whole
        last = Month(last.year - (last.month == 1), (last.month - 2) % 12 + 1)
    return first, last


@dataclass(frozen=True)
class ScenePlan:
    """One acquisition to render (all that is needed, picklable)."""

    index: int
    month: str
    date: dt.date
    time_utc: str  # "HH:MM:SS"
    pass_direction: str  # "ascending" | "descending"
    heading_deg: float  # flight azimuth, clockwise from north
    center_lon: float
    center_lat: float
    length_km: float
    width_km: float
    pixel_m: float
    orbit: int
    frame: int
    wind: float  # 0..1, sea roughness

    @property
    def filename(self) -> str:
        return format_alos2_name("HH", self.orbit, self.frame, self.date, pass_direction=self.pass_direction)

    @property
    def scene_id(self) -> str:
        return self.filename.split("-", 2)[2].rsplit(".", 1)[0]

    @property
    def epsg(self) -> int:
        zone = int(math.floor((self.center_lon + 180.0) / 6.0)) + 1
        return (32600 if self.center_lat >= 0 else 32700) + zone


def plan_scenes(
    bounds: tuple[float, float, float, float], months: list[Month], seed: int, *,
    length_km: float, width_km: float, pixel_m: float, missing_fraction: float,
) -> list[ScenePlan]:
    """Acquisitions covering ``bounds`` (lon/lat) in each month, deterministic for ``seed``."""
    lon0, lat0, lon1, lat1 = bounds
    lat_mid = 0.5 * (lat0 + lat1)
    km_lon = 111.32 * math.cos(math.radians(lat_mid))
    path_step = 0.8 * width_km / km_lon  # degrees between paths (20 % side overlap)
    frame_step = 0.85 * length_km / 110.57  # degrees between frames (15 % overlap)
    n_paths = max(1, math.ceil((lon1 - lon0) / path_step) + 1)
    n_frames = max(1, math.ceil((lat1 - lat0) / frame_step) + 1)
    plans, index = [], 0
    for m_i, month in enumerate(months):
        rng = np.random.default_rng([seed, month.year, month.month])
        jitter_lon = rng.uniform(-0.3, 0.3) * path_step
        jitter_lat = rng.uniform(-0.3, 0.3) * frame_step
        for p in range(n_paths):
            day = 1 + int(rng.integers(0, month.days))
            date = dt.date(month.year, month.month, day)
            ascending = (p + m_i) % 2 == 1
            heading = -10.0 if ascending else 190.0
            lon = 0.5 * (lon0 + lon1) + (p - 0.5 * (n_paths - 1)) * path_step + jitter_lon
            orbit = orbit_number(date, p)
            if not 1 <= orbit <= MAX_ORBIT:
                raise InputError(f"month {month}: synthetic orbit {orbit} does not fit the five digits of "
                                 f"ALOS-2 product names (a region of {n_paths} paths is too wide)")
            wind = float(rng.uniform(0.0, 1.0))
            for f in range(n_frames):
                missing = rng.uniform() < missing_fraction
                lat = 0.5 * (lat0 + lat1) + (f - 0.5 * (n_frames - 1)) * frame_step + jitter_lat
                if missing:
                    continue
                # ALOS-2 frame numbers: 0..7199 around the orbit, 20 per degree of latitude,
                # counted from the ascending equator crossing.
                frame = round(lat * 20) if ascending else 3600 - round(lat * 20)
                plans.append(ScenePlan(
                    index=index, month=str(month), date=date,
                    time_utc="14:50:12" if ascending else "02:51:41",
                    pass_direction="ascending" if ascending else "descending",
                    heading_deg=heading, center_lon=float(lon), center_lat=float(lat),
                    length_km=length_km, width_km=width_km, pixel_m=pixel_m,
                    orbit=orbit, frame=frame % 7200, wind=wind,
                ))
                index += 1
    return plans


@dataclass
class SceneGrid:
    """The north-up UTM raster of a scene and its footprint geometry (per pixel)."""

    crs: CRS
    transform: Affine
    width: int
    height: int
    inside: np.ndarray  # (H, W) bool, inside the swath
    ground_range: np.ndarray  # (H, W) float32, 0 (near) .. 1 (far) across the swath


def swath_corners(plan: ScenePlan) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """The swath centre and its four corners (easting, northing in metres, the scene's UTM zone),
    in ring order."""
    to_utm = Transformer.from_crs(4326, plan.epsg, always_xy=True)
    e0, n0 = to_utm.transform(plan.center_lon, plan.center_lat)
    a = math.radians(plan.heading_deg)
    half_l, half_w = 500.0 * plan.length_km, 500.0 * plan.width_km
    # corners of the rotated swath: along-track unit (sin a, cos a), look (cos a, -sin a)
    corners = [
        (e0 + sl * half_l * math.sin(a) + sw * half_w * math.cos(a), n0 + sl * half_l * math.cos(a) - sw * half_w * math.sin(a))
        for sl, sw in ((-1, -1), (-1, 1), (1, 1), (1, -1))
    ]
    return (e0, n0), corners


def plan_footprint(plan: ScenePlan) -> Polygon:
    """The swath of ``plan`` in lon/lat degrees (EPSG:4326), edges densified to follow the projection."""
    _, corners = swath_corners(plan)
    ring = LinearRing(corners).segmentize(2_000.0)  # a vertex every 2 km
    to_ll = Transformer.from_crs(plan.epsg, 4326, always_xy=True)
    lon, lat = to_ll.transform(*np.asarray(ring.coords).T)
    return Polygon(np.column_stack([lon, lat]))


def touches_cells(plans: list[ScenePlan], cells: list[Polygon]) -> list[ScenePlan]:
    """The plans whose swath intersects one of ``cells`` (lon/lat polygons): ALOS-2 images land,
    so a month over a region's cells is not a month over its bounding box."""
    tree = STRtree(cells)
    return [p for p in plans if len(tree.query(plan_footprint(p), predicate="intersects"))]


def scene_grid(plan: ScenePlan) -> SceneGrid:
    (e0, n0), corners = swath_corners(plan)
    a = math.radians(plan.heading_deg)
    half_l, half_w = 500.0 * plan.length_km, 500.0 * plan.width_km
    px = plan.pixel_m
    west = math.floor(min(c[0] for c in corners) / px) * px
    north = math.ceil(max(c[1] for c in corners) / px) * px
    width = int(math.ceil((max(c[0] for c in corners) - west) / px))
    height = int(math.ceil((north - min(c[1] for c in corners)) / px))
    transform = Affine(px, 0.0, west, 0.0, -px, north)
    east_c = west + (np.arange(width) + 0.5) * px - e0
    north_c = north - (np.arange(height) + 0.5) * px - n0
    de, dn = np.meshgrid(east_c, north_c)
    along = de * math.sin(a) + dn * math.cos(a)
    across = de * math.cos(a) - dn * math.sin(a)
    inside = (np.abs(along) < half_l) & (np.abs(across) < half_w)
    ground_range = ((across + half_w) / (2 * half_w)).astype(np.float32)
    return SceneGrid(CRS.from_epsg(plan.epsg), transform, width, height, inside, ground_range)


def pixel_lonlat(crs: CRS, transform: Affine, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat (degrees) of pixel centres (rows, cols arrays) of a grid in ``crs``."""
    xs, ys = transform @ (cols + 0.5, rows + 0.5)
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    return to_ll.transform(xs, ys)


@dataclass(frozen=True)
class RenderedScene:
    """A rendered acquisition; every array is (H, W) on ``grid``.

    Attributes:
        grid: the scene's raster and swath.
        dn: uint16 DN (0 outside the swath).
        codes: uint8 true JAXA LULC codes at the pixel centres (0 outside the swath).
        clean_db: float32 backscatter before speckle (NaN outside), for statistics and tests.
        mask: uint8 JAXA mask codes (:mod:`nationmap.data.masks`): the world's truth of layover
            and shadow for this acquisition.
        linci: uint8 local incidence, whole degrees 1..180 (0 outside the swath).
    """

    grid: SceneGrid
    dn: np.ndarray
    codes: np.ndarray
    clean_db: np.ndarray
    mask: np.ndarray
    linci: np.ndarray


def render_scene(plan: ScenePlan, world: WorldConfig, looks: float, seed: int,
                 events: tuple[ChangeEvent, ...] = ()) -> RenderedScene:
    """Render a scene: its DN, the true classes and its mask and local incidence (see RenderedScene),
    on the land of its month (the change ``events`` active in ``plan.month`` applied)."""
    grid = scene_grid(plan)
    rows, cols = np.nonzero(grid.inside)
    lon, lat = pixel_lonlat(grid.crs, grid.transform, rows, cols)
    x, y = lonlat_to_km(np.asarray(lon), np.asarray(lat))
    land: Landscape = landscape(x, y, world)
    if events:
        land = with_changes(land, x, y, plan.month, events)
    month = dt.date.fromisoformat(plan.month + "-01").month

    mean, obj_std, tex_std = B.class_means(land.codes, month)
    tex = fbm(x, y, 4 * world.pixel_m / 1000.0, 2, seed * 7 + 101)
    # object keys were thresholded to draw shapes; re-hash them to an unbiased [0, 1) draw
    draw = np.mod(land.object_key * np.float32(4093.0), np.float32(1.0))
    db = mean + (draw * 2 - 1) * obj_std + tex * tex_std
    sea = land.open_sea
    db[sea] = B.sea_db(plan.wind, fbm(x[sea], y[sea], 12.0, 2, seed * 7 + 103 + plan.index))
    # Incidence from near (30 deg) to far (44 deg) range; rough surfaces darken slowly with
    # incidence, water fast.
    incidence = np.radians(30.0 + 14.0 * grid.ground_range[rows, cols])
    slope_per_deg = np.where(land.codes == WATER, -0.4, -0.1).astype(np.float32)
    db += slope_per_deg * (np.degrees(incidence) - 37.0)

    tilt = _terrain_tilt(plan, grid, world, land.elevation_m)[rows, cols]
    offset, shadow = B.terrain_offset_db(tilt, incidence)
    db += np.where(land.codes == WATER, 0.0, offset)

    clean = np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    clean[rows, cols] = db
    linear = db_to_linear(db)
    linear[shadow] = 0.0
    linear += db_to_linear(np.float32(B.NESZ_DB))
    rng = np.random.default_rng([seed, 7, plan.index])
    speckled = B.speckle(linear, looks, rng)
    dn = np.zeros((grid.height, grid.width), dtype=np.uint16)
    dn[rows, cols] = db_to_dn(linear_to_db(speckled))
    codes = np.zeros((grid.height, grid.width), dtype=np.uint8)
    codes[rows, cols] = land.codes
    mask, linci = _truth_layers(grid, sea, incidence - tilt, shadow)
    return RenderedScene(grid=grid, dn=dn, codes=codes, clean_db=clean, mask=mask, linci=linci)


def _terrain_tilt(plan: ScenePlan, grid: SceneGrid, world: WorldConfig, elevation_m: np.ndarray) -> np.ndarray:
    """(H, W) float tilt (radians) of the surface towards the sensor along the look direction.

    ``elevation_m`` holds the heights of the swath's pixels (row-major); the heights of the ring of
    pixels just outside it are evaluated too, so the swath's edge pixels get the terrain's slope
    rather than the step down to nothing outside (which painted a rim of false layover and
    shadow along the swath's edges in the mountains).
    """
    height = np.zeros((grid.height, grid.width), dtype=np.float32)
    height[grid.inside] = elevation_m
    ring_rows, ring_cols = np.nonzero(ndimage.binary_dilation(grid.inside) & ~grid.inside)
    if ring_rows.size:
        lon, lat = pixel_lonlat(grid.crs, grid.transform, ring_rows, ring_cols)
        height[ring_rows, ring_cols] = landscape(*lonlat_to_km(np.asarray(lon), np.asarray(lat)), world).elevation_m
    d_row, d_col = np.gradient(height, plan.pixel_m)
    a = math.radians(plan.heading_deg)
    # look direction (east, north) = (cos a, -sin a); north = -row direction
    return np.arctan(d_col * math.cos(a) + d_row * math.sin(a))


def _truth_layers(grid: SceneGrid, open_sea: np.ndarray, local_rad: np.ndarray, shadow: np.ndarray):
    """(mask, linci) uint8 (H, W) of a scene from its swath pixels' (N,) open sea, local incidence
    (radians) and shadow: the rendering's own rule (layover at local incidence <= 0, shadow as
    :func:`~nationmap.data.synth.backscatter.terrain_offset_db` darkened it)."""
    def full(values: np.ndarray, fill) -> np.ndarray:
        out = np.full((grid.height, grid.width), fill, dtype=values.dtype)
        out[grid.inside] = values
        return out

    mask = mask_codes(grid.inside, full(open_sea, False), full(local_rad <= 0.0, False), full(shadow, False))
    return mask, linci_codes(full(np.degrees(local_rad), np.nan), grid.inside)


def write_scene(plan: ScenePlan, scene: RenderedScene, directory: Path) -> Path:
    """Write ``IMG-HH-...tif`` (uint16 DN, no data 0, uncompressed like JAXA's) + summary.txt, after
    its ``MSK-`` and ``LINCI-`` sidecars (uint8 deflate; so a scene on disk has them)."""
    grid = scene.grid
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / plan.filename
    write_layer(directory / sidecar_name(MASK_PREFIX, plan.filename), scene.mask, grid.crs, grid.transform,
                description="synthetic truth mask (JAXA codes): 0 no data, 50 sea, 100 layover, 150 shadow, 255 land")
    write_layer(directory / sidecar_name(LINCI_PREFIX, plan.filename), scene.linci, grid.crs, grid.transform,
                description="synthetic local incidence angle (degrees)")
    profile = dict(driver="GTiff", dtype="uint16", count=1, width=grid.width, height=grid.height,
                   crs=grid.crs, transform=grid.transform, nodata=0)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(scene.dn, 1)
        dst.update_tags(AREA_OR_POINT="Area", SENSOR="PALSAR-2 (synthetic)")
    summary = {
        "Scs_SceneID": f"ALOS2{plan.orbit:05d}{plan.frame:04d}-{plan.date:%y%m%d}",
        "Pdi_ProductID": plan.scene_id.split("-")[-1],
        "Img_SceneCenterDateTime": f"{plan.date:%Y%m%d} {plan.time_utc}.000",
        "Img_SceneCenterLatitude": f"{plan.center_lat:.6f}",
        "Img_SceneCenterLongitude": f"{plan.center_lon:.6f}",
        "Pds_PixelSpacing": f"{plan.pixel_m:.3f}",
        "Ext_PassDirection": plan.pass_direction,
        "Pdi_L21ProdFileName01": plan.filename,
        "Synthetic": "nationmap",
    }
    (directory / "summary.txt").write_text("".join(f'{k}="{v}"\n' for k, v in summary.items()))
    return path


def plan_to_dict(plan: ScenePlan) -> dict:
    d = asdict(plan)
    d["date"] = plan.date.isoformat()
    d["filename"] = plan.filename
    return d
