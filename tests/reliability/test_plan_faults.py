"""``nationmap plan`` anywhere and under bad input: the same costs from any working directory (the
reference packaged with the code, or a results file given), a malformed results file or an
absurd rate as one line, and JSON output that is JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.conftest import assert_refused, run_cli

ROOT = Path(__file__).resolve().parents[2]
PLAN = ["plan", "--region", "japan", "--date", "2022-09", "--throughput", "400"]


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_plan_outside_the_checkout_costs_every_stage_from_the_packaged_reference(tmp_path, monkeypatch):
    from nationmap.ops.plan import REFERENCE_COSTS

    monkeypatch.delenv("NATIONMAP_BENCHMARKS", raising=False)
    outcome = run_cli(PLAN, cwd=tmp_path)  # no benchmarks/ here
    assert outcome.code == 0, outcome.output
    assert "costs from: the reference costs packaged with nationmap" in outcome.output
    assert "not costed" not in outcome.output and "national layers" in outcome.output
    scale = json.loads(REFERENCE_COSTS.read_text())["scale"]  # the stages' costs: the plan names their CPU
    assert f"benchmarks scale, {scale['date'][:10]}, {scale['machine']['cpu']}" in outcome.output
    # local measurements override the reference: by option or by environment, and the plan says which
    (tmp_path / "mine.json").write_text("{}")
    by_option = run_cli([*PLAN, "--benchmarks", tmp_path / "mine.json"], cwd=tmp_path)
    assert by_option.code == 0 and f"costs from: {tmp_path / 'mine.json'} (--benchmarks)" in by_option.output
    assert "not costed" in by_option.output  # that file measured nothing
    monkeypatch.setenv("NATIONMAP_BENCHMARKS", str(tmp_path / "mine.json"))
    by_env = run_cli(PLAN, cwd=tmp_path)
    assert by_env.code == 0 and f"costs from: {tmp_path / 'mine.json'} (NATIONMAP_BENCHMARKS)" in by_env.output


def test_the_packaged_reference_is_what_the_checkout_s_benchmarks_measured():
    """``scripts/make_reference_costs.py`` took it from benchmarks/results.json; rerun it when they change."""
    from nationmap.ops.plan import REFERENCE_COSTS, reference_costs

    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    packaged = json.loads(REFERENCE_COSTS.read_text())
    assert packaged == reference_costs(results)
    for section in ("infer_overhead", "scale"):  # the machine each was measured on travels with it
        assert packaged[section]["machine"]["cpu"] == results[section]["machine"]["cpu"]
        assert packaged[section]["data"] and packaged[section]["date"] == results[section]["date"]


_GPU = {"date": "2026-11-21", "data": {"available": True, "gpu": "H100", "preset": "swin-b",
                                       "scene_stage_patches_per_s": 500.0}}
_COSTS = {"acquisition_fixed_s": 0.02, "cell_base_s_per_gpx": 127.0, "cell_scene_s_per_gpx": 120.0,
          "cell_fixed_s": 0.4, "mean_scenes_per_cell": 10.7, "mosaic_s_per_gpx": {"lulc": 7.8},
          "stac_s_per_item": 0.001}


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe\x00binary", ["cannot read benchmark results"]),                       # not text
    (b'{"gpu": {"data": ', ["not JSON"]),                                               # cut short
    (json.dumps([1, 2]).encode(), ["not a benchmark results file", "list"]),            # JSON of another type
    (json.dumps({"gpu": ["H100"]}).encode(), ["gpu must be a JSON object"]),
    (json.dumps({"gpu": {"data": {"available": True}}}).encode(), ["missing gpu.data.scene_stage_patches_per_s"]),
    (json.dumps({"scale": {"size": "full", "data": {"costs": {k: v for k, v in _COSTS.items()
                                                               if k != "cell_fixed_s"}}}}).encode(),
     ["missing scale.data.costs.cell_fixed_s"]),
    (json.dumps({"gpu": {**_GPU, "data": {**_GPU["data"], "scene_stage_patches_per_s": "fast"}}}).encode(),
     ["scene_stage_patches_per_s must be a number", "fast"]),                           # wrong type of value
    (json.dumps({"gpu": {**_GPU, "data": {**_GPU["data"], "scene_stage_patches_per_s": 0}}}).encode(),
     ["scene_stage_patches_per_s must be > 0"]),
    (b'{"infer_overhead": {"ratios": {"scene_stage_vs_bare": NaN}}}', ["scene_stage_vs_bare must be a finite"]),
    (json.dumps({"infer_overhead": {"data": {"cell_pixels": 100, "runs": {"serial": {"timings": {"cells_s": None}}}}}}
                ).encode(), ["cells_s must be a number"]),
    (json.dumps({"scale": {"size": "full", "data": {"costs": {**_COSTS, "mosaic_s_per_gpx": {}}}}}).encode(),
     ["names no product"]),
])
def test_malformed_benchmark_results_are_one_line(content, words, tmp_path):
    results = tmp_path / "results.json"
    results.write_bytes(content)
    # no --throughput: the file is what the plan would cost the month with (refused before any estimate)
    outcome = run_cli(["plan", "--region", "japan", "--date", "2022-09", "--benchmarks", results])
    assert_refused(outcome, 2, str(results), *words)


def test_a_rate_that_overflows_the_hours_is_one_line_and_json_is_strict(tmp_path):
    plan = ["plan", "--region", "japan", "--date", "2022-09", "--benchmarks", tmp_path / "results.json"]
    (tmp_path / "results.json").write_text("{}")
    for throughput in ("1e-320", "nan", "inf", "-1"):
        for extra in ([], ["--json"]):
            outcome = run_cli([*plan, "--throughput", throughput, *extra])
            assert_refused(outcome, 2, "throughput")
            assert "Infinity" not in outcome.output and "inf h" not in outcome.output
    # a measured rate that small is refused the same way, naming where it came from
    (tmp_path / "results.json").write_text(json.dumps(
        {"gpu": {**_GPU, "data": {**_GPU["data"], "scene_stage_patches_per_s": 1e-320}}}))
    assert_refused(run_cli([*plan, "--json"]), 2, "benchmarks gpu", "no finite number of GPU-hours")
    ok = run_cli([*plan, "--throughput", "400", "--json"])
    assert ok.code == 0, ok.output
    assert _strict_json(ok.output)["costs_source"] == f"{tmp_path / 'results.json'} (--benchmarks)"
