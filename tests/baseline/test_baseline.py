"""The per-pixel baseline: its features against scipy, what it learns on hand-made maps, its
bundle (round trip through load_bundle, refusal of foreign files) and its place in evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from nationmap.baseline import PixelClassifierConfig, feature_names, fit_pixel_classifier, pixel_features
from nationmap.baseline.bundle import fit_baseline
from nationmap.baseline.classifier import load_estimator
from nationmap.errors import InputError
from nationmap.train.checkpoint import load_bundle


def test_features_match_scipy_box_filters():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 40, 50)).astype(np.float32)
    f = pixel_features(torch.from_numpy(x), windows=(3, 7)).numpy()
    assert f.shape == (2, 5, 40, 50) and feature_names((3, 7)) == ["sigma0", "mean_3", "std_3", "mean_7", "std_7"]
    for n in range(2):
        img = x[n, 0].astype(np.float64)
        for j, w in enumerate((3, 7)):
            mean = uniform_filter(img, w, mode="mirror")  # scipy's mirror is torch's reflect
            std = np.sqrt(np.maximum(uniform_filter(img * img, w, mode="mirror") - mean ** 2, 0))
            np.testing.assert_allclose(f[n, 1 + 2 * j], mean, atol=1e-5)
            np.testing.assert_allclose(f[n, 2 + 2 * j], std, atol=1e-3)
    np.testing.assert_array_equal(f[:, 0], x[:, 0])


def _textures(seed: int, n: int = 6, size: int = 48):
    """Three classes in vertical bands of 16 px: dark (-1.5), bright (+1.5) and a checkerboard of
    +-1.5 (each pixel as dark or bright as the others, mean 0: only the local std tells it apart);
    the first two rows are ignored (255)."""
    rng = np.random.default_rng(seed)
    target = np.zeros((n, size, size), np.uint8)
    target[:, :, size // 3: 2 * size // 3] = 1
    target[:, :, 2 * size // 3:] = 2
    yy, xx = np.mgrid[:size, :size]
    checker = np.where((yy + xx) % 2 == 0, 1.5, -1.5)
    x = np.where(target == 0, -1.5, np.where(target == 1, 1.5, checker)) + rng.normal(0, 0.3, size=target.shape)
    target[:, :2] = 255  # ignored rows: not drawn
    return {"x": x[:, None].astype(np.float32), "target": target}


def test_fits_a_hand_made_texture_map():
    batch = _textures(0)
    model = fit_pixel_classifier(PixelClassifierConfig(num_classes=3, max_pixels=5000, max_iter=50), [batch])
    test = _textures(1)
    logits = model(torch.from_numpy(test["x"]))
    assert logits.shape == (6, 3, 48, 48)
    pred = logits.argmax(1).numpy()
    bands = np.repeat([0, 1, 2], 16)
    away = np.ones(48, bool)
    away[12:20] = away[28:36] = False  # near the bands' edges the boxes mix classes
    assert (pred[:, :, away] == bands[away]).mean() > 0.97
    np.testing.assert_allclose(logits.exp().sum(1).numpy(), 1.0, atol=1e-4)


def test_water_baseline_gives_one_logit():
    batch = _textures(0)
    batch["target"] = np.where(batch["target"] == 255, 255, (batch["target"] == 0).astype(np.uint8))
    model = fit_pixel_classifier(PixelClassifierConfig(num_classes=1, max_pixels=3000, max_iter=30), [batch])
    logits = model(torch.from_numpy(batch["x"]))
    assert logits.shape == (6, 1, 48, 48)
    assert ((logits[:, 0, 10:, :10] > 0).float().mean() > 0.95) and ((logits[:, 0, 10:, 20:28] < 0).float().mean() > 0.95)


def test_pixel_draw_is_uniform_and_bounded():
    from nationmap.baseline.classifier import _sample_pixels

    batches = [_textures(i) for i in range(4)]
    cfg = PixelClassifierConfig(num_classes=3, max_pixels=2000)
    rows, labels = _sample_pixels(cfg, batches)
    assert rows.shape == (2000, len(feature_names())) and 255 not in labels
    shares = np.bincount(labels, minlength=3) / 2000
    np.testing.assert_allclose(shares, [1 / 3, 1 / 3, 1 / 3], atol=0.05)  # the bands' shares


def test_single_class_training_is_refused():
    batch = _textures(0)
    batch["target"][:] = 1
    with pytest.raises(InputError, match="single class"):
        fit_pixel_classifier(PixelClassifierConfig(num_classes=3, max_pixels=1000), [batch])


def test_bundle_round_trip_and_evaluation(train_dataset, tiny_bundles, tmp_path):
    from nationmap.train.evaluate import evaluate

    path = fit_baseline(train_dataset, "lulc", tmp_path / "baseline", max_pixels=20_000, log=lambda *_: None)
    meta = json.loads((path / "model.json").read_text())
    assert meta["model_kind"] == "pixel-gbt" and meta["training"]["majority_class"] == "Forest"
    bundle = load_bundle(path)
    assert bundle.task == "lulc" and bundle.meta.img_size is None
    alone = evaluate(path, train_dataset, "test", log=lambda *_: None)
    beside = evaluate(tiny_bundles["lulc"], train_dataset, "test", tmp_path / "eval", baseline=path)
    # the baseline row beside a network (inputs standardised with the baseline's own statistics)
    # is the baseline scored alone as the model: the same pixels, the same numbers
    assert beside.report.baseline.headline == pytest.approx(alone.report.model.headline)
    assert beside.report.baseline.structures == alone.report.model.structures
    # trees beat random weights
    assert alone.report.model.headline > max(beside.report.model.headline, beside.report.majority.headline)
    assert "per-pixel baseline (GBT)" in beside.table and "thin-water recall" in beside.table
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["format"] == "nationmap-eval/1" and written["baseline"]["bundle"] == str(path)
    assert written["baseline"]["miou"] == beside.report.baseline.headline
    with pytest.raises(InputError, match="not the per-pixel baseline"):
        evaluate(path, train_dataset, "test", baseline=tiny_bundles["lulc"])


def test_baseline_scores_land_without_a_training_split(train_dataset, tiny_world, tiny_catalog, tmp_path):
    """Held-out land prepared as test pairs only (as scripts/ablate_heldout.sh does): the baseline's
    majority class comes from the training split it was fitted on, not from the scored dataset."""
    from nationmap.data.prepare import prepare_dataset
    from nationmap.data.regions import resolve_region
    from nationmap.train.evaluate import evaluate
    from tests.conftest import TINY_CELLS, tiny_prepare_config

    heldout = tmp_path / "heldout"
    prepare_dataset(tiny_catalog, tiny_world / "lulc", heldout,
                    tiny_prepare_config(patch_size=64, n_anchors=4000, fractions=(0.0, 0.0, 1.0)),
                    resolve_region(",".join(TINY_CELLS)), executor="serial")
    path = fit_baseline(train_dataset, "lulc", tmp_path / "baseline", max_pixels=20_000, log=lambda *_: None)
    assert json.loads((path / "model.json").read_text())["training"]["data"] == str(train_dataset.resolve())
    result = evaluate(path, heldout, "test", log=lambda *_: None)
    assert result.majority_class == "Forest"
    assert 0.0 < result.report.model.headline <= 1.0


def test_corrupt_trees_are_refused(tmp_path):
    bad = tmp_path / "model.skops"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a skops model file"):
        load_estimator(bad)


def test_trees_file_with_a_foreign_type_is_refused_before_loading(tmp_path):
    import operator

    import skops.io as sio

    bad = tmp_path / "model.skops"
    sio.dump({"f": operator.add}, str(bad))  # would build a function on load
    with pytest.raises(InputError, match="holds types a baseline model does not .*add.*refused"):
        load_estimator(bad)


def test_a_class_too_rare_to_split_is_left_out_of_the_fit():
    batch = _textures(0)
    batch["target"][0, 5, 5] = 3  # one pixel of a fourth class: early stopping could not stratify it
    cfg = PixelClassifierConfig(num_classes=4, max_pixels=100_000, max_iter=20)
    model = fit_pixel_classifier(cfg, [batch])
    assert list(model.estimator.classes_) == [0, 1, 2]
    assert model(torch.from_numpy(batch["x"][:1])).shape == (1, 4, 48, 48)
