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


TTA_MODES = ("none", "flips", "d4")


def check_tta(tta: str) -> None:
    if tta not in TTA_MODES:
        raise InputError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")


@dataclass(frozen=True)
class WindowSettings:
    """How a scene is cut and predicted.

    Attributes:
        size: window side in pixels (the models' input size).
        overlap: pixels shared by neighbouring windows (stride = size - overlap).
        blend: ``cosine`` ramps or ``none`` (uniform average of overlapping windows).
        batch_size: windows per forward pass.
        max_block: widest column block predicted at once (px). A wider scene is cut into column
            blocks that share the window columns at their seams, so the scene's width, like its
            length, does not change the memory needed; the shared windows are predicted twice.
        tta: test-time augmentation: ``none``, ``flips`` (the mean over the window and its
            horizontal, vertical and double flips: 4 passes) or ``d4`` (the 8 flips and 90-degree
            rotations: 8 passes).
    """

    size: int = 256
    overlap: int = 64
    blend: str = "cosine"
    batch_size: int = 16
    max_block: int = 8192
    tta: str = "none"

    def __post_init__(self):
        if self.size < 32 or self.size % 32:
            raise InputError(f"window size must be a multiple of 32 (>= 32), not {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise InputError(f"overlap must be 0..{self.size // 2} px for {self.size} px windows, not {self.overlap}")
        check_blend(self.blend)
        if self.batch_size < 1:
            raise InputError("batch size must be >= 1")
        check_tta(self.tta)
        if self.max_block < 4 * self.size:
            raise InputError(f"max block must be >= 4 windows ({4 * self.size} px), not {self.max_block}")

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


@dataclass(frozen=True)
class ColumnBlock:
    """Window columns ``cols`` (scene px) predicted together; their sums are complete, and
    written, in output columns ``[x0, x1)``."""

    cols: tuple[int, ...]
    x0: int
    x1: int

    @property
    def left(self) -> int:
        return self.cols[0]

    def width(self, size: int) -> int:
        """Pixels from the first window's left edge to the last window's right edge."""
        return self.cols[-1] + size - self.cols[0]


def column_blocks(width: int, size: int, stride: int, max_block: int) -> list[ColumnBlock]:
    """Cut the window columns of a ``width`` px scene into blocks at most ``max_block`` px wide.

    A column's blended sum is complete in a block when every window covering it is in that
    block. Each block after the first therefore starts with the windows that cover the first
    column its predecessor cannot finish; its output starts where the predecessor's ends.
    Without a cut (``width <= max_block``) there is one block: all windows, all columns.
    """
    cols = window_starts(width, size, stride)
    blocks, first, x0 = [], 0, 0
    while True:
        last = first
        while last + 1 < len(cols) and cols[last + 1] + size - cols[first] <= max_block:
            last += 1
        if last == len(cols) - 1:
            blocks.append(ColumnBlock(tuple(cols[first:]), x0, width))
            return blocks
        x1 = cols[last + 1]  # the first column that a window beyond this block covers
        blocks.append(ColumnBlock(tuple(cols[first:last + 1]), x0, x1))
        first = next(i for i, c in enumerate(cols) if c + size > x1)  # every window covering x1
        x0 = x1
