"""Reconstruction losses of SAR-W-MixMAE and SAR-W-SimMIM (``sar-w-mixmae.md``).

The SAR weight is computed from the raw calibrated backscatter in dB (linear power), never from
the standardised network input.
"""

from __future__ import annotations

import torch


def sar_weight(sigma0_db: torch.Tensor, valid: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """Backscatter-power weight per pixel.

    sigma0_db: (B, C, H, W) calibrated sigma0 in dB (NaN allowed where ``valid`` is False).
    valid: optional (B, C, H, W) or (B, 1, H, W) bool; invalid pixels get weight 0 and do not
        enter the min/max (an extension for no-data; the paper's patches are all valid).
    Per image and channel: p = 10^(dB/10); q = (p - min p) / (max p - min p + 1e-6);
    w = exp(scale * (1 - q)): 1 at the brightest pixel, e^scale at the darkest.
    Returns (B, C, H, W) float32.
    """
    db = sigma0_db.float()
    if valid is None:
        valid = torch.isfinite(db)
    else:
        valid = valid.expand_as(db) & torch.isfinite(db)
    p = torch.pow(10.0, torch.where(valid, db, 0.0) / 10.0)
    inf = torch.tensor(float("inf"), device=p.device)
    p_min = torch.where(valid, p, inf).amin(dim=(-2, -1), keepdim=True)
    p_max = torch.where(valid, p, -inf).amax(dim=(-2, -1), keepdim=True)
    empty = ~valid.any(dim=-1, keepdim=True).any(dim=-2, keepdim=True)
    p_min = torch.where(empty, 0.0, p_min)
    p_max = torch.where(empty, 0.0, p_max)
    q = (p - p_min) / (p_max - p_min + 1e-6)
    return torch.where(valid, torch.exp(scale * (1.0 - q)), 0.0)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch*patch*C) with L = (H/patch)*(W/patch), row-major patches,
    each patch flattened as (py, px, c) like MAE."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not a multiple of the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``patchify``: (B, L, patch*patch*C) -> (B, C, H, W)."""
    b = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(b, gh, gw, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, gh * patch, gw * patch)


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's ``norm_pix_loss`` target: each patch (last dim) to zero mean, unit variance."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """SAR-W-MixMAE loss: mean(w * (r - t)^2) over all positions and channels (a plain mean, not
    divided by the sum of weights). ``weight=None`` is plain MixMAE (w = 1).

    valid: optional bool like ``pred``; invalid (no-data) elements are left out of the mean. With
    every element valid this is the paper's loss exactly.
    """
    err = (pred.float() - target.float()) ** 2
    if weight is not None:
        err = err * weight
    if valid is None:
        return err.mean()
    valid = valid.expand_as(err)
    return (err * valid).sum() / valid.sum().clamp_min(1)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """SAR-W-SimMIM loss: sum(w * |r - x| * mask) / (sum(mask) + 1e-5) / C.

    pred, target: (B, C, H, W); mask: (B, 1, H, W) with 1 at masked pixels; weight like pred or None.
    """
    err = (pred.float() - target.float()).abs()
    if weight is not None:
        err = err * weight
    mask = mask.to(err.dtype)
    return (err * mask).sum() / (mask.sum() + 1e-5) / pred.shape[1]
