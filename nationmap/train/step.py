"""The training step and epoch, free of Ray: what the Ray Train loop runs on each worker and what
``benchmarks/training.py`` times against Ray.

A batch is the dict of ``nationmap.train.data`` as torch tensors on the worker's device:
``x`` (N, 1, P, P) float32, ``db`` (N, 1, P, P) float32, ``valid`` (N, 1, P, P) bool and, when
finetuning, ``target`` (N, P, P) uint8. Under several workers the collectives below
(``all_sum``, the non-finite vote) run on every worker in the same order; with one worker or no
process group they are local.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.distributed as dist


class LossTask(Protocol):
    """What a step needs of a task (``nationmap.train.tasks.TrainTask`` is one)."""

    precision: str  # TrainConfig.precision: "auto", "bf16" or "fp32"

    def loss(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """The scalar training loss of ``batch`` through ``model``."""


class NonFiniteLoss(Exception):
    """The loss of a step was NaN or infinite on some worker; raised before any weight changed."""

    def __init__(self, loss: float, step: int):
        super().__init__(f"loss became {loss} at step {step}")
        self.loss, self.step = loss, step  # ``step``: the 1-based number of the failed step


@dataclass
class Optimisation:
    """The model being trained with its optimiser, per-step schedule and step count."""

    model: torch.nn.Module  # as trained: wrapped in DDP by Ray Train when there are several workers
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm CosineLRScheduler (``step_update(step)``)
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    step: int = 0  # optimiser steps done
    ema: torch.nn.Module | None = None  # timm ModelEmaV3 of ``core`` (``update(model, step)``, ``module``)

    @property
    def core(self) -> torch.nn.Module:
        """The bare model (what is checkpointed and validated, without the DDP wrapper)."""
        return self.model.module if hasattr(self.model, "module") else self.model

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated and exported: the moving average when there is one."""
        return self.core if self.ema is None else self.ema.module

    @property
    def lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)


@dataclass
class EpochStats:
    """One worker's training epoch (before merging across workers)."""

    started: float = 0.0  # unix time, to line the epoch up with outside measurements
    loss_sum: float = 0.0  # sum of batch loss x batch size
    samples: int = 0
    seconds: float = 0.0  # the training steps, data streaming included
    data_wait: float = 0.0  # of which waiting for the next decoded batch


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast for "bf16", float32 (a no-op context) for "fp32". A run's workers get the
    precision the driver chose (``devices.choose_precision``); "auto" here, for callers outside a
    run (benchmarks), is bf16 on CUDA and float32 on the CPU."""
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively on ``device`` (``devices.probe_bf16``: a CUDA GPU that supports
    it; a CPU with AMX or AVX512-BF16 not capped by ONEDNN_MAX_CPU_ISA)."""
    from nationmap.devices import probe_bf16

    return bool(probe_bf16("cuda" if device.type == "cuda" else "cpu").native)


def distributed() -> bool:
    """More than one worker (Ray Train sets up a process group even for one)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the workers, in place."""
    if distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every worker: all stop together, none waits in a collective."""
    flag = torch.tensor([1.0 if bool(torch.isfinite(loss.detach())) else 0.0], device=loss.device)
    if distributed():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def augment(batch: dict, generator: torch.Generator) -> dict:
    """The same random 90-degree rotation and flip for every tensor of the batch (over the last
    two axes, so (N, 1, P, P) inputs and (N, P, P) targets turn together)."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    out = {}
    for name, t in batch.items():
        t = torch.rot90(t, k, dims=(-2, -1))
        out[name] = torch.flip(t, dims=(-1,)) if flip else t
    return out


def train_step(task: LossTask, opt: Optimisation, batch: dict, device: torch.device) -> float:
    """One optimiser step on ``batch``: forward and loss (autocast as ``task.precision``), the non-finite
    check, backward, gradient clipping, optimiser step, the per-step learning rate and the moving
    average of the weights (when ``opt.ema``).

    Returns the batch's mean loss. Raises :class:`NonFiniteLoss` before the backward pass (the
    weights and the step count unchanged) when the loss is not finite on any worker.
    """
    with autocast(device, task.precision):
        loss = task.loss(opt.model, batch)
    if not all_finite(loss):
        raise NonFiniteLoss(float(loss.detach()), opt.step + 1)
    opt.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if opt.clip_grad:
        torch.nn.utils.clip_grad_norm_(opt.model.parameters(), opt.clip_grad)
    opt.optimizer.step()
    opt.step += 1
    opt.scheduler.step_update(opt.step)
    if opt.ema is not None:
        opt.ema.update(opt.core, step=opt.step)
    return float(loss.detach())


def train_epoch(task: LossTask, opt: Optimisation, raw_batches: Iterable, steps: int,
                decode: Callable[[object], dict], device: torch.device,
                generator: torch.Generator | None = None,
                on_step: Callable[..., None] | None = None) -> EpochStats:
    """Up to ``steps`` training steps over ``raw_batches``; ``decode`` turns one raw batch into the
    batch dict on ``device``. ``generator``: augment each batch (rotations and flips) with it.
    ``on_step(n)`` is called after the n-th step (1-based) of the epoch, and ``on_step(n, last=True)``
    once at its end with the steps done.

    Batches after ``steps`` are drained undecoded, so that every worker of a Ray Train group
    ends its epoch together. Raises :class:`NonFiniteLoss` from :func:`train_step`.
    """
    stats = EpochStats(started=time.time())
    opt.model.train()
    t_batch, done = stats.started, 0
    for i, raw in enumerate(raw_batches):
        if i >= steps:
            continue  # drain the stream (nothing decoded)
        batch = decode(raw)
        stats.data_wait += time.time() - t_batch
        if generator is not None:
            batch = augment(batch, generator)
        loss = train_step(task, opt, batch, device)
        n = batch["x"].shape[0]
        stats.loss_sum += loss * n
        stats.samples += n
        if on_step is not None:
            on_step(i + 1)
        t_batch = time.time()
        done = i + 1
    stats.seconds = time.time() - stats.started
    if on_step is not None:
        on_step(done, last=True)
    return stats
