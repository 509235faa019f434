"""Sliding windows over a scene and the blending weight that hides their borders.

Windows are ``size`` x ``size`` pixels placed every ``stride = size - overlap`` pixels, the last
one flush with the scene edge so every pixel is covered; a scene smaller than a window gets one
window, padded with no data. Overlapping predictions are averaged with a weight that ramps
from ~0 at a window's border to 1 over ``overlap`` pixels (a raised cosine), so the border
pixels of a window, where zero padding degrades a CNN or transformer, count for little next
to the neighbouring window's interior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nationmap.errors import InputError

BLENDS = ("cosine", "none")
WEIGHT_FLOOR = 1e-3  # keeps the scene-edge pixels, covered by one window only, well defined


def check_blend(blend: str) -> None:
    if blend not in BLENDS:
        raise InputError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")


@dataclass(frozen=True)
class WindowSettings:
    """How a scene is cut and predicted.

    Attributes:
        size: window side in pixels (the models' input size).
        overlap: pixels shared by neighbouring windows (stride = size - overlap).
        blend: ``cosine`` ramps or ``none`` (uniform average of overlapping windows).
        batch_size: windows per forward pass.
    """

    size: int = 256
    overlap: int = 64
    blend: str = "cosine"
    batch_size: int = 16

    def __post_init__(self):
        if self.size < 32 or self.size % 32:
            raise InputError(f"window size must be a multiple of 32 (>= 32), not {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise InputError(f"overlap must be 0..{self.size // 2} px for {self.size} px windows, not {self.overlap}")
        check_blend(self.blend)
        if self.batch_size < 1:
            raise InputError("batch size must be >= 1")

    @property
    def stride(self) -> int:
        return self.size - self.overlap


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets (px) of windows covering ``[0, length)``: every ``stride``, last flush."""
    if size <= 0 or stride <= 0 or stride > size:
        raise ValueError(f"need 0 < stride <= size, got size {size}, stride {stride}")
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def ramp(size: int, overlap: int, blend: str = "cosine") -> np.ndarray:
    """(size,) float32 1-D weight: raised-cosine ramps of ``overlap`` px at both ends."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, not {blend!r}")
    w = np.ones(size, dtype=np.float64)
    if blend == "cosine" and overlap > 0:
        i = np.arange(overlap)
        up = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / overlap)
        w[:overlap] = up
        w[size - overlap:] = np.minimum(w[size - overlap:], up[::-1])
    return np.maximum(w, WEIGHT_FLOOR).astype(np.float32)


def blend_weight(size: int, overlap: int, blend: str = "cosine") -> np.ndarray:
    """(size, size) float32 window weight, the outer product of two :func:`ramp`."""
    r = ramp(size, overlap, blend)
    return np.outer(r, r)
