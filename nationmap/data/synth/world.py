"""The synthetic land-cover world: JAXA HRLULC codes as a pure function of position.

:func:`landscape` maps points (km coordinates from :func:`noise.lonlat_to_km`) to the 14 JAXA
codes plus the elevation and a per-object key used for backscatter texture. Large forms
(coastline, mountains, lakes, urban areas) have physical scales; fine forms (rivers 1-3 px
wide, parcels, urban blocks, solar farms, greenhouses) are set in pixels of the world's
nominal resolution ``pixel_m`` so they look right at any demo resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nationmap.data.synth.noise import fbm, hash_uniform, value_noise
from nationmap.errors import InputError

# JAXA HRLULC v23.12 source codes
NODATA, WATER, BUILT, PADDY, CROP, GRASS = 0, 1, 2, 3, 4, 5
DBF, DNF, EBF, ENF, BARE, BAMBOO, SOLAR, WETLAND, GREENHOUSE = 6, 7, 8, 9, 10, 11, 12, 13, 14


STEEP_RELIEF_M = 2500.0
"""``WorldConfig.relief_m`` of a world with a steep mountain range: at the demo's 75 m scene pixels
its fore-slopes lie in layover and its back-slopes in radar shadow (the demo region's scenes,
seed 0: 2.5 % of their pixels in layover, 0.7 % in shadow; peaks up to about 6 km)."""


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the land-cover world.

    Attributes:
        seed: the world's seed; equal seeds give identical worlds.
        pixel_m: nominal resolution (m) that sets the width of thin features.
        land_bias: raises (>0) or lowers the land fraction.
        urban_threshold: higher values give fewer built-up areas.
        relief_m: height (m) of the hills, ridges and valleys carved into the land, on top of
            the broad terrain (up to about 2400 m). Heights only: the land cover is the same for
            every value. The default 500 keeps slopes gentler than PALSAR-2's incidence (below
            about 0.4 in the demo region's scenes: no layover or shadow); :data:`STEEP_RELIEF_M`
            makes the mountains a steep range whose fore-slopes lie in layover and back-slopes in
            radar shadow.
    """

    seed: int = 0
    pixel_m: float = 75.0
    land_bias: float = 0.05
    urban_threshold: float = 0.22
    relief_m: float = 500.0

    def __post_init__(self):
        if not 1.0 <= self.pixel_m <= 2000.0:
            raise InputError(f"world pixel size must be 1..2000 m, not {self.pixel_m}")
        if not 0.0 <= self.relief_m <= 10_000.0:
            raise InputError(f"world relief must be 0..10000 m, not {self.relief_m}")


@dataclass
class Landscape:
    """Per-point fields (all arrays the shape of the input points).

    Attributes:
        codes: uint8 JAXA codes (0 = no data: open sea outside the mapped area).
        elevation_m: float32 terrain height in metres (0 at sea).
        object_key: float32 in [0, 1), constant over a parcel / block / stand.
        open_sea: bool, sea water (as opposed to inland water).
    """

    codes: np.ndarray
    elevation_m: np.ndarray
    object_key: np.ndarray
    open_sea: np.ndarray


def _grid_hash(x, y, size_u, size_v, angle, seed):
    """Hash and in-cell fractions of a rotated rectangular grid (cell size in km)."""
    c, s = np.cos(angle), np.sin(angle)
    u = (x * c + y * s) / size_u
    v = (-x * s + y * c) / size_v
    iu, iv = np.floor(u), np.floor(v)
    return hash_uniform(iu.astype(np.int64), iv.astype(np.int64), seed), (u - iu), (v - iv)


def _line_distance_km(x, y, scale_km, octaves, seed):
    """Distance (km) to the zero contour of a noise field, |f| / |grad f| (meandering lines)."""
    f, fx, fy = fbm(x, y, scale_km, octaves, seed, grad=True)
    return np.abs(f) / (np.hypot(fx, fy) + 1e-6)


class _Points:
    """Flat point set with helpers to evaluate fields on a subset only (speed)."""

    def __init__(self, x, y):
        self.x = x.ravel()
        self.y = y.ravel()

    def fbm(self, mask, scale_km, octaves, seed, fill=0.0):
        out = np.full(self.x.shape, fill, dtype=np.float32)
        idx = np.flatnonzero(mask)
        if idx.size:
            out[idx] = fbm(self.x[idx], self.y[idx], scale_km, octaves, seed)
        return out

    def lines(self, mask, scale_km, octaves, seed):
        out = np.full(self.x.shape, np.inf, dtype=np.float32)
        idx = np.flatnonzero(mask)
        if idx.size:
            out[idx] = _line_distance_km(self.x[idx], self.y[idx], scale_km, octaves, seed)
        return out

    def value(self, mask, scale_km, seed):
        out = np.zeros(self.x.shape, dtype=np.float32)
        idx = np.flatnonzero(mask)
        if idx.size:
            out[idx] = value_noise(self.x[idx], self.y[idx], scale_km, seed)
        return out

    def grid(self, mask, size_u, size_v, angle, seed):
        h = np.zeros(self.x.shape, dtype=np.float32)
        fu = np.zeros(self.x.shape, dtype=np.float32)
        fv = np.zeros(self.x.shape, dtype=np.float32)
        idx = np.flatnonzero(mask)
        if idx.size:
            a = angle[idx] if np.ndim(angle) else angle
            h[idx], fu[idx], fv[idx] = _grid_hash(self.x[idx], self.y[idx], size_u, size_v, a, seed)
        return h, fu, fv


def landscape(x: np.ndarray, y: np.ndarray, cfg: WorldConfig) -> Landscape:
    """Evaluate the world at points ``(x, y)`` in km (any equal shapes)."""
    # long: on purpose, one recipe read top to bottom (terrain, water, then each
    # land use painted over the last), where every layer's seed and mask depend on the layers
    # before; split into functions it would pass a dozen arrays around and hide that order.
    shape = np.shape(x)
    p = _Points(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    s = cfg.seed * 1000
    px = cfg.pixel_m / 1000.0  # pixel size in km
    everywhere = np.ones(p.x.shape, dtype=bool)

    # Terrain: a continental field plus hills; the sea is where e < 0.
    e = 0.45 * p.fbm(everywhere, 160.0, 3, s + 2) + 0.55 * p.fbm(everywhere, 40.0, 5, s + 1) + cfg.land_bias
    land = e >= 0
    # Heights in metres: the broad form of e plus steep valleys and ridges in the mountains,
    # which give the terrain-driven brightness of the scenes.
    relief = np.clip(3.0 * e, 0.0, 1.0)
    elevation = 2400.0 * np.clip(e, 0.0, None) ** 1.35 + float(cfg.relief_m) * relief * (p.fbm(land, 4.0, 3, s + 30) + 1.0)
    elevation = elevation.astype(np.float32)
    lowland = land & (e < 0.10 + 0.05 * p.fbm(land & (e < 0.2), 12.0, 3, s + 4))
    upland = land & ~lowland

    codes = np.zeros(p.x.shape, dtype=np.uint8)
    key = np.zeros(p.x.shape, dtype=np.float32)
    region_angle = np.zeros(p.x.shape, dtype=np.float32)
    region_angle[land] = hash_uniform(
        np.floor(p.x[land] / 20.0).astype(np.int64), np.floor(p.y[land] / 20.0).astype(np.int64), s + 7
    ) * np.float32(np.pi / 2)

    # Forest on the uplands; stand types from elevation, warmth and plantations.
    stand, _, _ = p.grid(upland, 14 * px, 10 * px, region_angle, s + 21)
    kind = p.fbm(upland, 5.0, 3, s + 12)
    forest = np.where(stand < 0.5, ENF, DBF).astype(np.uint8)  # cedar/cypress plantations vs natural
    forest = np.where((e < 0.32) & (kind > 0.18), EBF, forest)
    forest = np.where((e > 0.45) & (stand >= 0.15), DBF, forest)
    forest = np.where((e > 0.6) & (kind < -0.25), DNF, forest)
    codes[upland] = forest[upland]
    key[upland] = stand[upland]

    # Alpine grassland, landslide scars and quarries.
    codes[land & (e > 0.9)] = GRASS
    steep = land & (e > 0.3)
    codes[steep & (p.fbm(steep, 0.8 + 20 * px, 2, s + 22) > 0.72)] = BARE

    # Lowland agriculture on rotated parcels.
    parcel, _, _ = p.grid(lowland, 5 * px, 9 * px, region_angle, s + 23)
    preference = p.fbm(lowland, 60.0, 2, s + 8)  # paddy-dominated vs upland-crop regions
    p_paddy = 0.52 + 0.25 * preference
    p_crop = 0.28 - 0.18 * preference
    farm_kind = np.where(parcel < p_paddy, PADDY, np.where(parcel < p_paddy + p_crop, CROP,
                np.where(parcel < p_paddy + p_crop + 0.13, GRASS, BARE))).astype(np.uint8)
    codes[lowland] = farm_kind[lowland]
    key[lowland] = parcel[lowland]

    # Greenhouses: clusters of small rectangles inside farmland.
    gh_zone = lowland & (p.fbm(lowland, 6.0, 2, s + 9) > 0.42)
    gh, gu, gv = p.grid(gh_zone, 3 * px, 5 * px, region_angle, s + 24)
    greenhouse = gh_zone & (gh < 0.45) & (gu < 0.75) & (gv < 0.8)
    codes[greenhouse] = GREENHOUSE
    key[greenhouse] = gh[greenhouse]

    # Bamboo groves on the foot of the hills; golf courses and pastures in low hills.
    foot = upland & (e < 0.25)
    codes[foot & (p.fbm(foot, 1.2 + 10 * px, 2, s + 11) > 0.3)] = BAMBOO
    codes[foot & (p.fbm(foot, 3.0, 2, s + 25) > 0.6)] = GRASS

    # Cities (blocks with parks and construction sites) and villages.
    settled = land & (e < 0.3)
    urban_potential = p.fbm(settled, 35.0, 4, s + 5, fill=-9.0) + 1.1 * (0.12 - e)
    urban = settled & (urban_potential > cfg.urban_threshold)
    rural = settled & (e < 0.22) & (urban_potential > 0.1) & ~urban
    village = rural & (p.fbm(rural, 1.0 + 15 * px, 2, s + 6) > 0.55)
    town = urban | village
    block, _, _ = p.grid(town, 6 * px, 6 * px, region_angle, s + 26)
    town_kind = np.where(block < 0.07, GRASS, np.where(block < 0.10, BARE, BUILT)).astype(np.uint8)
    codes[town] = town_kind[town]
    key[town] = block[town]

    # Solar farms: rare rectangles on farmland and cleared hillsides.
    sunny = land & ~urban & (e < 0.35)
    solar_zone = sunny & (p.fbm(sunny, 10.0, 2, s + 10) > 0.4)
    sb, su, sv = p.grid(solar_zone, 8 * px, 12 * px, region_angle + 0.2, s + 27)
    solar = solar_zone & (sb < 0.07) & (su > 0.1) & (sv > 0.1)
    codes[solar] = SOLAR
    key[solar] = sb[solar]

    # Lakes with wetland margins, and coastal marshes.
    low = land & (e < 0.2)
    lake_field = p.fbm(low, 9.0, 3, s + 13, fill=-9.0)
    lake = low & (lake_field > 0.5)
    marsh_noise = p.fbm(low, 1.5, 2, s + 14, fill=-9.0)
    wetland = low & (((lake_field > 0.4) & (marsh_noise > 0.0)) | ((e < 0.025) & (marsh_noise > 0.45)))
    codes[wetland & ~lake] = WETLAND
    codes[lake] = WATER

    # Rivers: a network of 1-3 px streams and a few wide rivers with gravel bars.
    hills = land & (e < 0.5)
    stream_km = p.lines(hills, 30.0, 3, s + 15)
    width_px = 1.0 + 2.0 * (0.5 + 0.5 * p.value(hills, 25.0, s + 16))
    stream = hills & (stream_km < 0.5 * width_px * px)
    plain = land & (e < 0.25)
    major_km = p.lines(plain, 70.0, 2, s + 17)
    major_half = (2.0 + 1.5 * (0.5 + 0.5 * p.value(plain, 40.0, s + 18))) * px
    major = plain & (major_km < major_half)
    bars = plain & ~major & (major_km < major_half + 2.0 * px)
    codes[bars] = np.where(p.value(bars, 2.0, s + 19)[bars] > 0.0, BARE, GRASS)
    codes[stream | major] = WATER

    # Beaches on part of the coast.
    shore = land & (e < 0.006)
    codes[shore & (p.fbm(shore, 3.0, 2, s + 3) > 0.1)] = BARE

    # Sea: mapped as water near the shore, no data offshore.
    open_sea = ~land
    codes[open_sea & (e > -0.10)] = WATER
    codes[open_sea & (e <= -0.10)] = NODATA
    return Landscape(
        codes=codes.reshape(shape),
        elevation_m=elevation.reshape(shape),
        object_key=key.reshape(shape),
        open_sea=open_sea.reshape(shape),
    )
