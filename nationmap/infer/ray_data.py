"""The Ray Data layer of the scene stage: an actor pool of :class:`ScenePredictor`.

Each actor loads the model bundles once (on its GPU when it has one), then predicts whole
scenes, one row (scene job) at a time, streaming each scene by windows
(:func:`nationmap.infer.scene.predict_scene`). Results come back as rows holding the scene's
record; the driver shows progress as they arrive.
"""

from __future__ import annotations

import json

import numpy as np

from nationmap.devices import PredictorPlan
from nationmap.infer.windows import WindowSettings
from nationmap.parallel import init_ray
from nationmap.records import SceneJob, SceneRecord


class ScenePredictor:
    """``map_batches`` callable: loads the models in ``__init__``, predicts scenes in ``__call__``."""

    def __init__(self, model_paths: dict[str, str], settings: dict, threads: int, compile: bool = False):
        import torch

        from nationmap.infer.predict import load_scene_models

        torch.set_num_threads(max(1, threads))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.models = load_scene_models(model_paths, device, compile)
        self.settings = WindowSettings(**settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from nationmap.infer.predict import run_scene

        jobs = [SceneJob.from_json(json.loads(job), "scene job") for job in batch["job"]]
        return {"record": [json.dumps(run_scene(job, self.models, self.settings).to_json()) for job in jobs]}


def cluster_resources() -> dict:
    """The Ray cluster's resources (Ray started or reached first)."""
    import ray

    init_ray()
    return ray.cluster_resources()


def predict_scenes_ray(jobs: list[SceneJob], cfg, model_paths: dict[str, str], settings: WindowSettings,
                       plan: PredictorPlan, on_done) -> list[SceneRecord]:
    """The scene stage on a Ray Data actor pool of ``plan`` (one scene per block); ``on_done`` is
    called with each record as it arrives."""
    import ray
    import ray.data

    init_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ds = ray.data.from_items([{"job": json.dumps(j.to_json())} for j in jobs], override_num_blocks=len(jobs))
    ds = ds.map_batches(
        ScenePredictor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=plan.actors), num_cpus=plan.cpus,
        num_gpus=plan.gpus or None,
        fn_constructor_kwargs={"model_paths": model_paths, "settings": settings.__dict__,
                               "threads": int(plan.cpus), "compile": cfg.compile},
    )
    records = []
    for row in ds.iter_rows():
        records.append(SceneRecord.from_json(json.loads(row["record"]), "scene record from a predictor"))
        on_done(records[-1])
    return records
