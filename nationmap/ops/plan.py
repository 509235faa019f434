"""``nationmap plan``: the cost of a region's month, to size the cluster before running it.

Workload: the windows the scene stage will predict. From the catalog when it holds the region's
month (every scene's window grid at the inference window and overlap), else from the paper's
numbers: 1,960,037 non-overlapping 256 x 256 patches over Japan in Sep-Nov 2022, a third of
them per month, over the 131 LULC cells (12,000 x 12,000 px each), scaled to the region's cells
and to the window overlap.

Throughput per GPU, in this order: ``--throughput``; the GPU benchmark's measured scene-stage
rate (``python -m benchmarks gpu`` on a GPU node, stored in ``benchmarks/results.json``);
otherwise an estimate: the models' FLOPs per window (``nationmap models info``) at an assumed
share of the GPU's peak bf16 FLOP/s, times the pipeline efficiency the CPU benchmark measured.
The source is always printed. The stages after the models (fixed per-acquisition costs, the cell
stage on CPU cores, the national layers, STAC) are costed from ``python -m benchmarks scale``
(per-pixel rates measured at full resolution, fixed per-unit costs from a national month),
or, without it, the cell stage alone from the inference benchmark's measured cell rate.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from nationmap.errors import InputError

PAPER_PATCHES = 1_960_037  # non-overlapping 256 px patches, ALOS-2 HH, Sep-Nov 2022 (enhanced-lulc-alos2)
PAPER_MONTHS = 3
PAPER_CELLS = 131
PAPER_PATCH = 256
ASSUMED_UTILISATION = 0.35  # of peak bf16, for an estimate without a GPU measurement
DEFAULT_GPU = "H100"
NIGHT_HOURS = 8.0
# windows of one acquisition, to count acquisitions when only the paper's windows are known: a
# 60 x 50 km ALOS-2 scene at 10 m is 6,000 x 5,000 px, about 814 windows every 192 px
PAPER_WINDOWS_PER_SCENE = 6_000 * 5_000 / 192**2


@dataclass
class Workload:
    source: str
    scenes: int | None
    windows: int
    cells: int
    cell_pixels: float  # product pixels over all cells


@dataclass
class Throughput:
    windows_per_s: float  # per GPU, both models (LULC + water) per window
    source: str


@dataclass
class StageCosts:
    """What the stages after the models cost, from ``benchmarks scale`` (seconds).

    Attributes:
        acquisition_fixed_s: per acquisition on a predictor, beyond its windows (reading,
            writing, scheduling: what does not shrink with pixels).
        cell_base_s_per_gpx / cell_scene_s_per_gpx: one CPU core's time per Gpx of cell, plus
            per Gpx of cell and covering scene (reprojection), at full resolution.
        cell_fixed_s: per cell task beyond its pixels.
        mean_scenes_per_cell: covering scenes per cell in the measured national month.
        mosaic_s_per_gpx: per product, one core's time per Gpx of cells with data.
        stac_s_per_item: the driver's time per STAC item (a cell and product).
    """

    acquisition_fixed_s: float
    cell_base_s_per_gpx: float
    cell_scene_s_per_gpx: float
    cell_fixed_s: float
    mean_scenes_per_cell: float
    mosaic_s_per_gpx: dict[str, float]
    stac_s_per_item: float
    source: str


@dataclass
class Plan:
    region: str
    month: str
    workload: Workload
    throughput: Throughput
    gpu_hours: float
    cell_core_hours: float | None
    cell_source: str
    wall_hours: dict[int, float]
    cpus_per_gpu: int
    stages: dict[str, float] | None = None  # hours: scenes_fixed_gpu, cells_core, mosaic_wall, stac

    def to_dict(self) -> dict:
        return asdict(self)


def windows_of(height: int, width: int, size: int, stride: int) -> int:
    from nationmap.infer.windows import window_starts

    return len(window_starts(height, size, stride)) * len(window_starts(width, size, stride))


def workload(region, month: str, catalog: str | Path | None, size: int, overlap: int, pixels_per_degree: int) -> Workload:
    """The month's windows from the catalog, or the paper's numbers when it has none."""
    stride = size - overlap
    cells = len(region.cells)
    cell_pixels = float(cells) * pixels_per_degree**2
    if catalog and Path(catalog).exists():
        from nationmap.data.catalog import filter_catalog, read_catalog
        from nationmap.data.months import parse_month

        scenes = filter_catalog(read_catalog(catalog), region, [parse_month(month)])
        if not scenes.empty:
            n = sum(windows_of(int(r.height), int(r.width), size, stride) for r in scenes.itertuples())
            return Workload(f"catalog {catalog}: {len(scenes)} acquisitions, every window of their rasters; an "
                            "upper bound, as windows without data are not predicted", len(scenes), n, cells, cell_pixels)
    # the paper's patches cover Japan: used as they are for japan, scaled by cell count otherwise
    share = 1.0 if region.name == "japan" else cells / PAPER_CELLS
    n = math.ceil(PAPER_PATCHES / PAPER_MONTHS * share * (PAPER_PATCH / stride) ** 2)
    scaled = "Japan" if share == 1.0 else f"scaled to {cells} of its {PAPER_CELLS} cells"
    return Workload(f"paper numbers: {PAPER_PATCHES:,} patches of {PAPER_PATCH} px over {PAPER_MONTHS} months, "
                    f"{scaled}, at stride {stride}", None, n, cells, cell_pixels)


def _benchmarks(path: str | Path | None) -> dict:
    if path is None or not Path(path).exists():
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a benchmark results file ({exc})") from None


def throughput(results: dict, preset: str, given: float | None, gpu: str) -> Throughput:
    if given is not None:
        if given <= 0:
            raise InputError("--throughput must be > 0 windows per second")
        return Throughput(given, "given (--throughput)")
    measured = results.get("gpu", {}).get("data", {})
    if measured.get("available") and measured.get("preset") == preset:
        return Throughput(float(measured["scene_stage_patches_per_s"]),
                          f"measured: scene stage on {measured['gpu']}, {preset} bf16 (benchmarks gpu, {results['gpu']['date']})")
    from nationmap.models.info import PEAK_BF16, model_cost, peak_bf16_flops

    peak = peak_bf16_flops(gpu)
    if peak is None:
        raise InputError(f"unknown GPU {gpu!r}: give --throughput (windows/s per GPU) or one of "
                         f"{', '.join(k for k, _ in PEAK_BF16)}")
    flops = model_cost(preset, "lulc").flops_per_patch + model_cost(preset, "water").flops_per_patch
    efficiency, eff_note = 1.0, "no CPU pipeline measurement"
    cpu = results.get("infer_overhead", {}).get("ratios", {})
    if "scene_stage_vs_bare" in cpu:
        efficiency = min(1.0, float(cpu["scene_stage_vs_bare"]))
        eff_note = f"x {efficiency:.2f} pipeline efficiency measured on CPU (benchmarks infer_overhead)"
    rate = peak * ASSUMED_UTILISATION / flops * efficiency
    return Throughput(rate, f"estimate, no GPU measurement: {flops / 1e9:.0f} GFLOP per window ({preset} LULC + water) at "
                            f"{ASSUMED_UTILISATION:.0%} of {gpu}'s {peak / 1e12:.0f} TFLOP/s peak bf16, {eff_note}; "
                            "run `python -m benchmarks gpu` on a GPU node to measure it")


def cell_cost(results: dict, cell_pixels: float) -> tuple[float | None, str]:
    """CPU core-hours of the cell stage, from the inference benchmark's measured cell rate."""
    data = results.get("infer_overhead", {}).get("data", {})
    runs = data.get("runs", {})
    if "serial" not in runs or not data.get("cell_pixels"):
        return None, "no cell-stage measurement (run `python -m benchmarks infer_overhead`)"
    seconds_per_px = float(runs["serial"]["timings"]["cells_s"]) / float(data["cell_pixels"])
    return cell_pixels * seconds_per_px / 3600, (f"measured {1 / seconds_per_px / 1e6:.1f} Mpx/s per core "
                                                  "(benchmarks infer_overhead, serial cell stage)")


def stage_costs(results: dict) -> StageCosts | None:
    """The per-unit costs measured by ``benchmarks scale``, if it ran."""
    scale = results.get("scale", {})
    c = scale.get("data", {}).get("costs")
    if not c or scale.get("size") != "full":  # a tiny smoke run's costs are not a cluster's
        return None
    fields = {k: c[k] for k in StageCosts.__dataclass_fields__ if k != "source"}
    return StageCosts(**fields, source=f"benchmarks scale, {scale.get('date', '?')}")


def stage_hours(work: Workload, costs: StageCosts, pixels_per_degree: int) -> dict[str, float]:
    """Hours of each stage after the models: GPU-side fixed costs, cell core-hours, the longest
    national layer (one task per product, in parallel) and STAC on the driver."""
    cell_gpx = pixels_per_degree**2 / 1e9
    scenes = work.scenes if work.scenes is not None else work.windows / PAPER_WINDOWS_PER_SCENE
    cell_s = cell_gpx * (costs.cell_base_s_per_gpx + costs.cell_scene_s_per_gpx * costs.mean_scenes_per_cell)
    return {"scenes_fixed_gpu": scenes * costs.acquisition_fixed_s / 3600,
            "cells_core": work.cells * (cell_s + max(0.0, costs.cell_fixed_s)) / 3600,
            "mosaic_wall": max(costs.mosaic_s_per_gpx.values()) * work.cell_pixels / 1e9 / 3600,
            "stac": work.cells * len(costs.mosaic_s_per_gpx) * costs.stac_s_per_item / 3600}


def make_plan(region, month: str, catalog, size: int, overlap: int, pixels_per_degree: int, preset: str,
              gpus: list[int], given: float | None = None, gpu: str = DEFAULT_GPU, cpus_per_gpu: int = 12,
              benchmarks: str | Path | None = None) -> Plan:
    if any(n < 1 for n in gpus):
        raise InputError("GPU counts must be >= 1")
    if cpus_per_gpu < 1:
        raise InputError("--cpus-per-gpu must be >= 1")
    results = _benchmarks(benchmarks)
    work = workload(region, month, catalog, size, overlap, pixels_per_degree)
    rate = throughput(results, preset, given, gpu)
    gpu_hours = work.windows / rate.windows_per_s / 3600
    costs = stage_costs(results)
    if costs is None:
        core_hours, cell_source = cell_cost(results, work.cell_pixels)
        wall = {n: gpu_hours / n + (core_hours or 0.0) / (n * cpus_per_gpu) for n in gpus}
        return Plan(region.name, month, work, rate, gpu_hours, core_hours, cell_source, wall, cpus_per_gpu)
    stages = stage_hours(work, costs, pixels_per_degree)
    wall = {n: (gpu_hours + stages["scenes_fixed_gpu"]) / n + stages["cells_core"] / (n * cpus_per_gpu)
            + stages["mosaic_wall"] + stages["stac"] for n in gpus}
    return Plan(region.name, month, work, rate, gpu_hours, stages["cells_core"], costs.source, wall, cpus_per_gpu,
                stages)


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def format_plan(plan: Plan) -> str:
    w, t = plan.workload, plan.throughput
    lines = [f"plan: {plan.region} {plan.month}",
             f"workload:   {w.windows:,} windows of LULC + water ({w.source})",
             f"            {w.cells} cells, {w.cell_pixels / 1e9:.2f} Gpx of products",
             f"throughput: {t.windows_per_s:,.0f} windows/s per GPU ({t.source})",
             f"GPU-hours:  {plan.gpu_hours:.2f}"]
    if plan.stages is not None:
        st = plan.stages
        lines += [f"stages after the models ({plan.cell_source}):",
                  f"  scenes, fixed per acquisition: {st['scenes_fixed_gpu']:.2f} GPU-hours on the predictors",
                  f"  cells:           {st['cells_core']:.2f} CPU core-hours (reprojection, combination, COGs)",
                  f"  national layers: {_hours(st['mosaic_wall'])} (a task per product, in parallel)",
                  f"  STAC:            {_hours(st['stac'])} on the driver"]
    elif plan.cell_core_hours is not None:
        lines.append(f"cell stage: {plan.cell_core_hours:.2f} CPU core-hours ({plan.cell_source})")
    else:
        lines.append(f"cell stage: not costed ({plan.cell_source})")
    lines.append(f"wall time (scenes on the GPUs, cells on {plan.cpus_per_gpu} cores per GPU):")
    for n, h in plan.wall_hours.items():
        night = "fits" if h <= NIGHT_HOURS else "does not fit"
        lines.append(f"  {n:>4} GPU{'s' if n > 1 else ' '}: {_hours(h):>10}   ({night} an {NIGHT_HOURS:g} h night)")
    return "\n".join(lines)
