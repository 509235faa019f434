"""Segmentation losses of ``enhanced-lulc-alos2.md``: alpha-scaled focal + dice (LULC) and
BCE + soft dice (water). Pixels labelled ``ignore_index`` are outside the valid set Omega.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nationmap.errors import InputError

IGNORE_INDEX = 255


def class_weights(frequencies: Sequence[float]) -> np.ndarray:
    """Equation (1): w_k = 1 - f_k, alpha_k = w_k / sum_j w_j. ``frequencies`` are the training-set
    pixel frequencies f_k (normalised here, so pixel counts work too). Returns (K,) float64."""
    f = np.asarray(frequencies, dtype=np.float64)
    if f.ndim != 1 or f.size < 2 or (f < 0).any() or f.sum() <= 0:
        raise InputError("class frequencies must be K >= 2 non-negative numbers with a positive sum")
    f = f / f.sum()
    w = 1.0 - f
    return w / w.sum()


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 (float64 kept) even under bf16/fp16 autocast."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@dataclass(frozen=True)
class FocalDiceConfig:
    alpha_scale: float = 2.25
    gamma: float = 1.1
    eps: float = 1e-6
    lambda_focal: float = 0.57
    lambda_dice: float = 0.32
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self):
        if self.alpha_scale <= 0 or self.gamma < 0 or self.eps <= 0:
            raise InputError("alpha_scale and eps must be > 0, gamma >= 0")
        if self.lambda_focal < 0 or self.lambda_dice < 0:
            raise InputError("loss weights must be >= 0")


class FocalDiceLoss(nn.Module):
    """L = lambda_focal * L_focal + lambda_dice * L_dice, equations (2)-(4).

    L_focal = 1/N sum_{n in Omega} -alpha_scale * alpha_{y_n} * (1 - p_t)^gamma * log(p_t + eps)
    L_dice  = 1 - 1/K sum_k (2 sum_Omega p g + eps) / (sum_Omega p + sum_Omega g + eps)

    alpha: (K,) class weights of equation (1) (``class_weights``); ``alpha_scale = 1`` with the
    same alpha is the un-tempered weighting (Table I's "no alpha-scale" row).
    forward(logits (B, K, H, W), labels (B, H, W) int in 0..K-1 or ignore_index) -> scalar.
    """

    def __init__(self, alpha: Sequence[float], config: FocalDiceConfig = FocalDiceConfig()):
        super().__init__()
        self.config = config
        self.register_buffer("alpha", torch.as_tensor(np.asarray(alpha, dtype=np.float32)), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        focal, dice = self.terms(logits, labels)
        c = self.config
        return c.lambda_focal * focal + c.lambda_dice * dice

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_focal, L_dice) as scalars."""
        c = self.config
        k = logits.shape[1]
        if self.alpha.numel() != k:
            raise ValueError(f"{self.alpha.numel()} class weights for {k} logits")
        logits = _at_least_float32(logits)
        valid = labels != c.ignore_index
        target = torch.where(valid, labels, 0).long()
        if bool((target >= k).any()) or bool((target < 0).any()):
            raise ValueError(f"labels must be in 0..{k - 1} or {c.ignore_index}")
        prob = logits.softmax(dim=1)  # (B, K, H, W)
        p_t = prob.gather(1, target[:, None]).squeeze(1)  # (B, H, W)
        vf = valid.to(prob.dtype)
        per_pixel = -c.alpha_scale * self.alpha.to(prob.dtype)[target] * (1.0 - p_t).pow(c.gamma) * torch.log(p_t + c.eps)
        n = vf.sum()
        focal = (per_pixel * vf).sum() / n.clamp_min(1.0)

        onehot = F.one_hot(target, k).permute(0, 3, 1, 2).to(prob.dtype) * vf[:, None]
        prob_valid = prob * vf[:, None]
        inter = (prob_valid * onehot).sum(dim=(0, 2, 3))
        denom = prob_valid.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
        dice = 1.0 - ((2.0 * inter + c.eps) / (denom + c.eps)).mean()
        return focal, dice


def water_mask(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) water logits -> (N, H, W) int64 mask, 1 where sigmoid >= threshold."""
    if logits.dim() == 4:
        logits = logits[:, 0]
    return (torch.sigmoid(logits.float()) >= threshold).long()


@dataclass(frozen=True)
class BinaryDiceConfig:
    lambda_bce: float = 1.0
    lambda_dice: float = 1.0
    eps: float = 1e-6
    threshold: float = 0.5
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self):
        if self.lambda_bce < 0 or self.lambda_dice < 0 or self.eps <= 0:
            raise InputError("loss weights must be >= 0 and eps > 0")
        if not 0.0 < self.threshold < 1.0:
            raise InputError("threshold must be in (0, 1)")


class BCEDiceLoss(nn.Module):
    """Water loss: lambda_bce * BCE + lambda_dice * soft dice, both over valid pixels Omega.

    BCE  = 1/N sum_Omega -(y log p + (1 - y) log(1 - p))   (computed from logits, stable)
    dice = 1 - (2 sum_Omega p y + eps) / (sum_Omega p + sum_Omega y + eps)
    forward(logits (B, 1, H, W) or (B, H, W), labels (B, H, W) in {0, 1, ignore_index}) -> scalar.
    """

    def __init__(self, config: BinaryDiceConfig = BinaryDiceConfig()):
        super().__init__()
        self.config = config

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        bce, dice = self.terms(logits, labels)
        return self.config.lambda_bce * bce + self.config.lambda_dice * dice

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if logits.dim() == 4:
            if logits.shape[1] != 1:
                raise ValueError("binary loss expects one logit per pixel")
            logits = logits[:, 0]
        logits = _at_least_float32(logits)
        valid = labels != c.ignore_index
        y = torch.where(valid, labels, 0).to(logits.dtype)
        if bool((y > 1).any()) or bool((y < 0).any()):
            raise ValueError(f"binary labels must be 0, 1 or {c.ignore_index}")
        vf = valid.to(logits.dtype)
        n = vf.sum().clamp_min(1.0)
        bce = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * vf).sum() / n
        p = torch.sigmoid(logits) * vf
        dice = 1.0 - (2.0 * (p * y).sum() + c.eps) / (p.sum() + (y * vf).sum() + c.eps)
        return bce, dice

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Water mask (uint8 0/1) at the configured probability threshold."""
        return water_mask(logits, self.config.threshold).to(torch.uint8)
