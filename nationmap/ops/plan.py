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

Where the measurements come from: a benchmark results file given with ``--benchmarks FILE`` (or
``NATIONMAP_BENCHMARKS``), else the reference costs packaged with nationmap
(``reference_costs.json``: the sections of the checkout's ``benchmarks/results.json`` that plan
reads, taken by ``scripts/make_reference_costs.py``, with the machine each was measured on), so
the plan is the same from any working directory. A results file is read as a typed record
(:class:`Measurements`); a malformed one is one line of bad input naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nationmap.config import check_value
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
REFERENCE_COSTS = Path(__file__).with_name("reference_costs.json")
BENCHMARKS_ENV = "NATIONMAP_BENCHMARKS"


@dataclass(frozen=True)
class Workload:
    source: str
    scenes: int | None
    windows: int
    cells: int
    cell_pixels: float  # product pixels over all cells


@dataclass(frozen=True)
class Throughput:
    windows_per_s: float  # per GPU, both models (LULC + water) per window
    source: str


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    costs_source: str = ""  # where the measurements came from (a results file or the packaged reference)

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


@dataclass(frozen=True)
class GpuRate:
    """The GPU benchmark's measured scene-stage rate (``benchmarks gpu``)."""

    windows_per_s: float
    gpu: str
    preset: str
    measured: str  # date and machine, for the printed source


@dataclass(frozen=True)
class CellRate:
    """One core's cell-stage time per product pixel (``benchmarks infer_overhead``, serial run)."""

    seconds_per_px: float
    measured: str


@dataclass(frozen=True)
class Measurements:
    """What plan takes from a benchmark results file: each part None where it was not measured."""

    source: str  # the file, or the packaged reference, as printed
    gpu: GpuRate | None = None
    pipeline_efficiency: float | None = None  # scene stage vs bare forward passes, on CPU
    efficiency_measured: str = ""
    cells: CellRate | None = None
    stages: StageCosts | None = None


def _walk(doc: Any, dotted: str, where: str) -> tuple[bool, Any]:
    """(found, value) at a dotted key of a results document; a part of the path that is not a
    JSON object is bad input, a missing key is not found."""
    keys = dotted.split(".")
    value = doc
    for i, key in enumerate(keys):
        if not isinstance(value, dict):
            part = ".".join(keys[:i]) or "the file"
            raise InputError(f"{where}: {part} must be a JSON object (of benchmark results), "
                             f"not {type(value).__name__}")
        if key not in value:
            return False, None
        value = value[key]
    return True, value


def _has(doc: Any, dotted: str, where: str) -> bool:
    return _walk(doc, dotted, where)[0]


def _at(doc: Any, dotted: str, hint: Any, where: str, sign: str = "") -> Any:
    """The value at ``dotted``, required, of type ``hint`` by the configs' rule (finite numbers);
    ``sign`` "> 0" or ">= 0" bounds a number (or every number of a table)."""
    found, value = _walk(doc, dotted, where)
    if not found:
        raise InputError(f"{where}: missing {dotted}")
    value = check_value(value, hint, f"{where}: {dotted}")
    numbers = value.values() if isinstance(value, dict) else [value]
    if (sign == "> 0" and any(v <= 0 for v in numbers)) or (sign == ">= 0" and any(v < 0 for v in numbers)):
        raise InputError(f"{where}: {dotted} must be {sign}, not {value}")
    return value


def _measured(doc: Any, section: str, where: str) -> str:
    """``2026-11-21, AMD EPYC, 2 cores``: when and on what a section was measured, as far as recorded."""
    def optional(key: str, hint: Any) -> Any:
        dotted = f"{section}.{key}"
        return _at(doc, dotted, hint | None, where) if _has(doc, dotted, where) else None

    date, cpu, cores = optional("date", str), optional("machine.cpu", str), optional("machine.cores", int)
    parts = [(date or "undated")[:10], cpu or "an unrecorded CPU"] + ([f"{cores} cores"] if cores else [])
    return ", ".join(parts)


def _gpu_rate(doc: Any, where: str) -> GpuRate | None:
    if not _has(doc, "gpu", where) or not _at(doc, "gpu.data.available", bool, where):
        return None
    return GpuRate(_at(doc, "gpu.data.scene_stage_patches_per_s", float, where, "> 0"),
                   _at(doc, "gpu.data.gpu", str, where), _at(doc, "gpu.data.preset", str, where),
                   _measured(doc, "gpu", where))


def _cell_rate(doc: Any, where: str) -> CellRate | None:
    if not _has(doc, "infer_overhead.data.runs.serial", where):
        return None
    seconds = _at(doc, "infer_overhead.data.runs.serial.timings.cells_s", float, where, "> 0")
    pixels = _at(doc, "infer_overhead.data.cell_pixels", float, where, "> 0")
    return CellRate(seconds / pixels, _measured(doc, "infer_overhead", where))


def _stage_costs(doc: Any, where: str) -> StageCosts | None:
    """``benchmarks scale``'s per-unit costs, from a full-size run only (a tiny smoke run's costs
    are not a cluster's)."""
    if not _has(doc, "scale", where) or _at(doc, "scale.size", str, where) != "full":
        return None
    hints = typing.get_type_hints(StageCosts)
    values = {f.name: _at(doc, f"scale.data.costs.{f.name}", hints[f.name], where,
                          "" if f.name == "cell_fixed_s" else ">= 0")  # a fitted intercept may be < 0
              for f in dataclasses.fields(StageCosts) if f.name != "source"}
    if not values["mosaic_s_per_gpx"]:
        raise InputError(f"{where}: scale.data.costs.mosaic_s_per_gpx names no product")
    return StageCosts(**values, source=f"benchmarks scale, {_measured(doc, 'scale', where)}")


def measurements_of(doc: Any, where: str, source: str) -> Measurements:
    """The measurements plan uses from a results document (``python -m benchmarks``'s
    ``results.json``, or the packaged reference); InputError naming ``where`` and the key if a
    part it reads is missing, mistyped or not a finite number."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a benchmark results file (a JSON object of benchmarks), "
                         f"but a JSON {type(doc).__name__}")
    efficiency, measured = None, ""
    if _has(doc, "infer_overhead.ratios.scene_stage_vs_bare", where):
        efficiency = min(1.0, _at(doc, "infer_overhead.ratios.scene_stage_vs_bare", float, where, "> 0"))
        measured = _measured(doc, "infer_overhead", where)
    return Measurements(source, _gpu_rate(doc, where), efficiency, measured, _cell_rate(doc, where),
                        _stage_costs(doc, where))


def read_measurements(path: str | Path | None = None, how: str = "--benchmarks") -> Measurements:
    """The measurements in the results file ``path`` (given ``how``), or the packaged reference
    costs when ``path`` is None."""
    if path is None:
        doc = json.loads(REFERENCE_COSTS.read_text())
        taken = doc.get("reference", {}).get("taken_from", "benchmarks/results.json")
        return measurements_of(doc, str(REFERENCE_COSTS), f"the reference costs packaged with nationmap "
                                                            f"({REFERENCE_COSTS.name}, from {taken})")
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: benchmark results not found ({how})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read benchmark results ({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    return measurements_of(doc, str(path), f"{path} ({how})")


REFERENCE_SECTIONS = {  # what plan reads of each benchmark: the packaged reference keeps only these
    "gpu": ("date", "size", "machine.cpu", "machine.cores", "machine.gpu", "machine.git", "data.available", "data.gpu",
            "data.preset", "data.scene_stage_patches_per_s"),
    "infer_overhead": ("date", "size", "machine.cpu", "machine.cores", "machine.gpu", "machine.git", "ratios.scene_stage_vs_bare",
                       "data.cell_pixels", "data.runs.serial.timings.cells_s"),
    "scale": ("date", "size", "machine.cpu", "machine.cores", "machine.gpu", "machine.git",
              *(f"data.costs.{f.name}" for f in dataclasses.fields(StageCosts) if f.name != "source")),
}


def reference_subset(results: dict) -> dict:
    """The parts of a ``benchmarks/results.json`` that plan reads (the packaged reference's
    content, less its ``reference`` note); ``scripts/make_reference_costs.py`` writes it."""
    out: dict = {}
    for section, keys in REFERENCE_SECTIONS.items():
        for dotted in keys:
            found, value = _walk(results, f"{section}.{dotted}", "benchmark results")
            if not found:
                continue
            *parents, last = f"{section}.{dotted}".split(".")
            node = out
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
    return out


def reference_costs(results: dict) -> dict:
    """The packaged reference (``reference_costs.json``) taken from a ``benchmarks/results.json``."""
    note = {"taken_from": "benchmarks/results.json", "by": "scripts/make_reference_costs.py",
            "why": "nationmap plan's costs when no --benchmarks file is given; measured on the machines named"}
    return {"reference": note, **reference_subset(results)}


def throughput(measured: Measurements, preset: str, given: float | None, gpu: str) -> Throughput:
    if given is not None:
        if not (math.isfinite(given) and given > 0):
            raise InputError(f"--throughput must be a finite number > 0 windows per second, not {given}")
        return Throughput(given, "given (--throughput)")
    rate = measured.gpu
    if rate is not None and rate.preset == preset:
        return Throughput(rate.windows_per_s, f"measured: scene stage on {rate.gpu}, {preset} bf16 "
                                              f"(benchmarks gpu, {rate.measured})")
    from nationmap.models.info import PEAK_BF16, model_cost, peak_bf16_flops

    peak = peak_bf16_flops(gpu)
    if peak is None:
        raise InputError(f"unknown GPU {gpu!r}: give --throughput (windows/s per GPU) or one of "
                         f"{', '.join(k for k, _ in PEAK_BF16)}")
    flops = model_cost(preset, "lulc").flops_per_patch + model_cost(preset, "water").flops_per_patch
    efficiency, eff_note = 1.0, "no CPU pipeline measurement"
    if measured.pipeline_efficiency is not None:
        efficiency = measured.pipeline_efficiency
        eff_note = (f"x {efficiency:.2f} pipeline efficiency measured on CPU (benchmarks infer_overhead, "
                    f"{measured.efficiency_measured})")
    rate = peak * ASSUMED_UTILISATION / flops * efficiency
    return Throughput(rate, f"estimate, no GPU measurement: {flops / 1e9:.0f} GFLOP per window ({preset} LULC + water) at "
                            f"{ASSUMED_UTILISATION:.0%} of {gpu}'s {peak / 1e12:.0f} TFLOP/s peak bf16, {eff_note}; "
                            "run `python -m benchmarks gpu` on a GPU node to measure it")


def cell_cost(measured: Measurements, cell_pixels: float) -> tuple[float | None, str]:
    """CPU core-hours of the cell stage, from the inference benchmark's measured cell rate."""
    rate = measured.cells
    if rate is None:
        return None, "no cell-stage measurement (run `python -m benchmarks infer_overhead`)"
    return cell_pixels * rate.seconds_per_px / 3600, (f"measured {1 / rate.seconds_per_px / 1e6:.1f} Mpx/s per core "
                                                      f"(benchmarks infer_overhead, serial cell stage, {rate.measured})")


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
              benchmarks: str | Path | Measurements | None = None) -> Plan:
    """The plan of a region's month; ``benchmarks``: a results file, its measurements, or None for
    the packaged reference costs."""
    if any(n < 1 for n in gpus):
        raise InputError("GPU counts must be >= 1")
    if cpus_per_gpu < 1:
        raise InputError("--cpus-per-gpu must be >= 1")
    measured = benchmarks if isinstance(benchmarks, Measurements) else read_measurements(benchmarks)
    work = workload(region, month, catalog, size, overlap, pixels_per_degree)
    rate = throughput(measured, preset, given, gpu)
    gpu_hours = work.windows / rate.windows_per_s / 3600
    costs = measured.stages
    if costs is None:
        core_hours, cell_source = cell_cost(measured, work.cell_pixels)
        wall = {n: gpu_hours / n + (core_hours or 0.0) / (n * cpus_per_gpu) for n in gpus}
        plan = Plan(region.name, month, work, rate, gpu_hours, core_hours, cell_source, wall, cpus_per_gpu,
                    costs_source=measured.source)
    else:
        stages = stage_hours(work, costs, pixels_per_degree)
        wall = {n: (gpu_hours + stages["scenes_fixed_gpu"]) / n + stages["cells_core"] / (n * cpus_per_gpu)
                + stages["mosaic_wall"] + stages["stac"] for n in gpus}
        plan = Plan(region.name, month, work, rate, gpu_hours, stages["cells_core"], costs.source, wall, cpus_per_gpu,
                    stages, measured.source)
    return _finite(plan)


def _finite(plan: Plan) -> Plan:
    """The plan, if every figure in it is a finite number (what ``--json`` can hold); a rate so
    small that the hours overflow is bad input naming the rate's source."""
    t = plan.throughput
    if not math.isfinite(plan.gpu_hours):
        raise InputError(f"{t.windows_per_s:g} windows/s per GPU ({t.source}) gives no finite number of GPU-hours "
                         f"for {plan.workload.windows:,} windows; give a realistic --throughput")
    others = [plan.cell_core_hours or 0.0, *plan.wall_hours.values(), *(plan.stages or {}).values()]
    if not all(math.isfinite(v) for v in others):
        raise InputError(f"the cell and national stages' costs ({plan.cell_source}, from {plan.costs_source}) "
                         "give no finite number of hours")
    return plan


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def format_plan(plan: Plan) -> str:
    w, t = plan.workload, plan.throughput
    lines = [f"plan: {plan.region} {plan.month}",
             f"workload:   {w.windows:,} windows of LULC + water ({w.source})",
             f"            {w.cells} cells, {w.cell_pixels / 1e9:.2f} Gpx of products",
             f"throughput: {t.windows_per_s:,.0f} windows/s per GPU ({t.source})",
             f"GPU-hours:  {plan.gpu_hours:.2f}"]
    if plan.costs_source:
        lines.insert(1, f"costs from: {plan.costs_source}")
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
