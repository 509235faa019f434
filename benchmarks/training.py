"""Training overhead: ``nationmap train lulc`` on Ray Train (1 worker) against a bare PyTorch loop.

Both train the same model (tiny-preset UPerNet with high-res injection and refine-up, 9
classes, random init) with the same loss (alpha-scaled focal + dice), optimiser (AdamW with
layer decay, cosine schedule), augmentation, batch size, torch threads and data (the training
split of a prepared dataset of 256 x 256 patches). Ray Train's figure is the worker's own
per-epoch ``train_samples_per_s`` (training steps with Ray Data streaming and decoding, not
validation) of the last epoch; the bare loop reads the same parquet shards in process and is
timed over its last epoch of the same number of steps (the first epoch of both is warm-up).
Ray's fixed start-up (cluster, worker group, dataset planning) is reported separately.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from benchmarks.common import Result, fmt, main

SIZES = {"tiny": dict(steps=3, batch=4, epochs=2), "full": dict(steps=24, batch=8, epochs=3)}
THREADS = 2


def ensure_dataset(workdir: Path, size: str) -> Path:
    """The benchmark world's prepared dataset (256 px patches of the 2022-09 month)."""
    from benchmarks.data_prep import prepare_config
    from benchmarks.infer_overhead import CELL, make_world
    from nationmap.data.prepare import prepare_dataset
    from nationmap.data.regions import resolve_region

    out = workdir / f"dataset-{size}"
    if not (out / "dataset.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        world, catalog, lulc_dir = make_world(workdir, size)
        prepare_dataset(catalog, lulc_dir, out, prepare_config(size), resolve_region(CELL), executor="serial")
    return out


def train_config(size: str, data: Path, out: Path):
    from nationmap.train.config import TrainConfig

    s = SIZES[size]
    return TrainConfig(task="lulc", data=str(data), out=str(out), name="bench", preset="tiny", no_pretrain=True,
                       epochs=s["epochs"], batch_size=s["batch"], steps_per_epoch=s["steps"], warmup_epochs=0.0,
                       workers=1, cpus_per_worker=1.0, threads_per_worker=THREADS, keep_last=1)


def bare_loop(cfg, data: Path) -> dict:
    """The same training in a plain PyTorch loop; samples/s of the last epoch."""
    import torch

    from nationmap.data.dataset import PreparedDataset
    from nationmap.train.data import decoder_for, iter_batches, to_torch
    from nationmap.train.loop import augment, build_loss, build_task_model
    from nationmap.train.optim import build_optimizer, build_scheduler

    torch.set_num_threads(THREADS)
    torch.manual_seed(cfg.seed)
    dataset = PreparedDataset(data)
    decoder = decoder_for(dataset, "lulc")
    model = build_task_model(cfg, decoder.patch_size)
    loss_fn = build_loss(cfg, dataset.meta)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, cfg.steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    step, rates = 0, []
    for _epoch in range(cfg.epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        for i, raw in enumerate(iter_batches(dataset, "train", decoder, cfg.batch_size)):
            if i >= cfg.steps_per_epoch:
                break
            batch = augment(to_torch(raw, "cpu"), generator)
            loss = loss_fn(model(batch["x"]), batch["target"].long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            seen += batch["x"].shape[0]
        rates.append(seen / (time.perf_counter() - t0))
    return {"samples_per_s": rates[-1], "per_epoch": rates}


def run(size: str, workdir: Path) -> Result:
    from nationmap.train.run import run_training

    workdir.mkdir(parents=True, exist_ok=True)
    data = ensure_dataset(workdir, size)
    cfg = train_config(size, data, workdir / "runs")
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    bare = bare_loop(cfg, data)

    t0 = time.perf_counter()
    summary = run_training(cfg).summary
    wall = time.perf_counter() - t0
    final = summary["final"]
    ray_rate = float(final["train_samples_per_s"])
    train_s = sum(float(e) for e in _column(Path(summary["run_dir"]), "epoch_seconds"))
    res = Result("training", "Training overhead: Ray Train (1 worker) vs a bare PyTorch loop")
    res.rows = [
        {"what": f"bare PyTorch loop ({THREADS} threads)", "samples/s": fmt(bare["samples_per_s"]), "vs bare": "1.00"},
        {"what": f"Ray Train, 1 worker, {THREADS} threads", "samples/s": fmt(ray_rate),
         "vs bare": f"{ray_rate / bare['samples_per_s']:.2f}"},
    ]
    res.ratios = {"ray_train_vs_bare": ray_rate / bare["samples_per_s"]}
    res.data = {"bare_samples_per_s": bare["samples_per_s"], "bare_per_epoch": bare["per_epoch"],
                "ray_samples_per_s": ray_rate, "ray_wall_s": wall, "ray_epoch_seconds_total": train_s,
                "steps_per_epoch": cfg.steps_per_epoch, "batch": cfg.batch_size, "epochs": cfg.epochs}
    res.notes = [f"{cfg.epochs} epochs of {cfg.steps_per_epoch} steps of {cfg.batch_size} patches (256 px), tiny preset "
                 f"LULC model; last epoch compared. `nationmap train` wall time {wall:.1f} s, of which the epochs "
                 f"(training + validation + checkpoint) {train_s:.1f} s: Ray start-up and teardown {wall - train_s:.1f} s."]
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    return res


def _column(run_dir: Path, name: str) -> list[str]:
    import csv

    with open(run_dir / "curves.csv") as f:
        return [row[name] for row in csv.DictReader(f)]


if __name__ == "__main__":
    main(run, __doc__)
