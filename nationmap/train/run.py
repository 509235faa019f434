"""Launch a training run on Ray Train (embedded local Ray, or a cluster via --address / RAY_ADDRESS).

RUN_DIR = OUT/NAME holds: config.json (the resolved TrainConfig), Ray's checkpoint_* directories
(the last ``keep_last`` epochs), best/ (the best epoch by the task's monitor), curves.csv/png,
events.jsonl (restarts), summary.json (status, epochs, best, final metrics, wall time).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nationmap.data.dataset import PreparedDataset
from nationmap.errors import FailedError, InputError
from nationmap.files import atomic_file, read_json, safe_child
from nationmap.logs import capture
from nationmap.records import RUN_FORMAT
from nationmap.train.checkpoint import load_encoder_weights
from nationmap.train.config import TrainConfig
from nationmap.train.data import decoder_for, normalisation_for, ray_dataset, split_for
from nationmap.train.loop import MONITOR, train_loop_per_worker
from nationmap.train.progress import EpochProgress


class TrainingError(FailedError):
    """A run that started but could not finish (non-finite loss, too many failures)."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict


def new_run_name(task: str) -> str:
    return f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"


def steps_per_epoch(cfg: TrainConfig, dataset: PreparedDataset) -> int:
    rows = int(dataset.meta["patches"][split_for(cfg.task, "train")])
    steps = (rows // cfg.workers) // cfg.batch_per_worker
    if steps < 1:
        raise InputError(
            f"{rows} training patches cannot fill one batch of {cfg.batch_per_worker} on each of "
            f"{cfg.workers} workers; lower --batch-size")
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps


def absolute_inputs(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its dataset and pretrained encoder as absolute paths: Ray Train runs the
    workers in their own directories, where a path relative to the caller's does not resolve."""
    return cfg.replace(data=str(Path(cfg.data).resolve()) if cfg.data else cfg.data,
                       init=str(Path(cfg.init).resolve()) if cfg.init else cfg.init)


def prepare_run(cfg: TrainConfig, resume: bool = False) -> tuple[Path, PreparedDataset]:
    """Validate everything that can be checked before Ray starts; create RUN_DIR/config.json."""
    if not cfg.data:
        raise InputError("no dataset given (--data DATASET)")
    dataset = PreparedDataset(cfg.data)
    if cfg.finetune and not cfg.init and not cfg.no_pretrain:
        raise InputError(f"{cfg.task} finetuning needs --init PRETRAINED (a pretraining run or bundle) or --no-pretrain")
    if cfg.init:
        load_encoder_weights(cfg.init)  # fail early on a missing or foreign file
    steps_per_epoch(cfg, dataset)
    run_dir = safe_child(cfg.out, cfg.name)  # a name such as ../../x must not leave --out
    if not resume:
        if run_dir.exists():
            raise InputError(f"run directory {run_dir} exists; continue it with --resume {run_dir} or pick another --name")
        run_dir.mkdir(parents=True)
        cfg.write(run_dir / "config.json")
    return run_dir.resolve(), dataset


def drop_orphan_checkpoints(run_dir: Path) -> list[str]:
    """Remove the epoch checkpoints Ray's checkpoint manager does not list; returns their names.

    A run stopped (Ctrl-C, a killed driver) between writing an epoch's checkpoint and registering
    it leaves a directory Ray never counts against ``keep_last`` nor deletes. Without Ray's
    snapshot nothing is known to be an orphan, so nothing is removed.
    """
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    if not snapshot.exists():
        return []
    try:
        data = json.loads(snapshot.read_text())
        results = data.get("checkpoint_results", []) + [data.get("latest_checkpoint_result") or {}]
        known = {r["checkpoint_dir_name"] for r in results if r.get("checkpoint_dir_name")}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        return []  # a snapshot of another Ray version: leave the directories to Ray
    orphans = sorted(d.name for d in run_dir.glob("checkpoint_*") if d.is_dir() and d.name not in known)
    for name in orphans:
        shutil.rmtree(run_dir / name)
    return orphans


def load_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise InputError(f"{run_dir}: not a training run directory (no config.json)")
    data = read_json(path)
    if data is None:
        raise InputError(f"{path}: not a JSON object (damaged?)")
    return TrainConfig.from_dict(data)


def run_training(cfg: TrainConfig, resume: bool = False, log=print) -> RunResult:
    """Run (or with ``resume`` continue) a training run to completion; returns its summary. The
    devices it found (``gpus_per_worker`` ``auto``) are printed with ``log`` and kept in the summary."""
    cfg = absolute_inputs(cfg)
    run_dir, dataset = prepare_run(cfg, resume)
    if resume:
        drop_orphan_checkpoints(run_dir)
    with capture(run_dir / "logs") as log_path:  # Ray's own output: a file of the run, not the terminal
        try:
            trainer, cfg, precision = _trainer(cfg, run_dir, dataset, log)
        except InputError as exc:  # a request the cluster or its devices cannot meet: nothing was trained
            refusal = exc
        else:
            return _fit(trainer, cfg, run_dir, log_path, precision)
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # leave no run directory a rerun would have to --resume
    raise refusal


def _fit(trainer, cfg: TrainConfig, run_dir: Path, log_path: Path, precision) -> RunResult:
    """``trainer.fit()`` with a progress bar of epochs, and the run's summary.json around it; a
    failure is one line naming its cause and ``log_path``, where its traceback is written.
    ``precision``: the run's ``devices.PrecisionChoice``, recorded under devices."""
    t0 = time.time()
    # what `nationmap runs list|show` reads: identity, times, inputs
    record = {"format": RUN_FORMAT, "kind": "train", "run_id": run_dir.name, "task": cfg.task,
              "started": _now(), "inputs": {"data": cfg.data, "init": cfg.init or None},
              "devices": {"workers": cfg.workers, "gpus_per_worker": cfg.gpus_per_worker,
                          "precision": precision.to_dict()}}
    _write_summary(run_dir, {**record, "status": "running"})
    try:
        with EpochProgress(run_dir, cfg.task, cfg.epochs, MONITOR[cfg.task][0]):
            result = fit_interruptible(trainer)
    except KeyboardInterrupt:  # Ctrl-C: the epoch checkpoints stay for --resume
        _write_summary(run_dir, {**record, "status": "interrupted", "finished": _now(),
                                 "seconds": round(time.time() - t0, 1)})
        raise
    except Exception as exc:  # Ray wraps worker failures: the cause, and the traceback in the log
        from nationmap.logs import worker_error, worker_reason

        _write_summary(run_dir, {**record, "status": "failed", "error": worker_reason(exc), "finished": _now(),
                                 "seconds": round(time.time() - t0, 1)})
        raise TrainingError(str(worker_error(exc, log_path, "training failed"))) from None
    summary = _final_summary(cfg, run_dir, record, dict(result.metrics or {}), t0)
    _write_summary(run_dir, summary)
    if summary["status"] == "non-finite":
        raise TrainingError(f"training stopped: {summary['final'].get('message')}")
    return RunResult(run_dir, summary)


def fit_interruptible(trainer):
    """``trainer.fit()`` in a daemon thread, this thread waiting. Run from the main thread, Ray
    Train installs its own SIGINT handler, which aborts the run and exits the process without a
    word (and stays installed after); from another thread it does not, so Ctrl-C stays a
    KeyboardInterrupt here, which the CLI reports, and the process's exit ends the workers."""
    import threading

    outcome: dict = {}

    def fit():
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # handed to the waiting thread as it is
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # short waits: the signal is handled between them
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _trainer(cfg: TrainConfig, run_dir: Path, dataset: PreparedDataset, log):
    """Ray up (embedded or the cluster), ``auto`` GPUs resolved and the request checked against
    it, and the ``TorchTrainer`` of the run: one :func:`train_loop_per_worker` per worker, the
    two splits as Ray Datasets; returns (trainer, the config with its devices resolved)."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from nationmap.devices import choose_precision, resolve_gpus

    from nationmap.parallel import init_ray

    # Worker prints reach the driver once (not also through Ray Train's print-to-log patch).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING", "0")
    init_ray()
    cfg = cfg.replace(gpus_per_worker=resolve_gpus(cfg.gpus_per_worker, cfg.workers, ray.cluster_resources(),
                                                   "training workers"))
    device = f"{cfg.gpus_per_worker:g} GPU" if cfg.gpus_per_worker else f"{cfg.cpus_per_worker:g} CPU"
    log(f"devices: {cfg.workers} training worker(s) x {device}, batch {cfg.batch_size} "
        f"({cfg.batch_per_worker} per worker)")
    _check_resources(cfg)
    precision = choose_precision(cfg.precision, workers_bf16(cfg.gpus_per_worker, cfg.cpus_per_worker),
                                 cfg.force_bf16)
    log(precision.describe())
    cfg = cfg.replace(precision=precision.chosen)  # what the workers autocast with
    decoder = decoder_for(dataset, cfg.task)
    datasets = {
        "train": ray_dataset(dataset, split_for(cfg.task, "train"), decoder).randomize_block_order(seed=cfg.seed),
        "val": ray_dataset(dataset, split_for(cfg.task, "val"), decoder),
    }
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.gpus_per_worker:
        resources["GPU"] = cfg.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=_loop_config(cfg, run_dir, dataset, decoder),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.gpus_per_worker > 0, resources_per_worker=resources,
            placement_strategy=cfg.placement),
        run_config=ray.train.RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_last),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        ),
        datasets=datasets,
    ), cfg, precision


def workers_bf16(gpus_per_worker: float, cpus_per_worker: float):
    """The bf16 support (``devices.Bf16Support``) of the machines the training workers may run on:
    probed in this process when every Ray node is this machine and the workers use its CPU; else
    by one Ray task per node that can host a worker, pinned to it and asking a worker's resources
    (its process exits after, so no CUDA context stays behind). A mixed cluster answers with a
    node that lacks native bf16, if any: ``auto`` must not emulate bf16 on some workers."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from nationmap.devices import probe_bf16

    here = ray.util.get_node_ip_address()
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= cpus_per_worker
             and n.get("Resources", {}).get("GPU", 0) >= gpus_per_worker]
    if not gpus_per_worker and all(n.get("NodeManagerAddress") == here for n in nodes):
        return probe_bf16("cpu")
    kind = "cuda" if gpus_per_worker else "cpu"
    task = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_calls=1)(probe_bf16)
    pinned = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(kind)
              for n in nodes] or [task.remote(kind)]  # none fits yet (an autoscaler adds it): wherever it lands
    probes = ray.get(pinned)
    return next((p for p in probes if not p.native), probes[0])


def _loop_config(cfg: TrainConfig, run_dir: Path, dataset: PreparedDataset, decoder) -> dict:
    """What every worker's :func:`train_loop_per_worker` gets (plain data, pickled by Ray)."""
    meta = dataset.meta
    return {
        "train": cfg.to_dict(),
        "run_dir": str(run_dir),
        "steps_per_epoch": steps_per_epoch(cfg, dataset),
        "normalisation": normalisation_for(dataset, cfg.task),
        "decoder": decoder,
        "dataset_meta": {k: meta[k] for k in ("class_frequencies", "class_table", "patches")},
    }


def _final_summary(cfg: TrainConfig, run_dir: Path, record: dict, metrics: dict, t0: float) -> dict:
    """summary.json of a launch that ended: status (a non-finite stop logged by rank 0 wins),
    epochs, the best epoch, the last metrics."""
    stopped = _non_finite_event(run_dir, t0)
    if stopped:
        metrics.update(status="non-finite", message=stopped)
    return {
        **record,
        "status": metrics.get("status", "unknown"),
        "finished": _now(),
        "run_dir": str(run_dir),
        "epochs": metrics.get("epoch"),
        "monitor": MONITOR[cfg.task][0],
        "best": _best(run_dir),
        "final": metrics,
        "seconds": round(time.time() - t0, 1),
    }


def _check_resources(cfg: TrainConfig) -> None:
    """Refuse a request the cluster can never meet (Ray would wait for it forever)."""
    import ray

    have = ray.cluster_resources()
    for resource, per_worker in (("GPU", cfg.gpus_per_worker), ("CPU", cfg.cpus_per_worker)):
        need = per_worker * cfg.workers
        if need > have.get(resource, 0.0):
            raise InputError(
                f"{cfg.workers} workers x {per_worker:g} {resource} = {need:g} {resource}, but the Ray cluster has "
                f"{have.get(resource, 0.0):g}; lower --workers or --{resource.lower()}s-per-worker")


def _non_finite_event(run_dir: Path, since: float) -> str | None:
    """The message of a non-finite-loss stop logged by rank 0 during this launch, if any."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "non-finite" and event.get("time", 0) >= since:
            return event["message"]
    return None


def _best(run_dir: Path) -> dict | None:
    state = run_dir / "best" / "state.json"
    return json.loads(state.read_text()).get("best") if state.exists() else None


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write_summary(run_dir: Path, summary: dict) -> None:
    """RUN_DIR/summary.json, replaced whole (``runs list`` may read it while the run goes on)."""
    with atomic_file(run_dir / "summary.json", durable=True) as f:
        f.write(json.dumps(summary, indent=2, default=str))
