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
    ok = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", "--throughput", "400",
                             "--benchmarks", str(tmp_path / "none.json")])
    assert ok.exit_code == 0, ok.output
    assert "GPU-hours" in ok.output and "8 GPUs" in ok.output and "paper numbers" in ok.output
    as_json = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", "--json", "--throughput", "400"])
    assert json.loads(as_json.output)["throughput"]["windows_per_s"] == 400
    for args, message in ((["--gpu", "Z80"], "unknown GPU"), (["--gpus", "8,x"], "--gpus"), (["--throughput", "0"], "> 0")):
        bad = runner.invoke(app, ["plan", "--region", "japan", "--date", "2022-09", *args])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output
