"""``nationmap plan``: workload from the catalog or the paper, throughput sources, CLI errors."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from nationmap.cli.main import app
from nationmap.data.catalog import filter_catalog, read_catalog
from nationmap.data.months import parse_month
from nationmap.data.regions import resolve_region
from nationmap.ops.plan import make_plan, workload

runner = CliRunner()


def test_paper_workload_for_japan_and_a_measured_gpu_rate(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"gpu": {"date": "2026-11-21", "data": {
        "available": True, "preset": "swin-b", "gpu": "NVIDIA H100 80GB HBM3", "scene_stage_patches_per_s": 500.0}}}))
    plan = make_plan(resolve_region("japan"), "2022-09", None, 256, 64, 12000, "swin-b", [1, 8], benchmarks=results)
    # 1,960,037 non-overlapping patches over three months; stride 192 windows: (256/192)^2 as many
    expected = math.ceil(1_960_037 / 3 * (256 / 192) ** 2)
    assert plan.workload.windows == expected and plan.workload.scenes is None
    assert plan.throughput.windows_per_s == 500.0 and plan.throughput.source.startswith("measured")
    assert math.isclose(plan.gpu_hours, expected / 500.0 / 3600)
    assert math.isclose(plan.wall_hours[8], plan.gpu_hours / 8)  # no cell-stage measurement in this file
    assert plan.cell_core_hours is None


def test_catalog_workload_counts_every_window(tiny_catalog):
    region = resolve_region("N35E137,N35E138")
    w = workload(region, "2022-09", tiny_catalog, 64, 16, 600)
    scenes = filter_catalog(read_catalog(tiny_catalog), region, [parse_month("2022-09")])
    # independent count: windows every 48 px, the last one flush with the edge
    per_axis = lambda n: 1 if n <= 64 else math.ceil((n - 64) / 48) + 1  # noqa: E731
    assert w.windows == sum(per_axis(h) * per_axis(wd) for h, wd in zip(scenes.height, scenes.width))
    assert w.scenes == len(scenes) and w.cells == 2


def test_estimate_and_given_throughput(tmp_path):
    region = resolve_region("N35E137")
    est = make_plan(region, "2022-09", None, 256, 64, 12000, "swin-b", [1], gpu="A100")
    assert est.throughput.source.startswith("estimate") and "A100" in est.throughput.source
    given = make_plan(region, "2022-09", None, 256, 64, 12000, "swin-b", [2], given=100.0)
    assert math.isclose(given.gpu_hours, given.workload.windows / 100.0 / 3600)


def test_cli(tmp_path):
    (tmp_path / "empty.json").write_text("{}")  # results of no benchmark: the cell stage is not costed
    ok = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", "--throughput", "400",
                             "--benchmarks", str(tmp_path / "empty.json")])
    assert ok.exit_code == 0, ok.output
    assert "GPU-hours" in ok.output and "8 GPUs" in ok.output and "paper numbers" in ok.output
    assert f"costs from: {tmp_path / 'empty.json'} (--benchmarks)" in ok.output and "not costed" in ok.output
    missing = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", "--throughput", "400",
                                  "--benchmarks", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "none.json: benchmark results not found" in missing.output
    as_json = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", "--json", "--throughput", "400"])
    assert json.loads(as_json.output)["throughput"]["windows_per_s"] == 400
    for args, message in ((["--gpu", "Z80"], "unknown GPU"), (["--gpus", "8,x"], "--gpus"), (["--throughput", "0"], "> 0")):
        bad = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", *args])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output


def test_stage_costs_from_the_scale_benchmark(tmp_path):
    """With ``benchmarks scale`` results, every stage is costed and adds to the wall time."""
    costs = {"acquisition_fixed_s": 0.5, "cell_base_s_per_gpx": 100.0, "cell_scene_s_per_gpx": 50.0,
             "cell_fixed_s": 1.0, "mean_scenes_per_cell": 10.0, "stac_s_per_item": 0.01,
             "mosaic_s_per_gpx": {"lulc": 40.0, "water": 30.0, "confidence": 60.0, "count": 20.0},
             "acquisitions": 700}  # extra keys of the benchmark are ignored
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"scale": {"date": "2026-12-01", "size": "tiny", "data": {"costs": costs}}}))
    region = resolve_region("japan")
    smoke = make_plan(region, "2022-09", None, 256, 64, 12000, "swin-b", [8], given=1000.0, benchmarks=results)
    assert smoke.stages is None  # a tiny smoke run's costs are not used
    results.write_text(json.dumps({"scale": {"date": "2026-12-01", "size": "full", "data": {"costs": costs}}}))
    plan = make_plan(region, "2022-09", None, 256, 64, 12000, "swin-b", [8], given=1000.0, benchmarks=results)
    cells = len(region.cells)
    gpx = 12000**2 / 1e9
    st = plan.stages
    assert math.isclose(st["cells_core"], cells * (gpx * (100 + 50 * 10) + 1.0) / 3600)
    assert math.isclose(st["mosaic_wall"], 60.0 * cells * gpx / 3600)  # the slowest product
    assert math.isclose(st["stac"], cells * 4 * 0.01 / 3600)
    scenes = plan.workload.windows / (6000 * 5000 / 192**2)
    assert math.isclose(st["scenes_fixed_gpu"], scenes * 0.5 / 3600)
    expected = (plan.gpu_hours + st["scenes_fixed_gpu"]) / 8 + st["cells_core"] / (8 * 12) + st["mosaic_wall"] + st["stac"]
    assert math.isclose(plan.wall_hours[8], expected)
    ok = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", "--throughput", "400",
                             "--benchmarks", str(results)])
    assert ok.exit_code == 0 and "national layers" in ok.output and "not costed" not in ok.output, ok.output
