"""Optimiser and learning-rate schedule as in the paper, from timm's building blocks.

AdamW with weight decay on matrices only (no decay on biases, norms, relative position bias
tables and mask tokens); layer-wise lr decay for finetuning (timm's BEiT-style grouping of the
Swin encoder: patch embedding lowest, the decoder and head at full lr); linear warm-up then
cosine decay to the minimum lr, stepped per iteration; optionally an exponential moving average
of the weights (timm's ModelEmaV3).
"""

from __future__ import annotations

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

from nationmap.train.config import TrainConfig

NO_DECAY_NAMES = ("mask_token",)


def _swin(model: nn.Module):
    return model.encoder.swin


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Parameter groups with ``weight_decay`` and ``lr_scale`` (read by timm's scheduler)."""
    swin = _swin(model)
    swin_no_decay = set(swin.no_weight_decay())
    if cfg.finetune and cfg.layer_decay < 1.0:
        groups = param_groups_layer_decay(swin, cfg.weight_decay, swin_no_decay, layer_decay=cfg.layer_decay)
        rest = nn.ModuleDict({name: child for name, child in model.named_children() if name != "encoder"})
        for group in param_groups_weight_decay(rest, cfg.weight_decay, NO_DECAY_NAMES):
            group["lr_scale"] = 1.0
            groups.append(group)
        return [g for g in groups if g["params"]]
    no_decay = {f"encoder.swin.{n}" for n in swin_no_decay} | set(NO_DECAY_NAMES)
    groups = param_groups_weight_decay(model, cfg.weight_decay, no_decay)
    for group in groups:
        group["lr_scale"] = 1.0
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.peak_lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """Per-step schedule: linear warm-up over ``warmup_epochs`` then cosine to ``min_lr``."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max(total - warmup, 1),
        lr_min=cfg.min_lr,
        warmup_t=warmup,
        warmup_lr_init=0.0 if warmup else cfg.peak_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    scheduler.step_update(0)
    return scheduler


def build_ema(model: nn.Module, cfg: TrainConfig) -> ModelEmaV3 | None:
    """The moving average of ``model``'s weights and buffers (on its device), or None when
    ``cfg.ema_decay`` is 0. The decay warms up as 1 - (1 + step)^-3/4 up to ``ema_decay``, so the
    average is not anchored to the initial weights on short runs (0.97 after 100 steps)."""
    if not cfg.ema_decay:
        return None
    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True, warmup_power=0.75)
