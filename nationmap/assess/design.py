"""A stratified random sample of a map's pixels, its strata the map's classes (Olofsson et al.
2014, section 4): how many points, how they are allocated, and which pixels they are.

The map is one or more rasters of one categorical layer (a month's cell COGs, or any GeoTIFF or
VRT in degrees). A first pass counts every class's pixels ``N_h`` and area ``A_h`` (km^2 on the
ellipsoid); each stratum's ``n_h`` pixels are then drawn with equal probability without
replacement, as ranks among the stratum's pixels in raster order, found in a second pass. Both
passes read strips of rows, so memory does not grow with the map.

Allocations of ``n`` points (every stratum gets at least 2, for its variance, or all its
pixels when it has fewer):

    proportional      n_h ~ W_h (the stratum's share of the area)
    equal             n_h = n / H
    neyman            n_h ~ W_h * sqrt(U_h (1 - U_h)), U_h the anticipated user's accuracy
    min-per-class=M   at least M per stratum, the rest proportional (the paper's advice for
                      rare classes)

Sample size for a target standard error ``S`` of overall accuracy (the paper's eq. 13, after
Cochran 1977): ``n = (sum_h W_h * sqrt(U_h (1 - U_h)) / S)^2``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage
from rasterio.windows import Window

from nationmap.assess.estimators import Strata
from nationmap.errors import InputError
from nationmap.files import sha256_file
from nationmap.products.areas import CODES, STRIP_ROWS, row_areas_km2

ALLOCATIONS = ("proportional", "equal", "neyman", "min-per-class")
_MIN_PER_CLASS = re.compile(r"^min-per-class=(\d+)$")
MIN_STRATUM_SAMPLE = 2  # a stratum's variance needs two points


@dataclass(frozen=True)
class Allocation:
    """How ``n`` is shared among strata: ``method`` of ALLOCATIONS, ``minimum`` for min-per-class."""

    method: str
    minimum: int = 0

    @classmethod
    def parse(cls, text: str) -> "Allocation":
        """``proportional``, ``equal``, ``neyman`` or ``min-per-class=M``; InputError otherwise."""
        m = _MIN_PER_CLASS.match(text.strip())
        if m:
            return cls("min-per-class", int(m.group(1)))
        if text.strip() in ALLOCATIONS[:-1]:  # min-per-class takes its M above
            return cls(text.strip())
        raise InputError(f"allocation {text!r}: expected proportional, equal, neyman or min-per-class=M")

    def __str__(self) -> str:
        return f"min-per-class={self.minimum}" if self.method == "min-per-class" else self.method


def accuracy_spread(expected_ua: np.ndarray) -> np.ndarray:
    """(H,) ``sqrt(U (1 - U))``: the standard deviation of a stratum's correct/incorrect outcome."""
    u = np.clip(np.asarray(expected_ua, float), 0.0, 1.0)
    return np.sqrt(u * (1 - u))


def sample_size(weights: np.ndarray, expected_ua: np.ndarray, target_se: float) -> int:
    """Points for a standard error ``target_se`` of overall accuracy under stratified random
    sampling (the paper's eq. 13): ``weights`` (H,) area shares, ``expected_ua`` (H,)."""
    if not 0 < target_se < 1:
        raise InputError(f"target standard error {target_se}: expected between 0 and 1")
    return max(1, math.ceil((float(np.dot(weights, accuracy_spread(expected_ua))) / target_se) ** 2))


def overall_se(weights: np.ndarray, expected_ua: np.ndarray, counts: np.ndarray) -> float:
    """The standard error of overall accuracy an allocation ``counts`` (H,) should give."""
    s = accuracy_spread(expected_ua)
    n = np.maximum(np.asarray(counts, float), 1.0)
    return float(np.sqrt(np.sum(np.asarray(weights) ** 2 * s ** 2 / n)))


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    """Integers proportional to ``shares`` summing to ``total`` (Hamilton's method)."""
    if total <= 0 or shares.sum() <= 0:
        return np.zeros(len(shares), int)
    exact = shares / shares.sum() * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def allocate(n: int, weights: np.ndarray, pixels: np.ndarray, allocation: Allocation,
             expected_ua: np.ndarray | None = None) -> np.ndarray:
    """(H,) sample sizes summing to ``n`` (less only where strata hold fewer pixels): every
    stratum at least ``min(2, N_h)`` (min-per-class: ``min(M, N_h)``), none above ``N_h``."""
    weights, pixels = np.asarray(weights, float), np.asarray(pixels, int)
    floor = np.minimum(pixels, max(MIN_STRATUM_SAMPLE, allocation.minimum))
    if n < floor.sum():
        raise InputError(f"--n {n} is too small: the {len(pixels)} strata need at least {int(floor.sum())} points "
                         f"({allocation} gives each at least {max(MIN_STRATUM_SAMPLE, allocation.minimum)})")
    if allocation.method == "equal":
        shares = np.ones(len(weights))
    elif allocation.method == "neyman":
        spread = accuracy_spread(expected_ua if expected_ua is not None else np.full(len(weights), 0.8))
        shares = weights * np.maximum(spread, 1e-6)
    else:
        shares = weights.copy()
    counts = floor.copy()
    # the points above the floors, shared out; a stratum that would pass its N_h is capped and the
    # rest shared again among the others
    open_ = counts < pixels
    while (left := n - counts.sum()) > 0 and open_.any():
        extra = _largest_remainder(left, np.where(open_, shares, 0.0) if shares[open_].sum() > 0 else open_ * 1.0)
        counts = np.minimum(counts + extra, pixels)
        open_ = counts < pixels
    return counts


BUFFER_BASE = 100  # a buffer stratum's code: BUFFER_BASE + the class it surrounds


@dataclass(frozen=True)
class Buffer:
    """A stratum of the map's pixels within ``pixels`` px (8-neighbour steps) of class ``code``
    and not of it: where that class's omission errors are likely (Olofsson et al. 2014, 5.1.3:
    a rare class's omissions otherwise hide in the large strata, where few points fall)."""

    code: int
    pixels: int

    def __post_init__(self):
        if not 0 <= self.code < BUFFER_BASE or not 1 <= self.pixels <= 50:
            raise InputError(f"buffer {self.code}={self.pixels}: a class code below {BUFFER_BASE} and 1-50 px")

    @property
    def stratum(self) -> int:
        return BUFFER_BASE + self.code

    @classmethod
    def parse(cls, text: str) -> "Buffer":
        """``CODE=PX``, e.g. ``7=2``."""
        code, _, px = text.partition("=")
        try:
            return cls(int(code), int(px))
        except ValueError:
            raise InputError(f"--buffer {text!r}: expected CODE=PX, e.g. 7=2") from None


def strata_strip(ds, top: int, height: int, buffers: tuple[Buffer, ...], nodata: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) stratum codes and map codes of rows ``top .. top + height`` of a map: the map's code,
    or a buffer's stratum (the first buffer that claims a pixel) where it is mapped and within the
    buffer's reach of its class; rows beyond the strip are read so that reach crosses strips."""
    halo = max((b.pixels for b in buffers), default=0)
    lo, hi = max(0, top - halo), min(ds.height, top + height + halo)
    codes = ds.read(1, window=Window(0, lo, ds.width, hi - lo))
    strata = codes.copy()
    free = codes != nodata if nodata is not None else np.ones(codes.shape, bool)
    for b in buffers:
        near = ndimage.binary_dilation(codes == b.code, structure=np.ones((3, 3), bool), iterations=b.pixels)
        claim = near & free & (codes != b.code)
        strata[claim] = b.stratum
        free &= ~claim
    cut = slice(top - lo, top - lo + height)
    return strata[cut], codes[cut]


@dataclass(frozen=True)
class Census:
    """Per raster, (256,) pixel counts and km^2 of every stratum code (the map's codes and the
    buffers', no data included), and km^2 of every map code."""

    rasters: tuple[Path, ...]
    pixels: np.ndarray  # (R, 256) int64
    km2: np.ndarray  # (R, 256) float64
    map_km2: np.ndarray  # (R, 256) float64
    buffers: tuple[Buffer, ...] = ()
    nodata: int | None = None


def _check_map_raster(ds, path: Path) -> None:
    if ds.count < 1 or ds.dtypes[0] != "uint8":
        raise InputError(f"{path}: a map layer must be a single-band uint8 class raster (found {ds.dtypes[0]})")
    if ds.crs is None or not ds.crs.is_geographic:
        raise InputError(f"{path}: the map must be in degrees (EPSG:4326), found {ds.crs}")
    t = ds.transform
    if t.b or t.d or t.e >= 0:
        raise InputError(f"{path}: the map must be a north-up grid (no rotation, rows from north to south)")


def _open(path: Path):
    """A map raster opened for reading; InputError (naming it) if it is missing or unreadable."""
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None


def census(rasters: list[Path], buffers: tuple[Buffer, ...] = (), nodata: int | None = None) -> Census:
    """Pass 1: every stratum's pixels and area, and every map code's area, in each raster (strips
    of rows)."""
    pixels = np.zeros((len(rasters), CODES), np.int64)
    km2, map_km2 = np.zeros((len(rasters), CODES)), np.zeros((len(rasters), CODES))
    for r, path in enumerate(rasters):
        with _open(path) as ds:
            _check_map_raster(ds, path)
            rows = row_areas_km2(ds.transform, ds.height)
            for top in range(0, ds.height, STRIP_ROWS):
                height = min(STRIP_ROWS, ds.height - top)
                strata, codes = strata_strip(ds, top, height, buffers, nodata)
                areas = np.repeat(rows[top:top + height], ds.width)
                pixels[r] += np.bincount(strata.ravel(), minlength=CODES)
                km2[r] += np.bincount(strata.ravel(), areas, minlength=CODES)
                map_km2[r] += np.bincount(codes.ravel(), areas, minlength=CODES)
    return Census(tuple(rasters), pixels, km2, map_km2, tuple(buffers), nodata)


@dataclass(frozen=True)
class SamplePixel:
    """One drawn pixel: the raster (index into the census), its row and column, its stratum and
    map code, the longitude and latitude of its centre (degrees) and its area (km^2)."""

    raster: int
    row: int
    col: int
    code: int
    map_code: int
    lon: float
    lat: float
    km2: float


def draw(census: Census, counts: dict[int, int], rng: np.random.Generator) -> list[SamplePixel]:
    """Pass 2: ``counts[code]`` pixels of each code, equal probability without replacement
    (grouped by raster and strip of rows; callers sort them)."""
    wanted: dict[int, dict[int, np.ndarray]] = {r: {} for r in range(len(census.rasters))}
    for code, n in counts.items():
        per_raster = census.pixels[:, code]
        ranks = np.sort(rng.choice(int(per_raster.sum()), size=n, replace=False))
        starts = np.concatenate([[0], np.cumsum(per_raster)])
        for r in range(len(census.rasters)):
            mine = ranks[(ranks >= starts[r]) & (ranks < starts[r + 1])] - starts[r]
            if mine.size:
                wanted[r][code] = mine
    out: list[SamplePixel] = []
    for r, by_code in wanted.items():
        if by_code:
            out += _pixels_at_ranks(census, r, by_code)
    return out


def _pixels_at_ranks(census: Census, r: int, by_code: dict[int, np.ndarray]) -> list[SamplePixel]:
    """The pixels of raster ``r`` whose rank among the pixels of their stratum is in ``by_code``."""
    found: list[SamplePixel] = []
    seen = {code: 0 for code in by_code}
    with _open(census.rasters[r]) as ds:
        rows = row_areas_km2(ds.transform, ds.height)
        for top in range(0, ds.height, STRIP_ROWS):
            strata, codes = strata_strip(ds, top, min(STRIP_ROWS, ds.height - top), census.buffers, census.nodata)
            strata, codes = strata.ravel(), codes.ravel()
            for code, ranks in by_code.items():
                where = np.flatnonzero(strata == code)
                local = ranks[(ranks >= seen[code]) & (ranks < seen[code] + where.size)] - seen[code]
                seen[code] += where.size
                for flat in where[local]:
                    row, col = top + int(flat) // ds.width, int(flat) % ds.width
                    lon, lat = ds.xy(row, col)
                    found.append(SamplePixel(r, row, col, code, int(codes[flat]), float(lon), float(lat),
                                             float(rows[row])))
    return found


@dataclass(frozen=True)
class MapLayer:
    """The rasters of one categorical layer, its legend (code -> name) and no-data code."""

    source: Path
    product: str
    rasters: tuple[Path, ...]
    legend: dict[int, str]
    nodata: int | None
    checksums: dict[str, str]  # raster (relative to ``source`` when it is a directory) -> SHA-256


def _legend(path: Path) -> tuple[dict[int, str], int | None]:
    """The class names a raster's band metadata gives (``CLASS_<code>``) and its no-data code."""
    with _open(path) as ds:
        _check_map_raster(ds, path)
        tags = ds.tags(1)
        nodata = None if ds.nodata is None else int(ds.nodata)
    legend = {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}
    return dict(sorted(legend.items())), nodata


def layer_checksums(cells, product: str) -> dict[str, str]:
    """``cells/<cell>/<file>`` -> SHA-256 of the ``product`` COG of each cell record that has one:
    what names a run's map (a sample's design, a run that publishes its assessment)."""
    return {f"cells/{c.cell}/{c.files[product].path}": c.files[product].sha256 for c in cells if product in c.files}


def map_layer(source: str | Path, product: str = "lulc") -> MapLayer:
    """The layer ``product`` of a month's products (a run directory, or a published version: its
    ``manifest.json`` names the cell COGs), or a single raster file (its own legend)."""
    from nationmap.records import RunManifest

    source = Path(source).resolve()  # raster names in a sample are relative to it
    if source.is_dir():
        if not (source / "manifest.json").is_file():
            raise InputError(f"{source}: no manifest.json (not a month's products, a version or a raster)")
        manifest = RunManifest.read(source / "manifest.json")
        checksums = layer_checksums(manifest.ok_cells(), product)
        if not checksums:
            raise InputError(f"{source}: no cell has a {product!r} layer")
        rasters = tuple(source / rel for rel in checksums)
    elif source.is_file():
        rasters, checksums = (source,), {source.name: sha256_file(source)}
    else:
        raise InputError(f"{source}: no such products directory or raster")
    legend, nodata = _legend(rasters[0])
    return MapLayer(source, product, rasters, legend, nodata, checksums)


@dataclass(frozen=True)
class StrataCensus:
    """The strata of a map: every code with pixels except no data, its pixels ``N_h`` and km^2."""

    codes: tuple[int, ...]
    pixels: np.ndarray  # (H,) int64
    km2: np.ndarray  # (H,) float64
    map_km2: dict[int, float]  # the map's area of each of its classes (buffers aside)

    @property
    def weights(self) -> np.ndarray:
        """(H,) each stratum's share of the map's area."""
        return self.km2 / self.km2.sum()

    def table(self) -> Strata:
        """The strata as the estimators take them."""
        return Strata(self.codes, tuple(int(p) for p in self.pixels), tuple(float(a) for a in self.km2))


def strata_of(tally: Census, nodata: int | None) -> StrataCensus:
    """The strata of a census (InputError if the map has no mapped pixel)."""
    px, km2 = tally.pixels.sum(axis=0), tally.km2.sum(axis=0)
    codes = tuple(c for c in range(len(px)) if px[c] > 0 and c != nodata)
    if not codes:
        raise InputError(f"{tally.rasters[0]}: the map has no mapped pixel")
    mapped = tally.map_km2.sum(axis=0)
    classes = {c: float(mapped[c]) for c in range(len(mapped)) if mapped[c] > 0 and c != nodata}
    return StrataCensus(codes, px[list(codes)], km2[list(codes)], classes)


def values_at(ds, lons: np.ndarray, lats: np.ndarray, out: np.ndarray) -> None:
    """Band 1 of the open raster ``ds`` at each point (degrees) it holds, into ``out`` (n,); the
    points outside it keep their value."""
    for i, (lon, lat) in enumerate(zip(lons, lats)):
        row, col = ds.index(lon, lat)
        if 0 <= row < ds.height and 0 <= col < ds.width:
            out[i] = int(ds.read(1, window=Window(col, row, 1, 1))[0, 0])


def map_values_at(layer: MapLayer, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    """(n,) the layer's code at each point (degrees); its no-data code (or -1 without one) where
    no raster of the layer covers the point."""
    out = np.full(len(lons), layer.nodata if layer.nodata is not None else -1, dtype=int)
    for path in layer.rasters:
        with _open(path) as ds:
            values_at(ds, lons, lats, out)
    return out
