"""The national layer costs what the land costs: the same cells laid out sparsely and densely.

16 LULC cell COGs at full resolution (12,000 px/degree, 144 Mpx each; classes in patches of
40-odd px with 3 % salt, as ``benchmarks/products.py``) are made once, by the pipeline's cell
writer. The national layer (:func:`nationmap.products.mosaic.build_mosaic`: a VRT over the cells
and a sparse COG copied from it) is then built for two layouts of the same cells:

- dense: a 4 x 4 block (the box is the cells);
- sparse: 16 of the ``japan`` region's cells spread over its whole box (32 x 22 degrees,
  about 100 Gpx at this resolution, as a national month's box).

Time, bytes, the share of tiles left out, and the overviews GDAL reports (``gdalinfo`` when
Debian's gdal-bin is installed, else rasterio's GDAL) are recorded; the ratios are sparse / dense.
The cell COGs are hard links of the 16 made once, renamed onto each layout's cells.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Result, fmt, main

SIZES = {"tiny": 600, "full": 12_000}  # pixels per degree
CELLS = 16


def lulc_layer():
    from nationmap.data.lulc import load_class_table
    from nationmap.products.layers import product_layers

    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)["lulc"]


def make_cells(root: Path, ppd: int, layer) -> list[Path]:
    """16 distinct cell COGs (made once under ``root``, reused)."""
    from benchmarks.products import cell_blocks, write_cell_ours
    from nationmap.data.grid import Cell

    codes = np.asarray([c.code for c in layer.classes], dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(CELLS):
        path = root / f"source-{i:02d}.tif"
        if not path.exists():
            write_cell_ours(path, cell_blocks("lulc", ppd, i, codes), layer, Cell(0, i), ppd)
        paths.append(path)
    return paths


def layouts() -> dict:
    from nationmap.data.grid import Cell
    from nationmap.data.regions import resolve_region

    japan = resolve_region("japan").cells
    spread = [japan[round(i * (len(japan) - 1) / (CELLS - 1))] for i in range(CELLS)]
    box = {Cell(lat, lon): None for lat in range(min(c.lat for c in japan), max(c.lat for c in japan) + 1)
           for lon in range(min(c.lon for c in japan), max(c.lon for c in japan) + 1)}
    dense = [Cell(36 + i // 4, 138 + i % 4) for i in range(CELLS)]
    return {"dense": (dense, {}), "sparse": (spread, box)}


def gdal_overviews(path: Path) -> str:
    """The overview sizes of band 1 as gdalinfo prints them (or rasterio's GDAL when absent)."""
    exe = shutil.which("gdalinfo")
    if exe:
        out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=True).stdout
        bands = sum(line.startswith("Band ") for line in out.splitlines())
        ovr = next((line.strip() for line in out.splitlines() if line.strip().startswith("Overviews:")), "none")
        return f"gdalinfo: {bands} band, {ovr}"
    import rasterio

    with rasterio.open(path) as ds:
        return f"rasterio (GDAL {rasterio.__gdal_version__}): {ds.count} band, overview factors {ds.overviews(1)}"


def build(name: str, cells: list, box: dict, sources: list[Path], ppd: int, layer, root: Path) -> dict:
    from nationmap.products.mosaic import build_mosaic, sparse_fraction

    run = root / name
    shutil.rmtree(run, ignore_errors=True)
    files = dict(box)
    for cell, src in zip(cells, sources):
        files[cell] = run / "cells" / cell.name / f"{cell.name}_lulc.tif"
        files[cell].parent.mkdir(parents=True)
        os.link(src, files[cell])
    t0 = time.perf_counter()
    national = build_mosaic(files, layer, ppd, run / "mosaic" / f"{name}_lulc.tif", {"LAYOUT": name})
    seconds = time.perf_counter() - t0
    return {"layout": name, "box_cells": len(files), "box_gpx": national.width * national.height / 1e9,
            "seconds": seconds, "cog_bytes": national.cog.stat().st_size, "vrt_bytes": national.vrt.stat().st_size,
            "tiles_absent": sparse_fraction(national.cog), "vrt_overviews": gdal_overviews(national.vrt),
            "cog_overviews": gdal_overviews(national.cog)}


def run(size: str, workdir: Path) -> Result:
    from nationmap.products.cog import is_valid_cog

    ppd = SIZES[size]
    root = workdir / f"national-{size}"
    root.mkdir(parents=True, exist_ok=True)
    layer = lulc_layer()
    res = Result("national_layer", "National layer: the same cells laid out sparsely and densely")
    t0 = time.perf_counter()
    sources = make_cells(root / "sources", ppd, layer)
    made = time.perf_counter() - t0
    out = {name: build(name, cells, box, sources, ppd, layer, root) for name, (cells, box) in layouts().items()}
    data_px = CELLS * ppd * ppd
    for r in out.values():
        res.rows.append({"layout": r["layout"], "box (cells)": r["box_cells"], "box (Gpx)": fmt(r["box_gpx"]),
                         "cells with data": CELLS, "time (s)": fmt(r["seconds"]),
                         "Mpx/s of data": fmt(data_px / 1e6 / r["seconds"]), "COG (MB)": fmt(r["cog_bytes"] / 1e6),
                         "VRT (kB)": fmt(r["vrt_bytes"] / 1e3), "tiles left out": f"{100 * r['tiles_absent']:.1f} %"})
        res.notes.append(f"{r['layout']}: VRT {r['vrt_overviews']}; COG {r['cog_overviews']}")
        assert is_valid_cog(root / r["layout"] / "mosaic" / f"{r['layout']}_lulc.tif")
    sparse, dense = out["sparse"], out["dense"]
    res.ratios = {"sparse_vs_dense_time": sparse["seconds"] / dense["seconds"],
                  "sparse_vs_dense_bytes": sparse["cog_bytes"] / dense["cog_bytes"]}
    res.notes.insert(0, f"{CELLS} cells at {ppd:,} px/degree ({data_px / 1e9:.2f} Gpx of data; made once in {made:.0f} s, "
                        f"not timed). Sparse: {CELLS} of the japan region's cells over its box of "
                        f"{sparse['box_cells']} cells ({sparse['box_gpx']:.1f} Gpx), "
                        f"{sparse['box_gpx'] / (data_px / 1e9):.0f}x the data. Both COGs pass rio-cogeo's validation.")
    res.data = {"pixels_per_degree": ppd, "cells": CELLS, "layouts": out,
                "mosaic_s_per_gpx": dense["seconds"] / (data_px / 1e9),
                "mosaic_s_per_box_gpx_empty": max(0.0, sparse["seconds"] - dense["seconds"]) / max(
                    1e-9, sparse["box_gpx"] - dense["box_gpx"])}
    for name in out:
        shutil.rmtree(root / name, ignore_errors=True)
    return res


if __name__ == "__main__":
    main(run, __doc__)
