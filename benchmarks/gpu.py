"""GPU figures: Swin-B + refined UPerNet at 256 x 256 in bf16, inference and training.

Inference: LULC and water models of the ``swin-b`` preset (random weights), bf16 autocast,
channels-last, ``torch.inference_mode``, eager and ``torch.compile``; patches per second for
the pair (a map needs both) and each model's achieved FLOP/s as a fraction of the GPU's peak
dense bf16 FLOP/s, with the FLOPs per patch of ``nationmap models info``. The scene stage
(:func:`predict_scene` on a synthetic scene: reading, blending, writing) is run with the same
models against their bare forward passes. Training: the LULC model's optimiser steps per
second (AdamW, focal + dice, bf16 autocast) as samples per second.

Without a GPU the same code runs on the CPU with the tiny preset so the path stays tested; the
figures are then marked as not GPU figures and RESULTS.md says that no GPU was available.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import Result, fmt, main, random_bundles, write_scene

SETTINGS = {
    "gpu": dict(preset="swin-b", batch=64, train_batch=32, steps=20, warmup=5, scene=4096),
    "cpu": dict(preset="tiny", batch=4, train_batch=2, steps=2, warmup=1, scene=512),
}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def forward_rate(models: list, batch: int, device: str, steps: int, warmup: int) -> float:
    """Patches per second through every model of ``models`` (bf16 autocast on CUDA)."""
    import torch

    x = torch.randn(batch, 1, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        for _ in range(warmup):
            for m in models:
                m(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            for m in models:
                m(x)
        _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def training_rate(preset: str, batch: int, device: str, steps: int, warmup: int) -> float:
    """Samples/s of the real training step (``nationmap.train.step.train_step``: bf16 autocast on
    CUDA, the non-finite check, clipping, optimiser and schedule) on random 256 x 256 batches."""
    import torch

    from nationmap.train.config import TrainConfig
    from nationmap.train.optim import build_optimizer, build_scheduler
    from nationmap.train.step import Optimisation, train_step
    from nationmap.train.tasks import make_task

    cfg = TrainConfig(task="lulc", preset=preset, no_pretrain=True, batch_size=batch)
    task = make_task(cfg, {"class_frequencies": {"train": {"lulc9": {"pixels": [1] * 9}}}}).to(torch.device(device))
    model = task.build_model(256).to(device).to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, cfg)
    opt = Optimisation(model, optimizer, build_scheduler(optimizer, cfg, warmup + steps), cfg.clip_grad)
    x = torch.randn(batch, 1, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    batch_ = {"x": x, "target": torch.randint(0, 9, (batch, 256, 256), device=device)}
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        train_step(task, opt, batch_, torch.device(device))
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def run(size: str, workdir: Path) -> Result:
    import torch

    from nationmap.infer.predict import load_scene_models
    from nationmap.infer.scene import predict_scene
    from nationmap.infer.windows import WindowSettings
    from nationmap.models.info import model_cost, peak_bf16_flops

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    s = SETTINGS["gpu" if on_gpu else "cpu"]
    if size == "tiny" and on_gpu:
        s = {**s, "steps": 3, "warmup": 1, "scene": 1024}
    res = Result("gpu", "GPU: Swin-B + refined UPerNet at 256 x 256, bf16")
    name = torch.cuda.get_device_name(0) if on_gpu else "none"
    peak = peak_bf16_flops(name) if on_gpu else None
    bundles = random_bundles(workdir / "bundles", s["preset"], 256)
    scene_models = load_scene_models(bundles, device)
    nets = [h.model for h in scene_models.heads]
    costs = {h.task: model_cost(s["preset"], h.task).flops_per_patch for h in scene_models.heads}
    eager = forward_rate(nets, s["batch"], device, s["steps"], s["warmup"])
    rows = [("eager", eager)]
    compiled = None
    if on_gpu:
        compiled_nets = [torch.compile(m) for m in nets]
        compiled = forward_rate(compiled_nets, s["batch"], device, s["steps"], s["warmup"] + 3)
        rows.append(("torch.compile", compiled))
    flops_pair = sum(costs.values())
    for label, rate in rows:
        achieved = rate * flops_pair
        res.rows.append({"what": f"inference {s['preset']} LULC + water, {label}, batch {s['batch']}",
                         "patches/s": fmt(rate), "TFLOP/s": fmt(achieved / 1e12),
                         "of peak bf16": f"{achieved / peak:.1%}" if peak else "-"})
    # the scene stage against the same models' bare forward (what the pipeline adds on this device)
    scene = workdir / "gpu-scene.tif"
    write_scene(scene, s["scene"], seed=1)
    settings = WindowSettings(size=256, overlap=64, batch_size=s["batch"])
    predict_scene(scene, workdir / "gpu-pred.tif", scene_models, settings)  # warm-up
    t0 = time.perf_counter()
    r = predict_scene(scene, workdir / "gpu-pred.tif", scene_models, settings)
    stage = r.windows / (time.perf_counter() - t0)
    (workdir / "gpu-pred.tif").unlink()
    scene.unlink()
    res.rows.append({"what": f"scene stage, {s['scene']} px scene ({r.windows} windows)", "patches/s": fmt(stage),
                     "TFLOP/s": fmt(stage * flops_pair / 1e12), "of peak bf16": f"{stage * flops_pair / peak:.1%}" if peak else "-"})
    train = training_rate(s["preset"], s["train_batch"], device, s["steps"], s["warmup"])
    res.rows.append({"what": f"training {s['preset']} LULC, batch {s['train_batch']}", "patches/s": fmt(train),
                     "TFLOP/s": fmt(3 * train * costs["lulc"] / 1e12),
                     "of peak bf16": f"{3 * train * costs['lulc'] / peak:.1%}" if peak else "-"})
    best = max(eager, compiled or 0)
    res.ratios = {"scene_stage_vs_bare": stage / eager}
    if peak:
        res.ratios["inference_fraction_of_peak"] = best * flops_pair / peak
    res.data = {"available": on_gpu, "gpu": name, "peak_bf16_flops": peak, "preset": s["preset"],
                "flops_per_patch": costs, "pair_patches_per_s": best, "eager_patches_per_s": eager,
                "compiled_patches_per_s": compiled, "scene_stage_patches_per_s": stage, "train_samples_per_s": train,
                "device": device}
    if on_gpu:
        res.notes = [f"GPU: {name}; peak dense bf16 {peak / 1e12:.0f} TFLOP/s" if peak else f"GPU: {name} (peak unknown)",
                     "FLOPs per patch (nationmap models info): " + ", ".join(f"{k} {v / 1e9:.1f} G" for k, v in costs.items()),
                     "training TFLOP/s counts 3x the forward FLOPs (forward + backward)."]
    else:
        res.notes = ["No GPU on this machine: these rows are the same code on the CPU with the tiny preset (a smoke "
                     "run), not GPU figures. On a GPU node run `python -m benchmarks gpu` (or `make bench-gpu`)."]
    return res


if __name__ == "__main__":
    main(run, __doc__)
