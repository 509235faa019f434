"""Combine a month's scene predictions onto one national-grid cell and write its COGs.

For every block of the cell grid (EPSG:4326, ``pixels_per_degree``), each scene's probability
raster (:mod:`nationmap.infer.scene`: validity-premultiplied probabilities plus a validity
band) is reprojected onto the block by GDAL (bilinear by default). For scene ``s`` this gives
``P_s = resampled(v * p)`` and ``V_s = resampled(v)`` with ``v`` the scene's validity in [0, 1].
A scene counts at a pixel when ``V_s >= min_validity``; the month's probability there is the
validity-weighted mean of the counted scenes,

    p = sum_s P_s / sum_s V_s,

then ``lulc = argmax``, ``confidence = 100 * max`` and ``water = p_water >= threshold``;
``count`` is the number of counted scenes (0: no acquisition saw the pixel, all layers no data).
Scenes are summed in a fixed (sorted) order so reruns give identical bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from nationmap.data.grid import Cell
from nationmap.errors import InputError, describe
from nationmap.files import sha256_file, write_json
from nationmap.parallel import node_id
from nationmap.products.cog import discard_staging, open_staging, part_path, translate_to_cog
from nationmap.products.layers import Layer
from nationmap.records import CellJob, CellRecord, FileEntry

RESAMPLINGS = ("bilinear", "nearest", "average", "cubic")


@dataclass(frozen=True)
class CellSettings:
    """How scenes become a cell.

    Attributes:
        pixels_per_degree: national grid resolution (JAXA: 12000, about 10 m; demo: 1200).
        block: side (px) of the blocks a cell is processed in (bounds memory).
        resampling: GDAL resampling of probabilities from scene to cell grid.
        min_validity: resampled validity a scene needs at a pixel to count there.
        water_threshold: water probability at or above which a pixel is water.
    """

    pixels_per_degree: int = 12000
    block: int = 2048
    resampling: str = "bilinear"
    min_validity: float = 0.5
    water_threshold: float = 0.5

    def __post_init__(self):
        if not 12 <= self.pixels_per_degree <= 36000:
            raise InputError(f"pixels per degree must be 12..36000, not {self.pixels_per_degree}")
        if self.block < 256 or self.block % 256:
            raise InputError("cell block must be a multiple of 256 px")
        if self.resampling not in RESAMPLINGS:
            raise InputError(f"resampling must be one of {', '.join(RESAMPLINGS)}")
        if not 0 < self.min_validity <= 1 or not 0 < self.water_threshold < 1:
            raise InputError("min_validity must be in (0, 1] and water_threshold in (0, 1)")


@dataclass(frozen=True)
class BandLayout:
    """Bands of the scene probability rasters: ``lulc_codes`` class bands (in code order), then
    a water band if ``water``, then validity."""

    lulc_codes: tuple[int, ...]
    water: bool

    @property
    def count(self) -> int:
        return len(self.lulc_codes) + int(self.water) + 1

    @property
    def products(self) -> tuple[str, ...]:
        return (("lulc",) if self.lulc_codes else ()) + (("water",) if self.water else ()) + \
            (("confidence",) if self.lulc_codes else ()) + ("count",)


def product_name(cell: str, month: str, product: str) -> str:
    return f"{cell}_{month}_{product}.tif"


def _blocks(n: int, block: int):
    for r in range(0, n, block):
        for c in range(0, n, block):
            yield Window(c, r, min(block, n - c), min(block, n - r))


def _scene_bounds(scenes: list[str], layout: BandLayout) -> list[tuple[float, float, float, float]]:
    """(west, south, east, north) in degrees of each scene raster; checks its band layout."""
    bounds = []
    for path in scenes:
        with rasterio.open(path) as src:
            if src.count != layout.count:
                raise InputError(f"{path}: {src.count} bands, expected {layout.count} (models changed?)")
            bounds.append(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))
    return bounds


def _accumulate(scenes: list[str], scene_bounds: list, layout: BandLayout, cell_transform, window: Window,
                settings: CellSettings, threads: int = 1):
    """Sums over the scenes for one block: P (K, h, w), V (h, w), count (h, w), used flags."""
    h, w = int(window.height), int(window.width)
    k = layout.count - 1
    sum_p = np.zeros((k, h, w), dtype=np.float32)
    sum_v = np.zeros((h, w), dtype=np.float32)
    count = np.zeros((h, w), dtype=np.uint16)
    transform = rasterio.windows.transform(window, cell_transform)
    west, north = transform * (0, 0)
    east, south = transform * (w, h)
    used = []
    for path, (l, b, r, t) in zip(scenes, scene_bounds):
        if l >= east or r <= west or b >= north or t <= south:
            used.append(False)
            continue
        with rasterio.open(path) as src:
            dest = np.zeros((layout.count, h, w), dtype=np.float32)
            reproject(rasterio.band(src, list(range(1, layout.count + 1))), dest, dst_transform=transform,
                      dst_crs="EPSG:4326", resampling=Resampling[settings.resampling], num_threads=threads,
                      init_dest_nodata=False)
        v = dest[-1] / 255.0
        hit = v >= settings.min_validity
        used.append(bool(hit.any()))
        if not hit.any():
            continue
        p = dest[:-1]  # in place: a block is 2k x 2k x K floats, temporaries cost more than the sums
        np.divide(p, 255.0, out=p)
        p *= hit
        sum_p += p
        sum_v += np.where(hit, v, 0.0)
        count += hit
    return sum_p, sum_v, count, used


def _layers_for_block(sum_p, sum_v, count, layout: BandLayout, settings: CellSettings, layers: dict[str, Layer]) -> dict:
    has = count > 0
    p = sum_p / np.where(has, sum_v, 1.0)
    out = {"count": np.minimum(count, 255).astype(np.uint8)}
    n = len(layout.lulc_codes)
    if n:
        codes = np.asarray(layout.lulc_codes, dtype=np.uint8)
        best = p[:n].argmax(0)
        out["lulc"] = np.where(has, codes[best], layers["lulc"].nodata).astype(np.uint8)
        out["confidence"] = np.where(has, np.rint(100.0 * p[:n].max(0)), layers["confidence"].nodata).astype(np.uint8)
    if layout.water:
        out["water"] = np.where(has, p[n] >= settings.water_threshold, layers["water"].nodata).astype(np.uint8)
    return out


def combine_cell(cell: Cell, month: str, scenes: list[str], out_dir: str | Path, layout: BandLayout,
                 layers: dict[str, Layer], settings: CellSettings, tags: dict | None = None, threads: int = 1) -> dict:
    """Write ``OUT_DIR/<cell>_<month>_<product>.tif`` COGs for the layers of ``layout``.

    ``threads``: GDAL warp threads (1 in a Ray task that holds one CPU; the cores when serial).

    Returns a record: ``status`` (``ok`` or ``empty``: no valid pixel, nothing written), the
    files written, valid pixel count, per-class pixel counts, scenes that contributed.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    n = settings.pixels_per_degree
    transform = cell.transform(n)
    scenes = sorted(scenes)
    scene_bounds = _scene_bounds(scenes, layout)
    products = layout.products
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = {}
    valid = 0
    lulc_hist = np.zeros(256, dtype=np.int64)
    water_pixels = 0
    used = np.zeros(len(scenes), dtype=bool)
    try:
        for p in products:
            staging = part_path(out_dir / f"staging-{product_name(cell.name, month, p)}")
            datasets[p] = open_staging(staging, layers[p], n, n, "EPSG:4326", transform)
        for window in _blocks(n, settings.block):
            sum_p, sum_v, count, hit = _accumulate(scenes, scene_bounds, layout, transform, window, settings, threads)
            used |= np.asarray(hit, dtype=bool)
            block = _layers_for_block(sum_p, sum_v, count, layout, settings, layers)
            valid += int((count > 0).sum())
            if "lulc" in block:
                lulc_hist += np.bincount(block["lulc"].ravel(), minlength=256)
            if "water" in block:
                water_pixels += int((block["water"] == 1).sum())
            for p, data in block.items():
                datasets[p].write(data, 1, window=window)
        record = {"cell": cell.name, "month": month, "valid_pixels": valid, "pixels": n * n,
                  "scenes_used": [Path(s).stem for s, u in zip(scenes, used) if u]}
        if valid == 0:
            return {**record, "status": "empty", "files": {}, "seconds": time.perf_counter() - t0}
        files = {}
        for p in products:
            dst = out_dir / product_name(cell.name, month, p)
            translate_to_cog(datasets.pop(p), dst, layers[p], {"CELL": cell.name, "MONTH": month, "PRODUCT": p, **(tags or {})})
            files[p] = dst.name
        if layout.lulc_codes:
            record["lulc_pixels"] = {str(c): int(lulc_hist[c]) for c in layout.lulc_codes}
        if layout.water:
            record["water_pixels"] = water_pixels
        return {**record, "status": "ok", "files": files, "seconds": time.perf_counter() - t0}
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
            outcome = combine_cell(job.cell, job.month, list(job.scenes), job.out_dir, job.layout, job.layers,
                                   job.settings, job.tags, job.threads)
            outcome.pop("cell")
            outcome["files"] = {p: FileEntry(name, sha256_file(Path(job.out_dir) / name))
                                for p, name in outcome["files"].items()}
            if outcome["status"] == "empty":
                outcome["reason"] = "no valid pixel in the month's acquisitions"
    except Exception as exc:
        outcome = dict(status="failed", error=describe(exc))
    outcome["seconds"] = round(time.perf_counter() - t0, 3)
    record = CellRecord(cell=job.cell.name, key=job.key, node=node_id(), **outcome)
    write_json(job.record, record, durable=True)
    return record
