"""Each benchmark runs on a tiny input and reports finite ratios; the runner writes RESULTS.md.

Benchmarks are not timed tests: nothing here asserts a speed."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import data_prep, gpu, infer_memory, infer_overhead, training
from benchmarks.__main__ import main as bench_main


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


def test_infer_memory(tmp_path):
    r = infer_memory.run("tiny", tmp_path)
    _check(r, "infer_memory")
    assert len(r.data["peaks_mib"]) == 3 and r.data["models_mib"] > 100


def test_gpu_benchmark_runs_without_a_gpu(tmp_path):
    r = gpu.run("tiny", tmp_path)
    _check(r, "gpu")
    assert r.data["available"] is False and "No GPU" in r.notes[0]


@pytest.mark.ray
def test_infer_overhead(tmp_path, ray_local):
    r = infer_overhead.run("tiny", tmp_path)
    _check(r, "infer_overhead")
    assert r.data["runs"]["serial"]["status"] == "ok" and r.data["runs"]["ray"]["status"] == "ok"
    assert r.data["patches"] == r.data["windows"] > 0  # the pipeline predicted exactly the windows with data


@pytest.mark.ray
def test_data_prep_and_training(tmp_path, ray_local):
    r = data_prep.run("tiny", tmp_path)
    _check(r, "data_prep")
    assert r.data["patches"] > 0
    t = training.run("tiny", tmp_path)
    _check(t, "training")
    assert len(t.data["bare_per_epoch"]) == training.SIZES["tiny"]["epochs"]
