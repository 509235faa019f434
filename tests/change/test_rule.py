"""The change rule: flicker is not change, persistence and certainty are."""

from __future__ import annotations

import numpy as np
import pytest

from nationmap.change.rule import (CONFIRMED, NO_DATA, NONE, PROVISIONAL, ChangeRule, ChangeState, month_code,
                                   step)
from nationmap.errors import InputError

FOREST, BARE, CROP = 5, 8, 3
PER_PIXEL = ChangeRule(confirm_months=2, min_patch_px=1)  # no minimum mapping unit: one pixel tells


def _run(maps, rule=PER_PIXEL, confidence=80.0):
    """The states of a series of (h, w) maps (the first starts the state), confidence everywhere."""
    states = [ChangeState.start(np.asarray(maps[0], dtype=np.uint8))]
    for i, m in enumerate(maps[1:]):
        m = np.asarray(m, dtype=np.uint8)
        states.append(step(states[-1], m, np.full(m.shape, confidence, np.float32), f"2022-{i + 2:02d}", rule))
    return states


def test_flicker_is_provisional_then_gone():
    states = _run([[[FOREST]], [[CROP]], [[FOREST]], [[FOREST]]])
    assert [int(s.status[0, 0]) for s in states] == [NONE, PROVISIONAL, NONE, NONE]
    assert all(s.from_class[0, 0] == FOREST for s in states)


def test_persistent_change_is_confirmed_in_its_second_month_then_is_the_new_class():
    states = _run([[[FOREST]], [[BARE]], [[BARE]], [[BARE]]])
    assert [int(s.status[0, 0]) for s in states] == [NONE, PROVISIONAL, CONFIRMED, NONE]
    confirmed = states[2]
    assert (confirmed.from_class[0, 0], confirmed.to_class[0, 0]) == (FOREST, BARE)
    assert confirmed.first_seen[0, 0] == month_code("2022-02") == 2202  # first seen, not confirmed
    assert confirmed.months_seen[0, 0] == 2
    assert states[3].from_class[0, 0] == BARE and states[3].to_class[0, 0] == 0


def test_a_different_new_class_starts_again():
    states = _run([[[FOREST]], [[BARE]], [[CROP]], [[CROP]]])
    assert [int(s.status[0, 0]) for s in states] == [NONE, PROVISIONAL, PROVISIONAL, CONFIRMED]
    assert states[3].first_seen[0, 0] == month_code("2022-03")


def test_an_unmapped_month_carries_a_provisional_change():
    states = _run([[[FOREST]], [[BARE]], [[0]], [[BARE]]])
    assert [int(s.status[0, 0]) for s in states] == [NONE, PROVISIONAL, PROVISIONAL, CONFIRMED]
    assert states[3].first_seen[0, 0] == month_code("2022-02")


def test_never_mapped_pixels_have_no_data_until_first_seen():
    states = _run([[[0]], [[0]], [[CROP]], [[BARE]]])
    assert [int(s.status[0, 0]) for s in states] == [NO_DATA, NO_DATA, NONE, PROVISIONAL]
    assert states[2].from_class[0, 0] == CROP


def test_certainty_confirms_at_once_and_doubt_is_no_evidence():
    sure = ChangeRule(confirm_months=3, confirm_confidence=90.0, min_patch_px=1)
    assert _run([[[FOREST]], [[BARE]]], sure, confidence=95.0)[1].status[0, 0] == CONFIRMED
    assert _run([[[FOREST]], [[BARE]]], sure, confidence=85.0)[1].status[0, 0] == PROVISIONAL
    doubt = ChangeRule(min_confidence=60.0, min_patch_px=1)
    assert _run([[[FOREST]], [[BARE]]], doubt, confidence=55.0)[1].status[0, 0] == NONE


def test_patches_smaller_than_the_mapping_unit_are_no_evidence():
    before = np.full((8, 8), FOREST, np.uint8)
    after = before.copy()
    after[1, 1] = BARE  # a lone pixel
    after[4:6, 4:6] = BARE  # a 2 x 2 patch
    after[0, 7] = CROP
    after[1, 6] = CROP  # 8-connected to the pixel above: a patch of 2
    s = _run([before, after], ChangeRule(min_patch_px=4))[1]
    assert (s.status[4:6, 4:6] == PROVISIONAL).all()
    assert s.status[1, 1] == NONE and s.status[0, 7] == NONE
    s2 = _run([before, after], ChangeRule(min_patch_px=2))[1]
    assert s2.status[0, 7] == PROVISIONAL and s2.status[1, 6] == PROVISIONAL and s2.status[1, 1] == NONE


def test_the_raw_rule_is_the_raw_monthly_difference():
    """On random maps always mapped, ChangeRule.raw confirms exactly the pixels whose class
    differs from the month before (computed independently)."""
    rng = np.random.default_rng(5)
    maps = rng.integers(1, 4, size=(6, 20, 20)).astype(np.uint8)
    states = _run(list(maps), ChangeRule.raw())
    for t in range(1, 6):
        assert np.array_equal(states[t].status == CONFIRMED, maps[t] != maps[t - 1])
        assert np.array_equal(states[t].confirmed_class(), maps[t])


def test_rule_settings_are_checked():
    for bad in (dict(confirm_months=0), dict(min_confidence=120.0), dict(min_patch_px=0),
                dict(confirm_confidence=-1.0)):
        with pytest.raises(InputError, match="change rule"):
            ChangeRule(**bad)
    with pytest.raises(InputError):
        month_code("1999-12")
