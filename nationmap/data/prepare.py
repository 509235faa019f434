"""``nationmap data prepare``: anchors -> 256 x 256 patches + aligned labels -> month and split.

Per scene (one Ray task each, memory bounded by one strip of patch rows): the anchors falling
in the scene are mapped to its non-overlapping P x P patch grid; a patch is kept when it holds
at least one anchor on a valid pixel and enough valid pixels; its label is the LULC reprojected
onto the patch grid with nearest resampling (from every tile the patch touches, one warp per
strip of patch rows). Pretraining months give image-only patches; finetuning months give
image-label pairs split into train/val/test, either at random (as in the paper) or by spatial
blocks with a buffer so no two patches of different splits overlap on the ground.

Bad values are no data, as mature tools treat them (TorchGeo's and Raster Vision's
``ignore_index``): SAR values that are non-finite or outside the physical sigma0 range (the
reader, :mod:`nationmap.data.sar`), and LULC codes outside the class table, which are neither
sampled as anchors nor kept in labels; their pixel counts are reported (``dataset.json``
``anchors.unknown_codes``, ``report.json`` ``unknown_code_pixels``). Tiles holding no code of the
table at all (another product, or the wrong table) are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from nationmap import __version__
from nationmap.data.anchors import sample_anchors
from nationmap.data.catalog import filter_catalog, read_catalog
from nationmap.data.dataset import DATASET_FORMAT, encode_label, encode_sar, write_shard
from nationmap.data.grid import parse_cell
from nationmap.data.lulc import DEFAULT_TABLE, check_lulc_tile, class_histogram, find_lulc_tiles, load_class_table
from nationmap.data.months import parse_month
from nationmap.data.regions import Region
from nationmap.data.sar import SarRaster
from nationmap.errors import InputError, NationmapError, RasterError, describe
from nationmap.files import staged_dir
from nationmap.parallel import run_tasks

SPLIT_METHODS = ("random", "spatial")
N_HIST = 15  # source codes 0..14


@dataclass(frozen=True)
class PrepareConfig:
    """Dataset preparation settings (defaults: the paper's).

    Attributes:
        pretrain_months / finetune_months: disjoint ``YYYY-MM`` lists (no temporal leakage).
        n_anchors: anchors sampled by inverse class frequency over the region's LULC tiles.
        patch_size: patch side in pixels (non-overlapping grid on each scene).
        split: ``random`` (per patch, as the paper) or ``spatial`` (per block of ``block_deg``).
        fractions: train/val/test shares of the finetuning pairs (paper: 80,497/22,291/21,054).
        min_valid_fraction: least share of valid SAR pixels in a kept patch.
        seed: every random choice derives from it.
    """

    pretrain_months: tuple[str, ...]
    finetune_months: tuple[str, ...]
    n_anchors: int = 1_000_000
    patch_size: int = 256
    split: str = "random"
    fractions: tuple[float, float, float] = (0.65, 0.18, 0.17)
    block_deg: float = 0.1
    min_valid_fraction: float = 0.5
    seed: int = 0
    table: str = DEFAULT_TABLE
    region: str = ""

    def __post_init__(self):
        pre = {str(parse_month(m)) for m in self.pretrain_months}
        fin = {str(parse_month(m)) for m in self.finetune_months}
        if not pre and not fin:
            raise InputError("give at least one pretraining or finetuning month")
        if pre & fin:
            raise InputError(f"months {', '.join(sorted(pre & fin))} are both pretraining and finetuning months")
        if self.n_anchors < 1:
            raise InputError("n_anchors must be >= 1")
        if not 16 <= self.patch_size <= 4096:
            raise InputError("patch_size must be 16..4096")
        if self.split not in SPLIT_METHODS:
            raise InputError(f"split must be one of {', '.join(SPLIT_METHODS)}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise InputError("split fractions must be three non-negative numbers summing to 1")
        if not 0 < self.block_deg <= 10:
            raise InputError("block_deg must be in (0, 10]")
        if not 0 <= self.min_valid_fraction <= 1:
            raise InputError("min_valid_fraction must be in [0, 1]")

    def role(self, month: str) -> str | None:
        if month in self.pretrain_months:
            return "pretrain"
        if month in self.finetune_months:
            return "finetune"
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def _unit_hash(*parts) -> float:
    """Deterministic uniform [0, 1) from any parts (independent of processing order)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def assign_split(u: float, fractions) -> str:
    train, val, _ = fractions
    return "train" if u < train else "val" if u < train + val else "test"


def block_split(lon: float, lat: float, cfg: PrepareConfig) -> str:
    bx, by = int(np.floor(lon / cfg.block_deg)), int(np.floor(lat / cfg.block_deg))
    return assign_split(_unit_hash(cfg.seed, "block", bx, by), cfg.fractions)


class LabelSource:
    """LULC tiles (1-degree cells, EPSG:4326) opened lazily; reprojects their codes onto any grid
    with nearest resampling."""

    def __init__(self, tiles: dict[str, str]):
        self.tiles = tiles
        self._cells = {name: parse_cell(name) for name in tiles}
        self._open: dict[str, rasterio.io.DatasetReader] = {}

    def covers(self, bounds_ll) -> list[str]:
        """Names of the tiles whose cell intersects ``(lon0, lat0, lon1, lat1)`` (degrees)."""
        lon0, lat0, lon1, lat1 = bounds_ll
        return [name for name, c in self._cells.items()
                if c.lon < lon1 and c.lon + 1 > lon0 and c.lat < lat1 and c.lat + 1 > lat0]

    def _tile(self, name: str) -> rasterio.io.DatasetReader:
        return self._open.get(name) or self._open.setdefault(name, rasterio.open(self.tiles[name]))

    def read_ll(self, bounds_ll, pad: int = 2) -> tuple[np.ndarray, Affine]:
        """The tiles' codes over ``(lon0, lat0, lon1, lat1)`` (degrees) plus ``pad`` pixels, pasted
        into one (H, W) uint8 array on their common grid, and its transform.

        The tiles are 1-degree cells on one pixels-per-degree grid, so each lands at an integer
        pixel offset: pasting them is exact (no resampling) and one warp then serves a whole strip
        even where it crosses a cell border."""
        names = self.covers(bounds_ll)
        if not names:
            return np.zeros((0, 0), np.uint8), Affine.identity()
        ppd = round(1 / abs(self._tile(names[0]).transform.a))
        lon0, lat0, lon1, lat1 = bounds_ll
        c0, c1 = math.floor(lon0 * ppd) - pad, math.ceil(lon1 * ppd) + pad  # columns from 0 E
        r0, r1 = math.floor(-lat1 * ppd) - pad, math.ceil(-lat0 * ppd) + pad  # rows from the equator, southwards
        out = np.zeros((r1 - r0, c1 - c0), np.uint8)
        for name in names:
            src = self._tile(name)
            if round(1 / abs(src.transform.a)) != ppd:
                raise RasterError(f"{Path(src.name).name}: not on the {ppd} px/degree grid of the other LULC tiles")
            tc, tr = round(src.transform.c * ppd), round(-src.transform.f * ppd)
            gc0, gc1 = max(c0, tc), min(c1, tc + src.width)
            gr0, gr1 = max(r0, tr), min(r1, tr + src.height)
            if gc0 < gc1 and gr0 < gr1:
                out[gr0 - r0:gr1 - r0, gc0 - c0:gc1 - c0] = src.read(1, window=Window(gc0 - tc, gr0 - tr, gc1 - gc0, gr1 - gr0))
        return out, Affine(1 / ppd, 0, c0 / ppd, 0, -1 / ppd, -r0 / ppd)

    def label(self, crs, transform, height: int, width: int) -> np.ndarray:
        """(height, width) uint8 source codes on the grid ``(crs, transform)``; 0 where unlabelled."""
        dst = np.zeros((height, width), dtype=np.uint8)
        bounds_ll = transform_bounds(crs, "EPSG:4326", *array_bounds(height, width, transform), densify_pts=21)
        codes, codes_transform = self.read_ll(bounds_ll)
        if codes.size:
            reproject(codes, dst, src_transform=codes_transform, src_crs="EPSG:4326", dst_transform=transform,
                      dst_crs=crs, resampling=Resampling.nearest, src_nodata=0, dst_nodata=0, init_dest_nodata=False)
        return dst

    def close(self):
        for ds in self._open.values():
            ds.close()


STRIP_PIXELS = 4_000_000  # label pixels per GDAL warp: its set-up (about 1 ms) is then negligible


class LabelStrips:
    """Labels of a scene's patches, reprojected one strip of patch rows at a time.

    One GDAL warp per strip (the columns of its rows that hold candidates, about
    :data:`STRIP_PIXELS` pixels) instead of one per patch: a warp's set-up costs as much as warping
    a 128 x 128 patch. Memory stays bounded by one strip (uint8).
    """

    def __init__(self, source: LabelSource, raster: SarRaster, patch: int, spans: dict[int, tuple[int, int]]):
        self.source, self.raster, self.P = source, raster, patch
        self.rows = max(1, STRIP_PIXELS // (patch * patch * max(c1 - c0 + 1 for c0, c1 in spans.values())))
        self.spans: dict[int, tuple[int, int]] = {}  # strip -> (first, last) patch column
        for pr, (c0, c1) in spans.items():
            s0, s1 = self.spans.get(pr // self.rows, (c0, c1))
            self.spans[pr // self.rows] = (min(s0, c0), max(s1, c1))
        self._strip_id, self._strip = -1, np.zeros((0, 0), np.uint8)

    def patch(self, pr: int, pc: int) -> np.ndarray:
        """(P, P) uint8 source codes of the patch at patch row ``pr``, column ``pc``."""
        P, strip = self.P, pr // self.rows
        c0, c1 = self.spans[strip]
        if strip != self._strip_id:
            first = strip * self.rows
            n_rows = min(self.rows, self.raster.height // P - first)
            window = Window(c0 * P, first * P, (c1 - c0 + 1) * P, n_rows * P)
            self._strip = self.source.label(self.raster.crs, self.raster.dataset.window_transform(window),
                                            window.height, window.width)
            self._strip_id = strip
        r = (pr - strip * self.rows) * P
        return self._strip[r:r + P, (pc - c0) * P:(pc - c0 + 1) * P].copy()


@dataclass
class SceneJob:
    scene: dict  # catalog row (id, path, month, datetime, units)
    role: str  # "pretrain" | "finetune"
    anchor_lon: np.ndarray
    anchor_lat: np.ndarray
    tiles: dict[str, str]
    cfg: PrepareConfig
    out: str


@dataclass
class SceneResult:
    scene_id: str
    path: str
    status: str  # "ok" | "failed" | "empty"
    reason: str = ""
    rows: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """A patch of the scene's P x P grid holding at least one anchor.

    Attributes:
        row / col: patch row and column in the grid (pixel offset = index * P).
        anchor_rows / anchor_cols: (n,) int64 anchor pixels inside the patch.
    """

    row: int
    col: int
    anchor_rows: np.ndarray
    anchor_cols: np.ndarray


def candidate_patches(raster: SarRaster, lon: np.ndarray, lat: np.ndarray, patch: int) -> list[Candidate]:
    """Patches of the raster's non-overlapping ``patch`` grid holding an anchor (degrees), in
    row-major order."""
    n_rows, n_cols = raster.height // patch, raster.width // patch
    xs, ys = Transformer.from_crs("EPSG:4326", raster.crs, always_xy=True).transform(lon, lat)
    cols, rows = ~raster.transform @ (np.asarray(xs), np.asarray(ys))
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    inside = (rows >= 0) & (cols >= 0) & (rows < n_rows * patch) & (cols < n_cols * patch)
    rows, cols = rows[inside], cols[inside]
    patch_of = (rows // patch) * n_cols + cols // patch
    order = np.argsort(patch_of, kind="stable")
    ids = patch_of[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if ids.size else np.zeros(0, np.int64)
    out = []
    for start, stop in zip(starts, np.r_[starts[1:], ids.size]):
        pr, pc = divmod(int(ids[start]), n_cols)
        sel = order[start:stop]
        out.append(Candidate(pr, pc, rows[sel] - pr * patch, cols[sel] - pc * patch))
    return out


def row_spans(candidates: list[Candidate]) -> dict[int, tuple[int, int]]:
    """Patch row -> (first, last) patch column holding a candidate."""
    spans: dict[int, tuple[int, int]] = {}
    for c in candidates:
        c0, c1 = spans.get(c.row, (c.col, c.col))
        spans[c.row] = (min(c0, c.col), max(c1, c.col))
    return spans


def process_scene(job: SceneJob) -> SceneResult:
    """Cut one scene into kept patches; never raises for a bad scene (status + reason)."""
    scene_id, path = job.scene["id"], job.scene["path"]
    try:
        with rasterio.Env():  # one GDAL environment for the scene, not one per rasterio call
            return _process_scene(job)
    except NationmapError as exc:
        return SceneResult(scene_id, path, "failed", str(exc))
    except Exception as exc:  # unforeseen reader errors: named in the report, the run goes on
        return SceneResult(scene_id, path, "failed", describe(exc))


def _process_scene(job: SceneJob) -> SceneResult:
    P, scene_id, path = job.cfg.patch_size, job.scene["id"], job.scene["path"]
    counts = {"candidates": 0, "kept": 0, "no_valid_anchor": 0, "too_little_valid": 0, "no_label": 0, "buffer": 0}
    labels = LabelSource(job.tiles)
    try:
        with SarRaster(path, units=job.scene.get("units")) as raster:
            # the catalog's valid-data footprint bounds, else the raster's
            scene_ll = job.scene.get("bounds") or transform_bounds(raster.crs, "EPSG:4326", *raster.bounds, densify_pts=21)
            if not labels.covers(scene_ll):
                return SceneResult(scene_id, path, "failed", "no overlapping labels (no LULC tile under the scene)", counts=counts)
            if raster.height < P or raster.width < P:
                return SceneResult(scene_id, path, "empty", f"smaller than one {P} x {P} patch", counts=counts)
            candidates = candidate_patches(raster, job.anchor_lon, job.anchor_lat, P)
            if not candidates:
                return SceneResult(scene_id, path, "empty", "no anchor falls in the scene", counts=counts)
            result = SceneResult(scene_id, path, "ok", counts=counts)
            cutter = PatchCutter(job, raster, LabelStrips(labels, raster, P, row_spans(candidates)))
            any_valid = False
            for cand in candidates:
                counts["candidates"] += 1
                outcome, any_patch_valid = cutter.cut(cand)
                any_valid |= any_patch_valid
                if isinstance(outcome, str):
                    counts[outcome] += 1
                else:
                    counts["kept"] += 1
                    result.rows.append(outcome)
            counts["unknown_code_pixels"] = cutter.unknown_pixels
            if not any_valid:
                return SceneResult(scene_id, path, "failed", "all pixels are no data", counts=counts)
            cutter.write_shards()
    finally:
        labels.close()
    if not result.rows:
        result.status, result.reason = "empty", "no patch kept"
    return result


class PatchCutter:
    """Reads, checks, labels and encodes one scene's candidate patches; collects its shards."""

    def __init__(self, job: SceneJob, raster: SarRaster, labels: LabelStrips):
        self.job, self.raster, self.labels, self.P = job, raster, labels, job.cfg.patch_size
        self.to_ll = Transformer.from_crs(raster.crs, "EPSG:4326", always_xy=True)
        self.crs = raster.crs.to_string()
        self.shards: dict[str, tuple[list, list, list]] = {}
        table = load_class_table(job.cfg.table)
        self.known = np.zeros(256, dtype=bool)  # source code -> in the class table or the no-data code
        self.known[[*table.codes, table.nodata]] = True
        self.unknown_pixels = 0

    def cut(self, cand: Candidate) -> tuple[dict | str, bool]:
        """(index row of the kept patch, or the counter naming why not; whether it held data)."""
        P, job = self.P, self.job
        sigma = self.raster.read(Window(cand.col * P, cand.row * P, P, P))
        any_valid = bool(sigma.valid.any())
        n_anchor = int(sigma.valid[cand.anchor_rows, cand.anchor_cols].sum())
        if n_anchor == 0:
            return "no_valid_anchor", any_valid
        valid_fraction = float(sigma.valid.mean())
        if valid_fraction < job.cfg.min_valid_fraction:
            return "too_little_valid", any_valid
        label = self.labels.patch(cand.row, cand.col)
        label[~sigma.valid] = 0
        unknown = ~self.known[label]  # codes outside the class table: no data (ignore_index), counted
        if unknown.any():
            self.unknown_pixels += int(unknown.sum())
            label[unknown] = 0
        hist = class_histogram(label, N_HIST)
        if hist[1:].sum() == 0:
            return "no_label", any_valid
        # footprint corners and centre in lon/lat
        cx, cy = sigma.transform @ (np.array([0, P, 0, P, P / 2]), np.array([0, 0, P, P, P / 2]))
        lons, lats = self.to_ll.transform(cx, cy)
        patch_id = f"{job.scene['id']}_r{cand.row * P:05d}_c{cand.col * P:05d}"
        split = patch_split(job, patch_id, lons, lats)
        if split == "buffer":
            return "buffer", any_valid
        ids, sar, labs = self.shards.setdefault(split, ([], [], []))
        ids.append(patch_id)
        sar.append(encode_sar(sigma.db))
        labs.append(encode_label(label) if job.role == "finetune" else None)
        db = sigma.db[sigma.valid].astype(np.float64)
        return {
            "patch_id": patch_id, "scene_id": job.scene["id"], "datetime": job.scene["datetime"],
            "month": job.scene["month"], "split": split, "row_off": cand.row * P, "col_off": cand.col * P, "size": P,
            "crs": self.crs, "lon": float(lons[4]), "lat": float(lats[4]),
            "lon_min": float(min(lons[:4])), "lat_min": float(min(lats[:4])),
            "lon_max": float(max(lons[:4])), "lat_max": float(max(lats[:4])),
            "n_anchors": n_anchor, "valid_fraction": valid_fraction, "class_hist": hist.tolist(),
            "db_n": int(db.size), "db_sum": float(db.sum()), "db_sumsq": float((db * db).sum()),
            "shard": f"shards/{split}/{job.scene['id']}.parquet",
        }, any_valid

    def write_shards(self) -> None:
        for split, (ids, sar, labs) in self.shards.items():
            write_shard(Path(self.job.out) / "shards" / split / f"{self.job.scene['id']}.parquet", ids, sar, labs)


def patch_split(job: SceneJob, patch_id: str, lons, lats) -> str:
    """``pretrain``, a finetuning split, or ``buffer`` (a spatial split's patch straddling blocks);
    ``lons``/``lats``: the patch's four corners then its centre (degrees)."""
    cfg = job.cfg
    if job.role == "pretrain":
        return "pretrain"
    if cfg.split == "random":
        return assign_split(_unit_hash(cfg.seed, "patch", patch_id), cfg.fractions)
    corner_splits = {block_split(lo, la, cfg) for lo, la in zip(lons[:4], lats[:4])}
    return block_split(lons[4], lats[4], cfg) if len(corner_splits) == 1 else "buffer"


INDEX_SCHEMA = pa.schema([
    ("patch_id", pa.string()), ("scene_id", pa.string()), ("datetime", pa.timestamp("us", tz="UTC")),
    ("month", pa.string()), ("split", pa.string()), ("row_off", pa.int32()), ("col_off", pa.int32()),
    ("size", pa.int32()), ("crs", pa.string()), ("lon", pa.float64()), ("lat", pa.float64()),
    ("lon_min", pa.float64()), ("lat_min", pa.float64()), ("lon_max", pa.float64()), ("lat_max", pa.float64()),
    ("n_anchors", pa.int32()), ("valid_fraction", pa.float32()), ("class_hist", pa.list_(pa.int64())),
    ("db_n", pa.int64()), ("db_sum", pa.float64()), ("db_sumsq", pa.float64()), ("shard", pa.string()),
])


def _stats(index: pd.DataFrame) -> dict | None:
    n = int(index.db_n.sum())
    if n == 0:
        return None
    mean = float(index.db_sum.sum() / n)
    var = max(float(index.db_sumsq.sum() / n) - mean * mean, 0.0)
    return {"mean_db": mean, "std_db": float(np.sqrt(var)), "pixels": n}


def _frequencies(index: pd.DataFrame, table) -> dict:
    hist = np.sum(np.stack(index.class_hist.to_numpy()), axis=0) if len(index) else np.zeros(N_HIST, np.int64)
    out = {"source": {int(c): int(hist[c]) for c in table.codes}}
    for name, scheme in table.schemes.items():
        counts = scheme.remap_counts(hist)
        total = max(int(counts.sum()), 1)
        out[name] = {"codes": scheme.codes, "names": scheme.names, "pixels": counts.tolist(),
                     "frequency": [float(c / total) for c in counts]}
    return out


def region_tiles(lulc_dir: str | Path, region: Region | None) -> dict[str, Path]:
    """Cell -> LULC tile of the region under ``lulc_dir``, each checked readable as uint8 codes."""
    tiles = find_lulc_tiles(lulc_dir)
    if region is not None:
        tiles = {c: p for c, p in tiles.items() if c in set(region.cell_names)}
    if not tiles:
        raise InputError(f"no LULC tile (LC_*.tif) of the region under {lulc_dir}")
    for path in tiles.values():
        check_lulc_tile(path)
    return tiles


def anchors_of(tiles: dict[str, Path], cfg: PrepareConfig, table, lulc_dir, executor: str) -> tuple[pd.DataFrame, dict]:
    """The anchors over the tiles' class-table codes; tiles without any such code are refused."""
    anchors, summary = sample_anchors(tiles, cfg.n_anchors, cfg.seed, nodata=table.nodata, codes=table.codes,
                                      executor=executor)
    if not summary["anchors_per_code"]:
        found = ", ".join(map(str, summary["unknown_codes"])) or "none"
        raise InputError(f"the LULC tiles under {lulc_dir} hold no code of the class table {table.name} "
                         f"(codes found: {found}): another product or the wrong class table")
    return anchors, summary


def scene_jobs(scenes: pd.DataFrame, anchors: pd.DataFrame, tiles: dict[str, Path], cfg: PrepareConfig,
               stage: Path) -> list[SceneJob]:
    """One job per catalogued scene, with the anchors inside its bounds (+0.01 degree)."""
    a_lon, a_lat = anchors.lon.to_numpy(), anchors.lat.to_numpy()
    jobs = []
    for row in scenes.itertuples():
        pad = 0.01
        sel = (a_lon >= row.lon_min - pad) & (a_lon <= row.lon_max + pad) & (a_lat >= row.lat_min - pad) & (a_lat <= row.lat_max + pad)
        scene = {"id": row.id, "path": row.path, "month": row.month, "datetime": row.datetime, "units": row.units,
                 "bounds": (row.lon_min, row.lat_min, row.lon_max, row.lat_max)}
        jobs.append(SceneJob(scene, cfg.role(row.month), a_lon[sel], a_lat[sel], {k: str(v) for k, v in tiles.items()}, cfg, str(stage)))
    return jobs


def prepare_dataset(catalog: str | Path, lulc_dir: str | Path, out: str | Path, cfg: PrepareConfig,
                    region: Region | None = None, overwrite: bool = False, executor: str = "ray") -> dict:
    """Build the dataset at ``out``; returns the report. Nothing is written at ``out`` until
    the whole dataset is complete (staged in a sibling directory, then renamed)."""
    t0 = time.time()
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    table = load_class_table(cfg.table)
    tiles = region_tiles(lulc_dir, region)
    months = sorted(set(cfg.pretrain_months) | set(cfg.finetune_months))
    scenes = filter_catalog(read_catalog(catalog), region, [parse_month(m) for m in months])
    if scenes.empty:
        raise InputError(f"the catalog holds no HH scene of {', '.join(months)} in the region")

    with staged_dir(out) as stage:  # a dataset appears whole or not at all
        anchors, anchor_summary = anchors_of(tiles, cfg, table, lulc_dir, executor)
        pq.write_table(pa.Table.from_pandas(anchors, preserve_index=False), stage / "anchors.parquet")
        jobs = scene_jobs(scenes, anchors, tiles, cfg, stage)
        results: list[SceneResult] = run_tasks(process_scene, jobs, desc="preparing scenes", executor=executor)

        rows = [r for res in results for r in res.rows]
        index = pd.DataFrame(rows, columns=INDEX_SCHEMA.names).sort_values("patch_id", kind="stable").reset_index(drop=True)
        pq.write_table(pa.Table.from_pandas(index, schema=INDEX_SCHEMA, preserve_index=False), stage / "index.parquet")
        split_counts = {s: int((index.split == s).sum()) for s in ("pretrain", "train", "val", "test")}
        train = index[index.split == "train"]
        meta = {
            "format": DATASET_FORMAT,
            "nationmap_version": __version__,
            "config": cfg.to_dict(),
            "region": region.name if region is not None else None,
            "cells": sorted(tiles),
            "scenes": {"total": len(results), "ok": sum(r.status == "ok" for r in results),
                       "empty": sum(r.status == "empty" for r in results), "failed": sum(r.status == "failed" for r in results)},
            "patches": split_counts,
            "normalisation": {"train": _stats(train), "pretrain": _stats(index[index.split == "pretrain"])},
            "class_frequencies": {"train": _frequencies(train, table)},
            "anchors": anchor_summary,
            "class_table": table.to_dict(),
        }
        (stage / "dataset.json").write_text(json.dumps(meta, indent=2, default=str))
        report = {
            "scenes": [{"scene_id": r.scene_id, "path": r.path, "status": r.status, "reason": r.reason, **r.counts} for r in results],
            "failed": [{"scene_id": r.scene_id, "path": r.path, "reason": r.reason} for r in results if r.status == "failed"],
            "patches": split_counts,
            "seconds": round(time.time() - t0, 2),
        }
        (stage / "report.json").write_text(json.dumps(report, indent=2))
    return report
