"""Sliding windows, blending and streamed scene prediction (pure core, no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from torch import nn

from nationmap.data.calibration import db_to_dn
from nationmap.infer.scene import Head, ModelValueError, SceneModels, WindowSettings, check_model_input, predict_scene
from nationmap.infer.windows import blend_weight, column_blocks, ramp, window_starts
from nationmap.products import pixels

WATER_DB = -18.0


def write_scene(path, db: np.ndarray) -> None:
    """A UTM uint16 DN scene (0 = no data where ``db`` is NaN)."""
    dn = np.where(np.isfinite(db), db_to_dn(np.nan_to_num(db, nan=-10.0)), 0).astype(np.uint16)
    profile = dict(driver="GTiff", dtype="uint16", count=1, width=db.shape[1], height=db.shape[0], nodata=0,
                   crs="EPSG:32653", transform=Affine(75.0, 0, 500_000.0, 0, -75.0, 3_950_000.0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn, 1)


def smooth_field(shape, seed: int) -> np.ndarray:
    """sigma0 dB with large smooth dark (water-like) and bright regions."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(shape[0] // 40 + 2, shape[1] // 40 + 2))
    field = F.interpolate(torch.from_numpy(coarse)[None, None], size=shape, mode="bicubic", align_corners=False)[0, 0].numpy()
    return (-12.0 + 8.0 * field).astype(np.float32)


class ZeroPaddedWater(nn.Module):
    """Logits [box-blurred water indicator, constant 0.6]: in a window's interior it is exactly
    ``dB < -18``; within a few pixels of the window border the zero padding of the blur pulls
    the water logit under 0.6: the border artefact of any padded CNN, made explicit."""

    def __init__(self, mean: float, std: float, radius: int = 16):
        super().__init__()
        self.threshold = (WATER_DB - mean) / std
        self.radius = radius

    def forward(self, x):
        sign = torch.where(x < self.threshold, 1.0, -1.0)
        k = 2 * self.radius + 1
        blurred = F.avg_pool2d(sign, k, stride=1, padding=self.radius, count_include_pad=True)
        return torch.cat([blurred, torch.full_like(blurred, 0.6)], dim=1)


def models_for(module, mean=-12.0, std=6.0) -> SceneModels:
    return SceneModels([Head("lulc", module, "softmax", mean, std, ("water", "other"))])


def test_window_starts_cover_every_pixel():
    for length in (1, 100, 128, 129, 300, 1000):
        starts = window_starts(length, 128, 96)
        covered = np.zeros(max(length, 128), bool)
        for s in starts:
            covered[s:s + 128] = True
        assert covered[:length].all()
        assert starts[0] == 0 and starts[-1] == max(length - 128, 0)
        assert all(0 < b - a <= 96 for a, b in zip(starts, starts[1:]))


def test_cosine_ramps_sum_to_one_across_an_overlap():
    size, overlap = 128, 32
    r = ramp(size, overlap)
    stride = size - overlap
    # where two windows overlap, their weights are a partition of unity
    np.testing.assert_allclose(r[stride:] + r[:overlap], 1.0, atol=1e-3)  # up to the weight floor
    w = blend_weight(size, overlap)
    assert w.shape == (size, size) and w.min() > 0 and w[overlap:-overlap, overlap:-overlap].min() == 1.0
    assert (ramp(size, overlap, "none") == 1).all()


def _reference(db, module, settings, mean=-12.0, std=6.0):
    """Whole scene in memory, every window, same weights: the streamed writer must match."""
    h, w = db.shape
    size = settings.size
    hp, wp = max(h, size), max(w, size)
    full = np.full((hp, wp), np.nan, np.float32)
    full[:h, :w] = db
    acc = np.zeros((2, hp, wp))
    wsum = np.zeros((hp, wp))
    weight = blend_weight(size, settings.overlap, settings.blend)
    for r in window_starts(h, size, settings.stride):
        for c in window_starts(w, size, settings.stride):
            x = torch.nan_to_num((torch.from_numpy(full[r:r + size, c:c + size]) - mean) / std, nan=0.0)[None, None]
            with torch.no_grad():
                p = module(x).softmax(1)[0].numpy()
            acc[:, r:r + size, c:c + size] += p * weight
            wsum[r:r + size, c:c + size] += weight
    return (acc / wsum)[:, :h, :w]


@pytest.mark.parametrize("width,size,stride,max_block", [
    (520, 128, 96, 512), (5000, 128, 96, 512), (5000, 256, 192, 1024), (4097, 64, 32, 256), (1000, 128, 64, 1000)])
def test_column_blocks_finish_every_column_once(width, size, stride, max_block):
    blocks = column_blocks(width, size, stride, max_block)
    owner = np.zeros(width, int)
    for b in blocks:
        assert b.cols[-1] + size - b.left <= max_block or len(blocks) == 1
        owner[b.x0:b.x1] += 1
        for c in window_starts(width, size, stride):  # every window covering an owned column is in the block
            if c < b.x1 and c + size > b.x0:
                assert c in b.cols, (c, b)
    assert (owner == 1).all()
    assert len(blocks) == 1 if width <= max_block else len(blocks) >= 2


@pytest.mark.parametrize("shape,max_block", [((300, 520), 8192), ((100, 90), 8192), ((290, 1100), 512)])
def test_streamed_prediction_matches_in_memory_reference(tmp_path, shape, max_block):
    db = smooth_field(shape, seed=1)
    db[:20, :35] = np.nan  # a no-data corner
    write_scene(tmp_path / "scene.tif", db)
    module = ZeroPaddedWater(-12.0, 6.0)
    # batch 3 puts windows of two strips in one batch; max_block 512 cuts the wide scene in blocks
    settings = WindowSettings(size=128, overlap=32, batch_size=3, max_block=max_block)
    result = predict_scene(tmp_path / "scene.tif", tmp_path / "out.tif", models_for(module), settings)
    with rasterio.open(tmp_path / "out.tif") as ds:
        out = ds.read()
        assert ds.transform == Affine(75.0, 0, 500_000.0, 0, -75.0, 3_950_000.0) and ds.crs.to_epsg() == 32653
        assert ds.descriptions == ("water", "other", "validity", "reason")
    valid = np.isfinite(db)
    ref = _reference(db, module, settings)
    assert np.abs(out[:2].astype(float) - np.where(valid, np.rint(ref * 255), 0)).max() <= 1
    assert (out[2] == np.where(valid, 255, 0)).all()
    assert (out[3] == np.where(valid, pixels.MAPPED, pixels.NOT_OBSERVED)).all()  # NaN is no data, not invalid
    assert result.valid_pixels == valid.sum()
    assert not list(tmp_path.glob(".*.part-*"))


def _border_mask(length: int, starts: list[int], size: int, width: int) -> np.ndarray:
    """Pixels within ``width`` of a window border inside the scene (not the scene's own edge)."""
    mask = np.zeros(length, bool)
    for s in starts:
        for edge in (s, s + size):
            if 0 < edge < length:
                mask[max(edge - width, 0):edge + width] = True
    return mask


def _disagreement(tmp_path, db, settings, name):
    write_scene(tmp_path / "scene.tif", db)
    predict_scene(tmp_path / "scene.tif", tmp_path / name, models_for(ZeroPaddedWater(-12.0, 6.0)), settings)
    with rasterio.open(tmp_path / name) as ds:
        probs = ds.read([1, 2]).astype(int)
    wrong = (probs[0] > probs[1]) != (db < WATER_DB)
    h, w = db.shape
    rows = _border_mask(h, window_starts(h, settings.size, settings.stride), settings.size, 8)
    cols = _border_mask(w, window_starts(w, settings.size, settings.stride), settings.size, 8)
    border = rows[:, None] | cols[None, :]
    return wrong[border].mean(), wrong[~border].mean()


def test_blending_removes_window_seams(tmp_path):
    db = smooth_field((640, 704), seed=3)
    border, interior = _disagreement(tmp_path, db, WindowSettings(size=128, overlap=32, blend="cosine"), "cos.tif")
    assert border <= interior + 0.002, (border, interior)
    # the control: plain tiling (no overlap, no blending) keeps the border artefacts
    hard_border, hard_interior = _disagreement(tmp_path, db, WindowSettings(size=128, overlap=0, blend="none"), "hard.tif")
    assert hard_border > hard_interior + 0.01, (hard_border, hard_interior)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    from nationmap.infer.scene import Head, SceneModels, WindowSettings, predict_scene
    from nationmap.models import SegmentationConfig, SegmentationModel
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = SegmentationModel(SegmentationConfig.from_preset("tiny", "lulc")).eval()
    models = SceneModels([Head("lulc", model, "softmax", -12.0, 6.0, tuple(str(i) for i in range(9)))])
    predict_scene(sys.argv[1], sys.argv[2], models, WindowSettings(size=256, overlap=64, batch_size=8))
    print(json.dumps({"max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


def test_peak_memory_flat_in_scene_area(tmp_path):
    """Inference on a scene 4x larger in area needs < 1.5x the peak memory (fresh processes)."""
    peaks = {}
    for side in (768, 1536):
        db = np.full((side, side), -12.0, np.float32) + np.random.default_rng(side).normal(0, 2, (side, side)).astype(np.float32)
        write_scene(tmp_path / f"s{side}.tif", db)
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / f"s{side}.tif"), str(tmp_path / f"p{side}.tif")],
                             capture_output=True, text=True, check=True)
        peaks[side] = json.loads(out.stdout.strip().splitlines()[-1])["max_rss_kb"]
    ratio = peaks[1536] / peaks[768]
    print(f"peak RSS {peaks[768] / 1024:.0f} MiB (768 px) -> {peaks[1536] / 1024:.0f} MiB (1536 px): x{ratio:.3f}")
    assert ratio < 1.5


class Diverged(nn.Module):
    """A model whose weights went NaN: every logit is NaN."""

    def forward(self, x):
        return torch.full((x.shape[0], 2, *x.shape[2:]), float("nan"))


def test_non_finite_model_output_fails_the_scene_and_writes_nothing(tmp_path):
    """A NaN probability is never written as a valid zero: the scene raises with the reason."""
    write_scene(tmp_path / "scene.tif", smooth_field((100, 90), seed=2))
    with pytest.raises(ModelValueError, match="lulc model gave non-finite probabilities"):
        predict_scene(tmp_path / "scene.tif", tmp_path / "out.tif", models_for(Diverged()), WindowSettings(size=64, overlap=16))
    assert not (tmp_path / "out.tif").exists() and not list(tmp_path.glob(".*.part-*"))


def test_unphysical_input_never_reaches_the_models(tmp_path, monkeypatch):
    """Whatever a reader returns, a strip holding a value outside the physical sigma0 range is
    refused before the models see it (NaN, no data, passes)."""
    db = np.full((2, 64, 64), -12.0, np.float32)
    db[0, 0, 0] = np.nan
    check_model_input(db)
    for value in (np.inf, 3.4e38, 1e4, -1e3):
        bad = db.copy()
        bad[1, 5, 5] = value
        with pytest.raises(ModelValueError, match="outside the physical sigma0 range"):
            check_model_input(bad)
    from nationmap.data.sar import SarRaster

    calibrate = SarRaster.calibrate

    def lax_calibrate(self, raw):  # a calibration that lets an extreme value through
        db, valid = calibrate(self, raw)
        db[0, 0], valid[0, 0] = 3.4e38, True
        return db, valid

    monkeypatch.setattr(SarRaster, "calibrate", lax_calibrate)
    write_scene(tmp_path / "scene.tif", smooth_field((100, 90), seed=3))
    module = ZeroPaddedWater(-12.0, 6.0)
    with pytest.raises(ModelValueError, match="outside the physical sigma0 range"):
        predict_scene(tmp_path / "scene.tif", tmp_path / "out.tif", models_for(module), WindowSettings(size=64, overlap=16))
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("tta, views", [("flips", 4), ("d4", 8)])
def test_test_time_augmentation_is_the_mean_over_the_transformed_windows(tta, views):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 5, padding=2)  # a random kernel: no symmetry, so every view differs
    models = SceneModels([Head("lulc", conv, "softmax", -10.0, 5.0, ("a", "b", "c"))])
    db = np.random.default_rng(0).normal(-10, 5, size=(2, 32, 32)).astype(np.float32)

    def plain(a: np.ndarray) -> np.ndarray:
        return models.probabilities(np.ascontiguousarray(a))

    expected = []
    for k in range(4 if tta == "d4" else 1):
        for flip in (False, True):
            view = np.rot90(db[..., ::-1] if flip else db, k, axes=(-2, -1))
            back = np.rot90(plain(view), -k, axes=(-2, -1))
            expected.append(back[..., ::-1] if flip else back)
    if tta == "flips":  # identity, horizontal, vertical and both
        expected += [plain(db[..., ::-1, :])[..., ::-1, :], plain(db[..., ::-1, ::-1])[..., ::-1, ::-1]]
    got = models.probabilities(db, tta)
    assert len(expected) == views
    np.testing.assert_allclose(got, np.mean(expected, axis=0), atol=1e-6)
    assert not np.allclose(got, plain(db), atol=1e-3)  # the views did change the result
    with pytest.raises(Exception, match="tta must be one of"):
        WindowSettings(tta="rot")


def test_tta_is_checked_with_the_config():
    from nationmap.errors import InputError
    from nationmap.infer.config import InferConfig

    with pytest.raises(InputError, match="tta must be one of none, flips, d4, not 'rot'"):
        InferConfig(region="demo", month="2022-09", lulc_model="m", tta="rot")
    assert InferConfig(region="demo", month="2022-09", lulc_model="m", tta="d4").window_settings(256).tta == "d4"
