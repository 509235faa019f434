"""National scale: a Japan month end to end on a two-node Ray cluster, and its cost at full resolution.

1. **The national month at reduced resolution.** The synthetic ``japan`` region (123 cells) for
   one month, LULC at 1/600 degree and scenes at 150 m (scenes planned only where they touch a
   cell), is catalogued and mapped by ``nationmap infer --region japan`` with random-weight
   tiny bundles, as a subprocess (the driver) connected to a local two-node cluster started by
   ``cluster/common/ray-node.sh`` (token authentication on, one CPU per node; the run directory
   is on this machine's disk, which both nodes see). Recorded: acquisitions, windows, cells,
   per-stage wall time, the driver's peak RSS, Ray's task and actor counts, files and bytes
   written, the spread of scenes and cells over the nodes (from the manifest), and a rerun of
   the completed month (verify and skip).
2. **Per-pixel costs at full resolution.** One cell at 12,000 px/degree under four 6,000 px
   scenes at 10 m (60 km, the size of an ALOS-2 strip-map scene) is mapped on an embedded Ray
   (2 CPUs); the cell stage's time per cell pixel and covering scene and the national layer's
   time per Gpx come from it.
3. **Fixed per-unit costs.** The bare forward time per window of the same bundles (one thread, as
   a predictor actor with one CPU) is measured in this process; what the national run spent per
   acquisition beyond its windows at that rate, and per cell beyond its pixels at the full-
   resolution rate, is the fixed cost that does not shrink with pixels.
4. **Projection.** The same month at 12,000 px/degree and 10 m scenes, stage by stage: windows
   scale with the scene area, the scene stage runs at the GPU throughput ``nationmap plan`` uses
   (measured by ``benchmarks gpu`` where a GPU ran it, else its estimate for the paper's Swin-B),
   cells and national layers at the rates of 2., STAC and per-unit costs as measured in 1.
   ``nationmap plan`` reads these costs from ``benchmarks/results.json`` (packaged as its reference
   costs by ``scripts/make_reference_costs.py``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import ROOT, Result, fmt, main, random_bundles, run_driver, synth_world, write_month
from nationmap.records import RunManifest, SceneRecord

MONTH = "2022-09"
FULL_PPD = 12_000
FULL_SCENE_M = 10.0


@dataclass(frozen=True)
class ScaleSize:
    region: str
    lulc_ppd: int  # the reduced-resolution national grid
    scene_m: float  # the reduced-resolution scenes
    img_size: int  # bundle input (window) size
    overlap: int
    full_cell: str  # the full-resolution cell of part 2
    full_ppd: int
    full_side: int  # scene side, px
    full_pixel_m: float


SIZES = {
    "tiny": ScaleSize("N33E131,N35E135", 120, 1000.0, 64, 16, "N36E138", 600, 400, 100.0),
    "full": ScaleSize("japan", 600, 150.0, 256, 64, "N36E138", FULL_PPD, 6000, FULL_SCENE_M),
}


def infer_config(size: ScaleSize, root: Path, catalog: Path, lulc_dir: Path | None, ppd: int, bundles: dict,
                 concurrency: int) -> Path:
    """The ``[infer]`` table of the run (CPU predictors with one CPU each)."""
    spec = root / "infer.toml"
    values = {"catalog": str(catalog), "lulc_model": bundles["lulc"], "water_model": bundles["water"],
              "out": str(root / "products"), "lulc_dir": str(lulc_dir or ""), "pixels_per_degree": ppd,
              "overlap": size.overlap, "batch_size": 16, "executor": "ray", "concurrency": concurrency,
              "gpus_per_actor": 0.0, "cpus_per_actor": 1.0}
    spec.write_text("[infer]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return spec


def ray_counts(cluster) -> dict:
    """Tasks by function name and actors by class from the cluster's state API."""
    try:
        summary = cluster.get("/api/v0/tasks/summarize")["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
        tasks = {name: sum(v["state_counts"].values()) for name, v in summary["summary"].items()}
        actors = cluster.get("/api/v0/actors", limit=10000)["data"]["result"]["result"]
    except Exception as exc:  # noqa: BLE001 - the counts are a report, not the run
        return {"error": repr(exc)}
    by_class: dict[str, int] = {}
    for actor in actors:
        by_class[actor.get("class_name", "?")] = by_class.get(actor.get("class_name", "?"), 0) + 1
    return {"tasks": tasks, "actors": by_class}


def files_written(run_dir: Path) -> dict:
    files = [p for p in run_dir.rglob("*") if p.is_file() and ".work" not in p.relative_to(run_dir).parts]
    groups: dict[str, list[int]] = {}
    for p in files:
        key = p.relative_to(run_dir).parts[0] if len(p.relative_to(run_dir).parts) > 1 else "manifest"
        groups.setdefault(key, [0, 0])
        groups[key][0] += 1
        groups[key][1] += p.stat().st_size
    return {"files": len(files), "bytes": sum(b for _, b in groups.values()), "groups": groups}


def national_run(size: ScaleSize, root: Path, workdir: Path) -> dict:
    """Part 1: the month on a local two-node cluster; a verified rerun."""
    from benchmarks.local_cluster import local_cluster
    from nationmap.data.regions import region_slug

    world = synth_world(root, size.region, (MONTH,), size.lulc_ppd, size.scene_m)
    bundles = random_bundles(workdir / "bundles", "tiny", size.img_size)
    spec = infer_config(size, root, root / "catalog.parquet", root / "raw" / "lulc", size.lulc_ppd, bundles, 2)
    run_dir = root / "products" / region_slug(size.region) / MONTH
    shutil.rmtree(root / "products", ignore_errors=True)
    args = ["infer", "--region", size.region, "--date", MONTH, "--config", str(spec)]
    with local_cluster(nodes=2, num_cpus=1, object_store_mb=300) as cluster:
        nodes = [n["node_id"] for n in cluster.alive_nodes()]
        first = run_driver([*args, "--address", cluster.gcs], cluster.env, root / "infer.log")
        counts = ray_counts(cluster)
        manifest = RunManifest.read(run_dir / "manifest.json")
        rerun = run_driver([*args, "--address", cluster.gcs], cluster.env, root / "rerun.log")
    again = RunManifest.read(run_dir / "manifest.json")
    return {"world": world, "first": first, "rerun": rerun, "counts": counts, "manifest": manifest,
            "rerun_manifest": again, "cluster_nodes": nodes, "written": files_written(run_dir), "bundles": bundles}


def bare_window_seconds(bundles: dict, img_size: int, batch: int = 16, repeat: int = 6) -> float:
    """Seconds per window of both models' forward, one torch thread, channels-last (as the actors)."""
    import torch

    from nationmap.infer.predict import load_scene_models

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = load_scene_models(bundles)
        x = torch.randn(batch, 1, img_size, img_size).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode():
            for _ in range(repeat):
                t0 = time.perf_counter()
                for head in models.heads:
                    head.model(x)
                times.append(time.perf_counter() - t0)
        return min(times[1:]) / batch
    finally:
        torch.set_num_threads(threads)


def full_resolution(size: ScaleSize, workdir: Path, bundles: dict) -> dict:
    """Part 2: one cell at full resolution under four full-size scenes, on an embedded Ray; then
    the cell combined alone from 2 and from 4 of its scene rasters (one thread, as a Ray cell
    task) and each product's national layer alone, for the per-pixel rates."""
    import ray

    from nationmap.data.grid import parse_cell
    from nationmap.parallel import init_ray
    from nationmap.infer.config import InferConfig
    from nationmap.infer.pipeline import RunPaths, describe_models, run_inference
    from nationmap.products.cells import combine_cell, scene_inputs
    from nationmap.products.layers import product_layers
    from nationmap.products.mosaic import build_mosaic

    root = workdir / f"scale-fullres-{size.full_ppd}-{size.full_side}"
    catalog = write_month(root, size.full_cell, size.full_side, size.full_pixel_m, size.full_ppd, MONTH)
    shutil.rmtree(root / "products", ignore_errors=True)
    cfg = InferConfig(region=size.full_cell, month=MONTH, catalog=str(catalog), lulc_model=bundles["lulc"],
                      water_model=bundles["water"], out=str(root / "products"), lulc_dir=str(root / "lulc"),
                      pixels_per_degree=size.full_ppd, overlap=size.overlap, batch_size=16, executor="ray",
                      concurrency=2, gpus_per_actor=0.0, cpus_per_actor=1.0, keep_scenes=True)
    init_ray("local", num_cpus=2, log_to_driver=False)  # nationmap's own start: the workers' environment too
    try:
        manifest = run_inference(cfg, log=lambda *a, **k: None)
    finally:
        ray.shutdown()
    run_dir = Path(manifest.run_dir)
    scenes = [s for s in manifest.scenes if s.ok]
    rasters = [str(RunPaths(run_dir).scene_raster(s.id)) for s in scenes]
    models, cell = describe_models(cfg), parse_cell(size.full_cell)
    inputs = scene_inputs(rasters, list(range(len(rasters))), [0] * len(rasters), models.layout)
    combine_s = {}
    for k in (2, 4):
        t0 = time.perf_counter()
        combine_cell(cell, MONTH, inputs[:k], root / f"combine-{k}", models.layout, models.layers,
                     cfg.cell_settings(), threads=1)
        combine_s[k] = time.perf_counter() - t0
    # the same cell with the class probabilities too (--probabilities): its extra seconds and bytes
    with_probabilities = product_layers(models.layers["lulc"].classes, models.layers["water"].classes, True)
    t0 = time.perf_counter()
    extra = combine_cell(cell, MONTH, inputs[:4], root / "combine-probabilities", models.layout, with_probabilities,
                         cfg.cell_settings(), threads=1)
    probabilities_s = time.perf_counter() - t0 - combine_s[4]
    probabilities_bytes = (root / "combine-probabilities" / extra.files["probabilities"]).stat().st_size
    record = manifest.cell_results[0]
    mosaic_s = {}
    for product, entry in record.files.items():  # each national layer alone, one process
        t0 = time.perf_counter()
        build_mosaic({cell: run_dir / "cells" / cell.name / entry.path}, models.layers[product], size.full_ppd,
                     root / "national" / f"{product}.tif")
        mosaic_s[product] = time.perf_counter() - t0
    shutil.rmtree(root / "products", ignore_errors=True)
    return {"timings": manifest.timings, "combine_s": combine_s, "cell_pixels": size.full_ppd**2,
            "probabilities_s": probabilities_s, "probabilities_bytes": probabilities_bytes,
            "mosaic_s": mosaic_s, "scenes": len(scenes), "windows": sum(s.windows for s in scenes),
            "valid_px": sum(s.valid_pixels for s in scenes), "scene_actor_s": sum(s.seconds for s in scenes),
            "scene_model_s": sum(s.model_seconds for s in scenes)}


def worker_spans(scenes: list[SceneRecord]) -> dict | None:
    """Per predictor worker (the records' ``worker``): the span from its first scene's start to its
    last scene's end, and the idle time inside that span (between one scene and the next), summed
    over workers; None for records without ``started``/``worker`` (older runs)."""
    if not scenes or not all(s.started is not None and s.worker for s in scenes):
        return None
    by_worker: dict[str, list[SceneRecord]] = {}
    for s in scenes:
        by_worker.setdefault(s.worker, []).append(s)
    span = idle = 0.0
    for records in by_worker.values():
        records.sort(key=lambda r: r.started)
        width = records[-1].started + records[-1].seconds - records[0].started
        span += width
        idle += width - sum(r.seconds for r in records)
    return {"workers": len(by_worker), "span_s": span, "idle_s": idle}


def costs(nat: dict, full: dict, bare_s: float, size: ScaleSize) -> dict:
    """Fixed and per-pixel unit costs (seconds) from parts 1-3."""
    m = nat["manifest"]
    scenes = [s for s in m.scenes if s.ok]
    cells = m.ok_cells()
    actors = int(m.config["concurrency"])
    windows = sum(s.windows for s in scenes)
    per_scene = (full["combine_s"][4] - full["combine_s"][2]) / 2  # per covering scene of a full cell
    cell_base = full["combine_s"][4] - 4 * per_scene
    gpx = full["cell_pixels"] / 1e9
    mean_scenes = sum(len(c.scenes_used) for c in cells) / max(1, len(cells))
    small = (size.lulc_ppd / size.full_ppd) ** 2  # a reduced cell's share of a full cell's pixels
    cell_pixel_work = (cell_base + per_scene * mean_scenes) * small
    actor_s = sum(s.seconds for s in scenes)
    full_window_s = full["scene_actor_s"] / full["windows"]  # windows of full-size scenes: fixed costs amortised
    beyond_full_rate = (actor_s - windows * full_window_s) / len(scenes)
    timed = bool(full.get("scene_model_s"))
    # an acquisition's actor time outside the forward passes (which are costed per window at the
    # GPU's rate), less what grows with its windows (reading, blending, writing) at the rate of
    # full-size scenes: what is left is its fixed cost (open, create, checksum, record)
    outside_model = sum(s.seconds - s.model_seconds for s in scenes) / len(scenes) if timed else None
    full_outside_per_window = (full["scene_actor_s"] - full["scene_model_s"]) / full["windows"] if timed else None
    actor_fixed = outside_model - windows / len(scenes) * full_outside_per_window if timed else beyond_full_rate
    outside = m.timings["scenes_s"] * actors - actor_s  # the stage's actor-seconds outside any scene
    spans = worker_spans(scenes)
    # between two scenes of one worker: per acquisition; before the first and after the last: per run
    between = spans["idle_s"] if spans else outside
    return {
        "acquisitions": len(scenes), "windows": windows, "actors": actors,
        "bare_window_s": bare_s,
        # an acquisition's actor time, less its windows at the per-window time of full-size scenes
        "acquisition_actor_fixed_s": actor_fixed, "acquisition_beyond_full_rate_s": beyond_full_rate,
        "model_window_s": sum(s.model_seconds for s in scenes) / windows if timed else None,
        "acquisition_outside_model_s": outside_model, "full_outside_model_window_s": full_outside_per_window,
        # a worker's idle time between two scenes: dispatch, and on this machine Ray's own processes
        # and the driver taking the actors' cores
        "acquisition_dispatch_s": between / len(scenes),
        "acquisition_fixed_s": actor_fixed + between / len(scenes),
        # per run and actor: start (process, models) until the first scene, and the tail after the last
        "run_startup_s": (outside - between) / actors,
        "pipeline_window_s": actor_s / windows,
        "cell_base_s_per_gpx": cell_base / gpx, "cell_scene_s_per_gpx": per_scene / gpx,
        "mean_scenes_per_cell": mean_scenes,
        "cell_task_s": sum(c.seconds for c in cells) / len(cells),
        "cell_fixed_s": sum(c.seconds for c in cells) / len(cells) - cell_pixel_work,
        "mosaic_s_per_gpx": {p: s / gpx for p, s in full["mosaic_s"].items()},
        "probabilities_s_per_gpx": full["probabilities_s"] / gpx,
        "probabilities_bytes_per_gpx": full["probabilities_bytes"] / gpx,
        "stac_s_per_item": m.timings["stac_s"] / (len(cells) * len(full["mosaic_s"])),
        "full_windows_per_valid_px": full["windows"] / full["valid_px"],
        "full_window_s_cpu": full_window_s,
    }


def project(nat: dict, c: dict, results, size: ScaleSize) -> dict:
    """The national month at 12,000 px/degree and 10 m scenes, stage by stage (seconds of one
    GPU or one core; ``nationmap plan`` divides them over a cluster)."""
    from nationmap.ops.plan import DEFAULT_GPU, throughput

    m = nat["manifest"]
    scenes = [s for s in m.scenes if s.ok]
    cells = m.ok_cells()
    area = (size.scene_m / FULL_SCENE_M) ** 2
    windows = sum(s.valid_pixels for s in scenes) * area * c["full_windows_per_valid_px"]
    rate = throughput(results, "swin-b", None, DEFAULT_GPU)
    gpx = len(cells) * FULL_PPD**2 / 1e9
    gpu_s_per_acq = windows / rate.windows_per_s / len(scenes)
    return {
        "windows": windows, "windows_per_acquisition": windows / len(scenes), "gpu_rate": rate.windows_per_s,
        "gpu_rate_source": rate.source, "scene_gpu_s": windows / rate.windows_per_s,
        "acquisition_fixed_s": c["acquisition_fixed_s"] * len(scenes), "run_startup_s": c["run_startup_s"],
        "fixed_vs_gpu_per_acquisition": c["acquisition_fixed_s"] / gpu_s_per_acq,
        "cell_core_s": len(cells) * (c["cell_base_s_per_gpx"] * FULL_PPD**2 / 1e9
                                     + c["cell_scene_s_per_gpx"] * FULL_PPD**2 / 1e9 * c["mean_scenes_per_cell"]
                                     + max(0.0, c["cell_fixed_s"])),
        "mosaic_core_s": {p: v * gpx for p, v in c["mosaic_s_per_gpx"].items()},
        "stac_s": c["stac_s_per_item"] * len(cells) * len(c["mosaic_s_per_gpx"]), "cells": len(cells), "gpx": gpx,
    }


def report(res: Result, nat: dict, full: dict, c: dict, proj: dict, size: ScaleSize) -> None:
    m, t = nat["manifest"], nat["manifest"].timings
    mosaic_core = sum(proj["mosaic_core_s"].values())
    rows = [
        ("scenes", t["scenes_s"], f"{c['acquisitions']} acquisitions, {c['windows']:,} windows; fixed "
                                  f"{c['acquisition_fixed_s']:.2f} s per acquisition",
         f"{proj['windows']:,.0f} windows: {proj['scene_gpu_s'] / 3600:.2f} GPU-h + fixed "
         f"{proj['acquisition_fixed_s'] / 3600:.2f} h"),
        ("cells", t["cells_s"], f"{len(m.ok_cells())} cells, task "
                                f"{c['cell_task_s']:.2f} s (fixed {c['cell_fixed_s']:.2f} s)",
         f"{proj['cells']} cells x 144 Mpx x {c['mean_scenes_per_cell']:.1f} scenes: {proj['cell_core_s'] / 3600:.2f} core-h"),
        ("national layers", t["mosaic_s"], f"{len(full['mosaic_s'])} products (VRT, sparse COG, quicklook as "
                                           "declared), a task each",
         f"{proj['gpx']:.1f} Gpx x {len(full['mosaic_s'])} products: {mosaic_core / 3600:.2f} core-h (longest product "
         f"{max(proj['mosaic_core_s'].values()) / 60:.1f} min)"),
        ("STAC", t["stac_s"], f"{c['stac_s_per_item'] * 1000:.1f} ms per item", f"{proj['stac_s']:.0f} s"),
        ("total", t["total_s"], f"driver peak RSS {nat['first']['peak_rss_mib']:.0f} MiB", ""),
    ]
    res.rows = [{"stage": a, f"national month at 1/{size.lulc_ppd} deg, {size.scene_m:g} m (s)": fmt(b),
                 "measured": u, "projected at 1/12,000 deg, 10 m": v} for a, b, u, v in rows]
    counts = nat["counts"]
    tasks = ", ".join(f"{k} {v}" for k, v in sorted(counts.get("tasks", {}).items())) or counts.get("error", "-")
    actors = ", ".join(f"{k} {v}" for k, v in sorted(counts.get("actors", {}).items())) or "-"
    w = nat["written"]
    again = nat["rerun_manifest"]
    res.notes += [
        f"Region {size.region}: {len(m.cells)} cells, {c['acquisitions']} acquisitions of {MONTH} "
        f"(synthesised in {nat['world'].get('synth_s', float('nan')):.0f} s, catalogued in "
        f"{nat['world'].get('catalog_s', float('nan')):.0f} s; nan: reused from an earlier run), tiny random-weight "
        f"bundles of {size.img_size} px, overlap {size.overlap}, 2 predictor actors of 1 CPU.",
        "Cluster: 2 nodes started by cluster/common/ray-node.sh (token auth), 1 CPU each; the driver is "
        "`nationmap infer --address` in its own process. Work per node (manifest `nodes`): "
        + "; ".join(f"{k[:8]}: {v['scenes']} scenes, {v['cells']} cells" for k, v in sorted(m.nodes.items())),
        f"Ray tasks by function: {tasks}. Actors by class: {actors}.",
        f"Written: {w['files']} files, {w['bytes'] / 1e6:.1f} MB ("
        + ", ".join(f"{k} {n} files {b / 1e6:.1f} MB" for k, (n, b) in sorted(w["groups"].items())) + ").",
        f"Driver: {nat['first']['seconds']:.0f} s wall, peak RSS {nat['first']['peak_rss_mib']:.0f} MiB. Rerun of the "
        f"completed month: {nat['rerun']['seconds']:.1f} s wall (process start included), "
        f"{sum(s.skipped for s in again.scenes)}/{len(again.scenes)} scenes and "
        f"{sum(x.skipped for x in again.cell_results)}/{len(again.cell_results)} cells verified and skipped, "
        f"peak RSS {nat['rerun']['peak_rss_mib']:.0f} MiB.",
        f"Per window, one thread: bare forward of both tiny models {c['bare_window_s'] * 1000:.0f} ms; the scene "
        f"stage {c['full_window_s_cpu'] * 1000:.0f} ms in full-size scenes and {c['pipeline_window_s'] * 1000:.0f} ms "
        f"in the national month's ({c['windows'] / c['acquisitions']:.1f} windows each"
        + (f", of which {c['model_window_s'] * 1000:.0f} ms in the forward passes" if c.get("model_window_s") else "")
        + "). Fixed per acquisition: "
        + (f"{c['acquisition_outside_model_s'] * 1000:.0f} ms of actor time outside the forward passes, less "
           f"{c['full_outside_model_window_s'] * 1000:.1f} ms per window that full-size scenes spend there "
           f"(reading, blending, writing) = {c['acquisition_actor_fixed_s'] * 1000:.0f} ms (open, create, checksum, "
           f"record; its whole time less its windows at the full-size rate would say "
           f"{c['acquisition_beyond_full_rate_s'] * 1000:.0f} ms, counting this size's smaller batches too) + "
           if c.get("acquisition_outside_model_s") is not None else
           f"{c['acquisition_actor_fixed_s'] * 1000:.0f} ms in the actor (its time less its windows at the full-size "
           "rate) + ")
        + f"{c['acquisition_dispatch_s'] * 1000:.0f} ms idle between two scenes of one actor (Ray Data's "
        "dispatch, and here the driver and both nodes' Ray processes sharing the actors' 2 cores); once per run, "
        f"{c['run_startup_s']:.1f} s per actor before its first scene and after its last (process start, "
        "model load, the stage's tail).",
        f"Full resolution: {size.full_cell} at {size.full_ppd:,} px/deg under {full['scenes']} scenes of "
        f"{size.full_side:,} px at {size.full_pixel_m:g} m ({full['windows']:,} windows; stage times "
        + ", ".join(f"{k} {v:.0f} s" for k, v in full["timings"].items()) + "). Cell combined alone, 1 thread: "
        f"2 scenes {full['combine_s'][2]:.1f} s, 4 scenes {full['combine_s'][4]:.1f} s -> "
        f"{c['cell_base_s_per_gpx']:.0f} s + {c['cell_scene_s_per_gpx']:.0f} s per scene, per Gpx of cell. National layer "
        "of the cell alone: " + ", ".join(f"{k} {v:.1f} s" for k, v in full["mosaic_s"].items()) + ". "
        f"With --probabilities the cell took {full['probabilities_s']:+.1f} s more "
        f"({c['probabilities_s_per_gpx']:.0f} s per Gpx) and its probabilities COG is "
        f"{full['probabilities_bytes'] / 2**20:.1f} MiB ({c['probabilities_bytes_per_gpx'] / 2**30:.2f} GiB per Gpx).",
        f"Projection: scene stage at {proj['gpu_rate']:,.0f} windows/s per GPU ({proj['gpu_rate_source']}); "
        f"{proj['windows_per_acquisition']:,.0f} windows per acquisition, so "
        f"{proj['scene_gpu_s'] / c['acquisitions']:.1f} GPU-s each against a fixed {c['acquisition_fixed_s']:.2f} s "
        f"({100 * proj['fixed_vs_gpu_per_acquisition']:.1f} %). `nationmap plan` uses these costs.",
    ]
    res.ratios = {"fixed_vs_gpu_per_acquisition": proj["fixed_vs_gpu_per_acquisition"],
                  "driver_peak_rss_gib": nat["first"]["peak_rss_mib"] / 1024,
                  "rerun_s": nat["rerun"]["seconds"]}


def run(size_name: str, workdir: Path) -> Result:
    from nationmap.ops.plan import read_measurements

    size = SIZES[size_name]
    root = workdir / f"scale-{size_name}"
    root.mkdir(parents=True, exist_ok=True)
    res = Result("scale", "National scale: a Japan month on a two-node Ray cluster, projected to full resolution")
    nat = national_run(size, root, workdir)
    full = full_resolution(size, workdir, nat["bundles"])
    bare = bare_window_seconds(nat["bundles"], size.img_size)
    c = costs(nat, full, bare, size)
    results = ROOT / "benchmarks" / "results.json"  # this checkout's, else the packaged reference
    proj = project(nat, c, read_measurements(results if results.exists() else None), size)
    report(res, nat, full, c, proj, size)
    res.data = {"costs": c, "projection": proj, "national": {k: nat[k] for k in ("world", "first", "rerun", "counts",
                                                                                 "cluster_nodes", "written")},
                "timings": nat["manifest"].timings, "nodes": nat["manifest"].nodes,
                "full_resolution": full}
    return res


if __name__ == "__main__":
    main(run, __doc__)
