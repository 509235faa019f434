"""Agreement of a run's cell products with reference LULC tiles on the same grid.

Used by the demo against the synthetic truth (and usable against JAXA's tiles for a real
month): every written cell's ``lulc`` layer is compared pixel for pixel with the reference tile
remapped to the model's scheme (9 classes), and ``water`` with water / non-water. A product
that does not line up with its reference tile (grid, size) is an error, not a resampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from nationmap.data.lulc import find_lulc_tiles, load_class_table
from nationmap.errors import InputError
from nationmap.files import atomic_file, write_json
from nationmap.records import RunManifest
from nationmap.metrics import ConfusionMatrix, render_class_table, render_water_table


def map_agreement(run_dir: str | Path, reference_dir: str | Path, write: bool = True) -> dict:
    """Per-class IoU / accuracy (LULC) and water IoU / precision / recall of a run's products."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise InputError(f"{run_dir}: no run manifest (not an inference run directory)")
    manifest = RunManifest.read(run_dir / "manifest.json")
    tiles = find_lulc_tiles(reference_dir)
    table = load_class_table()
    lulc9, water = table.scheme("lulc9"), table.scheme("water")
    cm_lulc, cm_water = ConfusionMatrix(len(lulc9.classes)), ConfusionMatrix(2)
    cells = []
    for rec in manifest.ok_cells():
        if rec.cell not in tiles:
            continue
        with rasterio.open(tiles[rec.cell]) as ref:
            truth = ref.read(1)
            grid = (ref.transform, ref.shape, ref.crs)
        for product, entry in rec.files.items():
            if product not in ("lulc", "water"):
                continue
            with rasterio.open(run_dir / "cells" / rec.cell / entry.path) as ds:
                if (ds.transform, ds.shape, ds.crs) != grid:
                    raise InputError(f"{entry.path} does not line up with {tiles[rec.cell].name}")
                pred = ds.read(1)
            scheme, cm, nodata = (lulc9, cm_lulc, 0) if product == "lulc" else (water, cm_water, 255)
            target = scheme.to_targets(truth)  # class index, 255 = no data
            index = np.full(256, 255, dtype=np.uint8)
            for i, code in enumerate(scheme.codes):
                index[code] = i
            valid = (pred != nodata) & (target != 255)
            cm.update(index[pred[valid]], target[valid])
        cells.append(rec.cell)
    if not cells:
        raise InputError(f"{run_dir}: no written cell has a reference tile in {reference_dir}")
    result = {"run": str(run_dir), "reference": str(reference_dir), "cells": cells}
    text = ""
    if cm_lulc.total:
        scores = cm_lulc.scores(lulc9.names)
        result["lulc"] = {**scores.to_dict(), "pixels": cm_lulc.total, "confusion_matrix": cm_lulc.counts.tolist()}
        text += render_class_table({"map vs reference": scores}, title="LULC map agreement, per-class IoU")
        text += "\n" + render_class_table({"map vs reference": scores}, metric="accuracy", title="Per-class accuracy")
    if cm_water.total:
        ws = cm_water.binary_scores()
        result["water"] = {**ws.to_dict(), "pixels": cm_water.total}
        text += "\n" + render_water_table({"map vs reference": ws}, title="Water map agreement, %")
    result["table"] = text
    if write:
        write_json(run_dir / "agreement.json", {k: v for k, v in result.items() if k != "table"})
        with atomic_file(run_dir / "agreement.md") as f:
            f.write(text)
    return result
