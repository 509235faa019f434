"""Land change in the synthetic world between months, with its truth.

The world of :mod:`nationmap.data.synth.world` is the land cover of a config's first month (the
epoch of its LULC tiles, as JAXA's HRLULC is of its own years). Each later month may bring change
events (:class:`ChangeEvent`), each a rotated rectangle in the world's km plane that turns the
pixels of some classes inside it to another class:

    clearing      forest or bamboo -> bare land          (felling, landslide repair)   permanent
    construction  cropland or grassland -> built-up      (housing, roads, warehouses)  permanent
    solar         cropland, grassland, bare -> solar     (a new solar farm)             permanent
    flood         paddy, cropland, grassland, bare,      (a river in flood)             gone again
                  wetland -> water                                                      the next month

A month is quiet (no event) with probability ``quiet_share``; otherwise its number of events is
Poisson with mean ``rate`` x the region's km^2 / 1,000. Events are drawn from the config's seed
and months alone, so equal configs give equal events; a pixel's truth in a month is its first
month's class with every event active in that month applied in order (a later event wins). Only
pixels of the event's source classes change (a clearing leaves the river through it), judged on the
first month's classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np

from nationmap.data.months import Month, parse_month
from nationmap.data.synth import world as W
from nationmap.data.synth.noise import KM_PER_DEG_LAT, KM_PER_DEG_LON_EQ, lonlat_to_km


@dataclass(frozen=True)
class ChangeKind:
    """What one kind of event does: the JAXA codes it changes, the code they become, its size (the
    rectangle's sides in pixels of the world's nominal resolution), its share of the events and
    how many months it lasts (0: permanent)."""

    sources: tuple[int, ...]
    target: int
    size_px: tuple[float, float]
    share: float
    months: int = 0


KINDS: dict[str, ChangeKind] = {
    "clearing": ChangeKind((W.DBF, W.DNF, W.EBF, W.ENF, W.BAMBOO), W.BARE, (8.0, 24.0), 0.35),
    "construction": ChangeKind((W.CROP, W.GRASS), W.BUILT, (5.0, 14.0), 0.25),
    "solar": ChangeKind((W.CROP, W.GRASS, W.BARE), W.SOLAR, (6.0, 16.0), 0.15),
    "flood": ChangeKind((W.PADDY, W.CROP, W.GRASS, W.BARE, W.WETLAND), W.WATER, (10.0, 30.0), 0.25, months=1),
}
PLACEMENT_TRIES = 64  # candidate centres tried for an event before the month goes without it


@dataclass(frozen=True)
class ChangeEvent:
    """One change on the ground.

    Attributes:
        event: its number (0, 1, ... in the order drawn).
        kind: a key of :data:`KINDS`.
        month: ``YYYY-MM``, the first month it is on the ground.
        until: ``YYYY-MM``, the first month it is gone again (a flood's retreat); "" if permanent.
        lon, lat: its centre (degrees).
        length_m, width_m: the rectangle's sides (m).
        angle_deg: the long side's angle from east, counter-clockwise (degrees).
    """

    event: int
    kind: str
    month: str
    until: str
    lon: float
    lat: float
    length_m: float
    width_m: float
    angle_deg: float

    def active(self, month: str) -> bool:
        return self.month <= month and (not self.until or month < self.until)

    @property
    def area_km2(self) -> float:
        """The rectangle's area (km^2); the pixels that change are those of its source classes."""
        return self.length_m * self.width_m / 1e6

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """bool, the points (world km, any equal shapes) inside the rectangle."""
        cx, cy = lonlat_to_km(self.lon, self.lat)
        a = np.radians(self.angle_deg)
        dx, dy = x - cx, y - cy
        u = dx * np.cos(a) + dy * np.sin(a)
        v = -dx * np.sin(a) + dy * np.cos(a)
        return (np.abs(u) <= self.length_m / 2000.0) & (np.abs(v) <= self.width_m / 2000.0)

    def to_dict(self) -> dict:
        kind = KINDS[self.kind]
        return {**asdict(self), "from_codes": ",".join(map(str, kind.sources)), "to_code": kind.target,
                "area_km2": round(self.area_km2, 6)}


def apply_changes(codes: np.ndarray, x: np.ndarray, y: np.ndarray, month: str,
                  events: tuple[ChangeEvent, ...]) -> np.ndarray:
    """The JAXA codes of ``month``: ``codes`` (the first month's, at points ``x, y`` in world km)
    with every event active in ``month`` applied; a new array, ``codes`` unchanged."""
    out = codes.copy()
    for event in events:
        if not event.active(month):
            continue
        reach = max(event.length_m, event.width_m) / 2000.0
        cx, cy = lonlat_to_km(event.lon, event.lat)
        near = np.flatnonzero((np.abs(x - cx) <= reach).ravel() & (np.abs(y - cy) <= reach).ravel())
        if not near.size:
            continue
        kind = KINDS[event.kind]
        hit = event.inside(x.ravel()[near], y.ravel()[near]) & np.isin(codes.ravel()[near], kind.sources)
        out.ravel()[near[hit]] = kind.target
    return out


def cell_km2(lat: float) -> float:
    """km^2 of a 1 x 1 degree cell whose southern edge is at ``lat`` (the world's plate carree)."""
    return KM_PER_DEG_LAT * KM_PER_DEG_LON_EQ * float(np.cos(np.radians(lat + 0.5)))


def with_changes(land: W.Landscape, x: np.ndarray, y: np.ndarray, month: str,
                 events: tuple[ChangeEvent, ...]) -> W.Landscape:
    """``land`` (the first month's, at points ``x, y`` in world km) in ``month``: its codes changed
    by the active events; a changed pixel's object key is that of its event's pixels (one new
    field, building block or panel array), so its backscatter is of one object, not of the old
    parcel's."""
    codes = apply_changes(land.codes, x, y, month, events)
    changed = codes != land.codes
    if not changed.any():
        return land
    key = land.object_key.copy()
    key[changed] = np.mod(np.float32(0.618034) * (codes[changed] + np.float32(0.5)), np.float32(1.0))
    return dataclasses.replace(land, codes=codes, object_key=key)


def plan_changes(cells: tuple[tuple[float, float], ...], months: tuple[str, ...], world: W.WorldConfig,
                 rate: float, quiet_share: float) -> tuple[ChangeEvent, ...]:
    """The events of ``months`` after the first, in the 1 x 1 degree ``cells`` (their south-west
    corners, lon/lat degrees): see the module docstring (``rate``: events per 1,000 km^2 of the
    cells and month)."""
    if rate <= 0 or not cells:
        return ()
    ordered = sorted(parse_month(m) for m in months)
    region_km2 = sum(cell_km2(lat) for _, lat in cells)
    events: list[ChangeEvent] = []
    names = list(KINDS)
    shares = np.array([KINDS[k].share for k in names])
    for month in ordered[1:]:
        rng = np.random.default_rng([world.seed, 1709, month.year, month.month])
        if rng.uniform() < quiet_share:
            continue
        for _ in range(rng.poisson(rate * region_km2 / 1000.0)):
            kind = names[rng.choice(len(names), p=shares / shares.sum())]
            event = _place(kind, month, len(events), cells[rng.integers(len(cells))], world, rng)
            if event is not None:
                events.append(event)
    return tuple(events)


def _place(kind: str, month: Month, number: int, cell: tuple[float, float], world: W.WorldConfig,
           rng: np.random.Generator) -> ChangeEvent | None:
    """An event of ``kind`` in ``cell`` (its south-west corner), centred on a pixel of one of its
    source classes (None if none of :data:`PLACEMENT_TRIES` random centres is one)."""
    spec = KINDS[kind]
    lon = rng.uniform(cell[0], cell[0] + 1.0, PLACEMENT_TRIES)
    lat = rng.uniform(cell[1], cell[1] + 1.0, PLACEMENT_TRIES)
    sides = rng.uniform(*spec.size_px, size=2) * world.pixel_m
    angle = float(rng.uniform(0.0, 180.0))
    fits = np.isin(W.landscape(*lonlat_to_km(lon, lat), world).codes, spec.sources)
    if not fits.any():
        return None
    i = int(np.argmax(fits))
    until = ""
    if spec.months:
        end = month
        for _ in range(spec.months):
            end = end.next()
        until = str(end)
    return ChangeEvent(number, kind, str(month), until, float(lon[i]), float(lat[i]), float(sides.max()),
                       float(sides.min()), angle)
