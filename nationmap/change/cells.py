"""One cell's change layers: this month's LULC and confidence COGs, and last month's change state.

The state of last month is its ``change`` (status) and ``change_classes`` (from, to, first seen,
months seen) COGs; a previous month published before the change layers existed gives its
``lulc`` COG instead (every mapped pixel confirmed in its class), and a cell the previous month
did not map starts from nothing (its pixels confirmed in their first class). The rule
(:func:`nationmap.change.rule.step`) runs over strips of rows, each read with ``min_patch_px - 1``
rows more above and below: a patch of evidence in the strip that reaches beyond that margin has
at least one pixel in each of its rows plus one in the strip, ``min_patch_px`` inside the window,
so the minimum mapping unit is decided exactly as on the whole cell, in bounded memory (a 12,000
px cell in strips of 1,024 rows plus at most twice the largest unit, 1,000 px, of margin).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from nationmap.change.rule import ChangeRule, ChangeState, step
from nationmap.products.cog import discard_staging, open_staging, translate_to_cog
from nationmap.products.layers import Layer

STRIP_ROWS = 1024


@dataclass(frozen=True)
class ChangeCellJob:
    """One cell's change layers to write (paths absolute).

    Attributes:
        cell: the cell's name; month: ``YYYY-MM``.
        lulc / confidence: this month's COGs of the cell.
        previous: last month's COGs of the cell by product (``change`` and ``change_classes``,
            else ``lulc``; empty: no previous map of the cell).
        layers: the ``change`` and ``change_classes`` declarations.
        out: product -> the COG to write.
        rule: the change rule.
        tags: metadata tags of the COGs.
    """

    cell: str
    month: str
    lulc: Path
    confidence: Path
    previous: dict[str, Path]
    layers: dict[str, Layer]
    out: dict[str, Path]
    rule: ChangeRule
    tags: dict


def _previous_state(previous: dict, window: Window, shape: tuple[int, int]) -> ChangeState:
    """Last month's state over ``window`` from its open datasets (see the module docstring)."""
    if "change" in previous and "change_classes" in previous:
        status = previous["change"].read(1, window=window)
        bands = previous["change_classes"].read(window=window)
        return ChangeState(bands[0].astype(np.uint8), bands[1].astype(np.uint8), status, bands[2],
                           np.minimum(bands[3], 255).astype(np.uint8))
    if "lulc" in previous:
        return ChangeState.start(previous["lulc"].read(1, window=window))
    return ChangeState.start(np.zeros(shape, dtype=np.uint8))


def change_cell(job: ChangeCellJob) -> dict[str, Path]:
    """Write the cell's ``change`` and ``change_classes`` COGs; product -> path."""
    halo = job.rule.min_patch_px - 1
    with ExitStack() as stack:
        lulc = stack.enter_context(rasterio.open(job.lulc))
        confidence = stack.enter_context(rasterio.open(job.confidence))
        previous = {p: stack.enter_context(rasterio.open(path)) for p, path in job.previous.items()}
        h, w = lulc.height, lulc.width
        stagings = {p: open_staging(job.out[p], layer, w, h, lulc.crs, lulc.transform)
                    for p, layer in job.layers.items()}
        stack.callback(lambda: [discard_staging(s) for s in stagings.values() if not s.closed])
        for top in range(0, h, STRIP_ROWS):
            rows = min(STRIP_ROWS, h - top)
            lo, hi = max(0, top - halo), min(h, top + rows + halo)
            window = Window(0, lo, w, hi - lo)
            conf = confidence.read(1, window=window).astype(np.float32)
            conf[conf > 100] = 0.0  # no data (255): no confidence
            state = step(_previous_state(previous, window, (hi - lo, w)), lulc.read(1, window=window), conf,
                         job.month, job.rule)
            keep, out = slice(top - lo, top - lo + rows), Window(0, top, w, rows)
            stagings["change"].write(state.status[keep][None], window=out)
            classes = np.stack([state.from_class, state.to_class, state.first_seen, state.months_seen])
            stagings["change_classes"].write(classes[:, keep].astype(np.uint16), window=out)
        return {p: translate_to_cog(stagings[p], job.out[p], job.layers[p], {**job.tags, "PRODUCT": p})
                for p in job.layers}
