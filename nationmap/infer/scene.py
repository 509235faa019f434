"""Predict one scene on its own grid, streamed: the pure core of inference (no Ray).

The scene is read one strip of windows at a time (``window`` rows x block width), never whole.
Windows go through the models in full batches; their class probabilities, weighted by the
blending ramp (:mod:`nationmap.infer.windows`), are accumulated in a buffer of ``window +
stride`` rows. Rows no waiting or later window touches are final: they are normalised by the
summed weight and written out, and the buffer moves down. A scene wider than
``settings.max_block`` is predicted in column blocks (:func:`~nationmap.infer.windows.column_blocks`)
one after the other. Memory is therefore ``O(window x min(width, max_block))``, whatever the
scene's size, and GDAL's block cache is bounded while a scene is predicted.

Output, one GeoTIFF on the scene grid (CRS, transform, size of the input), uint8 bands:
    1..K   class probabilities x 255, multiplied by validity (0 where the input has no data);
           K = 9 LULC classes then 1 water band when both models are given
    K+1    validity: 255 where the input holds data, 0 elsewhere
    K+2    the pixel's no-data reason (:mod:`nationmap.products.pixels`): 0 valid, 2 no data,
           3 invalid value, 4 radar shadow, 5 layover (from the acquisition's mask,
           :mod:`nationmap.data.masks`, where it has one)
A pixel in layover or shadow is no data for the models: they are never asked to classify it.
Storing validity-premultiplied probabilities makes any later resampling a weighted average
that ignores no-data pixels: ``resampled(v * p) / resampled(v)``.

Values: the reader makes every non-finite or unphysical SAR value no data (NaN), and the models'
inputs and outputs are checked at this boundary (:class:`ModelValueError`): a value outside the
physical sigma0 range never reaches a model, and a NaN or inf probability fails the scene instead
of being written as a valid zero.

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

from nationmap.data.alos2 import is_alos2_name
from nationmap.data.calibration import SIGMA0_DB_RANGE, physical_db
from nationmap.data.masks import MASK_LAYOVER, MASK_NODATA, MASK_SHADOW, read_acquisition_mask
from nationmap.data.mosaic import is_mosaic_name
from nationmap.data.sar import SarRaster
from nationmap.errors import InputError, NationmapError
from nationmap.files import temporary_name
from nationmap.infer.windows import ColumnBlock, WindowSettings, blend_weight, column_blocks, window_starts
from nationmap.products import pixels

VALID_BAND = "validity"
REASON_BAND = "reason"
SCENE_GDAL_CACHE_MB = 64
FLUSH_COLUMNS = 2048
TERRAIN_MASKED = (MASK_NODATA, MASK_LAYOVER, MASK_SHADOW)  # mask codes that make a pixel no data
SCENE_PROFILE = dict(driver="GTiff", dtype="uint8", tiled=True, blockxsize=256, blockysize=256,
                     compress="deflate", interleave="pixel")


class ModelValueError(NationmapError):
    """A value that must never enter or leave a model: sigma0 outside the physical range in a
    model's input, or a NaN or inf probability in its output. The scene fails with the reason."""


def check_model_input(db: np.ndarray) -> None:
    """Refuse (N, H, W) sigma0 dB holding anything but NaN (no data) or physical values."""
    bad = ~np.isnan(db) & ~physical_db(db)
    if bad.any():
        raise ModelValueError(f"{int(bad.sum())} input value(s) outside the physical sigma0 range "
                              f"{SIGMA0_DB_RANGE[0]:g}..{SIGMA0_DB_RANGE[1]:g} dB reached the models")


def check_model_output(probs: torch.Tensor, heads: list["Head"]) -> None:
    """Refuse (N, bands, H, W) probabilities holding NaN or inf; names the model that gave them."""
    # probabilities are <= 1, so their sum is finite unless one is NaN or inf: one reduction, far
    # cheaper on CPU than an element-wise isfinite (32 windows x 10 bands: 40 ms vs 530 ms, 2 cores)
    if bool(torch.isfinite(probs.sum())):
        return
    start = 0
    for h in heads:
        part = probs[:, start:start + len(h.bands)]
        start += len(h.bands)
        n = int((~torch.isfinite(part)).sum())
        if n:
            raise ModelValueError(f"the {h.task} model gave non-finite probabilities (NaN or inf) at {n} of "
                                  f"{part.numel()} values of a batch of {probs.shape[0]} windows (a diverged "
                                  f"model or a numerical fault); nothing of the scene is written")


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


# test-time augmentation: (quarter turns, horizontal flip first) per pass
TTA_TRANSFORMS = {"none": ((0, False),), "flips": ((0, False), (0, True), (2, True), (2, False)),
                  "d4": tuple((k, f) for f in (False, True) for k in range(4))}


@dataclass
class SceneModels:
    """The heads applied to every window; output bands are their bands, concatenated."""

    heads: list[Head]
    device: str = "cpu"
    autocast: bool = True  # bf16 on a CUDA GPU that runs it natively (not emulated: T4, V100 stay float32)
    compile: bool = False  # torch.compile the models (worth it on GPU for long runs)
    bands: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        if not self.heads:
            raise InputError("inference needs at least one model (LULC or water)")
        self.bands = tuple(b for h in self.heads for b in h.bands)
        if self.autocast and self.device.startswith("cuda"):
            from nationmap.devices import probe_bf16

            self.autocast = bool(probe_bf16("cuda").native)
        for h in self.heads:
            h.model = h.model.to(memory_format=torch.channels_last)
            if self.compile:
                h.model = torch.compile(h.model)

    @torch.inference_mode()
    def probabilities(self, db: np.ndarray, tta: str = "none") -> np.ndarray:
        """(N, H, W) float32 sigma0 dB (NaN = no data) -> (N, len(bands), H, W) float32
        probabilities, the mean over the ``tta`` transforms (:data:`TTA_TRANSFORMS`); raises
        :class:`ModelValueError` for a non-finite output. The inputs are checked where they are
        read (:meth:`_SceneStream.read_strip`, off the models' path)."""
        x = torch.from_numpy(db).to(self.device, non_blocking=True)
        use_amp = self.autocast and self.device.startswith("cuda")
        transforms = TTA_TRANSFORMS[tta]
        out = None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            for k, flip in transforms:  # rotate k quarter turns after flipping; undone in reverse
                xt = torch.rot90(x.flip(-1) if flip else x, k, (-2, -1))
                y = torch.cat([h.probabilities(xt) for h in self.heads], dim=1).float()
                y = torch.rot90(y, -k, (-2, -1))
                y = y.flip(-1) if flip else y
                out = y if out is None else out + y
        out = out / len(transforms)
        check_model_output(out, self.heads)
        return out.cpu().numpy()


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
        scheme = class_table_from_dict(meta.class_table).scheme(meta.scheme)
        kind, bands = "softmax", tuple(scheme.names)
    return Head(bundle.task, bundle.model, kind, float(norm["mean_db"]), float(norm["std_db"]), bands)


@dataclass
class SceneResult:
    windows: int
    valid_pixels: int
    height: int
    width: int
    seconds: float
    model_seconds: float = 0.0  # of ``seconds``, inside the models' forward passes


def predict_scene(src: str | Path, dst: str | Path, models: SceneModels, settings: WindowSettings,
                  units: str | None = None, on_strip=None, mask: str | Path | None = None) -> SceneResult:
    """Predict ``src`` (a SAR raster) into ``dst`` (written atomically; see module docstring).

    ``on_strip(done, total)`` is called after every strip of windows (progress). ``mask``: a
    layover/shadow mask on the scene's grid to use instead of the acquisition's own (a DEM's).
    """
    t0 = time.perf_counter()
    dst = Path(dst)
    tmp = temporary_name(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        # GDAL keeps written and read blocks in its cache (5 % of RAM by default): bounded here,
        # or the cache of a 16k scene's output alone is a GiB
        with rasterio.Env(GDAL_CACHEMAX=SCENE_GDAL_CACHE_MB), SarRaster(src, units=units) as raster:
            h, w = raster.height, raster.width
            profile = {**SCENE_PROFILE, "count": len(models.bands) + 2, "width": w, "height": h,
                       "crs": raster.crs, "transform": raster.transform, "nodata": None}
            blocks = column_blocks(w, settings.size, settings.stride, settings.max_block)
            rows = window_starts(h, settings.size, settings.stride)
            strips = [(b, r) for b in blocks for r in rows]

            # the pools exit first (waiting for their task), so nothing touches a closed dataset
            with rasterio.open(tmp, "w", **profile) as out, ThreadPoolExecutor(1, "scene-read") as reader, \
                    ThreadPoolExecutor(1, "scene-write") as writer:
                for i, b in enumerate((*models.bands, VALID_BAND, REASON_BAND), start=1):
                    out.set_band_description(i, b)
                stream = _SceneStream(raster, out, models, settings, writer, mask)

                def read(i: int):
                    b, r = strips[i]
                    return stream.read_strip(b, r)

                upcoming = reader.submit(read, 0)
                for done, (block, r) in enumerate(strips, start=1):
                    strip, strip_valid, strip_reason = upcoming.result()
                    if done < len(strips):
                        upcoming = reader.submit(read, done)
                    stream.add_strip(block, r, strip, strip_valid, strip_reason)
                    if on_strip is not None:
                        on_strip(done, len(strips))
                stream.finish()
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SceneResult(stream.n_windows, stream.n_valid, h, w, time.perf_counter() - t0, stream.model_s)


class _SceneStream:
    """The accumulation state of :func:`predict_scene`, one column block at a time.

    Windows wait in ``pending`` until a full batch is there, across strips, so every forward
    pass but the last of a block has the same shape (a new batch shape costs oneDNN a slow first
    pass and the allocator fragmented memory). The buffer therefore holds ``size + stride`` rows:
    the windows of the current strip and those of the previous strip still waiting.
    """

    def __init__(self, raster, out, models: SceneModels, settings: WindowSettings, writer, mask=None):
        self.raster, self.out, self.models, self.settings, self.writer = raster, out, models, settings, writer
        self.size, self.k = settings.size, len(models.bands)
        self.weight = blend_weight(settings.size, settings.overlap, settings.blend)
        self.cap = settings.size + settings.stride
        self.block = None
        self.written = None  # the write in flight (one at a time, in order)
        self.n_windows = self.n_valid = 0
        # only a file named as an acquisition can have a mask beside it (masks.mask_path)
        self.mask = mask
        self.masked = mask is not None or is_alos2_name(raster.path.name) or is_mosaic_name(raster.path.name)
        self.model_s = 0.0

    def read_strip(self, block: ColumnBlock, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(size, block width) dB with NaN where no data, and the (rows, cols) validity and
        no-data reason read (layover and shadow pixels of the acquisition's mask are no data)."""
        size, h = self.size, self.raster.height
        bw = block.width(size)
        cols = min(bw, self.raster.width - block.left)
        window = Window(block.left, r, cols, min(size, h - r))
        raw = self.raster.read_raw(window)
        db, valid = self.raster.calibrate(raw)
        reason = np.where(self.raster.no_data_mask(raw), pixels.NOT_OBSERVED, pixels.INVALID).astype(np.uint8)
        mask = read_acquisition_mask(self.raster.path, window, self.mask) if self.masked else None
        if mask is not None:
            valid &= ~np.isin(mask, TERRAIN_MASKED)
            reason[mask == MASK_NODATA] = pixels.NOT_OBSERVED
            reason[mask == MASK_SHADOW] = pixels.SHADOW
            reason[mask == MASK_LAYOVER] = pixels.LAYOVER
        reason[valid] = pixels.MAPPED
        strip = np.full((size, bw), np.nan, dtype=np.float32)
        strip[: valid.shape[0], :cols] = np.where(valid, db, np.nan)
        check_model_input(strip)  # in the reader thread: free while the models run
        return strip, valid, reason

    def _start(self, block: ColumnBlock) -> None:
        if self.block is not None:
            self.finish()
        bw = block.width(self.size)
        self.block, self.base, self.pending = block, 0, []
        self.acc = np.zeros((self.k, self.cap, bw), dtype=np.float32)
        self.wsum = np.zeros((self.cap, bw), dtype=np.float32)
        self.valid = np.zeros((self.cap, bw), dtype=bool)
        self.reason = np.full((self.cap, bw), pixels.NOT_OBSERVED, dtype=np.uint8)

    def add_strip(self, block: ColumnBlock, r: int, strip: np.ndarray, strip_valid: np.ndarray,
                  strip_reason: np.ndarray) -> None:
        if block is not self.block:
            self._start(block)
        size = self.size
        need = r + size - self.cap  # rows above this leave the buffer to make room for the strip
        if need > self.base:
            self._predict(sum(1 for p in self.pending if p[0] < need))  # rare: a short previous strip
            self._flush(min([r] + [p[0] for p in self.pending]))
        rows, cols = strip_valid.shape
        self.valid[r - self.base: r - self.base + rows, :cols] = strip_valid
        self.reason[r - self.base: r - self.base + rows, :cols] = strip_reason
        for c in block.cols:
            x = c - block.left
            if strip_valid[:, x:x + size].any():  # a window without data is no data whatever the model says
                self.pending.append((r, x, strip[:, x:x + size]))
        while len(self.pending) >= self.settings.batch_size:
            self._predict(self.settings.batch_size)

    def finish(self) -> None:
        """Predict what waits, write the block's remaining rows, wait for the last write."""
        self._predict(len(self.pending))
        self._flush(self.raster.height)
        self.written.result()
        self.block = None

    def _predict(self, n: int) -> None:
        if n == 0:
            return
        batch, self.pending = self.pending[:n], self.pending[n:]
        t0 = time.perf_counter()
        probs = self.models.probabilities(np.stack([p[2] for p in batch]), self.settings.tta)
        self.model_s += time.perf_counter() - t0
        size = self.size
        for j, (r, x, _) in enumerate(batch):
            y = r - self.base
            self.acc[:, y:y + size, x:x + size] += probs[j] * self.weight
            self.wsum[y:y + size, x:x + size] += self.weight
        self.n_windows += n

    def _flush(self, upto: int) -> None:
        """Write rows ``[base, upto)`` (final: no waiting or later window covers them)."""
        n = upto - self.base
        if n <= 0:
            return
        block = self.block
        x0, x1 = block.x0 - block.left, block.x1 - block.left
        k, ow = self.k, x1 - x0
        q = np.empty((k + 2, n, ow), dtype=np.uint8)
        for c0 in range(0, ow, FLUSH_COLUMNS):  # bounded temporaries, whatever the width
            c1 = min(c0 + FLUSH_COLUMNS, ow)
            v = self.valid[:n, x0 + c0:x0 + c1]
            wsum = self.wsum[:n, x0 + c0:x0 + c1]
            probs = np.divide(self.acc[:, :n, x0 + c0:x0 + c1], wsum, where=wsum > 0,
                              out=np.zeros((k, n, c1 - c0), np.float32))
            q[:k, :, c0:c1] = np.rint(probs * (v * np.float32(255.0)))
            q[k, :, c0:c1] = v * np.uint8(255)
            q[k + 1, :, c0:c1] = self.reason[:n, x0 + c0:x0 + c1]
            self.n_valid += int(v.sum())
        if self.written is not None:
            self.written.result()
        self.written = self.writer.submit(self.out.write, q, window=Window(block.x0, self.base, ow, n))
        for a in (self.acc, self.wsum, self.valid, self.reason):  # move the buffer up by n rows
            a[..., : self.cap - n, :] = a[..., n:, :]
            a[..., self.cap - n:, :] = pixels.NOT_OBSERVED if a is self.reason else 0
        self.base = upto
