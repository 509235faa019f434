"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one process per worker).

:func:`train_loop_per_worker` reads as the run: :func:`start_worker` (rank, device, seed),
:func:`restore` (model, optimiser and schedule from ``ray.train.get_checkpoint()`` or from the
init weights), then per epoch :func:`run_epoch` (the worker's share of the training split streamed
by Ray Data through ``step.train_step``), :func:`validate` (the worker's share of the val split,
merged across workers) and :func:`report` (metrics to Ray with a checkpoint written by rank 0,
the best copy and the curves). What differs between pretraining and finetuning is the task
object (``nationmap.train.tasks``). A restarted worker group (a killed worker, ``--resume``)
continues from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nationmap.devices import available_cpus
from nationmap.files import atomic_file
from nationmap.train.checkpoint import copy_checkpoint, load_model_weights, load_training_state, save_training_state
from nationmap.train.config import TrainConfig
from nationmap.train.data import PatchDecoder, to_torch
from nationmap.train.optim import build_ema, build_optimizer, build_scheduler
from nationmap.train.progress import StepWriter
from nationmap.train.report import curves_title, write_curves
from nationmap.train.step import EpochStats, NonFiniteLoss, Optimisation, all_sum, augment, native_bf16, train_epoch
from nationmap.train.tasks import MONITOR, TrainTask, build_loss, build_task_model, make_task

# the loop's entry point, and the names older callers (benchmarks/gpu.py) import from here
__all__ = ["MONITOR", "augment", "build_loss", "build_task_model", "train_loop_per_worker"]


@dataclass
class Worker:
    """One Ray Train worker of a run: who it is and what it reads."""

    cfg: TrainConfig
    run_dir: Path
    rank: int
    device: torch.device
    decoder: PatchDecoder  # shard rows -> numpy batch
    steps_per_epoch: int
    normalisation: dict  # {"mean_db", "std_db"} of the inputs, recorded in checkpoints
    dataset_meta: dict  # the prepared dataset's class_frequencies, class_table, patches

    def decode(self, raw: dict) -> dict:
        """Shard rows (numpy) -> the batch dict as torch tensors on this worker's device."""
        return to_torch(self.decoder(raw), self.device)


@dataclass
class Progress:
    """Where the run stands: epochs done before this launch, the best epoch, every epoch's metrics."""

    start_epoch: int = 0
    best: dict | None = None  # {"metric", "value", "epoch"}
    history: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # this launch, for the ETA

    def record(self, metrics: dict, monitor: tuple[str, str], epochs: int) -> bool:
        """Add an epoch's metrics (marked finished on the last epoch); whether it is the best yet."""
        metric, mode = monitor
        improved = _better(metrics.get(metric), None if self.best is None else self.best["value"], mode)
        if improved:
            self.best = {"metric": metric, "value": metrics[metric], "epoch": metrics["epoch"]}
        self.history.append(metrics)
        if metrics["epoch"] == epochs:
            metrics["status"] = "finished"
        return improved


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train's entry point on every worker; ``loop_config`` is ``run._loop_config``'s plain dict
    (train config, run_dir, steps_per_epoch, normalisation, decoder, dataset_meta)."""
    import ray.train

    worker = start_worker(loop_config)
    task = make_task(worker.cfg, worker.dataset_meta)
    opt, progress = restore(worker, task)
    task.to(worker.device)
    meta = checkpoint_meta(worker, task, opt)
    train_shard, val_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    generator = torch.Generator().manual_seed(worker.cfg.seed * 1000 + worker.rank)  # augmentation
    progress.started = time.time()
    for epoch in range(progress.start_epoch, worker.cfg.epochs):
        try:
            stats = run_epoch(worker, task, opt, train_shard, epoch, generator)
        except NonFiniteLoss as exc:
            stop_non_finite(worker, exc, epoch, opt.step)
            return
        val = validate(worker, task, opt, val_shard)
        report(worker, task, opt, progress, epoch_metrics(worker, opt, epoch, stats, val), meta)


def start_worker(loop_config: dict) -> Worker:
    """This worker's identity and settings: torch threads, device, seed; leaves its pid in
    RUN_DIR/workers/rank<R>.pid (what a fault test kills)."""
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.from_dict(loop_config["train"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    local = max(ctx.get_local_world_size(), 1)
    torch.set_num_threads(cfg.threads_per_worker or max(1, available_cpus() // local))
    device = ray.train.torch.get_device()
    if rank == 0 and cfg.precision == "bf16" and not native_bf16(device):
        print("precision bf16 (forced): this device has no native bf16; fp32 is faster here", flush=True)
    torch.manual_seed(cfg.seed + rank)  # before the model is built: its initial weights
    run_dir = Path(loop_config["run_dir"])
    with atomic_file(run_dir / "workers" / f"rank{rank}.pid") as f:
        f.write(str(os.getpid()))
    return Worker(cfg, run_dir, rank, device, loop_config["decoder"], int(loop_config["steps_per_epoch"]),
                  loop_config["normalisation"], loop_config["dataset_meta"])


def restore(worker: Worker, task: TrainTask) -> tuple[Optimisation, Progress]:
    """The model, optimiser, schedule and moving average: from the last checkpoint of the run when
    Ray has one (a restart or ``--resume``), else fresh with the task's init weights; the model is
    then handed to Ray Train (device, DDP across workers)."""
    import ray.train
    import ray.train.torch

    cfg = worker.cfg
    model = task.build_model(worker.decoder.patch_size)
    task.load_init(model)
    optimizer = build_optimizer(model, cfg)
    opt = Optimisation(model, optimizer, build_scheduler(optimizer, cfg, worker.steps_per_epoch), cfg.clip_grad)
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_training_state(d)
    progress = Progress() if state is None else _resume(worker, state, opt)
    opt.model = ray.train.torch.prepare_model(model)
    opt.ema = build_ema(opt.core, cfg)  # after prepare_model: on the worker's device
    if opt.ema is not None and state is not None and state.ema is not None:
        load_model_weights(opt.ema.module, state.ema, "checkpoint moving average")
    return opt, progress


def _resume(worker: Worker, state, opt: Optimisation) -> Progress:
    """Load a checkpoint's weights, optimiser and step into ``opt``; the run's progress so far."""
    load_model_weights(opt.model, state.model, "checkpoint")
    opt.optimizer.load_state_dict(state.optimizer)
    opt.step = int(state.meta["step"])
    # The schedule is a function of the step and the config, so a run resumed with more
    # --epochs stretches its cosine instead of replaying the saved scheduler state.
    opt.scheduler.step_update(opt.step)
    progress = Progress(int(state.meta["epoch"]), state.meta.get("best"), state.meta.get("history", []))
    if worker.rank == 0:
        _log_event(worker.run_dir, {"event": "resumed", "epoch": progress.start_epoch, "attempt_pid": os.getpid()})
        print(f"resumed from the checkpoint of epoch {progress.start_epoch}", flush=True)
    return progress


def checkpoint_meta(worker: Worker, task: TrainTask, opt: Optimisation) -> dict:
    """What every checkpoint of the run records besides the weights (read by bundles and inference)."""
    about = task.checkpoint_meta()
    return {
        "task": about["task"],
        "model_config": opt.core.config.to_dict(),
        "normalisation": worker.normalisation,
        "class_table": worker.dataset_meta.get("class_table"),
        "scheme": about["scheme"],
        "threshold": about["threshold"],
        "train_config": worker.cfg.to_dict(),
        "run": str(worker.run_dir),
    }


def run_epoch(worker: Worker, task: TrainTask, opt: Optimisation, shard, epoch: int,
              generator: torch.Generator) -> EpochStats:
    """One epoch of training steps on this worker's shuffled share of the training split."""
    cfg, bpw = worker.cfg, worker.cfg.batch_per_worker
    batches = shard.iter_batches(
        batch_size=bpw, drop_last=True, local_shuffle_buffer_size=max(4 * bpw, 64),
        local_shuffle_seed=cfg.seed + epoch * 101 + worker.rank, batch_format="numpy")
    on_step = StepWriter(worker.run_dir, epoch + 1, worker.steps_per_epoch) if worker.rank == 0 else None
    return train_epoch(task, opt, batches, worker.steps_per_epoch, worker.decode, worker.device,
                       generator if cfg.augment else None, on_step)


def validate(worker: Worker, task: TrainTask, opt: Optimisation, shard) -> dict:
    """The task's validation metrics (of the moving average when there is one) on every worker's
    share of the val split, merged."""
    opt.model.eval()
    batches = (worker.decode(raw) for raw in shard.iter_batches(batch_size=worker.cfg.batch_per_worker,
                                                                 batch_format="numpy"))
    return task.validate(opt.evaluated, batches, worker.device)


def epoch_metrics(worker: Worker, opt: Optimisation, epoch: int, stats: EpochStats, val: dict) -> dict:
    """The metrics Ray and curves.csv get for an epoch (training figures merged across workers)."""
    totals = all_sum(torch.tensor([stats.loss_sum, stats.samples], dtype=torch.float64, device=worker.device)).cpu()
    return {
        "status": "running",
        "epoch": epoch + 1,
        "step": opt.step,
        "train_loss": float(totals[0] / max(totals[1], 1)),
        **val,
        "lr": opt.lr,
        "epoch_seconds": time.time() - stats.started,
        "train_seconds": stats.seconds,  # the training steps, data streaming included, not validation
        "train_started": stats.started,  # unix time, to line the epoch up with outside measurements
        "train_samples_per_s": float(totals[1]) / max(stats.seconds, 1e-9),
        "data_wait_seconds": stats.data_wait,
        "threads": torch.get_num_threads(),
    }


def report(worker: Worker, task: TrainTask, opt: Optimisation, progress: Progress, metrics: dict, meta: dict) -> None:
    """Record the epoch; rank 0 prints it and writes the checkpoint (and the best copy and the
    curves); every worker reports to Ray (rank 0 with the checkpoint)."""
    import ray.train

    improved = progress.record(metrics, task.monitor, worker.cfg.epochs)
    if worker.rank == 0:
        _print_epoch(worker.cfg, progress, metrics, task.monitor[0])
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if worker.rank == 0:
            save_training_state(tmp, opt.core, opt.optimizer, {
                **meta, "epoch": metrics["epoch"], "step": opt.step, "metrics": metrics, "best": progress.best,
                "history": progress.history, "scheduler": opt.scheduler.state_dict()},
                ema=None if opt.ema is None else opt.ema.module)
            if improved:
                copy_checkpoint(Path(tmp), worker.run_dir / "best")
            cfg = worker.cfg
            write_curves(worker.run_dir, progress.history, task.monitor[0],
                         curves_title(cfg.task, worker.run_dir.name, cfg.preset, cfg.epochs, cfg.batch_size),
                         task.monitor[1])
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def stop_non_finite(worker: Worker, exc: NonFiniteLoss, epoch: int, step: int) -> None:
    """End the run on a NaN/inf loss: rank 0 logs it (``run_training`` reads the event), every
    worker reports the stop to Ray without a checkpoint."""
    import ray.train

    message = f"loss became {exc.loss} at epoch {epoch + 1}, step {exc.step}"
    if worker.rank == 0:
        _log_event(worker.run_dir, {"event": "non-finite", "message": message})
    ray.train.report({"status": "non-finite", "message": message, "epoch": epoch, "step": step})


def _print_epoch(cfg: TrainConfig, progress: Progress, metrics: dict, monitor: str) -> None:
    epoch = metrics["epoch"]
    elapsed = time.time() - progress.started
    eta = elapsed / (epoch - progress.start_epoch) * (cfg.epochs - epoch)
    keys = dict.fromkeys(("train_loss", "val_loss", monitor, "lr"))
    shown = "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
    print(f"epoch {epoch}/{cfg.epochs}  {shown}  {metrics['epoch_seconds']:.1f} s  eta {eta:.0f} s", flush=True)


def _better(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def _log_event(run_dir: Path, event: dict) -> None:
    """Append one line to RUN_DIR/events.jsonl (restarts and stops; one short append each)."""
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"time": time.time(), **event}) + "\n")
