"""Data preparation: ``nationmap data prepare`` patches per second against a bare rasterio loop.

1. **Patches of the paper's size.** The benchmark month (:mod:`benchmarks.infer_overhead`'s
   synthetic world: four 2,560 px scenes at 30 m) is cut into 256 x 256 finetuning patches, in
   process (``--executor serial``) and on embedded Ray (start-up included).
2. **National.** ``nationmap data prepare --region japan`` over three months of the synthetic
   Japan at reduced resolution (LULC at 1/600 degree, scenes at 150 m; 2022-09 finetuning,
   2022-10 and 2022-11 pretraining, the command's defaults), 128 px patches (a 150 m scene is
   400 x 333 px), as a child process on embedded Ray; then the same in process (serial) under
   cProfile, whose time is split into the steps of a patch (where the time goes).

The reference of both reads exactly the kept patches' windows from the same scenes with a bare
``rasterio`` windowed-read loop (one open per scene, ``read(1, window=...)``), in the same
process, after a first pass warmed the page cache: the I/O floor of any patch extraction.
Preparation also samples anchors, calibrates DN to dB, reprojects the LULC label of every patch
(GDAL warp), keeps statistics and writes zstd-compressed parquet shards. The paper's 1.96 M
patches are projected from 1.'s seconds per 256 px patch on one core.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import shutil
import time
from pathlib import Path

from benchmarks.common import Result, best_of, fmt, main, run_driver, synth_world

SIZES = {"tiny": dict(patch=64, anchors=4000), "full": dict(patch=256, anchors=20_000)}
# the national part: region, LULC px/degree, scene pixel (m), patch (px), anchors
NATIONAL = {"tiny": dict(region="N33E131,N35E135", ppd=120, scene_m=1000.0, patch=16, anchors=4000, executor="serial"),
            "full": dict(region="japan", ppd=600, scene_m=150.0, patch=128, anchors=300_000, executor="ray")}
MONTHS = ("2022-09", "2022-10", "2022-11")  # finetuning, then the two pretraining months (the CLI's defaults)
PAPER_PATCHES = 1_960_000
# where a patch's time goes: (step, file, function) of the profile
STEPS = (("label: LULC warped onto the scene grid by strips (GDAL)", "prepare.py", "patch"),
         ("SAR window read + DN -> dB", "sar.py", "read"),
         ("shards written (parquet, zstd)", "prepare.py", "write_shards"),
         ("scene opened and checked", "sar.py", "__init__"),
         ("anchors -> candidate patches", "prepare.py", "candidate_patches"),
         ("anchors sampled over the LULC tiles", "anchors.py", "sample_anchors"),
         ("catalog read and filtered", "catalog.py", "filter_catalog"))


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


def kept_windows(dataset: Path, catalog: Path) -> dict[str, list[tuple[int, int]]]:
    """Scene path -> (row, col) offsets of the dataset's kept patches."""
    import pandas as pd

    from nationmap.data.catalog import read_catalog

    index = pd.read_parquet(dataset / "index.parquet", columns=["scene_id", "row_off", "col_off"])
    cat = read_catalog(catalog)
    paths = dict(zip(cat.id, cat.path))
    windows: dict[str, list] = {}
    for r in index.itertuples():
        windows.setdefault(paths[r.scene_id], []).append((int(r.row_off), int(r.col_off)))
    return windows


def profile_steps(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each of :data:`STEPS` in a profile (summed over its calls)."""
    out = {name: 0.0 for name, _, _ in STEPS}
    for (filename, _, func), (_, _, _, cumulative, _) in stats.stats.items():
        for name, file, fn in STEPS:
            if func == fn and filename.endswith(f"nationmap/data/{file}"):
                out[name] += cumulative
    return out


def national(size: str, workdir: Path) -> dict:
    """3. of the docstring: the national preparation, child process on Ray, then profiled serially."""
    import os

    from nationmap.data.prepare import PrepareConfig, prepare_dataset
    from nationmap.data.regions import resolve_region

    n = NATIONAL[size]
    root = workdir / f"prep-national-{size}"
    world = synth_world(root, n["region"], MONTHS, n["ppd"], n["scene_m"])
    catalog, lulc = root / "catalog.parquet", root / "raw" / "lulc"
    out = root / "dataset"
    shutil.rmtree(out, ignore_errors=True)
    args = ["data", "prepare", "--region", n["region"], "--catalog", str(catalog), "--lulc-dir", str(lulc),
            "--out", str(out), "--anchors", str(n["anchors"]), "--patch-size", str(n["patch"]), "--executor", n["executor"]]
    ray_run = run_driver(args, {**os.environ, "RAY_ADDRESS": ""}, root / "prepare.log")
    windows = kept_windows(out, catalog)
    patches = sum(map(len, windows.values()))
    report = json.loads((out / "report.json").read_text())
    bare_reads(windows, n["patch"])  # warm the page cache as prepare found it
    t_bare = best_of(lambda: bare_reads(windows, n["patch"]))
    cfg = PrepareConfig(pretrain_months=MONTHS[1:], finetune_months=MONTHS[:1], n_anchors=n["anchors"],
                        patch_size=n["patch"], region=n["region"])
    profiler, serial_out = cProfile.Profile(), root / "dataset-serial"
    shutil.rmtree(serial_out, ignore_errors=True)
    t0 = time.perf_counter()
    profiler.runcall(prepare_dataset, catalog, lulc, serial_out, cfg, resolve_region(n["region"]), executor="serial")
    t_serial = time.perf_counter() - t0
    shutil.rmtree(serial_out, ignore_errors=True)
    steps = profile_steps(pstats.Stats(profiler))
    return {"world": world, "patches": patches, "scenes": len(report["scenes"]), "windows": windows,
            "candidates": sum(s["candidates"] for s in report["scenes"]), "splits": report["patches"],
            "ray": ray_run, "bare_s": t_bare, "serial_profiled_s": t_serial, "steps": steps,
            "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}


def national_rows(res: Result, nat: dict, per_patch_256: float, size: str) -> None:
    n, patches = NATIONAL[size], nat["patches"]
    t_ray, t_bare, t_serial = nat["ray"]["seconds"], nat["bare_s"], nat["serial_profiled_s"]
    res.rows += [
        {"what": f"national, bare windowed reads ({patches:,} patches of {n['patch']} px)", "seconds": fmt(t_bare),
         "patches/s": fmt(patches / t_bare), "vs bare": "1.00"},
        {"what": f"national, nationmap data prepare --region ({n['executor']}, start-up included)", "seconds": fmt(t_ray),
         "patches/s": fmt(patches / t_ray), "vs bare": f"{t_bare / t_ray:.3f}"},
        {"what": "national, prepare in process (serial, under cProfile)", "seconds": fmt(t_serial),
         "patches/s": fmt(patches / t_serial), "vs bare": f"{t_bare / t_serial:.3f}"},
    ]
    res.ratios["national_prepare_vs_bare"] = t_bare / t_ray
    steps = "; ".join(f"{name} {sec:.1f} s ({sec / t_serial:.0%})" for name, sec in nat["steps"].items())
    other = t_serial - sum(nat["steps"].values())
    core_h = PAPER_PATCHES * per_patch_256 / 3600
    res.notes += [
        f"National: {nat['scenes']:,} scenes of {len(MONTHS)} months ({', '.join(MONTHS)}), {nat['candidates']:,} "
        f"candidate patches, kept {patches:,} ({nat['splits']}), {n['anchors']:,} anchors, "
        f"{nat['bytes'] / 2**20:.0f} MiB written; driver peak RSS {nat['ray']['peak_rss_mib']:.0f} MiB.",
        f"Where the serial run's {t_serial:.1f} s went (cProfile, cumulative): {steps}; other (per-patch "
        f"bookkeeping, checks, statistics, index, Python) {other:.1f} s ({other / t_serial:.0%}).",
        f"Projection: the paper's {PAPER_PATCHES:,} patches at 256 px take {core_h:,.1f} core-hours at 1.'s "
        f"{per_patch_256 * 1000:.1f} ms per patch on one core, fixed costs of that run included "
        f"({core_h * 60 / 64:.0f} min on 64 cores at that rate).",
    ]
    if "synth_s" in nat["world"]:
        res.notes.append(f"National world synthesised in {nat['world']['synth_s']:.0f} s (made once, reused).")


def run(size: str, workdir: Path) -> Result:
    import ray

    from benchmarks.infer_overhead import CELL, make_world
    from nationmap.data.prepare import prepare_dataset
    from nationmap.data.regions import resolve_region

    workdir.mkdir(parents=True, exist_ok=True)
    world, catalog, lulc_dir = make_world(workdir, size)
    region = resolve_region(CELL)
    cfg = prepare_config(size)
    times, ours = {}, not ray.is_initialized()
    for executor in ("serial", "ray"):
        out = workdir / f"prep-{executor}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        report = prepare_dataset(catalog, lulc_dir, out, cfg, region, executor=executor)
        times[executor] = time.perf_counter() - t0
    if ours:
        ray.shutdown()  # the national run's own Ray gets the cores
    windows = kept_windows(workdir / "prep-serial", catalog)
    n = sum(map(len, windows.values()))
    bare_reads(windows, cfg.patch_size)  # warm the page cache as prepare found it
    t_bare = best_of(lambda: bare_reads(windows, cfg.patch_size))
    candidates = sum(s["candidates"] for s in report["scenes"])
    res = Result("data_prep", "Data preparation: nationmap data prepare vs a bare rasterio windowed-read loop")
    res.rows = [
        {"what": f"bare rasterio windowed reads of the kept patches ({n:,} of {cfg.patch_size} px)", "seconds": fmt(t_bare),
         "patches/s": fmt(n / t_bare), "vs bare": "1.00"},
        {"what": "nationmap data prepare --executor serial", "seconds": fmt(times["serial"]),
         "patches/s": fmt(n / times["serial"]), "vs bare": f"{t_bare / times['serial']:.3f}"},
        {"what": "nationmap data prepare (Ray, start-up included)", "seconds": fmt(times["ray"]),
         "patches/s": fmt(n / times["ray"]), "vs bare": f"{t_bare / times['ray']:.3f}"},
    ]
    res.ratios = {"prepare_serial_vs_bare": t_bare / times["serial"], "prepare_ray_vs_bare": t_bare / times["ray"]}
    res.notes = [f"{n} patches kept of {candidates} candidates in {len(report['scenes'])} scenes, {cfg.patch_size} px, "
                 f"{cfg.n_anchors} anchors."]
    for executor in ("serial", "ray"):
        shutil.rmtree(workdir / f"prep-{executor}", ignore_errors=True)
    nat = national(size, workdir)
    national_rows(res, nat, times["serial"] / n, size)
    res.data = {"patches": n, "candidates": candidates, "scenes": len(windows), "bare_s": t_bare,
                **{f"{k}_s": v for k, v in times.items()},
                "national": {k: v for k, v in nat.items() if k != "windows"}}
    return res


if __name__ == "__main__":
    main(run, __doc__)
