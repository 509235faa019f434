"""Boundary F-score and thin-water recall against small hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from nationmap.metrics import StructureMeter, class_boundaries, thin_mask

IGN = 255


def _halves(edge_col: int, size: int = 20) -> np.ndarray:
    """Class 0 left of ``edge_col``, class 1 from it on."""
    m = np.zeros((size, size), np.int64)
    m[:, edge_col:] = 1
    return m


def test_class_boundaries_are_the_pixels_either_side_of_an_edge():
    b = class_boundaries(_halves(10), np.ones((20, 20), bool))
    assert np.array_equal(np.flatnonzero(b.any(axis=0)), [9, 10])
    assert b[:, 9].all() and b[:, 10].all() and b.sum() == 40


def test_no_data_makes_no_boundary():
    truth = np.zeros((20, 20), np.int64)
    truth[5:10, 5:10] = IGN  # a hole of no data in one class
    meter = StructureMeter(2, water_class=None).update(np.zeros_like(truth), truth)
    assert meter.counts.sum() == 0
    assert meter.scores().boundary_f == {"0": None, "1": None}


@pytest.mark.parametrize("shift, expected", [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.0)])
def test_boundary_f_is_one_within_the_tolerance_and_zero_beyond(shift, expected):
    meter = StructureMeter(2, water_class=None, tolerance=2).update(_halves(10 + shift), _halves(10))
    s = meter.scores(["a", "b"])
    assert s.boundary_f == {"a": pytest.approx(expected), "b": pytest.approx(expected)}
    assert s.mean_boundary_f == pytest.approx(expected)


def test_boundary_f_counts_a_missed_edge_in_recall_only():
    truth = _halves(10)
    truth[:, 15:] = 2  # a second edge the prediction misses
    pred = _halves(10)
    s = StructureMeter(3, water_class=None).update(pred, truth).scores()
    # class 1: its predicted boundary is col 10 only, on the truth's -> P = 1; its truth boundary is
    # cols 10 and 14 (20 + 20 px) and col 14 is 4 px from col 10 -> R = 0.5
    assert s.boundary_f["1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert s.boundary_f["2"] == 0.0  # truth has a class-2 boundary, the prediction none
    assert s.boundary_f["0"] == pytest.approx(1.0)


@pytest.mark.parametrize("width, thin", [(1, True), (3, True), (4, False), (6, False)])
def test_thin_mask_keeps_rivers_at_most_three_pixels_wide(width, thin):
    water = np.zeros((30, 30), bool)
    water[10:10 + width, :] = True
    mask = thin_mask(water, max_width=3)
    assert mask.sum() == (water.sum() if thin else 0)


def test_thin_mask_of_a_lake_with_a_river():
    water = np.zeros((40, 40), bool)
    water[5:25, 5:25] = True  # a 20 x 20 lake: no thin pixel
    water[25:40, 14:16] = True  # a 2-px river leaving it
    mask = thin_mask(water)
    assert mask.sum() == 15 * 2 and mask[25:40, 14:16].all()


def test_thin_water_recall_is_the_share_of_thin_water_mapped():
    truth = np.zeros((30, 30), np.int64)
    truth[10:12, :] = 1  # a 2-px river, 60 thin pixels
    truth[20:30, 20:30] = 1  # a pond, not thin
    pred = truth.copy()
    pred[10:12, :15] = 0  # half the river lost
    pred[20:30, 20:30] = 0  # the pond lost: no effect on thin recall
    s = StructureMeter(2, water_class=1).update(pred, truth).scores()
    assert s.thin_water_pixels == 60
    assert s.thin_water_recall == pytest.approx(0.5)


def test_thin_water_recall_is_none_without_thin_water():
    truth = np.zeros((10, 10), np.int64)
    assert StructureMeter(2, water_class=1).update(truth, truth).scores().thin_water_recall is None


def test_meters_add_up_over_images():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(4, 16, 16))
    truth[:, 6:8, :] = 0
    pred = np.where(rng.random(truth.shape) < 0.8, truth, rng.integers(0, 3, size=truth.shape))
    whole = StructureMeter(3, water_class=0).update(pred, truth)
    parts = StructureMeter(3, water_class=0).update(pred[:2], truth[:2])
    parts.merge(StructureMeter(3, water_class=0).update(pred[2:], truth[2:]))
    assert np.array_equal(whole.counts, parts.counts) and np.array_equal(whole.thin, parts.thin)
    assert whole.scores().to_dict() == parts.scores().to_dict()
