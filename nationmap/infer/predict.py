"""The model side of the scene stage: load the bundles once, predict scenes, write their records.

Runs in the predictor actors (:mod:`nationmap.infer.ray_data`) or in the driver with
``--executor serial``. It and :mod:`nationmap.infer.scene` are the inference modules that
import torch, and the driver of a Ray run (:mod:`nationmap.infer.pipeline`) loads neither.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from nationmap.data.alos2 import is_alos2_name
from nationmap.data.masks import mask_path, write_terrain_mask
from nationmap.devices import PredictorPlan, available_cpus
from nationmap.errors import describe
from nationmap.files import sha256_file, write_json
from nationmap.infer.scene import SceneModels, WindowSettings, head_from_bundle, predict_scene
from nationmap.parallel import node_id
from nationmap.records import SceneJob, SceneRecord


def load_scene_models(paths: dict[str, str], device: str = "cpu", compile: bool = False) -> SceneModels:
    from nationmap.train.checkpoint import load_bundle

    heads = [head_from_bundle(load_bundle(paths[t], device)) for t in ("lulc", "water") if t in paths]
    return SceneModels(heads, device=device, compile=compile)


def run_scene(job: SceneJob, models: SceneModels, settings: WindowSettings) -> SceneRecord:
    """Predict one scene and write its record; errors become a ``failed`` record."""
    started = round(time.time(), 3)  # with the worker, lets a profile find each worker's idle gaps
    t0 = time.perf_counter()
    try:
        result = predict_scene(job.path, job.output, models, settings, units=job.units or None,
                               mask=dem_mask(job))
        outcome = dict(status="ok", windows=result.windows, valid_pixels=result.valid_pixels, height=result.height,
                       width=result.width, model_seconds=round(result.model_seconds, 3), sha256=sha256_file(job.output))
    except Exception as exc:  # one unreadable scene must not stop the month
        outcome = dict(status="failed", error=describe(exc))
    node = node_id()
    record = SceneRecord(id=job.id, key=job.key, path=job.path, started=started,
                         seconds=round(time.perf_counter() - t0, 3), node=node, worker=f"{node}:{os.getpid()}",
                         **outcome)
    write_json(job.record, record, durable=True)
    return record


def dem_mask(job: SceneJob) -> Path | None:
    """The layover/shadow mask of an ALOS-2 scene that has none of its own, from the run's DEM
    (``job.dem``), written beside the scene's probability raster; None without a DEM or when the
    acquisition has its own mask (or is not an ALOS-2 scene: mosaics ship JAXA's)."""
    if not job.dem or not is_alos2_name(Path(job.path).name) or mask_path(job.path) is not None:
        return None
    return write_terrain_mask(job.path, job.dem, out_dir=Path(job.output).parent / "masks")[0]


def local_resources() -> dict:
    """This machine's CPUs and the GPUs torch sees, as Ray reports a cluster's."""
    return {"CPU": float(available_cpus()), "GPU": float(torch.cuda.device_count())}


def predict_serial(jobs: list[SceneJob], cfg, paths: dict[str, str], settings: WindowSettings,
                   plan: PredictorPlan, on_done) -> list[SceneRecord]:
    """The scene stage in this process (on its GPU when ``plan`` has one): models loaded once,
    scenes one after the other."""
    if not jobs:
        return []
    scene_models = load_scene_models(paths, "cuda" if plan.gpus else "cpu", compile=cfg.compile)
    out = []
    for job in jobs:
        out.append(run_scene(job, scene_models, settings))
        on_done(out[-1])
    return out
