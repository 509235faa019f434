"""Files the web map's tests add to a run of :func:`benchmarks.serve.write_products_root`: the
class probabilities as nationmap publishes them (a COG per cell and the national VRT over them,
written by nationmap's own writers) and the month's acquisition table."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import shapely
from affine import Affine

from benchmarks.serve import CELLS
from nationmap.data.grid import parse_cell
from nationmap.data.lulc import ClassInfo

PROBABILITIES = (200, 40, 15)  # every pixel's probabilities x 255, band by band: the first class wins


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _register(run: Path, group: str, key: str, path: Path) -> None:
    manifest = run / "manifest.json"
    data = json.loads(manifest.read_text())
    data["products"][group][key] = {"path": path.relative_to(run).as_posix(), "sha256": _sha256(path)}
    manifest.write_text(json.dumps(data))


def add_probabilities(run: Path, names: tuple[str, ...] = ("forest", "cropland", "water"), ppd: int = 120) -> Path:
    """The ``probabilities`` layer of a class scheme named ``names`` (one band ``p_<name>`` each),
    as inference publishes it: a COG per cell under ``cells/`` and the national VRT over them
    under ``mosaic/`` (declared VRT only), listed in the manifest; returns the VRT."""
    from nationmap.products.cog import open_staging, part_path, translate_to_cog
    from nationmap.products.layers import product_layers
    from nationmap.products.mosaic import build_mosaic

    classes = tuple(ClassInfo(i + 1, name, f"#{40 * i:02x}8040") for i, name in enumerate(names))
    layer = product_layers(classes, (), probabilities=True)["probabilities"]
    values = np.asarray(PROBABILITIES[: len(names)] + (0,) * (len(names) - len(PROBABILITIES)), dtype=np.uint8)
    stem = f"{run.parent.parent.name}_{run.parent.name}"
    files = {}
    for name in CELLS:
        cell = parse_cell(name)
        dst = run / "cells" / name / f"{name}_{run.parent.name}_probabilities.tif"
        dst.parent.mkdir(parents=True, exist_ok=True)
        transform = Affine(1 / ppd, 0, cell.lon, 0, -1 / ppd, cell.lat + 1)
        staging = open_staging(part_path(dst), layer, ppd, ppd, "EPSG:4326", transform)
        staging.write(np.broadcast_to(values[:, None, None], (len(names), ppd, ppd)))
        translate_to_cog(staging, dst, layer, {"PRODUCT": "probabilities"})
        files[cell] = dst
    vrt = build_mosaic(files, layer, ppd, run / "mosaic" / f"{stem}_probabilities.tif").vrt
    _register(run, "vrt", "probabilities", vrt)
    return vrt


def add_acquisitions(run: Path, count: int = 8) -> Path:
    """The month's acquisition table (``count`` acquisitions, ``ALOS2<i>``, one a day from the
    month's first), written by nationmap's writer and listed in the manifest; returns its CSV."""
    from nationmap.products.acquisitions import Acquisition, write_acquisition_table

    month = run.parent.name
    first = dt.datetime.fromisoformat(f"{month}-01T02:30:00+00:00")
    footprint = shapely.box(138, 35, 140, 37)
    rows = [Acquisition(index=i, id=f"ALOS2{i:06d}", datetime=first + dt.timedelta(days=i), day=i, kind="scene",
                        polarisation="HH", mode="FBD", level="2.1", look_side="right", pass_direction="ascending",
                        orbit=40000 + i, frame=700, footprint=footprint, path=f"raw/scene{i}.zip", sha256=None,
                        size_bytes=None) for i in range(count)]
    csv, _ = write_acquisition_table(rows, run / "tables" / f"{run.parent.parent.name}_{month}_acquisitions")
    _register(run, "tables", "acquisitions_csv", csv)
    return csv
