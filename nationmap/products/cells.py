"""Combine a month's scene predictions onto one national-grid cell and write its COGs.

For every block of the cell grid (EPSG:4326, ``pixels_per_degree``), each scene's probability
raster (:mod:`nationmap.infer.scene`: validity-premultiplied probabilities, a validity band and
the acquisition's no-data reason) is reprojected onto the block by GDAL (bilinear by default;
the reason band nearest). For scene ``s`` this gives ``P_s = resampled(v * p)`` and
``V_s = resampled(v)`` with ``v`` the scene's validity in [0, 1]. A scene counts at a pixel
when ``V_s >= min_validity`` and its own nearest pixel holds data (reason 0); the month's
probability there is the validity-weighted mean of the counted scenes,

    p = sum_s P_s / sum_s V_s,

and ``count`` the number of counted scenes. A pixel has a class where at least ``min_count``
scenes counted; elsewhere its no-data reason is the strongest of what the covering scenes
said (layover, shadow, invalid input, not observed: :mod:`nationmap.products.pixels`).
The acquisition that decided a pixel is the counted one that gave the chosen LULC class its
highest validity-weighted probability (without a LULC model: the one with the highest validity);
a pixel without a class has none. Every product
of :mod:`nationmap.products.layers` is then a function of that block. Scenes are summed in a
fixed (sorted) order so reruns give identical bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from nationmap.data.grid import Cell
from nationmap.errors import InputError, describe
from nationmap.files import sha256_file, write_json
from nationmap.parallel import node_id
from nationmap.products import pixels
from nationmap.products.cog import MEMORY_STAGING_BYTES, discard_staging, open_staging, part_path, translate_to_cog
from nationmap.products.layers import Layer
from nationmap.records import CellJob, CellRecord, FileEntry

RESAMPLINGS = ("bilinear", "nearest", "average", "cubic")
SCENE_RASTER_FORMAT = "nationmap-scene-raster/2"
"""The bands of a scene probability raster (:class:`BandLayout`); 2: with the no-data reason band."""


@dataclass(frozen=True)
class CellSettings:
    """How scenes become a cell.

    Attributes:
        pixels_per_degree: national grid resolution (JAXA: 12000, about 10 m; demo: 1200).
        block: side (px) of the blocks a cell is processed in (bounds memory).
        resampling: GDAL resampling of probabilities from scene to cell grid.
        min_validity: resampled validity a scene needs at a pixel to count there.
        water_threshold: water probability at or above which a pixel is water.
        min_count: acquisitions a pixel needs to get a class (fewer: no-data reason "low
            coverage").
    """

    pixels_per_degree: int = 12000
    block: int = 2048
    resampling: str = "bilinear"
    min_validity: float = 0.5
    water_threshold: float = 0.5
    min_count: int = 1

    def __post_init__(self):
        if not 12 <= self.pixels_per_degree <= 36000:
            raise InputError(f"pixels per degree must be 12..36000, not {self.pixels_per_degree}")
        if self.block < 256 or self.block % 256:
            raise InputError("cell block must be a multiple of 256 px")
        if self.resampling not in RESAMPLINGS:
            raise InputError(f"resampling must be one of {', '.join(RESAMPLINGS)}")
        if not 0 < self.min_validity <= 1 or not 0 < self.water_threshold < 1:
            raise InputError("min_validity must be in (0, 1] and water_threshold in (0, 1)")
        if not 1 <= self.min_count <= 255:
            raise InputError(f"min_count must be 1..255 acquisitions, not {self.min_count}")


@dataclass(frozen=True)
class BandLayout:
    """Bands of the scene probability rasters: ``lulc_codes`` class bands (in code order), then
    a water band if ``water``, then validity, then the acquisition's no-data reason
    (:mod:`nationmap.products.pixels`: 0 valid, 2 no data, 3 invalid, 4 shadow, 5 layover)."""

    lulc_codes: tuple[int, ...]
    water: bool

    @property
    def probabilities(self) -> int:
        return len(self.lulc_codes) + int(self.water)

    @property
    def count(self) -> int:
        return self.probabilities + 2


@dataclass(frozen=True)
class SceneInput:
    """One acquisition's probability raster as a cell reads it: its path, its bounds in degrees,
    its index in the month's acquisition table and its day (days since the month's first day)."""

    path: str
    bounds: tuple[float, float, float, float]
    index: int
    day: int


def product_name(cell: str, month: str, product: str) -> str:
    return f"{cell}_{month}_{product}.tif"


def _blocks(n: int, block: int):
    for r in range(0, n, block):
        for c in range(0, n, block):
            yield Window(c, r, min(block, n - c), min(block, n - r))


def scene_inputs(scenes: list[str], indexes: list[int], days: list[int], layout: BandLayout) -> list[SceneInput]:
    """The scenes of a cell with their bounds in degrees; checks each raster's band layout."""
    out = []
    for path, index, day in zip(scenes, indexes, days):
        if not 0 <= index < pixels.NO_SOURCE:
            raise InputError(f"acquisition index {index}: the source layer holds 0..{pixels.NO_SOURCE - 1}")
        with rasterio.open(path) as src:
            if src.count != layout.count:
                raise InputError(f"{path}: {src.count} bands, expected {layout.count} (models or nationmap changed?)")
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        out.append(SceneInput(path, bounds, index, day))
    return out


def _overlaps(scene: SceneInput, west: float, south: float, east: float, north: float) -> bool:
    l, b, r, t = scene.bounds
    return l < east and r > west and b < north and t > south


class _Sums:
    """The running sums of one block over the acquisitions (see the module docstring)."""

    def __init__(self, layout: BandLayout, h: int, w: int):
        k, n = layout.probabilities, len(layout.lulc_codes)
        self.p = np.zeros((k, h, w), dtype=np.float32)
        self.v = np.zeros((h, w), dtype=np.float32)
        self.count = np.zeros((h, w), dtype=np.uint16)
        self.reason = np.full((h, w), pixels.NOT_OBSERVED, dtype=np.uint8)
        # per LULC class (or validity alone without one): the best single acquisition so far, its
        # probability x 255 in uint8 (what the scene raster stored) and its index
        self.best = np.zeros((max(n, 1), h, w), dtype=np.uint8)
        self.best_source = np.full((max(n, 1), h, w), pixels.NO_SOURCE, dtype=np.uint16)
        self.n = n

    def add(self, scene: SceneInput, dest: np.ndarray, reason: np.ndarray, min_validity: float) -> bool:
        """Add one acquisition resampled onto the block (``dest``: its bands; ``reason``: its
        reason band, nearest); returns whether it counted anywhere."""
        v = dest[-1] / 255.0
        # the scene's own pixel (nearest) must hold data too: where it is layover or shadow the
        # resampled validity of its neighbours must not let the scene count
        hit = (v >= min_validity) & (reason == pixels.MAPPED)
        reason = np.where(reason == pixels.MAPPED, pixels.NOT_OBSERVED, reason)  # valid, but not enough
        np.maximum(self.reason, reason, out=self.reason)
        if not hit.any():
            return False
        p = dest[:-1]  # in place: a block is 2k x 2k x K floats, temporaries cost more than the sums
        p *= hit
        support = np.rint(p[: self.n] if self.n else dest[-1:] * hit).astype(np.uint8)  # 0..255
        better = support > self.best
        np.maximum(self.best, support, out=self.best)
        np.copyto(self.best_source, np.uint16(scene.index), where=better)
        np.divide(p, 255.0, out=p)
        self.p += p
        self.v += np.where(hit, v, 0.0)
        self.count += hit
        return True


def _accumulate(scenes: list[SceneInput], layout: BandLayout, cell_transform, window: Window,
                settings: CellSettings, threads: int = 1) -> tuple[_Sums, list[bool]]:
    """The sums over the scenes for one block, and which scenes counted in it."""
    h, w = int(window.height), int(window.width)
    sums = _Sums(layout, h, w)
    transform = rasterio.windows.transform(window, cell_transform)
    west, north = transform * (0, 0)
    east, south = transform * (w, h)
    used = []
    for scene in scenes:
        if not _overlaps(scene, west, south, east, north):
            used.append(False)
            continue
        with rasterio.open(scene.path) as src:
            dest = np.zeros((layout.count - 1, h, w), dtype=np.float32)
            reproject(rasterio.band(src, list(range(1, layout.count))), dest, dst_transform=transform,
                      dst_crs="EPSG:4326", resampling=Resampling[settings.resampling], num_threads=threads,
                      init_dest_nodata=False)
            reason = np.full((h, w), pixels.NOT_OBSERVED, dtype=np.uint8)
            reproject(rasterio.band(src, layout.count), reason, dst_transform=transform, dst_crs="EPSG:4326",
                      resampling=Resampling.nearest, num_threads=threads, init_dest_nodata=False)
        used.append(sums.add(scene, dest, reason, settings.min_validity))
    return sums, used


def _block(sums: _Sums, scenes: list[SceneInput], layout: BandLayout, settings: CellSettings,
           outside: np.ndarray | None) -> pixels.CellBlock:
    """The month at one block from its sums (reasons settled, the deciding acquisition found)."""
    has = sums.count > 0
    mean = sums.p / np.where(has, sums.v, 1.0)
    reason = sums.reason
    reason[has] = pixels.MAPPED
    reason[has & (sums.count < settings.min_count)] = pixels.LOW_COVERAGE
    if outside is not None:
        reason[outside] = pixels.OUTSIDE
    mapped = reason == pixels.MAPPED
    quantised = pixels.quantise(mean[: len(layout.lulc_codes)], mapped)
    if layout.lulc_codes:  # the class the published layer shows: the argmax of the published probabilities
        source = np.take_along_axis(sums.best_source, quantised.argmax(0)[None], 0)[0]
    else:
        source = sums.best_source[0]
    source = np.where(mapped, source, pixels.NO_SOURCE)  # a pixel without a class has no deciding acquisition
    lut = np.full(pixels.NO_SOURCE + 1, -1, dtype=np.int16)  # acquisition index -> day (-1: none)
    for scene in scenes:
        lut[scene.index] = scene.day
    return pixels.CellBlock(mean, quantised, sums.count, reason, source, lut[source], layout.lulc_codes,
                            layout.water, settings.water_threshold)


def _outside(region, transform, h: int, w: int) -> np.ndarray | None:
    """(h, w) True where the block lies outside ``region`` (a shapely geometry in degrees), or
    None when there is no region to cut by."""
    if region is None:
        return None
    return rasterio.features.geometry_mask([region], (h, w), transform, all_touched=False)


@dataclass(frozen=True)
class CellOutcome:
    """What combining a cell gave: ``files`` (product -> file name; empty when no pixel of the
    cell was covered), pixel counts of the cell grid, LULC pixels per class code, water pixels,
    the acquisitions that counted, and the wall time (s)."""

    files: dict[str, str]
    pixels: int
    valid_pixels: int
    lulc_pixels: dict[str, int] | None
    water_pixels: int | None
    scenes_used: list[str]
    seconds: float


def _open_stagings(out_dir: Path, cell: Cell, month: str, layers: dict[str, Layer], n: int) -> dict:
    """A staging raster per layer, in memory while the layers' total fits ``MEMORY_STAGING_BYTES``
    (the cell's budget, not each layer's: eight layers of a 12,000 px cell are 1.3 GB), on disk
    for the rest."""
    datasets, budget = {}, MEMORY_STAGING_BYTES
    for p, layer in layers.items():
        size = n * n * layer.count * np.dtype(layer.dtype).itemsize
        staging = part_path(out_dir / f"staging-{product_name(cell.name, month, p)}")
        datasets[p] = open_staging(staging, layer, n, n, "EPSG:4326", cell.transform(n), in_memory=size <= budget)
        budget -= size if size <= budget else 0
    return datasets


def combine_cell(cell: Cell, month: str, scenes: list[SceneInput], out_dir: str | Path, layout: BandLayout,
                 layers: dict[str, Layer], settings: CellSettings, tags: dict | None = None, threads: int = 1,
                 region=None) -> CellOutcome:
    """Write ``OUT_DIR/<cell>_<month>_<product>.tif`` COGs for each of ``layers``.

    ``scenes``: the acquisitions covering the cell (their order is fixed by the caller: sorted);
    ``region``: the region's own area (degrees) when it cuts the cell, else None. ``threads``:
    GDAL warp threads (1 in a Ray task that holds one CPU; the cores when serial). Nothing is
    written when the acquisitions said nothing of any pixel: none covered one with data, or
    flagged one (invalid, shadow, layover) (``files`` empty).
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    n = settings.pixels_per_degree
    transform = cell.transform(n)
    out_dir.mkdir(parents=True, exist_ok=True)
    valid, flagged, used = 0, 0, np.zeros(len(scenes), dtype=bool)
    lulc_hist, water_pixels = np.zeros(256, dtype=np.int64), 0
    datasets = _open_stagings(out_dir, cell, month, layers, n)
    try:
        for window in _blocks(n, settings.block):
            sums, hit = _accumulate(scenes, layout, transform, window, settings, threads)
            used |= np.asarray(hit, dtype=bool)
            block = _block(sums, scenes, layout, settings, _outside(region, rasterio.windows.transform(window, transform),
                                                                    int(window.height), int(window.width)))
            valid += int((sums.count > 0).sum())
            flagged += int((block.reason >= pixels.INVALID).sum())
            for p, layer in layers.items():
                data = layer.compute(block, layer.nodata)
                datasets[p].write(data if data.ndim == 3 else data[None], window=window)
                if p == "lulc":
                    lulc_hist += np.bincount(data.ravel(), minlength=256)
                elif p == "water":
                    water_pixels += int((data == 1).sum())
        files = {}
        for p, layer in (layers.items() if valid or flagged else ()):
            dst = out_dir / product_name(cell.name, month, p)
            translate_to_cog(datasets.pop(p), dst, layer, {"CELL": cell.name, "MONTH": month, "PRODUCT": p, **(tags or {})})
            files[p] = dst.name
        return CellOutcome(files, n * n, valid,
                           {str(c): int(lulc_hist[c]) for c in layout.lulc_codes} if "lulc" in layers else None,
                           water_pixels if "water" in layers else None,
                           [Path(s.path).stem for s, u in zip(scenes, used) if u], time.perf_counter() - t0)
    finally:
        for ds in datasets.values():
            discard_staging(ds)


def run_cell(job: CellJob) -> CellRecord:
    """Combine one cell job of the pipeline and write its record (``ok``, ``empty`` or ``failed``).

    Torch-free, so the Ray tasks that run it start without importing the models.
    """
    t0 = time.perf_counter()
    try:
        if not job.scenes:
            outcome = dict(status="empty", reason="no acquisition of the month covers the cell")
        else:
            scenes = scene_inputs(list(job.scenes), list(job.scene_indexes), list(job.scene_days), job.layout)
            done = combine_cell(job.cell, job.month, scenes, job.out_dir, job.layout, job.layers, job.settings,
                                job.tags, job.threads, job.region)
            outcome = dict(status="ok" if done.files else "empty", month=job.month, pixels=done.pixels,
                           valid_pixels=done.valid_pixels, scenes_used=done.scenes_used,
                           lulc_pixels=done.lulc_pixels, water_pixels=done.water_pixels,
                           files={p: FileEntry(name, sha256_file(Path(job.out_dir) / name))
                                  for p, name in done.files.items()})
            if not done.files:
                outcome["reason"] = "no valid pixel in the month's acquisitions"
    except Exception as exc:
        outcome = dict(status="failed", error=describe(exc))
    outcome["seconds"] = round(time.perf_counter() - t0, 3)
    record = CellRecord(cell=job.cell.name, key=job.key, node=node_id(), **outcome)
    write_json(job.record, record, durable=True)
    return record
