"""Product writing: nationmap's cell COGs and national mosaic against GDAL's own COG driver.

Synthetic LULC-class and confidence layers over a 2 x 2 block of cells are written the way the
pipeline writes them (:mod:`nationmap.products.cog`: blocks into a staging raster, in memory at
these sizes, then the COG; :func:`nationmap.products.mosaic.build_mosaic` for the mosaic of the
cell COGs: a VRT over them copied by GDAL's COG driver with the cells' overviews). The
reference is ``gdal_translate -of COG`` of the same raster (the same pixels in an uncompressed tiled GeoTIFF, written beforehand), through GDAL's COG driver in the same process (rasterio's
``shutil.copy``, the call gdal_translate makes) with the same settings: DEFLATE, 512 px
tiles, overviews down to one tile, mode (classes) or average (confidence) overviews, one
thread. When a ``gdal_translate`` executable is on PATH it is timed too.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Result, fmt, main

SIZES = {"tiny": 600, "full": 6000}  # pixels per degree; 2 x 2 cells
CELLS = ("N35E138", "N35E139", "N36E138", "N36E139")
BLOCK = 2048


def layers():
    from nationmap.data.lulc import load_class_table
    from nationmap.products.layers import product_layers

    table = load_class_table()
    out = product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)
    return {"lulc": out["lulc"], "confidence": out["confidence"]}


def cell_block(product: str, seed: int, window, codes: np.ndarray) -> np.ndarray:
    """Plausible product pixels: classes in patches of 40-odd px with 3 % salt; smooth confidence."""
    rng = np.random.default_rng([seed, int(window.row_off), int(window.col_off)])
    h, w = int(window.height), int(window.width)
    coarse = rng.integers(0, len(codes), size=(h // 40 + 2, w // 40 + 2))
    classes = np.repeat(np.repeat(coarse, 40, 0), 40, 1)[:h, :w]
    if product == "lulc":
        salt = rng.random((h, w)) < 0.03
        return np.where(salt, codes[rng.integers(0, len(codes), (h, w))], codes[classes]).astype(np.uint8)
    return np.clip(55 + 5 * classes + rng.normal(0, 6, (h, w)), 20, 100).astype(np.uint8)


def cell_blocks(product: str, ppd: int, seed: int, codes) -> list:
    """(window, pixels) of a cell in ``combine_cell``'s block order (made before the timing)."""
    from rasterio.windows import Window

    return [(win, cell_block(product, seed, win, codes)) for r in range(0, ppd, BLOCK) for c in range(0, ppd, BLOCK)
            for win in [Window(c, r, min(BLOCK, ppd - c), min(BLOCK, ppd - r))]]


def write_cell_ours(dst: Path, blocks: list, layer, cell, ppd: int) -> float:
    """What ``combine_cell`` does for one product: blocks -> staging raster -> COG; seconds."""
    from nationmap.products.cog import open_staging, part_path, translate_to_cog

    t0 = time.perf_counter()
    staging = open_staging(part_path(dst.with_name("staging-" + dst.name)), layer, ppd, ppd, "EPSG:4326",
                           cell.transform(ppd))
    for win, data in blocks:
        staging.write(data, 1, window=win)
    translate_to_cog(staging, dst, layer, {"CELL": cell.name, "PRODUCT": dst.stem})
    return time.perf_counter() - t0


def write_plain(dst: Path, src_cog: Path) -> None:
    """The reference's input: the same pixels as an uncompressed tiled GeoTIFF (not timed)."""
    import rasterio

    with rasterio.open(src_cog) as src:
        profile = {**src.profile, "driver": "GTiff", "compress": None, "tiled": True, "blockxsize": 512, "blockysize": 512}
        profile.pop("photometric", None)
        with rasterio.open(dst, "w", **profile) as out:
            for _, win in src.block_windows(1):
                out.write(src.read(1, window=win), 1, window=win)
            cmap = src.colormap(1) if src.colorinterp and src.colorinterp[0].name == "palette" else None
            if cmap:
                out.write_colormap(1, cmap)


def gdal_cog(src: Path, dst: Path, layer) -> float:
    """``gdal_translate -of COG`` through GDAL's COG driver in process; seconds."""
    import rasterio
    import rasterio.shutil

    t0 = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="1", GDAL_TIFF_INTERNAL_MASK="TRUE"):
        rasterio.shutil.copy(src, dst, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512,
                             OVERVIEW_RESAMPLING=layer.overview_resampling.upper(), NUM_THREADS=1)
    return time.perf_counter() - t0


def gdal_translate_cli(src: Path, dst: Path, layer) -> float | None:
    exe = shutil.which("gdal_translate")
    if exe is None:
        return None
    t0 = time.perf_counter()
    subprocess.run([exe, "-q", "-of", "COG", "-co", "COMPRESS=DEFLATE", "-co", "BLOCKSIZE=512", "-co",
                    f"OVERVIEW_RESAMPLING={layer.overview_resampling.upper()}", str(src), str(dst)], check=True)
    return time.perf_counter() - t0


def run(size: str, workdir: Path) -> Result:
    from nationmap.data.grid import parse_cell
    from nationmap.products.cog import is_valid_cog
    from nationmap.products.mosaic import build_mosaic

    ppd = SIZES[size]
    root = workdir / f"products-{size}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    res = Result("products", "Product writing: cell COGs and national mosaic vs GDAL's COG driver")
    cells = [parse_cell(c) for c in CELLS]
    totals = {"ours": 0.0, "gdal": 0.0}
    for product, layer in layers().items():
        codes = np.asarray([c.code for c in layer.classes] or list(range(1, 10)), dtype=np.uint8)
        cell_files, t_cells, t_ref, size_ours, size_ref = {}, 0.0, 0.0, 0, 0
        for i, cell in enumerate(cells):
            dst = root / f"{cell.name}_{product}.tif"
            t_cells += write_cell_ours(dst, cell_blocks(product, ppd, i, codes), layer, cell, ppd)
            cell_files[cell] = dst
            plain = root / f"plain-{cell.name}_{product}.tif"
            write_plain(plain, dst)
            ref = root / f"gdal-{cell.name}_{product}.tif"
            t_ref += gdal_cog(plain, ref, layer)
            size_ours += dst.stat().st_size
            size_ref += ref.stat().st_size
            assert is_valid_cog(dst) and is_valid_cog(ref)
            plain.unlink()
            ref.unlink()
        mosaic = root / f"mosaic_{product}.tif"
        t0 = time.perf_counter()
        build_mosaic(cell_files, layer, ppd, mosaic, {"PRODUCT": product})
        t_mosaic = time.perf_counter() - t0
        plain = root / f"plain-mosaic_{product}.tif"
        write_plain(plain, mosaic)
        ref = root / f"gdal-mosaic_{product}.tif"
        t_mref = gdal_cog(plain, ref, layer)
        t_cli = gdal_translate_cli(plain, root / f"cli-mosaic_{product}.tif", layer)
        assert is_valid_cog(mosaic) and is_valid_cog(ref)
        for what, ours, ref_s, so, sr, px in (
            (f"{product}: 4 cell COGs", t_cells, t_ref, size_ours, size_ref, 4 * ppd * ppd),
            (f"{product}: mosaic COG", t_mosaic, t_mref, mosaic.stat().st_size, ref.stat().st_size, 4 * ppd * ppd),
        ):
            res.rows.append({"what": what, "Mpx": fmt(px / 1e6), "nationmap (s)": fmt(ours), "GDAL COG (s)": fmt(ref_s),
                             "time vs GDAL": f"{ours / ref_s:.2f}", "nationmap (MB)": fmt(so / 1e6),
                             "GDAL (MB)": fmt(sr / 1e6), "size vs GDAL": f"{so / sr:.2f}"})
            totals["ours"] += ours
            totals["gdal"] += ref_s
        if t_cli is not None:
            res.notes.append(f"{product} mosaic with the gdal_translate executable: {t_cli:.2f} s")
    res.ratios = {"write_time_vs_gdal": totals["ours"] / totals["gdal"]}
    res.data.update({"pixels_per_degree": ppd, "cells": len(cells), **totals})
    res.notes.insert(0, f"2 x 2 cells at {ppd} px/deg ({ppd:,} x {ppd:,} px each; mosaic {2 * ppd:,} x {2 * ppd:,} px). "
                        "nationmap's time includes writing the blocks, made beforehand, to the staging raster (in memory "
                        "at this size) for the cells, and reading the cell COGs for the mosaic; GDAL's starts from "
                        "the uncompressed raster.")
    shutil.rmtree(root, ignore_errors=True)
    return res


if __name__ == "__main__":
    main(run, __doc__)
