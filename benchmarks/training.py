"""Training overhead: ``nationmap train lulc`` on Ray Train (1 worker) against a bare PyTorch loop.

Both train the same model (tiny-preset UPerNet with high-res injection and refine-up, 9
classes, random init) with the same loss (alpha-scaled focal + dice), optimiser (AdamW with
layer decay, cosine schedule), augmentation, batch size, torch threads and data (the training
split of a prepared dataset of 256 x 256 patches). Ray Train's figure is the worker's own
per-epoch ``train_samples_per_s`` (training steps with Ray Data streaming and decoding, not
validation); the bare loop runs the very same step code (``nationmap.train.step.train_epoch`` and
``train_step`` with the task object of ``nationmap.train.tasks``) on the same parquet shards read
in process, timed per epoch of the same number of steps. The first epoch of both is warm-up; each side's best later epoch is
compared (this machine's speed drifts by 10-20 % within minutes). Ray's fixed start-up
(cluster, worker group, dataset planning) is reported separately, and so is where the CPU went
during the compared Ray epoch (``/proc`` sampled by process: the training worker, Ray Data's
processes, the rest of Ray).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from benchmarks.common import Result, fmt, main

SIZES = {"tiny": dict(steps=3, batch=4, epochs=2), "full": dict(steps=24, batch=8, epochs=4)}
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
    """The same training without Ray: the real loop's task object and epoch (``train_epoch``, whose
    every step is the real ``train_step``), fed in process by a plain parquet reader; samples/s
    of each epoch."""
    import itertools

    import torch

    from nationmap.data.dataset import PreparedDataset
    from nationmap.train.data import decoder_for, iter_batches, to_torch
    from nationmap.train.optim import build_optimizer, build_scheduler
    from nationmap.train.step import Optimisation, train_epoch
    from nationmap.train.tasks import make_task

    torch.set_num_threads(THREADS)
    torch.manual_seed(cfg.seed)
    dataset = PreparedDataset(data)
    decoder = decoder_for(dataset, cfg.task)
    task = make_task(cfg, dataset.meta)
    model = task.build_model(decoder.patch_size)
    optimizer = build_optimizer(model, cfg)
    opt = Optimisation(model, optimizer, build_scheduler(optimizer, cfg, cfg.steps_per_epoch), cfg.clip_grad)
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(cfg.seed)
    rates = []
    for _epoch in range(cfg.epochs):
        # in process the reader decodes, so stop it after the epoch's batches (nothing to drain)
        batches = itertools.islice(iter_batches(dataset, "train", decoder, cfg.batch_size), cfg.steps_per_epoch)
        stats = train_epoch(task, opt, batches, cfg.steps_per_epoch, lambda b: to_torch(b, device), device,
                            generator if cfg.augment else None)
        rates.append(stats.samples / stats.seconds)
    return {"per_epoch": rates}


def run(size: str, workdir: Path) -> Result:
    from nationmap.train.run import run_training

    workdir.mkdir(parents=True, exist_ok=True)
    data = ensure_dataset(workdir, size)
    cfg = train_config(size, data, workdir / "runs")
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    bare = bare_loop(cfg, data)

    sampler = CpuSampler()
    sampler.start()
    t0 = time.perf_counter()
    try:
        summary = run_training(cfg).summary
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    curves = _curves(Path(summary["run_dir"]))
    ray_per_epoch = [float(r["train_samples_per_s"]) for r in curves]
    best = max(range(1, len(curves)), key=lambda i: ray_per_epoch[i])
    ray_rate = ray_per_epoch[best]
    bare_rate = max(bare["per_epoch"][1:])
    train_s = sum(float(r["epoch_seconds"]) for r in curves)
    start = float(curves[best]["train_started"])
    cpu = sampler.cpu_seconds(start, start + float(curves[best]["train_seconds"]))
    res = Result("training", "Training overhead: Ray Train (1 worker) vs a bare PyTorch loop")
    res.rows = [
        {"what": f"bare PyTorch loop ({THREADS} threads)", "samples/s": fmt(bare_rate), "vs bare": "1.00",
         "per epoch": ", ".join(fmt(r) for r in bare["per_epoch"])},
        {"what": f"Ray Train, 1 worker, {THREADS} threads", "samples/s": fmt(ray_rate),
         "vs bare": f"{ray_rate / bare_rate:.2f}", "per epoch": ", ".join(fmt(r) for r in ray_per_epoch)},
    ]
    res.ratios = {"ray_train_vs_bare": ray_rate / bare_rate}
    res.data = {"bare_samples_per_s": bare_rate, "bare_per_epoch": bare["per_epoch"],
                "ray_samples_per_s": ray_rate, "ray_per_epoch": ray_per_epoch, "ray_wall_s": wall,
                "ray_epoch_seconds_total": train_s, "cpu_during_compared_epoch": cpu,
                "steps_per_epoch": cfg.steps_per_epoch, "batch": cfg.batch_size, "epochs": cfg.epochs}
    res.notes = [f"{cfg.epochs} epochs of {cfg.steps_per_epoch} steps of {cfg.batch_size} patches (256 px), tiny preset "
                 f"LULC model; the best epoch after the first compared on each side. `nationmap train` wall time "
                 f"{wall:.1f} s, of which the epochs (training + validation + checkpoint) {train_s:.1f} s: Ray start-up "
                 f"and teardown {wall - train_s:.1f} s."]
    if cpu:
        available = cpu["available_cpu_s"]
        res.notes.append(f"CPU during the compared Ray epoch ({available:.1f} CPU-s available on {os.cpu_count()} cores): "
                         + ", ".join(f"{g} {cpu[g]:.1f} s ({cpu[g] / available:.0%})" for g in PROCESS_GROUPS) + ".")
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    return res


def _curves(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "curves.csv") as f:
        return list(csv.DictReader(f))


class CpuSampler:
    """Cumulative CPU seconds of every process (``/proc/PID/stat``), sampled twice a second in a
    thread, so the CPU of a time window can be split by process afterwards (Linux only)."""

    INTERVAL_S = 0.5

    def __init__(self):
        self.samples: list[tuple[float, dict[int, tuple[float, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def start(self) -> None:
        if Path("/proc/self/stat").exists():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self.samples.append((time.time(), self._snapshot()))

    def _snapshot(self) -> dict[int, tuple[float, str]]:
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / self._tick, name)
        return out

    def cpu_seconds(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds used between the samples nearest inside [t0, t1], by group; {} if unsampled."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        (ta, a), (tb, b) = inside[0], inside[-1]
        groups = dict.fromkeys(PROCESS_GROUPS, 0.0)
        for pid, (cpu, name) in b.items():
            # a process started inside the window: all of its CPU is inside it
            groups[_process_group(pid, name)] += cpu - a.get(pid, (0.0, name))[0]
        return {**groups, "available_cpu_s": (tb - ta) * (os.cpu_count() or 1)}


WORKER, RAY_DATA, RAY_REST, OTHER = PROCESS_GROUPS = (
    "training worker", "Ray Data (split coordinators, task workers)",
    "rest of Ray (raylet, GCS, Train controller and helper actors)", "driver and other processes")


def _process_group(pid: int, name: str) -> str:
    """The group of a process by its pid and ``/proc`` name (15 characters at most)."""
    if pid == os.getpid():
        return OTHER
    if name.startswith("ray::RayTrainWo"):
        return WORKER
    if name.startswith(("ray::SplitCoord", "ray::IDLE", "ray::Read", "ray::Map")):
        return RAY_DATA
    if name.startswith("ray::") or name in ("raylet", "gcs_server") or _is_ray_python(pid):
        return RAY_REST
    return OTHER


def _is_ray_python(pid: int) -> bool:
    try:
        return "/ray/" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


if __name__ == "__main__":
    main(run, __doc__)
