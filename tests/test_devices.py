"""Devices found by themselves: ``auto`` against the resources a cluster reports (no GPU needed)."""

from __future__ import annotations

import pytest

from nationmap.devices import AUTO, CPU_BATCH, GPU_BATCH, parse_auto, plan_predictors, resolve_gpus
from nationmap.errors import InputError
from nationmap.infer.config import InferConfig

CPU_MACHINE = {"CPU": 2.0, "memory": 1e10}  # as ray.cluster_resources() reports a laptop
GPU_CLUSTER = {"CPU": 64.0, "GPU": 8.0}  # two nodes of four GPUs


def test_auto_is_the_cpu_without_gpus_and_one_gpu_each_with_them():
    assert resolve_gpus(AUTO, 1, CPU_MACHINE, "predictor actor") == 0.0
    assert resolve_gpus(AUTO, 4, GPU_CLUSTER, "training workers") == 1.0
    assert resolve_gpus(0.5, 4, GPU_CLUSTER, "training workers") == 0.5  # an explicit number wins
    assert resolve_gpus(0, 4, GPU_CLUSTER, "training workers") == 0.0
    with pytest.raises(InputError, match="16 training workers and the Ray cluster has 8 GPU"):
        resolve_gpus(AUTO, 16, GPU_CLUSTER, "training workers")
    with pytest.raises(InputError, match="1 predictor actor x 1 GPU = 1 GPU, but the Ray cluster has 0"):
        resolve_gpus(1.0, 1, CPU_MACHINE, "predictor actor")


def test_predictor_plan_fits_the_cluster():
    cpu = plan_predictors(AUTO, AUTO, 0, 1.0, CPU_MACHINE, scenes=10)
    assert (cpu.actors, cpu.gpus, cpu.batch_size) == (2, 0.0, CPU_BATCH)  # one actor per CPU
    gpu = plan_predictors(AUTO, AUTO, 0, 2.0, GPU_CLUSTER, scenes=100)
    assert (gpu.actors, gpu.gpus, gpu.batch_size) == (8, 1.0, GPU_BATCH)  # one actor per GPU
    assert "8 predictor actor(s) x 1 GPU, batch 32 windows" == gpu.describe()
    assert plan_predictors(AUTO, AUTO, 0, 2.0, GPU_CLUSTER, scenes=3).actors == 3  # never more than the scenes
    assert plan_predictors(0.5, 16, 0, 2.0, GPU_CLUSTER, scenes=100).actors == 16  # half a GPU each
    explicit = plan_predictors(AUTO, 4, 2, 1.0, GPU_CLUSTER, scenes=100)
    assert (explicit.actors, explicit.gpus, explicit.batch_size) == (2, 1.0, 4)


def test_auto_settings_in_configs_and_on_the_command_line():
    cfg = InferConfig(region="demo", month="2022-09", lulc_model="m")
    assert cfg.gpus_per_actor == AUTO and cfg.batch_size == AUTO
    assert cfg.window_settings(256).batch_size == CPU_BATCH  # until the devices are known
    with pytest.raises(InputError, match="gpus_per_actor must be a number or 'auto', not 'many'"):
        InferConfig(region="demo", month="2022-09", lulc_model="m", gpus_per_actor="many")
    with pytest.raises(InputError, match="gpus_per_actor must be >= 0"):
        InferConfig(region="demo", month="2022-09", lulc_model="m", gpus_per_actor=-1.0)
    assert parse_auto("auto", "gpus-per-actor") == AUTO and parse_auto("0", "gpus-per-actor") == 0.0
    assert parse_auto(None, "gpus-per-actor") is None and parse_auto("16", "batch-size", integer=True) == 16
    with pytest.raises(InputError, match="--batch-size must be a whole number or 'auto', not '8.5'"):
        parse_auto("8.5", "batch-size", integer=True)


def test_the_scene_stage_asks_ray_and_runs_on_what_it_reports(ray_local, monkeypatch):
    """Through the pipeline's scene stage: the local 2-CPU Ray gives CPU actors; the same Ray
    reporting 2 GPUs (its resources patched, no GPU needed) gives one GPU actor each, batch 32."""
    from nationmap.infer import ray_data
    from nationmap.infer.stages import predict_scenes
    from nationmap.infer.windows import WindowSettings

    seen, lines = [], []
    monkeypatch.setattr(ray_data, "predict_scenes_ray",
                        lambda jobs, cfg, paths, settings, plan, on_done: seen.append((plan, settings)) or [])
    cfg = InferConfig(region="demo", month="2022-09", lulc_model="m")
    models = type("Models", (), {"paths": {"lulc": "m"}})()
    jobs = [object()] * 5
    predict_scenes(jobs, cfg, models, WindowSettings(size=256), lines.append)
    assert ray_data.cluster_resources()["CPU"] == 2 and "GPU" not in ray_data.cluster_resources()
    plan, settings = seen[-1]
    assert (plan.actors, plan.gpus, settings.batch_size) == (2, 0.0, CPU_BATCH)
    assert lines[-1] == "devices: 2 predictor actor(s) x 1 CPU, batch 8 windows"
    monkeypatch.setattr(ray_local, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 2.0})
    predict_scenes(jobs, cfg, models, WindowSettings(size=256), lines.append)
    plan, settings = seen[-1]
    assert (plan.actors, plan.gpus, settings.batch_size) == (2, 1.0, GPU_BATCH)
    assert lines[-1] == "devices: 2 predictor actor(s) x 1 GPU, batch 32 windows"
