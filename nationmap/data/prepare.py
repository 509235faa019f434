"""``nationmap data prepare``: anchors -> 256 x 256 patches + aligned labels -> month and split.

Per scene (one Ray task each, memory bounded by one patch window): the anchors falling in the
scene are mapped to its non-overlapping P x P patch grid; a patch is kept when it holds at
least one anchor on a valid pixel and enough valid pixels; its label is the LULC reprojected
onto the patch grid with nearest resampling (from every tile the patch touches). Pretraining
months give image-only patches; finetuning months give image-label pairs split into
train/val/test, either at random (as in the paper) or by spatial blocks with a buffer so no
two patches of different splits overlap on the ground.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from nationmap import __version__
from nationmap.data.anchors import sample_anchors
from nationmap.data.catalog import filter_catalog, read_catalog
from nationmap.data.dataset import encode_label, encode_sar, write_shard
from nationmap.data.grid import parse_cell
from nationmap.data.lulc import DEFAULT_TABLE, class_histogram, find_lulc_tiles, load_class_table
from nationmap.data.months import parse_month
from nationmap.data.regions import Region
from nationmap.data.sar import SarRaster
from nationmap.errors import InputError, NationmapError, describe
from nationmap.files import replace_dir
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
    """LULC tiles opened lazily; reprojects labels onto any patch grid with nearest."""

    def __init__(self, tiles: dict[str, str]):
        self.tiles = tiles
        self._open: dict[str, rasterio.io.DatasetReader] = {}

    def covers(self, bounds_ll) -> list[str]:
        lon0, lat0, lon1, lat1 = bounds_ll
        out = []
        for name in self.tiles:
            c = parse_cell(name)
            if c.lon < lon1 and c.lon + 1 > lon0 and c.lat < lat1 and c.lat + 1 > lat0:
                out.append(name)
        return out

    def label(self, crs, transform, size: int) -> np.ndarray:
        """(size, size) uint8 source codes on the grid ``(crs, transform)``; 0 where unlabelled."""
        dst = np.zeros((size, size), dtype=np.uint8)
        bounds_ll = transform_bounds(crs, "EPSG:4326", *array_bounds(size, size, transform), densify_pts=21)
        for name in self.covers(bounds_ll):
            src = self._open.get(name) or self._open.setdefault(name, rasterio.open(self.tiles[name]))
            step = abs(src.transform.a)
            lon0, lat0, lon1, lat1 = bounds_ll
            window = from_bounds(lon0 - 2 * step, lat0 - 2 * step, lon1 + 2 * step, lat1 + 2 * step, src.transform)
            window = window.round_offsets().round_lengths().intersection(Window(0, 0, src.width, src.height))
            data = src.read(1, window=window)
            reproject(data, dst, src_transform=src.window_transform(window), src_crs=src.crs, dst_transform=transform,
                      dst_crs=crs, resampling=Resampling.nearest, src_nodata=0, dst_nodata=0, init_dest_nodata=False)
        return dst

    def close(self):
        for ds in self._open.values():
            ds.close()


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


def process_scene(job: SceneJob) -> SceneResult:
    """Cut one scene into kept patches; never raises for a bad scene (status + reason)."""
    scene_id, path = job.scene["id"], job.scene["path"]
    try:
        return _process_scene(job)
    except NationmapError as exc:
        return SceneResult(scene_id, path, "failed", str(exc))
    except Exception as exc:  # unforeseen reader errors: named in the report, the run goes on
        return SceneResult(scene_id, path, "failed", describe(exc))


def _process_scene(job: SceneJob) -> SceneResult:
    cfg, P = job.cfg, job.cfg.patch_size
    scene_id = job.scene["id"]
    result = SceneResult(scene_id, job.scene["path"], "ok")
    counts = {"candidates": 0, "kept": 0, "no_valid_anchor": 0, "too_little_valid": 0, "no_label": 0, "buffer": 0}
    result.counts = counts
    labels = LabelSource(job.tiles)
    try:
        with SarRaster(job.scene["path"], units=job.scene.get("units")) as raster:
            n_rows, n_cols = raster.height // P, raster.width // P
            # the catalog's valid-data footprint bounds, else the raster's
            scene_ll = job.scene.get("bounds") or transform_bounds(raster.crs, "EPSG:4326", *raster.bounds, densify_pts=21)
            if not labels.covers(scene_ll):
                return SceneResult(scene_id, job.scene["path"], "failed", "no overlapping labels (no LULC tile under the scene)", counts=counts)
            if n_rows == 0 or n_cols == 0:
                return SceneResult(scene_id, job.scene["path"], "empty", f"smaller than one {P} x {P} patch", counts=counts)
            to_scene = Transformer.from_crs("EPSG:4326", raster.crs, always_xy=True)
            xs, ys = to_scene.transform(job.anchor_lon, job.anchor_lat)
            cols, rows = ~raster.transform @ (np.asarray(xs), np.asarray(ys))
            rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
            inside = (rows >= 0) & (cols >= 0) & (rows < n_rows * P) & (cols < n_cols * P)
            rows, cols = rows[inside], cols[inside]
            if rows.size == 0:
                return SceneResult(scene_id, job.scene["path"], "empty", "no anchor falls in the scene", counts=counts)
            patch_of = (rows // P) * n_cols + cols // P
            to_ll = Transformer.from_crs(raster.crs, "EPSG:4326", always_xy=True)
            shards: dict[str, tuple[list, list, list]] = {}
            order = np.argsort(patch_of, kind="stable")
            patch_sorted = patch_of[order]
            starts = np.flatnonzero(np.r_[True, patch_sorted[1:] != patch_sorted[:-1]])
            any_valid = False
            for start, stop in zip(starts, np.r_[starts[1:], patch_sorted.size]):
                pid_flat = int(patch_sorted[start])
                pr, pc = divmod(pid_flat, n_cols)
                counts["candidates"] += 1
                window = Window(pc * P, pr * P, P, P)
                sigma = raster.read(window)
                any_valid |= bool(sigma.valid.any())
                ar = rows[order[start:stop]] - pr * P
                ac = cols[order[start:stop]] - pc * P
                n_anchor = int(sigma.valid[ar, ac].sum())
                if n_anchor == 0:
                    counts["no_valid_anchor"] += 1
                    continue
                valid_fraction = float(sigma.valid.mean())
                if valid_fraction < cfg.min_valid_fraction:
                    counts["too_little_valid"] += 1
                    continue
                label = labels.label(raster.crs, sigma.transform, P)
                label[~sigma.valid] = 0
                hist = class_histogram(label, N_HIST)
                if hist[1:].sum() == 0:
                    counts["no_label"] += 1
                    continue
                # footprint corners and centre in lon/lat
                cx, cy = sigma.transform @ (np.array([0, P, 0, P, P / 2]), np.array([0, 0, P, P, P / 2]))
                lons, lats = to_ll.transform(cx, cy)
                patch_id = f"{scene_id}_r{pr * P:05d}_c{pc * P:05d}"
                if job.role == "pretrain":
                    split = "pretrain"
                elif cfg.split == "random":
                    split = assign_split(_unit_hash(cfg.seed, "patch", patch_id), cfg.fractions)
                else:
                    corner_splits = {block_split(lo, la, cfg) for lo, la in zip(lons[:4], lats[:4])}
                    split = block_split(lons[4], lats[4], cfg) if len(corner_splits) == 1 else "buffer"
                if split == "buffer":
                    counts["buffer"] += 1
                    continue
                db = sigma.db[sigma.valid].astype(np.float64)
                ids, sar, labs = shards.setdefault(split, ([], [], []))
                ids.append(patch_id)
                sar.append(encode_sar(sigma.db))
                labs.append(encode_label(label) if job.role == "finetune" else None)
                counts["kept"] += 1
                result.rows.append({
                    "patch_id": patch_id, "scene_id": scene_id, "datetime": job.scene["datetime"],
                    "month": job.scene["month"], "split": split, "row_off": pr * P, "col_off": pc * P, "size": P,
                    "crs": raster.crs.to_string(), "lon": float(lons[4]), "lat": float(lats[4]),
                    "lon_min": float(min(lons[:4])), "lat_min": float(min(lats[:4])),
                    "lon_max": float(max(lons[:4])), "lat_max": float(max(lats[:4])),
                    "n_anchors": n_anchor, "valid_fraction": valid_fraction, "class_hist": hist.tolist(),
                    "db_n": int(db.size), "db_sum": float(db.sum()), "db_sumsq": float((db * db).sum()),
                    "shard": f"shards/{split}/{scene_id}.parquet",
                })
            if not any_valid and counts["candidates"]:
                return SceneResult(scene_id, job.scene["path"], "failed", "all pixels are no data", counts=counts)
            for split, (ids, sar, labs) in shards.items():
                write_shard(Path(job.out) / "shards" / split / f"{scene_id}.parquet", ids, sar, labs)
    finally:
        labels.close()
    if not result.rows:
        result.status = "empty"
        result.reason = "no patch kept"
    return result


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


def prepare_dataset(catalog: str | Path, lulc_dir: str | Path, out: str | Path, cfg: PrepareConfig,
                    region: Region | None = None, overwrite: bool = False, executor: str = "ray") -> dict:
    """Build the dataset at ``out``; returns the report. Nothing is written at ``out`` until
    the whole dataset is complete (staged in a sibling directory, then renamed)."""
    t0 = time.time()
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    table = load_class_table(cfg.table)
    tiles = find_lulc_tiles(lulc_dir)
    if region is not None:
        tiles = {c: p for c, p in tiles.items() if c in set(region.cell_names)}
    if not tiles:
        raise InputError(f"no LULC tile (LC_*.tif) of the region under {lulc_dir}")
    months = sorted(set(cfg.pretrain_months) | set(cfg.finetune_months))
    scenes = filter_catalog(read_catalog(catalog), region, [parse_month(m) for m in months])
    if scenes.empty:
        raise InputError(f"the catalog holds no HH scene of {', '.join(months)} in the region")

    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        anchors, anchor_summary = sample_anchors(tiles, cfg.n_anchors, cfg.seed, nodata=table.nodata, executor=executor)
        pq.write_table(pa.Table.from_pandas(anchors, preserve_index=False), stage / "anchors.parquet")
        a_lon, a_lat = anchors.lon.to_numpy(), anchors.lat.to_numpy()
        jobs = []
        for row in scenes.itertuples():
            pad = 0.01
            sel = (a_lon >= row.lon_min - pad) & (a_lon <= row.lon_max + pad) & (a_lat >= row.lat_min - pad) & (a_lat <= row.lat_max + pad)
            scene = {"id": row.id, "path": row.path, "month": row.month, "datetime": row.datetime, "units": row.units,
                     "bounds": (row.lon_min, row.lat_min, row.lon_max, row.lat_max)}
            jobs.append(SceneJob(scene, cfg.role(row.month), a_lon[sel], a_lat[sel], {k: str(v) for k, v in tiles.items()}, cfg, str(stage)))
        results: list[SceneResult] = run_tasks(process_scene, jobs, desc="preparing scenes", executor=executor)

        rows = [r for res in results for r in res.rows]
        index = pd.DataFrame(rows, columns=INDEX_SCHEMA.names).sort_values("patch_id", kind="stable").reset_index(drop=True)
        pq.write_table(pa.Table.from_pandas(index, schema=INDEX_SCHEMA, preserve_index=False), stage / "index.parquet")
        split_counts = {s: int((index.split == s).sum()) for s in ("pretrain", "train", "val", "test")}
        train = index[index.split == "train"]
        meta = {
            "format": "nationmap-dataset/1",
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
        replace_dir(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return report


