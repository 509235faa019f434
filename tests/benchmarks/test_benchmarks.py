"""Each benchmark runs on a tiny input and reports finite ratios; the runner writes RESULTS.md.

Benchmarks are not timed tests: nothing here asserts a speed."""

from __future__ import annotations

import json
import math
import re

import pytest

from benchmarks import assess_coverage, data_prep, gpu, infer_memory, infer_overhead, national_layer, scale, training
from benchmarks.__main__ import main as bench_main
from nationmap.records import SceneRecord


def _check(result, name):
    assert result.name == name
    assert result.rows and result.ratios
    for key, value in result.ratios.items():
        assert math.isfinite(value) and value > 0, (key, value)
    json.dumps(result.to_dict(), default=str)


def test_products_runner_writes_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert bench_main(["products", "--size", "tiny", "--workdir", str(tmp_path / "work"), "--results", str(out)]) == 0
    text = out.read_text()
    assert "Product writing" in text and "GDAL COG (s)" in text and "| products |" in text
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["products"]["machine"]["cores"] >= 1 and stored["products"]["size"] == "tiny"
    assert bench_main(["nope", "--results", str(out)]) == 2
    # every section names its CPU and whether bf16 is native there (CPU training times hang on it)
    m = stored["products"]["machine"]
    native = f"native bf16: {m['cpu_bf16']}" if m["cpu_bf16"] != "none" else "no native bf16"
    assert f"on {m['cpu']} ({native}), {m['cores']} cores." in text
    del stored["products"]["machine"]["cpu_bf16"]  # as results stored before the probe
    (tmp_path / "results.json").write_text(json.dumps(stored))
    assert bench_main(["--render-only", "--results", str(out)]) == 0
    assert f"on {m['cpu']} (native bf16 not recorded; measured before issue 36)" in out.read_text()


@pytest.mark.slow  # 110 s; `make bench` runs the benchmark itself
def test_infer_memory(tmp_path):
    r = infer_memory.run("tiny", tmp_path)
    _check(r, "infer_memory")
    assert len(r.data["peaks_mib"]) == 3 and r.data["models_mib"] > 100


def test_gpu_benchmark_runs_without_a_gpu(tmp_path):
    r = gpu.run("tiny", tmp_path)
    _check(r, "gpu")
    assert r.data["available"] is False and "No GPU" in r.notes[0]


@pytest.mark.slow  # 90 s; `make bench` runs the benchmark itself
@pytest.mark.ray
def test_infer_overhead(tmp_path, ray_local):
    r = infer_overhead.run("tiny", tmp_path)
    _check(r, "infer_overhead")
    assert r.data["runs"]["serial"]["status"] == "ok" and r.data["runs"]["ray"]["status"] == "ok"
    assert r.data["patches"] == r.data["windows"] > 0  # the pipeline predicted exactly the windows with data


@pytest.mark.slow  # about 110 s on 2 cores; `make bench` runs the benchmark itself
@pytest.mark.ray
def test_data_prep_and_training(tmp_path, ray_local):
    r = data_prep.run("tiny", tmp_path)
    _check(r, "data_prep")
    assert r.data["patches"] > 0
    t = training.run("tiny", tmp_path)
    _check(t, "training")
    assert len(t.data["bare_per_epoch"]) == training.SIZES["tiny"]["epochs"]


def test_national_layer_costs_follow_the_cells(tmp_path):
    r = national_layer.run("tiny", tmp_path)
    _check(r, "national_layer")
    sparse, dense = r.data["layouts"]["sparse"], r.data["layouts"]["dense"]
    assert sparse["box_cells"] > 40 * dense["box_cells"]  # Japan's box, not the 16 cells
    assert sparse["tiles_absent"] > 0.9 and dense["tiles_absent"] == 0.0
    assert r.ratios["sparse_vs_dense_bytes"] < 1.5


@pytest.mark.slow
def test_scale_on_a_two_node_cluster(tmp_path):
    """The scale benchmark's national month (here two cells far apart) on a real two-node cluster
    started by cluster/common/ray-node.sh: the work spreads over both nodes, and the projection
    has every stage."""
    r = scale.run("tiny", tmp_path)
    _check(r, "scale")
    nodes = r.data["nodes"]
    assert len(nodes) == 2 and set(nodes) == set(r.data["national"]["cluster_nodes"])
    assert sum(n["scenes"] for n in nodes.values()) == r.data["costs"]["acquisitions"]
    assert sum(n["cells"] for n in nodes.values()) == 2
    assert r.data["national"]["first"]["rc"] == 0 and r.data["national"]["rerun"]["rc"] == 0
    assert r.data["national"]["counts"]["tasks"]["run_cell"] == 2
    proj = r.data["projection"]
    assert proj["scene_gpu_s"] > 0 and proj["cell_core_s"] > 0 and proj["stac_s"] >= 0
    assert set(proj["mosaic_core_s"]) == {"lulc", "water", "confidence", "count"}


def test_worker_spans_split_idle_time_between_scenes():
    """Two workers: A runs scenes at 0-2 s and 3-4 s (1 s idle between), B one scene 1-3 s."""
    def record(worker, started, seconds):
        return SceneRecord(id=f"{worker}{started}", key="k", status="ok", worker=worker, started=started, seconds=seconds)

    records = [record("a", 100.0, 2.0), record("b", 101.0, 2.0), record("a", 103.0, 1.0)]
    assert scale.worker_spans(records) == {"workers": 2, "span_s": 4.0 + 2.0, "idle_s": 1.0}
    assert scale.worker_spans([SceneRecord(id="x", key="k", status="ok", seconds=1.0)]) is None  # no start time


@pytest.mark.slow  # about 5 min: three Ray Train runs, two baselines, two inference runs
@pytest.mark.ray
def test_quality_benchmark(tmp_path, ray_local):
    from benchmarks import quality

    r = quality.run("tiny", tmp_path)
    assert [row["method"] for row in r.rows][1:] == ["per-pixel baseline (GBT), demo data",
                                                    "nationmap, jobs/cpu-demo (demo data)"]
    for key, value in r.ratios.items():
        assert math.isfinite(value), (key, value)
    assert 0.0 <= r.data["cpu-demo"]["baseline"]["lulc"]["miou"] <= 1.0 and r.data["pixels"] > 0
    json.dumps(r.to_dict(), default=str)
    assert not r.data["cpu-demo"]["trained"]["reused"]
    # mapped with jobs/cpu-demo/infer.toml's settings (batch 8, not the default 16), the tiny overlap over them
    assert r.data["cpu-demo"]["infer"] == {"tta": "none", "overlap": 16, "blend": "cosine", "batch_size": 8}
    again = quality.run("tiny", tmp_path)  # the same specs, code and data: the models are reused, re-scored
    assert again.data["cpu-demo"]["trained"]["reused"]
    assert again.data["cpu-demo"]["train_s"] == r.data["cpu-demo"]["train_s"]
    assert again.data["cpu-demo"]["lulc"] == r.data["cpu-demo"]["lulc"]


def test_quality_training_key_follows_the_specs_the_data_and_the_size(tmp_path, monkeypatch):
    import shutil

    from benchmarks import quality

    jobs = tmp_path / "jobs"
    shutil.copytree(quality.JOBS_DIR / "cpu-demo", jobs / "cpu-demo")
    monkeypatch.setattr(quality, "JOBS_DIR", jobs)
    key = quality.training_key("cpu-demo", tmp_path / "data", "full")
    assert len(key) == 64 and key == quality.training_key("cpu-demo", tmp_path / "data", "full")
    assert key != quality.training_key("cpu-demo", tmp_path / "data", "tiny")
    assert key != quality.training_key("cpu-demo", tmp_path / "other", "full")
    spec = jobs / "cpu-demo" / "lulc.toml"
    spec.write_text("# a comment changes nothing\n" + spec.read_text())
    assert key == quality.training_key("cpu-demo", tmp_path / "data", "full")
    spec.write_text(re.sub(r"(?m)^epochs = \d+", "epochs = 99", spec.read_text()))
    assert key != quality.training_key("cpu-demo", tmp_path / "data", "full")
    assert quality.recipe_tasks("cpu-demo") == ("pretrain", "lulc", "water")
    (jobs / "cpu-demo" / "pretrain.toml").unlink()  # a recipe without pretraining: other models
    assert quality.recipe_tasks("cpu-demo") == ("lulc", "water")
    assert key != quality.training_key("cpu-demo", tmp_path / "data", "full")


def test_assess_coverage(tmp_path):
    """Repeated samples of a map whose truth is known: a coverage per class, and the truth's
    areas independent of the sample (the map's pixel counts differ from them: a map has errors)."""
    r = assess_coverage.run("tiny", tmp_path)
    _check(r, "assess_coverage")
    assert 0 <= r.ratios["min_class_coverage_n200"] <= r.ratios["max_class_coverage_n200"] <= 1
    classes = [row for row in r.rows if row["class"] != "overall accuracy"]
    assert any(row["true km2"] != row["map km2 (pixel count)"] for row in classes)


def test_change_benchmark_counts_flicker_and_found_change():
    """The change benchmark's measures on a series whose answer is known: a block of true change
    mapped from its month on, and flicker (one month wrong, then right again) elsewhere."""
    import numpy as np

    from benchmarks.change import Series, compare
    from nationmap.change.rule import ChangeRule

    months = ("2022-08", "2022-09", "2022-10", "2022-11")
    truth = np.full((4, 10, 10), 5, np.uint8)
    truth[2:, :2, :2] = 6  # 4 px change to bare land (9-class code 6) in month 2 and stay
    lulc = truth.copy()
    lulc[1, 5:7, 5:7] = 3  # 4 px flicker in month 1
    lulc[0, 9, 9] = 0  # a pixel not mapped in month 0
    s = Series(months, truth, lulc, np.full(truth.shape, 80.0, np.float32))
    f = compare([s], ChangeRule(confirm_months=2, min_patch_px=4))
    stable_px = (100 - 4) * 3 - 1  # stable pixels mapped in each month and the one before
    assert f["raw"]["stable_px"] == f["rule"]["stable_px"] == stable_px
    assert f["raw"]["false_change_rate"] == 8 / stable_px  # the flicker, reported twice
    assert f["rule"]["false_change_rate"] == 0.0  # provisional, then gone
    assert f["raw"]["recall"] == f["rule"]["recall"] == 1.0  # the rule confirms it a month later
    assert f["raw"]["true_change_px"] == 4 and f["raw"]["precision"] == 4 / 12 and f["rule"]["precision"] == 1.0
    assert f["raw"]["recall_clearing"] == f["rule"]["recall_clearing"] == 1.0  # forest to bare: a clearing
    assert "recall_flood" not in f["raw"]  # no flood in the series


@pytest.mark.slow  # about 1 min: two small worlds, three months mapped each
def test_change_benchmark_runs(tmp_path):
    from benchmarks import change

    r = change.run("tiny", tmp_path)
    assert [row["world"] for row in r.rows] == ["tuning", "tuning", "heldout", "heldout"]
    for key, value in r.ratios.items():
        assert math.isfinite(value), (key, value)
    assert len(r.data["tuning_grid"]) == math.prod(len(v) for v in change.GRID.values())
