"""Predict one scene on its own grid, streamed: the pure core of inference (no Ray).

The scene is read one strip of windows at a time (``window`` rows x scene width), never whole.
Windows go through the models in batches; their class probabilities, weighted by the blending
ramp (:mod:`nationmap.infer.windows`), are accumulated in a buffer of ``window`` rows. Rows no
later window touches are final: they are normalised by the summed weight and written out, and
the buffer moves down. Memory is therefore ``O(window x scene width)``, whatever the scene's
length.

Output, one GeoTIFF on the scene grid (CRS, transform, size of the input), uint8 bands:
    1..K   class probabilities x 255, multiplied by validity (0 where the input has no data);
           K = 9 LULC classes then 1 water band when both models are given
    K+1    validity: 255 where the input holds data, 0 elsewhere
Storing validity-premultiplied probabilities makes any later resampling a weighted average
that ignores no-data pixels: ``resampled(v * p) / resampled(v)``.

Speed: windows without any valid pixel are not predicted (their pixels are no data whatever the
model says); the next strip is read and calibrated in a background thread while the models run,
and finished rows are compressed and written by another, so the models never wait for I/O.
Models run channels-last (faster convolutions on CPU and GPU), under ``torch.inference_mode``,
in bf16 autocast on CUDA, optionally ``torch.compile``-d.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from nationmap.data.sar import SarRaster
from nationmap.errors import InputError
from nationmap.infer.windows import WindowSettings, blend_weight, window_starts

VALID_BAND = "validity"
SCENE_PROFILE = dict(driver="GTiff", dtype="uint8", tiled=True, blockxsize=256, blockysize=256,
                     compress="deflate", interleave="pixel")


@dataclass
class Head:
    """One segmentation model and how to read it.

    ``model`` maps standardised sigma0 (N, 1, H, W) to logits (N, K, H, W); ``kind`` is
    ``softmax`` (K classes) or ``sigmoid`` (K = 1, probability of the positive class). Inputs are
    standardised as in training: ``(dB - mean_db) / std_db``, no-data pixels set to 0.
    """

    task: str
    model: nn.Module
    kind: str
    mean_db: float
    std_db: float
    bands: tuple[str, ...]

    def probabilities(self, db: torch.Tensor) -> torch.Tensor:
        """(N, H, W) sigma0 dB (NaN = no data) -> (N, K, H, W) float32 probabilities."""
        x = torch.nan_to_num((db - self.mean_db) / self.std_db, nan=0.0).unsqueeze(1)
        logits = self.model(x.contiguous(memory_format=torch.channels_last)).float()
        return logits.softmax(1) if self.kind == "softmax" else logits.sigmoid()


@dataclass
class SceneModels:
    """The heads applied to every window; output bands are their bands, concatenated."""

    heads: list[Head]
    device: str = "cpu"
    autocast: bool = True  # bf16 on CUDA
    compile: bool = False  # torch.compile the models (worth it on GPU for long runs)
    bands: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        if not self.heads:
            raise InputError("inference needs at least one model (LULC or water)")
        self.bands = tuple(b for h in self.heads for b in h.bands)
        for h in self.heads:
            h.model = h.model.to(memory_format=torch.channels_last)
            if self.compile:
                h.model = torch.compile(h.model)

    @torch.inference_mode()
    def probabilities(self, db: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 sigma0 dB -> (N, len(bands), H, W) float32 probabilities."""
        x = torch.from_numpy(db).to(self.device, non_blocking=True)
        use_amp = self.autocast and self.device.startswith("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            out = torch.cat([h.probabilities(x) for h in self.heads], dim=1)
        return out.float().cpu().numpy()


def head_from_bundle(bundle) -> Head:
    """A :class:`Head` from a loaded model bundle (``nationmap.train.checkpoint.Bundle``)."""
    from nationmap.data.lulc import class_table_from_dict

    meta = bundle.meta
    if bundle.task not in ("lulc", "water"):
        raise InputError(f"a {bundle.task} bundle cannot make maps (need lulc or water)")
    norm = bundle.normalisation
    if bundle.task == "water":
        kind, bands = "sigmoid", ("water",)
    else:
        scheme = class_table_from_dict(meta["class_table"]).scheme(meta["scheme"])
        kind, bands = "softmax", tuple(scheme.names)
    return Head(bundle.task, bundle.model, kind, float(norm["mean_db"]), float(norm["std_db"]), bands)


@dataclass
class SceneResult:
    windows: int
    valid_pixels: int
    height: int
    width: int
    seconds: float


def predict_scene(src: str | Path, dst: str | Path, models: SceneModels, settings: WindowSettings,
                  units: str | None = None, on_strip=None) -> SceneResult:
    """Predict ``src`` (a SAR raster) into ``dst`` (written atomically; see module docstring).

    ``on_strip(done, total)`` is called after every strip of windows (progress).
    """
    t0 = time.perf_counter()
    dst = Path(dst)
    size, stride = settings.size, settings.stride
    weight = blend_weight(size, settings.overlap, settings.blend)
    k = len(models.bands)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    dst.parent.mkdir(parents=True, exist_ok=True)
    n_windows = n_valid = 0
    try:
        with SarRaster(src, units=units) as raster:
            h, w = raster.height, raster.width
            wp = max(w, size)
            rows, cols = window_starts(h, size, stride), window_starts(w, size, stride)
            acc = np.zeros((k, size, wp), dtype=np.float32)
            wsum = np.zeros((size, wp), dtype=np.float32)
            valid = np.zeros((size, wp), dtype=bool)
            profile = {**SCENE_PROFILE, "count": k + 1, "width": w, "height": h,
                       "crs": raster.crs, "transform": raster.transform, "nodata": None}

            def read_strip(r: int) -> tuple[np.ndarray, np.ndarray]:
                """(size, wp) dB with NaN where no data, and the (rows, w) validity of strip ``r``."""
                sigma0 = raster.read(Window(0, r, w, min(size, h - r)))
                strip = np.full((size, wp), np.nan, dtype=np.float32)
                strip[: sigma0.valid.shape[0], :w] = np.where(sigma0.valid, sigma0.db, np.nan)
                return strip, sigma0.valid

            # the pools exit first (waiting for their task), so nothing touches a closed dataset
            with rasterio.open(tmp, "w", **profile) as out, ThreadPoolExecutor(1, "scene-read") as reader, \
                    ThreadPoolExecutor(1, "scene-write") as writer:
                for i, b in enumerate((*models.bands, VALID_BAND), start=1):
                    out.set_band_description(i, b)
                base = 0
                written = None  # the write in flight (one at a time, in order)

                def flush(upto: int) -> None:
                    nonlocal base, n_valid, written
                    n = upto - base
                    v = valid[:n, :w]
                    probs = np.divide(acc[:, :n, :w], wsum[:n, :w], out=np.zeros((k, n, w), np.float32),
                                      where=wsum[:n, :w] > 0)
                    q = np.where(v, np.rint(probs * 255.0), 0).astype(np.uint8)
                    block = np.concatenate([q, (v * np.uint8(255))[None]])
                    if written is not None:
                        written.result()
                    written = writer.submit(out.write, block, window=Window(0, base, w, n))
                    n_valid += int(v.sum())
                    for a in (acc, wsum, valid):  # move the buffer down by n rows
                        a[..., : size - n, :] = a[..., n:, :]
                        a[..., size - n:, :] = 0
                    base = upto

                upcoming = reader.submit(read_strip, rows[0])
                for done, r in enumerate(rows, start=1):
                    strip, strip_valid = upcoming.result()
                    if done < len(rows):
                        upcoming = reader.submit(read_strip, rows[done])
                    if r > base:
                        flush(r)
                    valid[: strip_valid.shape[0], :w] = strip_valid
                    todo = [c for c in cols if strip_valid[:, c:c + size].any()]
                    for c0 in range(0, len(todo), settings.batch_size):
                        batch_cols = todo[c0:c0 + settings.batch_size]
                        probs = models.probabilities(np.stack([strip[:, c:c + size] for c in batch_cols]))
                        for j, c in enumerate(batch_cols):
                            acc[:, :, c:c + size] += probs[j] * weight
                            wsum[:, c:c + size] += weight
                        n_windows += len(batch_cols)
                    if on_strip is not None:
                        on_strip(done, len(rows))
                flush(h)
                written.result()
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SceneResult(n_windows, n_valid, h, w, time.perf_counter() - t0)
