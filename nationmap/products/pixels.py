"""What each product is, pixel by pixel, for one block of a cell: the pure functions the product
declarations (:mod:`nationmap.products.layers`) name.

:mod:`nationmap.products.cells` sums the month's acquisitions over one block of a cell's grid
(h x w px) into a :class:`CellBlock`: the validity-weighted mean class probabilities, how many
acquisitions counted, the no-data reason and the acquisition that decided each pixel. Every
product is then one function ``(block, nodata) -> array`` of that block: (h, w) for a one-band
product, (bands, h, w) for a multi-band one.

No-data reasons (:data:`REASONS`, one code per pixel, larger codes win where acquisitions
disagree, so a pixel seen only in layover is "layover", not "not observed"):

    0 mapped            at least ``min_count`` acquisitions counted: the pixel has a class
    1 outside region    outside the region's own area (a bbox or GeoJSON region cuts cells)
    2 not observed      no acquisition of the month covered the pixel with data
    3 invalid input     covered, but the values were not finite or outside the physical range
    4 radar shadow      the acquisitions that covered it saw it in radar shadow
    5 layover           ... in layover
    6 low coverage      fewer than ``min_count`` acquisitions counted (``min_count`` > 1)

The scene rasters carry the same codes per acquisition pixel (0 valid, 2-5 as above).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAPPED, OUTSIDE, NOT_OBSERVED, INVALID, SHADOW, LAYOVER, LOW_COVERAGE = range(7)
REASONS = {
    MAPPED: ("mapped", "#1b9e77"),
    OUTSIDE: ("outside the region", "#bdbdbd"),
    NOT_OBSERVED: ("not observed this month", "#6a6a6a"),
    INVALID: ("invalid input values", "#e7298a"),
    SHADOW: ("radar shadow", "#3f007d"),
    LAYOVER: ("layover", "#d95f02"),
    LOW_COVERAGE: ("low coverage", "#e6ab02"),
}
"""code -> (name, colour) of the no-data reason layer."""
NO_SOURCE = 65535
"""The ``source`` of a pixel no acquisition decided (uint16: a month holds at most 65,535)."""


def quantise(mean: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """(K, h, w) float32 probabilities -> uint8 x 255, rounded, 0 where not ``mapped``: the
    published probabilities, and what the class is the argmax of."""
    q = np.rint(mean * np.float32(255.0)).astype(np.uint8)
    q *= mapped
    return q


@dataclass(frozen=True)
class CellBlock:
    """The month at one block of a cell.

    Attributes:
        mean: (K, h, w) float32 validity-weighted mean probabilities of the counted acquisitions
            (LULC classes in ``lulc_codes`` order, then water); 0 where none counted.
        quantised: (K_lulc, h, w) uint8 the LULC probabilities x 255 as published
            (:func:`quantise`); the class is their argmax (the first on a tie).
        count: (h, w) uint16 acquisitions counted.
        reason: (h, w) uint8 no-data reason (module docstring); 0 where the pixel has a class.
        source: (h, w) uint16 index in the month's acquisition table of the acquisition that
            decided the pixel (:data:`NO_SOURCE` where the pixel has no class).
        day: (h, w) int16 that acquisition's day, days since the month's first day (-1: none).
        lulc_codes: the LULC class codes of the first bands of ``mean`` (empty: no LULC model).
        water: whether the last band of ``mean`` is the water probability.
        water_threshold: water probability from which a pixel is water.
    """

    mean: np.ndarray
    quantised: np.ndarray
    count: np.ndarray
    reason: np.ndarray
    source: np.ndarray
    day: np.ndarray
    lulc_codes: tuple[int, ...]
    water: bool
    water_threshold: float

    @property
    def mapped(self) -> np.ndarray:
        return self.reason == MAPPED


def lulc_class(block: CellBlock, nodata: int) -> np.ndarray:
    """(h, w) uint8 LULC code: the argmax of the published probabilities (first class on a tie)."""
    codes = np.asarray(block.lulc_codes, dtype=np.uint8)
    return np.where(block.mapped, codes[block.quantised.argmax(0)], nodata).astype(np.uint8)


def water_class(block: CellBlock, nodata: int) -> np.ndarray:
    """(h, w) uint8: 1 water, 0 land, ``nodata`` where not mapped."""
    wet = block.mean[len(block.lulc_codes)] >= block.water_threshold
    return np.where(block.mapped, wet, nodata).astype(np.uint8)


def confidence_percent(block: CellBlock, nodata: int) -> np.ndarray:
    """(h, w) uint8 percent: the mean probability of the chosen LULC class."""
    top = block.mean[: len(block.lulc_codes)].max(0)
    return np.where(block.mapped, np.rint(100.0 * top), nodata).astype(np.uint8)


def class_probabilities(block: CellBlock, nodata: int | None) -> np.ndarray:
    """(K_lulc, h, w) uint8 probability of each LULC class x 255 (they sum to 255 within
    rounding, at most K/2 off); all 0 where the pixel is not mapped (the reason layer says why)."""
    return block.quantised


def no_data_reason(block: CellBlock, nodata: int | None) -> np.ndarray:
    return block.reason.astype(np.uint8)


def source_index(block: CellBlock, nodata: int) -> np.ndarray:
    """(h, w) uint16 acquisition index (``nodata`` where no acquisition decided the pixel)."""
    return np.where(block.source != NO_SOURCE, block.source, nodata).astype(np.uint16)


def source_day(block: CellBlock, nodata: int) -> np.ndarray:
    """(h, w) uint8 days since the month's first day of the deciding acquisition."""
    return np.where(block.day >= 0, block.day, nodata).astype(np.uint8)


def acquisition_count(block: CellBlock, nodata: int | None) -> np.ndarray:
    """(h, w) uint8 acquisitions counted (255 means 255 or more)."""
    return np.minimum(block.count, 255).astype(np.uint8)
