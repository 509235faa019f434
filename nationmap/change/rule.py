"""The change rule: provisional when first seen, confirmed when it persists or is certain.

A raw monthly difference reports every pixel whose class differs from last month's: speckle,
a paddy's flooding, a new acquisition geometry flip a pixel and flip it back, and each flip is
reported twice. The rule here (after OPERA DIST-S1's first / provisional / confirmed status)
keeps, per pixel, the class it was last *confirmed* in, and treats a month's class as evidence of
change only when it differs from that class, with the map's confidence at least
``min_confidence``, in a patch of at least ``min_patch_px`` such pixels (a minimum mapping unit:
flicker is salt and pepper, land change has an extent). Evidence makes the pixel

    provisional   first seen this month (or seen again, not yet enough months)
    confirmed     seen in ``confirm_months`` consecutive mapped months with the same new class, or
                  once with confidence >= ``confirm_confidence``; the pixel's confirmed class is
                  then the new one, from the next month on

A mapped month without evidence ends a provisional change (the flicker case); a month the
pixel was not mapped carries its state unchanged. With ``confirm_months`` 1, ``min_confidence``
0 and ``min_patch_px`` 1, the rule is the raw monthly difference.

The state of a month is its change layer (:class:`ChangeState`): from-class, to-class, status,
month first seen and months seen; the next month's rule starts from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nationmap.errors import InputError

NONE, PROVISIONAL, CONFIRMED = 0, 1, 2
NO_DATA = 255  # status of a pixel never mapped: no class to change from
STATUS_NAMES = {NONE: "no change", PROVISIONAL: "provisional", CONFIRMED: "confirmed"}
FORMAT = "nationmap-change-rule/1"  # in the change stage's key: a new rule redoes the change layers


def month_code(month: str) -> int:
    """``YYYY-MM`` as the uint16 the change layer stores: (year - 2000) x 100 + month (2209 for
    2022-09; 0 = none)."""
    year, mon = int(month[:4]), int(month[5:7])
    if not 2000 <= year <= 2655:
        raise InputError(f"month {month}: the change layer stores months of 2000..2655")
    return (year - 2000) * 100 + mon


@dataclass(frozen=True)
class ChangeRule:
    """When a change counts (see the module docstring).

    Attributes:
        confirm_months: consecutive mapped months a new class must be seen to be confirmed (1: at
            once, the raw difference).
        confirm_confidence: confidence (percent) at which one month confirms; above 100: never.
        min_confidence: confidence (percent) below which a differing class is no evidence.
        min_patch_px: evidence pixels a patch (8-connected) needs; smaller patches are no evidence.
    """

    confirm_months: int = 2
    confirm_confidence: float = 101.0
    min_confidence: float = 0.0
    min_patch_px: int = 4

    def __post_init__(self):
        if not 1 <= self.confirm_months <= 12:
            raise InputError(f"change rule: confirm_months must be 1..12, not {self.confirm_months}")
        if not 0.0 <= self.min_confidence <= 100.0 or not 0.0 <= self.confirm_confidence <= 101.0:
            raise InputError("change rule: confidences are percent (0..100; confirm_confidence 101: never)")
        if not 1 <= self.min_patch_px <= 1000:
            raise InputError(f"change rule: min_patch_px must be 1..1000, not {self.min_patch_px}")

    @classmethod
    def raw(cls) -> "ChangeRule":
        """The raw monthly difference: every differing pixel is a confirmed change at once."""
        return cls(confirm_months=1, confirm_confidence=101.0, min_confidence=0.0, min_patch_px=1)


@dataclass(frozen=True)
class ChangeState:
    """A cell's change layer for one month; every array (h, w).

    Attributes:
        from_class: uint8 the class confirmed before this month (0: never mapped).
        to_class: uint8 the new class of a provisional or confirmed change (0: none).
        status: uint8 NONE, PROVISIONAL, CONFIRMED (confirmed this month), NO_DATA (never mapped).
        first_seen: uint16 :func:`month_code` of the month a change was first seen (0: none).
        months_seen: uint8 consecutive mapped months the change was seen (0: none).
    """

    from_class: np.ndarray
    to_class: np.ndarray
    status: np.ndarray
    first_seen: np.ndarray
    months_seen: np.ndarray

    @classmethod
    def start(cls, lulc: np.ndarray) -> "ChangeState":
        """The state before any change: each mapped pixel (class > 0) confirmed in its class."""
        zeros = np.zeros(lulc.shape, dtype=np.uint8)
        status = np.where(lulc > 0, NONE, NO_DATA).astype(np.uint8)
        return cls(lulc.astype(np.uint8), zeros, status, np.zeros(lulc.shape, dtype=np.uint16), zeros.copy())

    def confirmed_class(self) -> np.ndarray:
        """uint8 (h, w) the class each pixel is confirmed in after this month (0: never mapped)."""
        return np.where(self.status == CONFIRMED, self.to_class, self.from_class).astype(np.uint8)


def evidence_of_change(lulc: np.ndarray, confidence: np.ndarray, base: np.ndarray, rule: ChangeRule) -> np.ndarray:
    """bool (h, w): mapped pixels whose class differs from their confirmed class ``base`` (both
    > 0), with ``confidence`` (percent) >= ``rule.min_confidence``, in 8-connected patches of at
    least ``rule.min_patch_px`` such pixels."""
    evidence = (lulc > 0) & (base > 0) & (lulc != base) & (confidence >= rule.min_confidence)
    if rule.min_patch_px > 1 and evidence.any():
        labels, n = ndimage.label(evidence, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        big = sizes >= rule.min_patch_px
        big[0] = False
        evidence = big[labels]
    return evidence


def step(previous: ChangeState, lulc: np.ndarray, confidence: np.ndarray, month: str, rule: ChangeRule) -> ChangeState:
    """The change layer of ``month`` from last month's (``previous``), this month's LULC classes
    ``lulc`` (uint8 (h, w), 0 = not mapped) and their ``confidence`` (percent, (h, w)); see the
    module docstring."""
    base = previous.confirmed_class()
    mapped = lulc > 0
    base = np.where((base == 0) & mapped, lulc, base)  # first seen: confirmed in its class
    evidence = evidence_of_change(lulc, confidence, base, rule)
    pending = previous.status == PROVISIONAL
    again = evidence & pending & (previous.to_class == lulc)
    seen = np.where(evidence, np.where(again, previous.months_seen.astype(np.int32) + 1, 1), 0)
    confirmed = evidence & ((seen >= rule.confirm_months) | (confidence >= rule.confirm_confidence))
    carried = ~mapped & pending  # not mapped this month: a provisional change waits
    status = np.where(confirmed, CONFIRMED, np.where(evidence | carried, PROVISIONAL, NONE))
    status = np.where(base == 0, NO_DATA, status).astype(np.uint8)
    to_class = np.where(evidence, lulc, np.where(carried, previous.to_class, 0)).astype(np.uint8)
    first = np.where(again | carried, previous.first_seen, np.where(evidence, month_code(month), 0))
    seen = np.where(carried, previous.months_seen, seen)
    return ChangeState(base.astype(np.uint8), to_class, status, first.astype(np.uint16),
                       np.minimum(seen, 255).astype(np.uint8))
