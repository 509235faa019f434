"""``nationmap infer``: a region's month of acquisitions -> national map products.

Run directory ``OUT/<region>/<YYYY-MM>/``::

    manifest.json                                   inputs + checksums, models + hashes, code
                                                    version, config, timings, per-scene and
                                                    per-cell status
    cells/<CELL>/<CELL>_<YYYY-MM>_<product>.tif     per-cell COGs (lulc, water, confidence, count)
    mosaic/<region>_<YYYY-MM>_<product>.vrt         national layer per product: GDAL VRT over the cell COGs
    mosaic/<region>_<YYYY-MM>_<product>.tif         national COG per product (sparse: empty tiles not written)
    quicklooks/<region>_<YYYY-MM>_<product>.png     RGBA quicklooks
    stac/catalog.json                               STAC: a collection per product, item per cell
    .work/scenes/<scene>.tif                        scene-grid probabilities (removed on success)
    .work/state/{scenes,cells}/<id>.json            per-unit records, written as each unit ends

Stages: (1) scenes -> probabilities on their own grid (Ray Data actor pool, models loaded once
per actor); (2) cells: scenes reprojected and combined (Ray tasks); (3) national layers and
quicklooks (a Ray task per product); (4) STAC; (5) manifest. Each unit's record holds a key
(hash of its inputs, models and settings) and the SHA-256 of what it wrote; a rerun skips
every unit whose key matches and whose files still verify, so an interrupted run redoes only
the missing work. ``force`` redoes everything. Every file is written under a temporary name
and renamed when complete. This module is the driver: it never imports torch (the model side
is :mod:`nationmap.infer.predict`, run by the predictor actors).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import shapely

from nationmap import __version__
from nationmap.data.catalog import filter_catalog, footprints, read_catalog
from nationmap.data.lulc import class_table_from_dict
from nationmap.data.months import parse_month
from nationmap.data.regions import Region, region_slug, resolve_region
from nationmap.errors import InputError
from nationmap.files import read_json, safe_child, sha256_file, sha256_json, write_json
from nationmap.infer.config import InferConfig
from nationmap.infer.windows import WindowSettings
from nationmap.parallel import progress_bar, run_tasks
from nationmap.products.cells import BandLayout, run_cell
from nationmap.products.layers import Layer, product_layers
from nationmap.products.mosaic import build_mosaic
from nationmap.products.quicklook import write_quicklook
from nationmap.products.stac import ProductFile, write_stac

MANIFEST_FORMAT = "nationmap-run/1"
BUNDLE_FILES = ("model.json", "model.safetensors")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def work(self) -> Path:
        return self.root / ".work"

    def scene_raster(self, scene_id: str) -> Path:
        return self.work / "scenes" / f"{scene_id}.tif"

    def scene_record(self, scene_id: str) -> Path:
        return self.work / "state" / "scenes" / f"{scene_id}.json"

    def cell_dir(self, cell: str) -> Path:
        return self.root / "cells" / cell

    def cell_record(self, cell: str) -> Path:
        return self.work / "state" / "cells" / f"{cell}.json"

    @property
    def mosaic_record(self) -> Path:
        return self.work / "state" / "mosaic.json"

    @property
    def stac_record(self) -> Path:
        return self.work / "state" / "stac.json"


def run_paths(cfg: InferConfig, region: Region) -> RunPaths:
    return RunPaths(safe_child(cfg.out, region_slug(region.name), str(parse_month(cfg.month))))


# ---------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSet:
    """The bundles of a run (paths and hashes) and what they imply for the products."""

    paths: dict[str, str]  # task -> bundle dir
    hashes: dict[str, dict[str, str]]  # task -> {file: sha256}
    window: int
    layout: BandLayout
    layers: dict[str, Layer]

    @property
    def key(self) -> str:
        return sha256_json(self.hashes)


def describe_models(cfg: InferConfig) -> ModelSet:
    """Check the bundles (format, task, matching input size) without building the models."""
    paths, hashes, metas = {}, {}, {}
    for task, path in (("lulc", cfg.lulc_model), ("water", cfg.water_model)):
        if not path:
            continue
        meta = read_json(Path(path) / "model.json")
        if meta is None or not (Path(path) / "model.safetensors").exists():
            raise InputError(f"{task} model {path}: not a model bundle (nationmap export writes one)")
        if meta.get("task") != task:
            raise InputError(f"{path} is a {meta.get('task')} model, not {task}")
        paths[task], metas[task] = str(Path(path).resolve()), meta
        hashes[task] = {f: sha256_file(Path(path) / f) for f in BUNDLE_FILES}
    sizes = {t: int(m["model_config"]["encoder"]["img_size"]) for t, m in metas.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"the models take different input sizes {sizes}; they must share one")
    window = cfg.window or next(iter(sizes.values()))
    if window != next(iter(sizes.values())):
        raise InputError(f"window {window} px differs from the models' input size {next(iter(sizes.values()))} px")
    lulc_classes, water_classes = (), ()
    if "lulc" in metas:
        lulc_classes = class_table_from_dict(metas["lulc"]["class_table"]).scheme(metas["lulc"]["scheme"]).classes
    if "water" in metas:
        water_classes = class_table_from_dict(metas["water"]["class_table"]).scheme(metas["water"]["scheme"]).classes
    layout = BandLayout(tuple(c.code for c in lulc_classes), "water" in metas)
    return ModelSet(paths, hashes, window, layout, product_layers(lulc_classes, water_classes))


# ---------------------------------------------------------------------------- scene stage


def predict_scenes(jobs: list[dict], cfg: InferConfig, models: ModelSet, settings: WindowSettings) -> list[dict]:
    """Run the scene stage with a progress bar (per scene)."""
    if not jobs:  # a verified rerun: no models to load, no Ray to reach
        return []
    with progress_bar() as progress:
        bar = progress.add_task("scenes", total=len(jobs))

        def on_done(record):
            progress.advance(bar)

        if cfg.executor == "serial":
            from nationmap.infer.predict import predict_serial

            return predict_serial(jobs, models.paths, settings, on_done, cfg.compile)
        from nationmap.infer.ray_data import predict_scenes_ray

        return predict_scenes_ray(jobs, cfg, models, settings, on_done)


# ---------------------------------------------------------------------------- cell stage


def _file_verifies(path: Path, sha256: str | None) -> bool:
    return path.exists() and sha256_file(path) == sha256


def _files_verify(directory: Path, files: dict) -> bool:
    return all(_file_verifies(directory / entry["path"], entry["sha256"]) for entry in files.values())


def _cell_done(record: dict | None, key: str, directory: Path) -> bool:
    return (record is not None and record.get("key") == key and record.get("status") in ("ok", "empty")
            and _files_verify(directory, record.get("files", {})))


def _scene_done(record: dict | None, key: str, raster: Path | None) -> bool:
    if record is None or record.get("key") != key or record.get("status") != "ok":
        return False
    return raster is None or _file_verifies(raster, record.get("sha256"))


# ---------------------------------------------------------------------------- run


def _code_version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import rasterio

    def installed(name: str) -> str | None:  # read from the package metadata: the driver never imports torch
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    git = None
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"nationmap": __version__, "git": git, "python": platform.python_version(), "torch": installed("torch"),
            "ray": installed("ray"), "gdal": rasterio.__gdal_version__}


def select_scenes(cfg: InferConfig, region: Region):
    df = filter_catalog(read_catalog(cfg.catalog), region, [parse_month(cfg.month)])
    if df.empty:
        raise InputError(f"no HH acquisitions of region {region.name} in {cfg.month} in catalog {cfg.catalog}")
    return df.sort_values("id", kind="stable").reset_index(drop=True)


def run_inference(cfg: InferConfig, force: bool = False, log=print, run_dir: Path | None = None) -> dict:
    """Run (or complete) the inference of ``cfg`` in ``run_dir`` (default ``OUT/<region>/<YYYY-MM>``);
    returns the manifest."""
    t_start = time.time()
    started = dt.datetime.now(dt.timezone.utc)
    region = resolve_region(cfg.region, cfg.lulc_dir or None)
    month = parse_month(cfg.month)
    scenes = select_scenes(cfg, region)
    models = describe_models(cfg)
    settings = cfg.window_settings(models.window)
    cell_settings = cfg.cell_settings()
    paths = RunPaths(Path(run_dir)) if run_dir is not None else run_paths(cfg, region)
    if force and paths.work.exists():
        shutil.rmtree(paths.work / "state", ignore_errors=True)
    paths.root.mkdir(parents=True, exist_ok=True)
    timings = {}

    # 1. scenes: key = input checksum + models + window settings
    scene_key = {r.id: sha256_json({"input": r.sha256, "models": models.key, "window": settings.__dict__, "units": r.units})
                 for r in scenes.itertuples()}
    rows = {r.id: r for r in scenes.itertuples()}

    def job(scene_id: str) -> dict:
        r = rows[scene_id]
        return {"id": scene_id, "path": r.path, "units": r.units, "key": scene_key[scene_id],
                "output": str(paths.scene_raster(scene_id)), "record": str(paths.scene_record(scene_id))}

    records = {sid: read_json(paths.scene_record(sid)) for sid in rows}
    first = [sid for sid in rows if not _scene_done(records[sid], scene_key[sid], None)]
    t0 = time.time()
    ran = set(first)
    log(f"{len(rows)} acquisitions of {region.name} in {month}; {len(first)} to predict")
    for rec in predict_scenes([job(s) for s in first], cfg, models, settings):
        records[rec["id"]] = rec
    ok_scenes = sorted(s for s in rows if records[s] and records[s].get("status") == "ok")
    shapes = dict(zip(scenes.id, footprints(scenes)))

    # 2. cells: key = the keys of the scenes that cover it + models + cell settings
    cell_jobs, cell_records, covering, todo = {}, {}, {}, []
    tree = shapely.STRtree([shapes[s] for s in ok_scenes])  # cells x scenes pairs grow fast nationally
    for cell in region.cells:
        covering[cell.name] = [ok_scenes[i] for i in sorted(tree.query(cell.polygon, predicate="intersects"))]
        key = sha256_json({"scenes": [scene_key[s] for s in covering[cell.name]], "models": models.key,
                           "cell": cell_settings.__dict__, "month": cfg.month})
        cell_records[cell.name] = read_json(paths.cell_record(cell.name))
        cell_jobs[cell.name] = {"cell": cell, "month": cfg.month, "key": key,
                                "scenes": [str(paths.scene_raster(s)) for s in covering[cell.name]],
                                "out_dir": str(paths.cell_dir(cell.name)), "layout": models.layout,
                                "layers": models.layers, "settings": cell_settings,
                                "record": str(paths.cell_record(cell.name)),
                                "tags": {"MODELS": models.key[:16]},
                                # a Ray cell task holds one CPU; serially the cores are the cell's
                                "threads": 1 if cfg.executor == "ray" else os.cpu_count() or 1}
        if not _cell_done(cell_records[cell.name], key, paths.cell_dir(cell.name)):
            todo.append(cell.name)
    # scene rasters the remaining cells need but that were removed or damaged since
    needed = sorted({s for c in todo for s in covering[c]} - ran)
    missing = [s for s in needed if not _scene_done(records[s], scene_key[s], paths.scene_raster(s))]
    if missing:
        log(f"{len(missing)} scene rasters needed again")
        for rec in predict_scenes([job(s) for s in missing], cfg, models, settings):
            records[rec["id"]] = rec
        ran |= set(missing)
    timings["scenes_s"] = round(time.time() - t0, 2)

    t0 = time.time()
    log(f"{len(region.cells)} cells; {len(todo)} to combine")
    for rec in run_tasks(run_cell, [cell_jobs[c] for c in todo], desc="cells", executor=cfg.executor):
        cell_records[rec["cell"]] = rec
    timings["cells_s"] = round(time.time() - t0, 2)

    # 3. national mosaics and quicklooks
    t0 = time.time()
    tag = f"{region_slug(region.name)}_{cfg.month}"
    ok_cells = {c: cell_records[c.name] for c in region.cells if cell_records[c.name].get("status") == "ok"}
    products = {}
    if ok_cells:
        products = _mosaics(paths, region, cfg, models, ok_cells, tag, force)
    timings["mosaic_s"] = round(time.time() - t0, 2)

    # 4. STAC
    t0 = time.time()
    if ok_cells:
        products["stac"] = _stac(paths, region, month, cfg, models, ok_cells, products, force)
    timings["stac_s"] = round(time.time() - t0, 2)

    # 5. manifest
    scene_list = []
    for sid in rows:
        rec = dict(records[sid] or {"id": sid, "status": "not run"})
        rec["skipped"] = sid not in ran
        scene_list.append(rec)
    cell_list = []
    for cell in region.cells:
        rec = dict(cell_records[cell.name])
        rec["skipped"] = cell.name not in todo
        cell_list.append(rec)
    failures = [{"what": "scene", "id": s["id"], "reason": s.get("error", "")} for s in scene_list if s["status"] != "ok"]
    failures += [{"what": "cell", "id": c["cell"], "reason": c.get("error", "")} for c in cell_list if c["status"] == "failed"]
    empty = [c["cell"] for c in cell_list if c["status"] == "empty"]
    status = "failed" if not ok_cells else ("partial" if failures else "ok")
    timings["total_s"] = round(time.time() - t_start, 2)
    manifest = {
        "format": MANIFEST_FORMAT, "kind": "infer",
        "run_id": f"infer-{tag}-{started:%Y%m%dT%H%M%SZ}", "status": status,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "region": region.name, "month": cfg.month, "cells": region.cell_names,
        "code": _code_version(), "config": cfg.to_dict(),
        "models": {t: {"path": p, "sha256": models.hashes[t]} for t, p in models.paths.items()},
        "inputs": [{"id": r.id, "path": r.path, "sha256": r.sha256, "datetime": str(r.datetime)} for r in scenes.itertuples()],
        "scenes": scene_list, "cell_results": cell_list, "empty_cells": empty, "failures": failures,
        "products": products, "timings": timings, "nodes": node_counts(scene_list, cell_list),
    }
    write_json(paths.manifest, manifest)
    if status == "ok" and not cfg.keep_scenes:
        shutil.rmtree(paths.work / "scenes", ignore_errors=True)
    manifest["run_dir"] = str(paths.root)
    return manifest


def _stac(paths: RunPaths, region: Region, month, cfg: InferConfig, models: ModelSet, ok_cells: dict, products: dict,
          force: bool) -> str:
    """The STAC tree of the run, rewritten when a file it describes changed or one of its own files
    is missing or damaged (each is verified by its SHA-256, as every other unit)."""
    key = sha256_json({"cells": {c.name: r["files"] for c, r in ok_cells.items()}, "models": models.key,
                       "national": {g: products.get(g, {}) for g in ("mosaic", "vrt")}, "format": "stac/2"})
    record = read_json(paths.stac_record)
    if not force and record and record.get("key") == key and _files_verify(paths.root, record.get("files", {})):
        return "stac/catalog.json"
    cell_files = {p: {c: _product_file(paths.cell_dir(c.name) / r["files"][p]["path"], r["files"][p]["sha256"])
                      for c, r in ok_cells.items()} for p in models.layout.products}
    national = {group: {p: _product_file(paths.root / e["path"], e["sha256"]) for p, e in products.get(group, {}).items()}
                for group in ("mosaic", "vrt")}
    write_stac(paths.root / "stac", region_slug(region.name), month, models.layers, cell_files, national["mosaic"],
               cfg.pixels_per_degree, {"nationmap:models": models.key[:16]}, vrts=national["vrt"])
    files = {str(p.relative_to(paths.root)): {"path": str(p.relative_to(paths.root)), "sha256": sha256_file(p)}
             for p in sorted((paths.root / "stac").rglob("*.json"))}
    write_json(paths.stac_record, {"key": key, "files": files})
    return "stac/catalog.json"


def node_counts(scenes: list[dict], cells: list[dict]) -> dict[str, dict[str, int]]:
    """Scenes and cells done (ok or empty) per Ray node (``local:<host>`` outside Ray), from their
    records: a unit reused from an earlier run counts for the node that did it then."""
    nodes: dict[str, dict[str, int]] = {}
    for what, records in (("scenes", scenes), ("cells", cells)):
        for rec in records:
            if rec.get("status") in ("ok", "empty") and rec.get("node"):
                nodes.setdefault(rec["node"], {"scenes": 0, "cells": 0})[what] += 1
    return nodes


def _product_file(path: Path, sha: str) -> ProductFile:
    return ProductFile(path, sha, path.stat().st_size)


@dataclass(frozen=True)
class NationalJob:
    """One product's national layer: VRT over the cell COGs, sparse COG, quicklook (paths absolute)."""

    layer: Layer
    cell_files: dict  # Cell -> Path of the cell COG, None for a cell without data
    pixels_per_degree: int
    cog: Path
    vrt: Path
    quicklook: Path
    tags: dict


def national_layer(job: NationalJob) -> dict:
    """Build one product's national layer and quicklook (a Ray task on a cluster); returns
    ``{"mosaic"|"vrt"|"quicklooks": {"path", "sha256"}}`` with absolute paths."""
    national = build_mosaic(job.cell_files, job.layer, job.pixels_per_degree, job.cog, job.tags, vrt=job.vrt)
    png = write_quicklook(national.cog, job.quicklook, job.layer)
    return {group: {"path": str(path), "sha256": sha256_file(path)}
            for group, path in (("mosaic", national.cog), ("vrt", national.vrt), ("quicklooks", png))}


NATIONAL_GROUPS = ("mosaic", "vrt", "quicklooks")
"""The manifest's groups of national files (product -> path relative to the run, sha256)."""


def _mosaics(paths: RunPaths, region: Region, cfg: InferConfig, models: ModelSet, ok_cells: dict, tag: str,
             force: bool) -> dict:
    """National layer (VRT + sparse COG) and quicklook per product, one task each; skipped when the
    cells are unchanged and the files verify."""
    key = sha256_json({"cells": {c.name: {p: e["sha256"] for p, e in r["files"].items()} for c, r in ok_cells.items()},
                       "region": [c.name for c in region.cells], "format": "vrt+sparse-cog/1"})
    record = read_json(paths.mosaic_record)
    if not force and record and record.get("key") == key and all(
            group in record and _files_verify(paths.root, record[group]) for group in NATIONAL_GROUPS):
        return {group: record[group] for group in NATIONAL_GROUPS}
    jobs = []
    for product in models.layout.products:
        files = {c: (paths.cell_dir(c.name) / ok_cells[c]["files"][product]["path"]) if c in ok_cells else None
                 for c in region.cells}
        jobs.append(NationalJob(models.layers[product], files, cfg.pixels_per_degree,
                                paths.root / "mosaic" / f"{tag}_{product}.tif",
                                paths.root / "mosaic" / f"{tag}_{product}.vrt",
                                paths.root / "quicklooks" / f"{tag}_{product}.png",
                                {"REGION": region.name, "MONTH": cfg.month, "PRODUCT": product, "MODELS": models.key[:16]}))
    results = run_tasks(national_layer, jobs, desc="national layers", executor=cfg.executor)
    out = {group: {} for group in NATIONAL_GROUPS}
    for product, result in zip(models.layout.products, results):
        for group in NATIONAL_GROUPS:
            entry = result[group]
            out[group][product] = {"path": str(Path(entry["path"]).relative_to(paths.root)), "sha256": entry["sha256"]}
    write_json(paths.mosaic_record, {"key": key, **out})
    return out


def summarize(manifest: dict) -> str:
    """A few lines for the terminal."""
    scenes = manifest["scenes"]
    ok = sum(s["status"] == "ok" for s in scenes)
    skipped = sum(s["skipped"] for s in scenes)
    cells = manifest["cell_results"]
    lines = [f"status {manifest['status']}: {ok}/{len(scenes)} scenes ok ({skipped} reused), "
             f"{sum(c['status'] == 'ok' for c in cells)}/{len(cells)} cells written "
             f"({sum(c['skipped'] for c in cells)} reused), {len(manifest['empty_cells'])} without data",
             f"products: {manifest['run_dir']} (manifest.json, cells/, mosaic/, quicklooks/, stac/)",
             f"time: {manifest['timings']['total_s']:.0f} s ({json.dumps(manifest['timings'])})"]
    if len(manifest.get("nodes", {})) > 1:
        lines.append("nodes: " + ", ".join(f"{node[:12]} {n['scenes']} scenes, {n['cells']} cells"
                                          for node, n in sorted(manifest["nodes"].items())))
    for f in manifest["failures"][:10]:
        lines.append(f"failed {f['what']} {f['id']}: {f['reason']}")
    return "\n".join(lines)


