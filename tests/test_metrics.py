"""Confusion-matrix metrics against direct set-based definitions; merging; the Table II layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nationmap.data.lulc import load_class_table
from nationmap.metrics import ConfusionMatrix, render_class_table, render_water_table

IGN = 255


def _random_maps(seed=0, k=6, shape=(3, 20, 30)):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k - 2, size=shape)  # classes k-2, k-1 absent from truth
    pred = np.where(rng.random(shape) < 0.6, truth, rng.integers(0, k - 1, size=shape))  # k-1 never predicted
    truth[rng.random(shape) < 0.1] = IGN
    return pred, truth


def test_scores_match_direct_definitions():
    k = 6
    pred, truth = _random_maps(k=k)
    cm = ConfusionMatrix(k).update(torch.from_numpy(pred), torch.from_numpy(truth))
    valid = truth != IGN
    p, t = pred[valid], truth[valid]
    assert cm.total == valid.sum()
    for c in range(k):
        assert cm.counts[c].sum() == (t == c).sum()
    scores = cm.scores()
    ious, accs = [], []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        s = scores.classes[c]
        if union == 0:
            assert s.absent and s.iou is None
        else:
            assert s.iou == pytest.approx(inter / union)
            ious.append(inter / union)
        if (t == c).sum():
            assert s.accuracy == pytest.approx(inter / (t == c).sum())
            accs.append(inter / (t == c).sum())
        else:
            assert s.accuracy is None
    assert scores.classes[k - 1].absent  # absent from truth and prediction
    assert not scores.classes[k - 2].absent and scores.classes[k - 2].iou == 0.0  # predicted only
    assert scores.miou == pytest.approx(np.mean(ious)) and len(ious) == k - 1
    assert scores.macc == pytest.approx(np.mean(accs)) and len(accs) == k - 2
    assert scores.overall_accuracy == pytest.approx(np.mean(p == t))


def test_matrices_from_workers_merge_to_the_whole():
    pred, truth = _random_maps(seed=1)
    whole = ConfusionMatrix(6).update(pred, truth)
    parts = [ConfusionMatrix(6).update(pred[i], truth[i]) for i in range(3)]
    merged = parts[0] + parts[1] + parts[2]
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.scores().miou == whole.scores().miou
    parts[0].merge(parts[1]).merge(parts[2])
    assert np.array_equal(parts[0].counts, whole.counts)


def test_binary_water_scores():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 1000)
    pred = np.where(rng.random(1000) < 0.8, truth, 1 - truth)
    s = ConfusionMatrix(2).update(pred, truth).binary_scores()
    tp = np.sum((pred == 1) & (truth == 1))
    fp = np.sum((pred == 1) & (truth == 0))
    fn = np.sum((pred == 0) & (truth == 1))
    assert s.iou == pytest.approx(tp / (tp + fp + fn))
    assert s.precision == pytest.approx(tp / (tp + fp))
    assert s.recall == pytest.approx(tp / (tp + fn))
    none = ConfusionMatrix(2).update(np.zeros(5), np.zeros(5)).binary_scores()
    assert math.isnan(none.iou) and math.isnan(none.precision)


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="truth values"):
        ConfusionMatrix(3).update(np.zeros(4), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="differ in size"):
        ConfusionMatrix(3).update(np.zeros(4), np.zeros(5))


def test_table_ii_layout():
    names = load_class_table().scheme("lulc9").names
    pred, truth = _random_maps(k=9, seed=3)
    scores = ConfusionMatrix(9).update(pred, truth).scores(names)
    table = render_class_table({"This work": scores, "Baseline": scores})
    lines = table.strip().splitlines()
    assert lines[0] == ("| Method | Water | Built-up | Cropland | Grassland | Forest | Bare | Solar panel | Wetland "
                        "| Greenhouse | mIoU |")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "This work" and cells[-1] == f"{scores.miou:.2f}"
    assert cells[1] == f"{scores.classes[0].iou:.2f}" and cells[9] == "absent"
    assert "| mAcc |" in render_class_table({"x": scores}, metric="accuracy")
    water = ConfusionMatrix(2).update(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1])).binary_scores()
    assert render_water_table({"Finetuned": water}).splitlines()[2] == "| Finetuned | 33.33 | 50.00 | 50.00 |"
