"""The CLI, configs and the network seam under bad input and faults: non-finite and mistyped
options and specs, markup in paths and messages, read-only and full disks, existing outputs,
failed units and a job API that accepts connections and never answers. Every case asserts the
exit code, one ``error:`` line without traceback and, where outputs exist, that none changed."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_CELLS
from tests.reliability.conftest import assert_refused, run_cli, run_cli_process, tree_hashes

REGION = ",".join(TINY_CELLS)


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch, tmp_path):
    """No token or cluster address from the machine running the tests."""
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a token mode left by another test's cluster must not leak in


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ options: non-finite numbers

INFER = ["infer", "--region", "demo", "--date", "2022-09"]


@pytest.mark.parametrize("args, words", [
    (["train", "lulc", "--lr", "nan"], ("lr", "finite")),
    (["train", "lulc", "--alpha-scale", "nan"], ("alpha_scale", "finite")),
    (["train", "pretrain", "--warmup-epochs", "inf"], ("warmup_epochs", "finite")),
    ([*INFER, "--cpus-per-actor", "nan"], ("cpus_per_actor", "finite")),
    ([*INFER, "--gpus-per-actor", "inf"], ("--gpus-per-actor", "finite")),
    (["refresh", "--region", "demo", "--month", "2022-09", "--cpus-per-actor", "nan"], ("cpus_per_actor",)),
    (["plan", "--region", "demo", "--date", "2022-09", "--throughput", "nan"], ("throughput",)),
], ids=["train-lr", "train-alpha", "pretrain-warmup", "infer-cpus", "infer-gpus", "refresh-cpus", "plan-throughput"])
def test_non_finite_options_are_bad_input(args, words, guarded):
    guarded.snapshot()
    outcome = run_cli(args, cwd=guarded.root)
    assert_refused(outcome, 2, *words)
    guarded.check()


@pytest.mark.parametrize("args, words", [
    (["train", "lulc", "--epochs", "ten"], ("--epochs",)),
    (["data", "synth", "out/w", "--bogus"], ("--bogus",)),
    (["models", "info"], ("preset",)),
], ids=["not-an-int", "unknown-option", "missing-argument"])
def test_usage_errors_are_one_error_line(args, words, guarded):
    guarded.snapshot()
    assert_refused(run_cli(args, cwd=guarded.root), 2, *words)
    guarded.check()


# ------------------------------------------------------------------ specs with wrong types

def test_train_spec_with_a_wrong_type_names_the_key(guarded):
    spec = _write(guarded.root / "bad.toml", '[train]\ntask = "lulc"\nepochs = "ten"\n')
    guarded.snapshot()
    assert_refused(run_cli(["train", "lulc", "--spec", spec], cwd=guarded.root), 2, "epochs", "an integer", "ten")
    guarded.check()


def test_train_spec_with_an_unknown_key_suggests_the_known_one(guarded):
    spec = _write(guarded.root / "typo.toml", '[train]\ntask = "lulc"\nepoch = 3\n')
    guarded.snapshot()
    assert_refused(run_cli(["train", "lulc", "--spec", spec], cwd=guarded.root), 2, "'epoch'", "'epochs'")
    guarded.check()


def test_train_spec_with_an_unknown_precision_lists_the_known_ones(guarded):
    spec = _write(guarded.root / "fp16.toml", '[train]\ntask = "lulc"\nprecision = "fp16"\n')
    guarded.snapshot()
    assert_refused(run_cli(["train", "lulc", "--spec", spec], cwd=guarded.root), 2, "unknown precision 'fp16'",
                   "auto, bf16, fp32")
    guarded.check()


def test_infer_config_with_a_wrong_type_names_the_key(guarded):
    config = _write(guarded.root / "infer.toml", '[infer]\noverlap = "64"\nlulc_model = "m"\n')
    guarded.snapshot()
    assert_refused(run_cli([*INFER, "--config", config], cwd=guarded.root), 2, "overlap", "an integer")
    guarded.check()


@pytest.mark.parametrize("setting, words", [
    ("change_min_patch_px = 0", ("change rule", "min_patch_px", "1..1000")),
    ("change_min_patch_px = 5000", ("change rule", "min_patch_px", "1..1000")),
    ("change_confirm_months = 0", ("change rule", "confirm_months", "1..12")),
    ("change_min_confidence = 120.0", ("change rule", "percent")),
], ids=["unit-0", "unit-too-big-for-the-strip-margin", "months-0", "confidence-over-100"])
def test_infer_config_with_a_change_rule_out_of_range_is_one_line(setting, words, guarded):
    """The change rule's settings are checked with the config, before any work (no run directory)."""
    config = _write(guarded.root / "infer.toml", f'[infer]\n{setting}\nlulc_model = "m"\n')
    guarded.snapshot()
    assert_refused(run_cli([*INFER, "--config", config], cwd=guarded.root), 2, *words)
    guarded.check()


@pytest.mark.parametrize("text, words", [
    ('[refresh]\n[job]\npython = 3\n', ("python", "a string")),
    ('[refresh]\n[job]\nruntime_env = "x"\n', ("runtime_env", "a table")),
    ('[train]\ntask = "lulc"\nlr = "fast"\n', ("lr", "a number")),
    ('[infer]\nbatch_size = 1.5\n', ("batch_size", "an integer")),
    ('[refresh]\nraw_dir = 7\n', ("raw_dir", "a string")),
], ids=["job-python", "job-runtime-env", "train-lr", "infer-batch", "refresh-raw-dir"])
def test_submitted_spec_with_a_wrong_type_is_refused_before_any_network(text, words, guarded):
    spec = _write(guarded.root / "job.toml", text)
    guarded.snapshot()
    # port 9 (discard) is never a job API: a refusal that names the key came before any connection
    outcome = run_cli(["submit", spec, "--address", "http://127.0.0.1:9"], cwd=guarded.root)
    assert_refused(outcome, 2, *words)
    guarded.check()


# ------------------------------------------------------------------ plain-text messages

def test_markup_in_a_path_is_printed_as_it_is(guarded):
    weird = "ds[/bold]x[red]y"
    guarded.snapshot()
    outcome = run_cli(["data", "info", f"out/{weird}"], cwd=guarded.root)
    assert_refused(outcome, 2, weird)
    guarded.check()


def test_bracketed_words_in_messages_survive(guarded):
    spec = _write(guarded.root / "spec.toml", "[infer]\nregion = 'demo'\n")
    guarded.snapshot()
    outcome = run_cli(["refresh", "--config", spec, "--month", "2022-09"], cwd=guarded.root)
    assert_refused(outcome, 2, "[refresh]")
    guarded.check()


def test_markup_in_a_run_id_is_printed_as_it_is(guarded):
    guarded.snapshot()
    assert_refused(run_cli(["runs", "show", "x[/]y", "--root", "out"], cwd=guarded.root), 2, "x[/]y")
    guarded.check()


# ------------------------------------------------------------------ existing outputs

def _tiny_checkpoint(run_dir: Path) -> None:
    """A run directory with one checkpoint of a tiny random water model (no training)."""
    import torch

    from nationmap.models import SegmentationConfig, SegmentationModel
    from nationmap.train.checkpoint import save_training_state
    from nationmap.train.config import TrainConfig
    from nationmap.train.optim import build_optimizer

    cfg = SegmentationConfig.from_preset("tiny", "water")
    cfg = cfg.replace(encoder=cfg.encoder.replace(img_size=64))
    torch.manual_seed(0)
    model = SegmentationModel(cfg)
    meta = {"task": "water", "model_config": cfg.to_dict(), "normalisation": {"mean_db": -11.0, "std_db": 6.0},
            "class_table": None, "scheme": "water", "threshold": 0.5, "epoch": 1, "step": 1, "metrics": {}}
    save_training_state(run_dir / "best", model, build_optimizer(model, TrainConfig(task="water", preset="tiny")), meta)


@pytest.fixture()
def exported(guarded):
    """A training run outside the output root and an earlier bundle at out/bundle."""
    _tiny_checkpoint(guarded.root / "run")
    bundle = guarded.out / "bundle"
    _write(bundle / "model.json", '{"earlier": true}\n')
    return guarded.root / "run", bundle


def test_export_over_an_existing_bundle_needs_overwrite(exported, guarded):
    run, bundle = exported
    guarded.snapshot()
    assert_refused(run_cli(["export", run, "--out", bundle], cwd=guarded.root), 2, "--overwrite", str(bundle))
    guarded.check()


def test_export_with_overwrite_replaces_the_bundle(exported, guarded):
    run, bundle = exported
    outcome = run_cli(["export", run, "--out", bundle, "--overwrite"], cwd=guarded.root)
    assert outcome.code == 0, outcome.output
    assert sorted(p.name for p in bundle.iterdir()) == ["model.json", "model.safetensors"]
    assert "earlier" not in (bundle / "model.json").read_text()
    assert sorted(p.name for p in guarded.out.iterdir()) == ["bundle"]  # no staging left beside it


def test_full_disk_during_export_is_one_line_and_keeps_the_old_bundle(exported, guarded, monkeypatch):
    run, bundle = exported
    import nationmap.train.checkpoint as checkpoint

    def full(tensors, path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(checkpoint, "save_file", full)
    guarded.snapshot()
    outcome = run_cli(["export", run, "--out", bundle, "--overwrite"], cwd=guarded.root)
    assert_refused(outcome, 1, "No space left on device", "model.safetensors")
    guarded.check()
    assert sorted(p.name for p in guarded.out.iterdir()) == ["bundle"]


def test_eval_over_existing_results_needs_overwrite(exported, guarded):
    run, bundle = exported
    _write(guarded.out / "eval" / "metrics.json", "{}\n")
    guarded.snapshot()
    outcome = run_cli(["eval", "water", "--model", bundle, "--data", guarded.root / "no-dataset",
                       "--out", guarded.out / "eval"], cwd=guarded.root)
    assert_refused(outcome, 2, "--overwrite")
    guarded.check()


def test_eval_of_a_missing_bundle_leaves_no_directory_behind(guarded):
    guarded.snapshot()
    outcome = run_cli(["eval", "lulc", "--model", guarded.out / "none" / "bundle", "--data", guarded.root / "no-ds"],
                      cwd=guarded.root)
    assert_refused(outcome, 2, "bundle")
    guarded.check()
    assert not (guarded.out / "none").exists()  # its default output MODEL/eval-test was not started


SYNTH = ["--region", "N35E137", "--months", "2022-09", "--lulc-pixels-per-degree", "120", "--scene-pixel-m", "500",
         "--scene-length-km", "30", "--scene-width-km", "30", "--executor", "serial"]


def test_synth_over_an_existing_world_needs_overwrite(guarded):
    _write(guarded.out / "world" / "synth.json", "{}\n")
    guarded.snapshot()
    assert_refused(run_cli(["data", "synth", guarded.out / "world", *SYNTH], cwd=guarded.root), 2, "--overwrite")
    guarded.check()


def test_synth_with_overwrite_replaces_the_world(guarded):
    world = guarded.out / "world"
    _write(world / "stale.txt", "from an earlier world\n")
    outcome = run_cli(["data", "synth", world, *SYNTH, "--overwrite"], cwd=guarded.root)
    assert outcome.code == 0, outcome.output
    assert (world / "synth.json").is_file() and not (world / "stale.txt").exists()
    assert sorted(p.name for p in guarded.out.iterdir()) == ["world"]


def test_read_only_disk_during_synth_is_one_line_naming_the_path(guarded, monkeypatch):
    import nationmap.data.synth.generate as generate

    def read_only(out, cfg, executor="ray"):
        raise OSError(errno.EROFS, "Read-only file system", str(Path(out) / "lulc"))

    monkeypatch.setattr(generate, "synthesize", read_only)
    guarded.snapshot()
    outcome = run_cli(["data", "synth", guarded.out / "world", *SYNTH], cwd=guarded.root)
    assert_refused(outcome, 1, "Read-only file system", "lulc")
    guarded.check()


def test_unwritable_place_is_one_line_naming_the_path(guarded):
    target = Path("/sys/nationmap-test/world")  # sysfs refuses new directories, to root as well
    outcome = run_cli(["data", "synth", target, *SYNTH], cwd=guarded.root)
    assert_refused(outcome, 1, "/sys/nationmap-test")


def test_demo_that_cannot_train_is_refused_before_any_work(guarded):
    guarded.snapshot()
    outcome = run_cli(["demo", "--out", guarded.out / "demo", "--executor", "serial"], cwd=guarded.root)
    assert_refused(outcome, 2, "--executor ray")
    guarded.check()
    assert not (guarded.out / "demo").exists()  # not minutes of data stages first


# ------------------------------------------------------------------ failed units count

def test_catalog_with_an_unreadable_file_exits_partial(world_copy, tmp_path):
    victim = sorted((world_copy / "alos2").rglob("*.tif"))[0]
    victim.write_bytes(victim.read_bytes()[:500])
    outcome = run_cli(["data", "catalog", world_copy, "--out", tmp_path / "cat.parquet", "--executor", "serial"])
    assert outcome.code == 3, outcome.output
    assert "1 failed" in outcome.output and victim.name in outcome.output
    assert "Traceback" not in outcome.output


def test_infer_where_every_scene_fails_exits_1(world_copy, tiny_bundles, tmp_path):
    catalog = tmp_path / "cat.parquet"
    assert run_cli(["data", "catalog", world_copy, "--out", catalog, "--executor", "serial"]).code == 0
    for scene in (world_copy / "alos2").rglob("*.tif"):
        scene.write_bytes(scene.read_bytes()[:500])  # every scene unreadable after cataloguing
    outcome = run_cli(["infer", "--region", REGION, "--date", "2022-09", "--catalog", catalog,
                       "--lulc-model", tiny_bundles["lulc"], "--water-model", tiny_bundles["water"],
                       "--out", tmp_path / "products", "--pixels-per-degree", "600", "--overlap", "16",
                       "--executor", "serial", "--gpus-per-actor", "0"], cwd=tmp_path)
    assert outcome.code == 1, outcome.output
    assert "Traceback" not in outcome.output


def test_prepare_with_a_scene_unreadable_after_cataloguing_exits_partial(world_copy, tmp_path):
    catalog = tmp_path / "cat.parquet"
    assert run_cli(["data", "catalog", world_copy, "--out", catalog, "--executor", "serial"]).code == 0
    victim = sorted((world_copy / "alos2" / "2022-09").rglob("*.tif"))[0]  # a finetuning scene
    victim.write_bytes(victim.read_bytes()[:500])
    outcome = run_cli(["data", "prepare", "--catalog", catalog, "--lulc-dir", world_copy / "lulc", "--out",
                       tmp_path / "ds", "--region", REGION, "--pretrain-months", "2022-10", "--finetune-months",
                       "2022-09", "--anchors", "4000", "--patch-size", "32", "--executor", "serial"])
    assert outcome.code == 3, outcome.output
    assert "skipped" in outcome.output and "Traceback" not in outcome.output


# ------------------------------------------------------------------ a job API that never answers

@pytest.fixture()
def silent_api():
    """An http address whose server accepts TCP connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("args", [
    ["submit", "refresh"],
    ["runs", "list", "--root", "out"],
    ["runs", "logs", "raysubmit_x", "--no-follow"],
], ids=["submit", "runs-list", "runs-logs"])
def test_silent_job_api_times_out_with_one_line(args, silent_api, guarded, monkeypatch):
    monkeypatch.setenv("NATIONMAP_JOB_API_TIMEOUT", "1")
    guarded.snapshot()
    t0 = time.monotonic()
    outcome = run_cli([*args, "--address", silent_api], cwd=guarded.root)
    assert time.monotonic() - t0 < 20, "the command waited on a silent endpoint"
    assert_refused(outcome, 1, silent_api, "no answer")
    guarded.check()


def test_silent_job_api_times_out_in_a_process(silent_api, guarded, monkeypatch):
    monkeypatch.setenv("NATIONMAP_JOB_API_TIMEOUT", "1")
    t0 = time.monotonic()
    outcome = run_cli_process(["submit", "refresh", "--address", silent_api], cwd=guarded.root, timeout=60)
    assert time.monotonic() - t0 < 45
    assert_refused(outcome, 1, "no answer")


def test_bad_timeout_setting_is_bad_input(guarded, monkeypatch):
    monkeypatch.setenv("NATIONMAP_JOB_API_TIMEOUT", "nan")
    assert_refused(run_cli(["submit", "refresh", "--address", "http://127.0.0.1:9"], cwd=guarded.root), 2,
                   "NATIONMAP_JOB_API_TIMEOUT")


def test_hashes_helper_sees_changes(tmp_path):
    """The guard this module relies on notices a change (a test of the test)."""
    _write(tmp_path / "a", "1")
    before = tree_hashes(tmp_path)
    _write(tmp_path / "a", "2")
    assert tree_hashes(tmp_path) != before


@pytest.mark.parametrize("trees", [b"not a zip", None])
def test_a_baseline_bundle_with_bad_trees_is_one_line(tmp_path, trees):
    """A per-pixel baseline bundle whose model.skops is corrupt or missing: one line, exit 2."""
    import json

    from nationmap.data.lulc import load_class_table
    from nationmap.records import BundleMeta, Normalisation

    bundle = tmp_path / "baseline"
    bundle.mkdir()
    meta = BundleMeta(task="lulc", model_kind="pixel-gbt", model_config={
        "num_classes": 9, "windows": [3, 7, 15, 31], "max_pixels": 1000, "max_iter": 10, "learning_rate": 0.1,
        "max_leaf_nodes": 31, "seed": 0}, normalisation=Normalisation(mean_db=-12.0, std_db=6.0),
        class_table=load_class_table().to_dict(), scheme="lulc9")
    (bundle / "model.json").write_text(json.dumps(meta.to_json()))
    if trees is not None:
        (bundle / "model.skops").write_bytes(trees)
    outcome = run_cli(["eval", "lulc", "--model", bundle, "--data", tmp_path / "no-dataset", "--out", tmp_path / "ev"])
    assert_refused(outcome, 2, "model.skops")
    assert not (tmp_path / "ev").exists()


# ------------------------------------------------------------------ infer: damaged inputs found late


def _infer_args(catalog, bundles, out, month="2022-10", executor="serial"):
    return ["infer", "--region", REGION, "--date", month, "--catalog", catalog, "--lulc-model", bundles["lulc"],
            "--water-model", bundles["water"], "--out", out, "--pixels-per-degree", "600", "--overlap", "16",
            "--executor", executor]


@pytest.mark.parametrize("text, words", [
    ('{"format": 1, "run_id": "infer-', ("manifest.json", "not a readable JSON record")),
    ('["a", "list"]', ("manifest.json",)),
    ('{"format": 999}', ("manifest.json",)),
    (None, ("manifest.json", "not found")),
], ids=["truncated", "a-list", "another-format", "missing"])
def test_infer_with_a_damaged_previous_month_is_refused_before_any_work(tiny_catalog, tiny_bundles, guarded,
                                                                          text, words):
    """``previous`` (the month before, for the change table) is read first: a damaged manifest is
    one line of bad input, and no run directory is made."""
    september = guarded.root / "september"
    september.mkdir()
    if text is not None:
        (september / "manifest.json").write_text(text)
    spec = _write(guarded.root / "infer.toml", f'[infer]\nprevious = "{september}"\n')
    guarded.snapshot()
    outcome = run_cli([*_infer_args(tiny_catalog, tiny_bundles, guarded.out / "products"), "--config", spec])
    assert_refused(outcome, 2, *words)
    guarded.check()
    assert not (guarded.out / "products").exists()


@pytest.mark.ray
def test_infer_whose_predictors_cannot_load_the_model_is_one_line_naming_the_log(tiny_catalog, tiny_bundles,
                                                                                   ray_local, tmp_path):
    """The weights are damaged after the driver's checks (which read the bundle's record, not its
    tensors): every Ray Data predictor dies in its constructor. The command says why in one line
    naming the run's log file, where the worker's traceback is."""
    import shutil

    bundles = {task: tmp_path / task for task in tiny_bundles}
    for task, path in bundles.items():
        shutil.copytree(tiny_bundles[task], path)
    weights = bundles["lulc"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    out = tmp_path / "products"
    outcome = run_cli([*_infer_args(tiny_catalog, bundles, out, month="2022-09", executor="ray"),
                       "--gpus-per-actor", "0", "--concurrency", "1"])
    assert_refused(outcome, 1, "a Ray worker failed", "CheckpointError", "model.safetensors", "full log: ")
    logs = list(out.rglob("logs/nationmap.log"))
    assert len(logs) == 1 and str(logs[0]) in outcome.error_lines[0], (logs, outcome.output)
    assert "Traceback" in logs[0].read_text()
