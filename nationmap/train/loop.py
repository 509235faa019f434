"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one process per worker).

Each epoch: stream the worker's share of the training split (Ray Data), step the optimiser,
validate on the worker's share of the val split and merge the confusion matrices / loss sums
across workers, then report metrics to Ray with a checkpoint written by rank 0. A restarted
worker group (a killed worker, ``--resume``) continues from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from nationmap.losses import BCEDiceLoss, BinaryDiceConfig, FocalDiceConfig, FocalDiceLoss, class_weights, water_mask
from nationmap.metrics import ConfusionMatrix
from nationmap.models import get_preset, MixMAE, MixMAEConfig, SegmentationConfig, SegmentationModel, SimMIM, SimMIMConfig
from nationmap.train.checkpoint import copy_checkpoint, load_encoder_weights, load_model_weights, load_training_state, save_training_state
from nationmap.train.config import TrainConfig
from nationmap.train.data import SCHEMES, to_torch
from nationmap.train.optim import build_optimizer, build_scheduler
from nationmap.train.report import write_curves

MONITOR = {"pretrain": ("val_loss", "min"), "lulc": ("val_miou", "max"), "water": ("val_water_iou", "max")}


def build_task_model(cfg: TrainConfig, img_size: int = 256) -> torch.nn.Module:
    """The model a run trains (input ``img_size`` = the dataset's patch size): MixMAE / SimMIM
    for pretraining, UPerNet for LULC and water."""
    encoder = get_preset(cfg.preset).encoder.replace(drop_path_rate=cfg.drop_path, img_size=img_size)
    if cfg.task == "pretrain":
        extra = {"mask_ratio": cfg.mask_ratio} if cfg.mask_ratio else {}
        config_cls, model_cls = (MixMAEConfig, MixMAE) if cfg.method == "mixmae" else (SimMIMConfig, SimMIM)
        if cfg.method == "simmim":
            extra["mask_patch"] = min(32, img_size // 2)
        pc = config_cls.from_preset(cfg.preset, sar_weight=cfg.sar_weight, **extra)
        return model_cls(dataclasses.replace(pc, encoder=encoder))
    seg = SegmentationConfig.from_preset(cfg.preset, cfg.task, highres=cfg.highres, refine_up=cfg.refine_up)
    return SegmentationModel(seg.replace(encoder=encoder))


def build_loss(cfg: TrainConfig, dataset_meta: dict):
    if cfg.task == "lulc":
        freq = dataset_meta["class_frequencies"]["train"]["lulc9"]["pixels"]
        return FocalDiceLoss(class_weights(freq), FocalDiceConfig(
            alpha_scale=cfg.alpha_scale, gamma=cfg.gamma, lambda_focal=cfg.lambda_focal, lambda_dice=cfg.lambda_dice))
    if cfg.task == "water":
        return BCEDiceLoss(BinaryDiceConfig(lambda_dice=cfg.lambda_dice))
    return None


def augment(batch: dict, generator: torch.Generator) -> dict:
    """The same random 90-degree rotation and flip for every tensor of the batch."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    out = {}
    for name, t in batch.items():
        t = torch.rot90(t, k, dims=(-2, -1))
        out[name] = torch.flip(t, dims=(-1,)) if flip else t
    return out


def _distributed() -> bool:
    """More than one worker (Ray Train sets up a process group even for one)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _all_finite(loss: torch.Tensor) -> bool:
    flag = torch.tensor([1.0 if bool(torch.isfinite(loss.detach())) else 0.0], device=loss.device)
    if _distributed():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


class Task:
    """What differs between pretraining and finetuning: the forward loss and the validation."""

    def __init__(self, cfg: TrainConfig, model, loss_fn, device):
        self.cfg, self.model, self.loss_fn, self.device = cfg, model, loss_fn, device
        self.core = model.module if hasattr(model, "module") else model

    def loss(self, batch: dict) -> torch.Tensor:
        if self.cfg.task == "pretrain":
            return self.model(batch["x"], batch["db"], batch["valid"]).loss
        return self.loss_fn(self.model(batch["x"]), batch["target"].long())

    @torch.no_grad()
    def validate(self, batches) -> dict:
        cfg = self.cfg
        k = 9 if cfg.task == "lulc" else 2
        cm = ConfusionMatrix(k)
        totals = torch.zeros(2, dtype=torch.float64)  # loss sum, samples
        generator = torch.Generator().manual_seed(1234)  # the same masks every epoch
        for batch in batches:
            n = batch["x"].shape[0]
            with _autocast(self.device):
                if cfg.task == "pretrain":
                    if isinstance(self.core, MixMAE):
                        if n < 2:
                            continue
                        mask = self.core.random_mask(generator, device=self.device)
                    else:
                        mask = self.core.random_mask(n, generator, device=self.device)
                    loss = self.core(batch["x"], batch["db"], batch["valid"], mask=mask).loss
                else:
                    logits = self.core(batch["x"])
                    target = batch["target"].long()
                    loss = self.loss_fn(logits, target)
                    pred = logits.argmax(1) if cfg.task == "lulc" else water_mask(logits)
                    cm.update(pred.cpu(), target.cpu())
            totals += torch.tensor([float(loss) * n, n], dtype=torch.float64)
        totals = _all_sum(totals.to(self.device)).cpu()
        counts = _all_sum(torch.as_tensor(cm.counts, device=self.device)).cpu().numpy()
        out = {"val_loss": float(totals[0] / max(totals[1], 1))}
        if cfg.task == "lulc":
            s = ConfusionMatrix(9, counts=counts).scores()
            out.update(val_miou=s.miou, val_macc=s.macc)
        elif cfg.task == "water":
            s = ConfusionMatrix(2, counts=counts).binary_scores()
            out.update(val_water_iou=s.iou, val_precision=s.precision, val_recall=s.recall)
        return out


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _better(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def _log_event(run_dir: Path, event: dict) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"time": time.time(), **event}) + "\n")


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.from_dict(loop_config["train"])
    run_dir = Path(loop_config["run_dir"])
    meta = loop_config["dataset_meta"]
    steps_per_epoch = int(loop_config["steps_per_epoch"])
    decoder = loop_config["decoder"]
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    local = max(ctx.get_local_world_size(), 1)
    torch.set_num_threads(cfg.threads_per_worker or max(1, (os.cpu_count() or 1) // local))
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed + rank)
    (run_dir / "workers").mkdir(parents=True, exist_ok=True)
    (run_dir / "workers" / f"rank{rank}.pid").write_text(str(os.getpid()))

    model = build_task_model(cfg, decoder.patch_size)
    if cfg.finetune and cfg.init:
        model.encoder.load_encoder_state(load_encoder_weights(cfg.init))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    monitor, mode = MONITOR[cfg.task]
    start_epoch, step, best, history = 0, 0, None, []

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_training_state(d)
        load_model_weights(model, state.model, "checkpoint")
        optimizer.load_state_dict(state.optimizer)
        start_epoch, step = int(state.meta["epoch"]), int(state.meta["step"])
        best, history = state.meta.get("best"), state.meta.get("history", [])
        # The schedule is a function of the step and the config, so a run resumed with more
        # --epochs stretches its cosine instead of replaying the saved scheduler state.
        scheduler.step_update(step)
        if rank == 0:
            _log_event(run_dir, {"event": "resumed", "epoch": start_epoch, "attempt_pid": os.getpid()})
            print(f"resumed from the checkpoint of epoch {start_epoch}", flush=True)

    model = ray.train.torch.prepare_model(model)
    task = Task(cfg, model, build_loss(cfg, meta), device)
    if task.loss_fn is not None:
        task.loss_fn.to(device)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    bpw = cfg.batch_per_worker
    checkpoint_meta = {
        "task": cfg.task,
        "model_config": task.core.config.to_dict(),
        "normalisation": loop_config["normalisation"],
        "class_table": meta.get("class_table"),
        "scheme": SCHEMES.get(cfg.task),
        "threshold": 0.5 if cfg.task == "water" else None,
        "train_config": cfg.to_dict(),
        "run": str(run_dir),
    }
    run_start = time.time()

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        model.train()
        loss_sum, seen = 0.0, 0
        batches = train_shard.iter_batches(
            batch_size=bpw, drop_last=True, local_shuffle_buffer_size=max(4 * bpw, 64),
            local_shuffle_seed=cfg.seed + epoch * 101 + rank, batch_format="numpy")
        data_wait, t_batch = 0.0, time.time()
        for i, raw in enumerate(batches):
            if i >= steps_per_epoch:
                continue  # drain the stream so every worker ends the epoch together (nothing decoded)
            batch = to_torch(decoder(raw), device)
            data_wait += time.time() - t_batch
            if cfg.augment:
                batch = augment(batch, generator)
            with _autocast(device):
                loss = task.loss(batch)
            if not _all_finite(loss):
                message = f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1}"
                if rank == 0:
                    _log_event(run_dir, {"event": "non-finite", "message": message})
                ray.train.report({"status": "non-finite", "message": message, "epoch": epoch, "step": step})
                return
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            loss_sum += float(loss.detach()) * batch["x"].shape[0]
            seen += batch["x"].shape[0]
            t_batch = time.time()
        train_seconds = time.time() - t0  # the training steps, data streaming included, not validation
        model.eval()
        val = task.validate(to_torch(decoder(raw), device) for raw in val_shard.iter_batches(batch_size=bpw, batch_format="numpy"))
        totals = _all_sum(torch.tensor([loss_sum, seen], dtype=torch.float64, device=device)).cpu()
        metrics = {
            "status": "running",
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(totals[0] / max(totals[1], 1)),
            **val,
            "lr": max(g["lr"] for g in optimizer.param_groups),
            "epoch_seconds": time.time() - t0,
            "train_seconds": train_seconds,
            "train_started": t0,  # unix time, to line the epoch up with outside measurements
            "train_samples_per_s": float(totals[1]) / max(train_seconds, 1e-9),
            "data_wait_seconds": data_wait,
            "threads": torch.get_num_threads(),
        }
        improved = _better(metrics.get(monitor), None if best is None else best["value"], mode)
        if improved:
            best = {"metric": monitor, "value": metrics[monitor], "epoch": epoch + 1}
        history.append(metrics)
        done = epoch + 1 == cfg.epochs
        if done:
            metrics["status"] = "finished"
        if rank == 0:
            elapsed = time.time() - run_start
            eta = elapsed / (epoch + 1 - start_epoch) * (cfg.epochs - epoch - 1)
            keys = dict.fromkeys(("train_loss", "val_loss", monitor, "lr"))
            shown = "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
            print(f"epoch {epoch + 1}/{cfg.epochs}  {shown}  {metrics['epoch_seconds']:.1f} s  eta {eta:.0f} s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_training_state(tmp, task.core, optimizer, {
                    **checkpoint_meta, "epoch": epoch + 1, "step": step, "metrics": metrics, "best": best,
                    "history": history, "scheduler": scheduler.state_dict()})
                if improved:
                    copy_checkpoint(Path(tmp), run_dir / "best")
                write_curves(run_dir, history, monitor)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)

