"""Per-pixel features of the classical baseline: sigma0 and its multi-scale local statistics.

The input is the models' input, standardised sigma0 ``(dB - mean_db) / std_db`` with 0 where
there is no data (:class:`nationmap.train.data.PatchDecoder`, :class:`nationmap.infer.scene.Head`),
so the baseline and the deep models see exactly the same pixels. For every window side ``w`` of
``WINDOWS`` the features hold the local mean and standard deviation over the ``w x w`` box
around the pixel (reflected at the patch edges), in the same standardised dB units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOWS = (3, 7, 15, 31)  # box sides in pixels


def feature_names(windows: tuple[int, ...] = WINDOWS) -> list[str]:
    return ["sigma0"] + [f"{stat}_{w}" for w in windows for stat in ("mean", "std")]


def _box_mean(x: torch.Tensor, w: int) -> torch.Tensor:
    """(N, C, H, W) -> local mean over w x w boxes, same size (edges reflected)."""
    r = w // 2
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.pad(x, (r, r, r, r), mode=mode)
    return F.avg_pool2d(F.avg_pool2d(x, (1, w), stride=1), (w, 1), stride=1)  # separable: O(w), not O(w^2)


def pixel_features(x: torch.Tensor, windows: tuple[int, ...] = WINDOWS) -> torch.Tensor:
    """(N, 1, H, W) standardised sigma0 -> (N, 1 + 2 * len(windows), H, W) float32 features
    (the pixel, then mean and standard deviation per window, as :func:`feature_names`)."""
    x = x.float()
    out = [x]
    for w in windows:
        if w < 1 or w % 2 == 0:
            raise ValueError(f"window sides must be odd and positive, not {w}")
        mean = _box_mean(x, w)
        var = (_box_mean(x * x, w) - mean * mean).clamp_min(0.0)
        out += [mean, var.sqrt()]
    return torch.cat(out, dim=1)


def feature_rows(x: torch.Tensor, windows: tuple[int, ...] = WINDOWS):
    """(N, 1, H, W) -> (N * H * W, F) float32 numpy rows, pixel order n, y, x."""
    f = pixel_features(x, windows)
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).cpu().numpy()
