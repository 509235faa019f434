"""Data preparation: ``nationmap data prepare`` patches per second against a bare rasterio loop.

The benchmark month (:mod:`benchmarks.infer_overhead`'s synthetic world) is cut into 256 x 256
finetuning patches, in process (``--executor serial``) and on embedded Ray (start-up included).
The reference reads exactly the kept patches' windows from the same scenes with a bare
``rasterio`` windowed-read loop (one open per scene, ``read(1, window=...)``), in the same
process: the I/O floor of any patch extraction. Preparation also samples anchors, calibrates
DN to dB, reprojects the LULC label of every patch and writes compressed parquet shards.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from benchmarks.common import Result, best_of, fmt, main

SIZES = {"tiny": dict(patch=64, anchors=4000), "full": dict(patch=256, anchors=20000)}


def prepare_config(size: str):
    from nationmap.data.prepare import PrepareConfig

    s = SIZES[size]
    return PrepareConfig(pretrain_months=(), finetune_months=("2022-09",), n_anchors=s["anchors"], patch_size=s["patch"],
                         seed=0)


def bare_reads(windows: dict[str, list[tuple[int, int]]], patch: int) -> int:
    import rasterio
    from rasterio.windows import Window

    n = 0
    for path, offsets in windows.items():
        with rasterio.open(path) as src:
            for row, col in offsets:
                src.read(1, window=Window(col, row, patch, patch))
                n += 1
    return n


def run(size: str, workdir: Path) -> Result:
    import pandas as pd

    from benchmarks.infer_overhead import CELL, make_world
    from nationmap.data.catalog import read_catalog
    from nationmap.data.prepare import prepare_dataset
    from nationmap.data.regions import resolve_region

    workdir.mkdir(parents=True, exist_ok=True)
    world, catalog, lulc_dir = make_world(workdir, size)
    region = resolve_region(CELL)
    cfg = prepare_config(size)
    times = {}
    for executor in ("serial", "ray"):
        out = workdir / f"prep-{executor}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        report = prepare_dataset(catalog, lulc_dir, out, cfg, region, executor=executor)
        times[executor] = time.perf_counter() - t0
    index = pd.read_parquet(workdir / "prep-serial" / "index.parquet")
    paths = dict(zip(read_catalog(catalog).id, read_catalog(catalog).path))
    windows: dict[str, list] = {}
    for r in index.itertuples():
        windows.setdefault(paths[r.scene_id], []).append((int(r.row_off), int(r.col_off)))
    n = len(index)
    bare_reads(windows, cfg.patch_size)  # warm the page cache as prepare found it
    t_bare = best_of(lambda: bare_reads(windows, cfg.patch_size))
    candidates = sum(s["candidates"] for s in report["scenes"])
    res = Result("data_prep", "Data preparation: nationmap data prepare vs a bare rasterio windowed-read loop")
    res.rows = [
        {"what": "bare rasterio windowed reads of the kept patches", "seconds": fmt(t_bare), "patches/s": fmt(n / t_bare),
         "vs bare": "1.00"},
        {"what": "nationmap data prepare --executor serial", "seconds": fmt(times["serial"]),
         "patches/s": fmt(n / times["serial"]), "vs bare": f"{t_bare / times['serial']:.3f}"},
        {"what": "nationmap data prepare (Ray, start-up included)", "seconds": fmt(times["ray"]),
         "patches/s": fmt(n / times["ray"]), "vs bare": f"{t_bare / times['ray']:.3f}"},
    ]
    res.ratios = {"prepare_serial_vs_bare": t_bare / times["serial"], "prepare_ray_vs_bare": t_bare / times["ray"]}
    res.data = {"patches": n, "candidates": candidates, "scenes": len(windows), "bare_s": t_bare, **{f"{k}_s": v for k, v in times.items()}}
    res.notes = [f"{n} patches kept of {candidates} candidates in {len(report['scenes'])} scenes, {cfg.patch_size} px, "
                 f"{cfg.n_anchors} anchors."]
    for executor in ("serial", "ray"):
        shutil.rmtree(workdir / f"prep-{executor}", ignore_errors=True)
    return res


if __name__ == "__main__":
    main(run, __doc__)
