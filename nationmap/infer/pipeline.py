"""``nationmap infer``: a region's month of acquisitions -> national map products.

Run directory ``OUT/<region>/<YYYY-MM>/``::

    manifest.json                                   inputs + checksums, models + hashes, code
                                                    version, config, timings, per-scene and
                                                    per-cell status (:class:`~nationmap.records.RunManifest`)
    cells/<CELL>/<CELL>_<YYYY-MM>_<product>.tif     per-cell COGs (lulc, water, confidence, count)
    mosaic/<region>_<YYYY-MM>_<product>.vrt         national layer per product: GDAL VRT over the cell COGs
    mosaic/<region>_<YYYY-MM>_<product>.tif         national COG per product (sparse: empty tiles not written)
    quicklooks/<region>_<YYYY-MM>_<product>.png     RGBA quicklooks
    stac/catalog.json                               STAC: a collection per product, item per cell
    .work/scenes/<scene>.tif                        scene-grid probabilities (removed on success)
    .work/state/{scenes,cells}/<id>.json            per-unit records, written as each unit ends

The run is four stages (:mod:`nationmap.infer.stages`): (1) scenes -> probabilities on their own
grid (Ray Data actor pool, models loaded once per actor); (2) cells: scenes reprojected and
combined (Ray tasks); (3) national layers and quicklooks (a Ray task per product); (4) STAC;
then the manifest. Each unit's record holds a key (hash of its inputs, models and settings) and
the SHA-256 of what it wrote; a rerun skips every unit whose key matches and whose files still
verify, so an interrupted run redoes only the missing work. ``force`` redoes everything. Every
file is written under a temporary name and renamed when complete. This module is the driver: it
never imports torch (the model side is :mod:`nationmap.infer.predict`, run by the predictor actors).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from nationmap import __version__
from nationmap.assess.protocol import check_sample
from nationmap.data.catalog import filter_catalog, read_catalog
from nationmap.data.lulc import class_table_from_dict
from nationmap.data.months import parse_month
from nationmap.data.regions import Region, resolve_region
from nationmap.errors import InputError
from nationmap.files import safe_child, sha256_file, write_json
from nationmap.logs import capture
from nationmap.infer.config import InferConfig
from nationmap.infer.tables import read_previous
from nationmap.infer.stages import (ChangeStage, CellStage, ModelSet, NationalStage, RunContext, RunPaths, SceneStage,
                                    StacStage)
from nationmap.products.cells import BandLayout
from nationmap.products.layers import product_layers
from nationmap.records import BundleMeta, Failure, InputEntry, ModelEntry, RunManifest

PIXEL_MODEL_WINDOW = 1024  # window of a run whose models are all per-pixel (the baseline): big, as no input size binds it


def run_paths(cfg: InferConfig, region: Region) -> RunPaths:
    return RunPaths(safe_child(cfg.out, region.slug, str(parse_month(cfg.month))))


def describe_models(cfg: InferConfig) -> ModelSet:
    """Check the bundles (format, task, matching input size) without building the models."""
    paths, hashes, metas = {}, {}, {}
    for task, path in (("lulc", cfg.lulc_model), ("water", cfg.water_model)):
        if not path:
            continue
        if not (Path(path) / "model.json").exists():
            raise InputError(f"{task} model {path}: not a model bundle (nationmap export writes one)")
        meta = BundleMeta.read(Path(path) / "model.json")
        files = ("model.json", meta.weights_file)
        if not (Path(path) / files[1]).exists():
            raise InputError(f"{task} model {path}: not a model bundle (no {files[1]})")
        if meta.task != task:
            raise InputError(f"{path} is a {meta.task} model, not {task}")
        if meta.class_table is None or meta.scheme is None:
            raise InputError(f"{path}: the bundle names no class table and scheme; it cannot make maps")
        paths[task], metas[task] = str(Path(path).resolve()), meta
        hashes[task] = {f: sha256_file(Path(path) / f) for f in files}
    sizes = {t: m.img_size for t, m in metas.items() if m.img_size is not None}  # per-pixel models take any
    if len(set(sizes.values())) > 1:
        raise InputError(f"the models take different input sizes {sizes}; they must share one")
    size = next(iter(sizes.values()), None)
    window = cfg.window or size or PIXEL_MODEL_WINDOW
    if size is not None and window != size:
        raise InputError(f"window {window} px differs from the models' input size {size} px")
    classes = {t: class_table_from_dict(m.class_table).scheme(m.scheme).classes for t, m in metas.items()}
    layout = BandLayout(tuple(c.code for c in classes.get("lulc", ())), "water" in metas)
    layers = product_layers(classes.get("lulc", ()), classes.get("water", ()), probabilities=cfg.probabilities,
                            change=bool(cfg.previous))
    return ModelSet(paths, hashes, window, layout, layers)


def select_scenes(cfg: InferConfig, region: Region):
    df = filter_catalog(read_catalog(cfg.catalog), region, [parse_month(cfg.month)])
    if df.empty:
        raise InputError(f"no HH acquisitions of region {region.name} in {cfg.month} in catalog {cfg.catalog}")
    return df.sort_values("id", kind="stable").reset_index(drop=True)


@contextmanager
def _timed(timings: dict[str, float], name: str):
    t0 = time.time()
    yield
    timings[name] = round(time.time() - t0, 2)


def run_inference(cfg: InferConfig, force: bool = False, log=print, run_dir: Path | None = None) -> RunManifest:
    """Run (or complete) the inference of ``cfg`` in ``run_dir`` (default ``OUT/<region>/<YYYY-MM>``);
    returns the manifest (also written to ``manifest.json``)."""
    started, timings = dt.datetime.now(dt.timezone.utc), {}
    region = resolve_region(cfg.region, cfg.lulc_dir or None)
    catalog = select_scenes(cfg, region)
    paths = RunPaths(Path(run_dir)) if run_dir is not None else run_paths(cfg, region)
    models = describe_models(cfg)
    cfg.window_settings(models.window)  # unusable settings are refused before anything is written
    previous = read_previous(cfg.previous, cfg.month, cfg.pixels_per_degree) if cfg.previous else None
    assessment = check_sample(cfg.assessment) if cfg.assessment else None  # a bad sample is refused first
    ctx = RunContext(cfg, region, parse_month(cfg.month), models, paths, force, log, previous, assessment)
    if force:
        shutil.rmtree(paths.work / "state", ignore_errors=True)
    paths.root.mkdir(parents=True, exist_ok=True)

    with capture(paths.root / "logs"):  # Ray's own output: a file of the run, not the terminal
        scenes, cells, national, stac = _run_stages(ctx, catalog, timings)
    timings["total_s"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 2)

    manifest = build_manifest(ctx, catalog, scenes, cells, national, stac, started, timings)
    write_json(paths.manifest, manifest, durable=True)
    if manifest.status == "ok" and not cfg.keep_scenes:
        shutil.rmtree(paths.work / "scenes", ignore_errors=True)
    return manifest.replace(run_dir=str(paths.root))


def _run_stages(ctx: RunContext, catalog, timings: dict):
    """The stages of the run, each doing only what is not done and verified; returns them."""
    log, region = ctx.log, ctx.region
    scenes = SceneStage(ctx, catalog)
    cells = CellStage(ctx, scenes)
    with _timed(timings, "scenes_s"):
        todo = scenes.plan()
        log(f"{len(scenes.rows)} acquisitions of {region.name} in {ctx.month}; {len(todo)} to predict")
        scenes.run(todo)
        cell_todo = cells.plan()
        again = scenes.rasters_needed(cells.scenes_read_by(cell_todo))  # removed or damaged since
        if again:
            log(f"{len(again)} scene rasters needed again")
            scenes.run(again)
    with _timed(timings, "cells_s"):
        log(f"{len(cells.cells)} cells; {len(cell_todo)} to combine")
        cells.run(cell_todo)
    change = ChangeStage(ctx, cells)
    with _timed(timings, "change_s"):
        change.run(change.plan())
    national = NationalStage(ctx, cells)
    with _timed(timings, "mosaic_s"):
        national.run(national.plan())
    stac = StacStage(ctx, cells, national)
    with _timed(timings, "stac_s"):
        stac.run(stac.plan())
    return scenes, cells, national, stac


def build_manifest(ctx: RunContext, catalog, scenes: SceneStage, cells: CellStage, national: NationalStage,
                   stac: StacStage, started: dt.datetime, timings: dict) -> RunManifest:
    """The run's manifest from its stages' records: ok, partial (a unit failed) or failed (no cell)."""
    scene_list, cell_list = scenes.entries(), cells.entries()
    failures = [Failure("scene", s.id, s.error) for s in scene_list if s.status != "ok"]
    failures += [Failure("cell", c.cell, c.error) for c in cell_list if c.status == "failed"]
    ok = bool(cells.ok())
    status = "failed" if not ok else ("partial" if failures else "ok")
    products = national.products().replace(stac=stac.catalog())
    return RunManifest(
        run_id=f"infer-{ctx.tag}-{started:%Y%m%dT%H%M%SZ}", status=status, region=ctx.region.name,
        month=ctx.cfg.month, started=started.isoformat(timespec="seconds"),
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), cells=ctx.region.cell_names,
        code=_code_version(), config=ctx.cfg.to_dict(),
        models={t: ModelEntry(p, ctx.models.hashes[t]) for t, p in ctx.models.paths.items()},
        inputs=[InputEntry(r.id, r.path, r.sha256, str(r.datetime)) for r in catalog.itertuples()],
        scenes=scene_list, cell_results=cell_list, empty_cells=[c.cell for c in cell_list if c.status == "empty"],
        failures=failures, products=products, timings=timings, nodes=node_counts(scene_list, cell_list))


def _code_version() -> dict[str, str | None]:
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


def node_counts(scenes, cells) -> dict[str, dict[str, int]]:
    """Scenes and cells done (ok or empty) per Ray node (``local:<host>`` outside Ray), from their
    records: a unit reused from an earlier run counts for the node that did it then."""
    nodes: dict[str, dict[str, int]] = {}
    for what, records in (("scenes", scenes), ("cells", cells)):
        for rec in records:
            if rec.status in ("ok", "empty") and rec.node:
                nodes.setdefault(rec.node, {"scenes": 0, "cells": 0})[what] += 1
    return nodes


def summarize(manifest: RunManifest) -> str:
    """A few lines for the terminal."""
    scenes, cells = manifest.scenes, manifest.cell_results
    lines = [f"status {manifest.status}: {sum(s.ok for s in scenes)}/{len(scenes)} scenes ok "
             f"({sum(s.skipped for s in scenes)} reused), {sum(c.status == 'ok' for c in cells)}/{len(cells)} cells "
             f"written ({sum(c.skipped for c in cells)} reused), {len(manifest.empty_cells)} without data",
             f"products: {manifest.run_dir} (manifest.json, cells/, mosaic/, quicklooks/, stac/)",
             f"time: {manifest.timings['total_s']:.0f} s ({json.dumps(manifest.timings)})"]
    if len(manifest.nodes) > 1:
        lines.append("nodes: " + ", ".join(f"{node[:12]} {n['scenes']} scenes, {n['cells']} cells"
                                          for node, n in sorted(manifest.nodes.items())))
    lines += [f"failed {f.what} {f.id}: {f.reason}" for f in manifest.failures[:10]]
    return "\n".join(lines)
