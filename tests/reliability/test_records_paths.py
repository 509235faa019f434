"""Red team at the seams of records, paths and writes: foreign or damaged records, symlinks planted
in run and month directories, a record pointing its log anywhere, writes that fail half-way.

Each case asserts what the README promises: one ``error:`` line and exit code 2 for bad input,
nothing written outside the output root, nothing that existed changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nationmap.errors import InputError
from nationmap.files import atomic_file, safe_child, staged_dir, write_json
from nationmap.infer.stages import RunPaths
from nationmap.ops.publish import MonthDir, publish
from nationmap.records import (CellRecord, FileEntry, Products, RecordError, RefreshRecord, RunManifest, SceneJob,
                               SceneRecord)
from tests.conftest import TINY_CELLS
from tests.reliability.conftest import assert_refused, run_cli, tree_hashes

REGION = ",".join(TINY_CELLS)


# ---------------------------------------------------------------------------- records


def test_records_round_trip_and_refuse_what_they_do_not_know():
    scene = SceneRecord(id="s1", key="k", status="ok", windows=4, sha256="ab", started=1.5, seconds=2.0)
    manifest = RunManifest(run_id="r", status="partial", region="demo", month="2022-09", scenes=[scene],
                           cell_results=[CellRecord(cell="N35E137", key="c", status="ok",
                                                    files={"lulc": FileEntry("a.tif", "ff")})],
                           products=Products(vrt={"lulc": FileEntry("mosaic/x.vrt", "ee")}, stac="stac/catalog.json"))
    assert RunManifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    data = scene.to_json()
    for bad, words in [({**data, "windows": "4"}, "windows must be an integer"),
                       ({**data, "seconds": float("nan")}, "seconds must be a finite number"),
                       ({**data, "format": "nationmap-scene/2"}, "expected 'nationmap-scene/1'"),
                       ({**data, "colour": "red"}, "unknown field(s) colour"),
                       ({**data, "status": "done"}, "scene status must be one of"),
                       ({k: v for k, v in data.items() if k != "key"}, "missing field(s) key")]:
        with pytest.raises(RecordError, match=words.replace("(", r"\(").replace(")", r"\)")):
            SceneRecord.from_json(bad, "s1.json")


def test_a_damaged_unit_record_is_redone_not_a_crash(tmp_path):
    path = tmp_path / "s1.json"
    path.write_text('{"format": "nationmap-scene/1", "id": "s1", "key": ')  # cut by a crash of an old writer
    assert SceneRecord.read_or_none(path) is None
    path.write_text(json.dumps({"id": "s1", "key": "k", "status": "ok"}))  # a record of an older version
    assert SceneRecord.read_or_none(path) is None
    with pytest.raises(RecordError, match="format None"):
        SceneRecord.read(path)


def test_scene_jobs_refuse_a_foreign_row():
    job = SceneJob(id="a", path="/x.tif", units="", key="k", output="/o.tif", record="/r.json")
    assert SceneJob.from_json(job.to_json()) == job
    with pytest.raises(RecordError, match="path must be a string"):
        SceneJob.from_json({**job.to_json(), "path": 3})


def _infer_args(tiny_catalog, tiny_world, bundles: dict, out: Path) -> list:
    return ["infer", "--region", REGION, "--date", "2022-09", "--catalog", tiny_catalog, "--lulc-model", bundles["lulc"],
            "--water-model", bundles["water"], "--out", out, "--lulc-dir", tiny_world / "lulc", "--executor", "serial",
            "--pixels-per-degree", 600]


@pytest.mark.parametrize("change, words", [
    (lambda m: m.pop("model_config"), ["missing field(s) model_config"]),
    (lambda m: m["normalisation"].update(std_db="six"), ["std_db must be a number"]),
    (lambda m: m["model_config"]["encoder"].update(img_size="64"), ["img_size must be a positive int"]),
    (lambda m: m.update(format="nationmap-bundle/7"), ["format 'nationmap-bundle/7'"]),
    (lambda m: m.update(task="segment"), ["bundle task must be one of"]),
    (lambda m: m.update(class_table=None), ["names no class table"]),
])
def test_bundle_metadata_with_missing_or_mistyped_keys_is_one_line(change, words, tiny_catalog, tiny_world, tiny_bundles,
                                                                   guarded):
    bundles = {t: guarded.root / t for t in ("lulc", "water")}
    for task, path in bundles.items():
        shutil.copytree(tiny_bundles[task], path)
    meta = json.loads((bundles["lulc"] / "model.json").read_text())
    change(meta)
    (bundles["lulc"] / "model.json").write_text(json.dumps(meta))
    guarded.snapshot()
    outcome = run_cli(_infer_args(tiny_catalog, tiny_world, bundles, guarded.out))
    assert_refused(outcome, 2, *words)
    guarded.check()
    assert not any(guarded.out.iterdir())  # refused before anything was written


# ---------------------------------------------------------------------------- paths


def test_run_paths_refuse_a_symlink_leading_out_of_the_run(tmp_path):
    run, outside = tmp_path / "products" / "demo" / "2022-09", tmp_path / "elsewhere"
    (run / "cells").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, run / "cells" / "N35E137")
    os.symlink(outside, run / ".work")
    paths = RunPaths(run)
    with pytest.raises(InputError, match="leads outside"):
        paths.cell_dir("N35E137")
    with pytest.raises(InputError, match="leads outside"):
        paths.scene_record("s1")
    assert paths.cell_dir("N35E138") == (run / "cells" / "N35E138").resolve()


@pytest.mark.parametrize("planted", ["refreshes", ".staging", "v1"])
def test_month_paths_refuse_a_symlink_leading_out_of_the_month(planted, tmp_path):
    month, outside = MonthDir(tmp_path / "products" / "demo" / "2022-09"), tmp_path / "elsewhere"
    month.root.mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, month.root / planted)
    with pytest.raises(InputError, match="leads outside"):
        {"refreshes": lambda: month.refreshes, ".staging": lambda: month.staging, "v1": lambda: month.version(1)}[planted]()


def test_publish_refuses_a_product_file_planted_as_a_symlink(tmp_path):
    """A cell COG in the staging run replaced by a symlink to a file elsewhere is not published
    (hard-linking it would give the version someone else's file), and no version appears."""
    month, secret = MonthDir(tmp_path / "products" / "demo" / "2022-09"), tmp_path / "secret.tif"
    secret.write_bytes(b"not ours")
    staging = month.staging
    (staging / "cells" / "N35E137").mkdir(parents=True)
    os.symlink(secret, staging / "cells" / "N35E137" / "lulc.tif")
    manifest = RunManifest(run_id="r", status="ok", region="demo", month="2022-09",
                           cell_results=[CellRecord(cell="N35E137", key="k", status="ok",
                                                    files={"lulc": FileEntry("lulc.tif", "00")})])
    write_json(staging / "manifest.json", manifest)
    with pytest.raises(InputError, match="leads outside"):
        publish(month, staging, manifest, "refresh-x")
    assert month.versions() == [] and not month.latest.exists()
    assert not [p for p in month.root.iterdir() if p.name.startswith(".v")]  # no half-assembled version left


def test_runs_logs_prints_the_log_beside_the_record_not_the_file_it_names(tmp_path):
    month = MonthDir(tmp_path / "products" / "demo" / "2022-09")
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    record = RefreshRecord(run_id="refresh-demo-2022-09-x", status="ok", region="demo", month="2022-09",
                           log=str(secret))
    write_json(month.refreshes / f"{record.run_id}.json", record)
    (month.refreshes / f"{record.run_id}.log").write_text("2026-12-01T00:00:00Z published v1\n")
    outcome = run_cli(["runs", "logs", record.run_id, "--root", tmp_path / "products"])
    assert outcome.code == 0 and "published v1" in outcome.output and "hunter2" not in outcome.output
    (month.refreshes / f"{record.run_id}.log").unlink()
    outcome = run_cli(["runs", "logs", record.run_id, "--root", tmp_path / "products"])
    assert_refused(outcome, 2, "has no log")
    assert "hunter2" not in outcome.output


def test_a_foreign_manifest_is_not_a_run(tmp_path):
    run = tmp_path / "products" / "demo" / "2022-09"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"format": "nationmap-run/99", "run_id": "infer-x", "status": "ok"}))
    outcome = run_cli(["runs", "list", "--root", tmp_path / "products"])
    assert outcome.code == 0 and "infer-x" not in outcome.output


def test_safe_child_refuses_names_that_climb(tmp_path):
    for name in ("../x", "../../etc", "/etc/passwd"):
        with pytest.raises(InputError, match="leads outside"):
            safe_child(tmp_path, name)


# ---------------------------------------------------------------------------- writes


def test_atomic_file_leaves_the_target_as_it_was_when_the_writer_fails(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target, durable=True) as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    with atomic_file(target, durable=True) as f:
        f.write("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_staged_dir_replaces_a_directory_whole_or_not_at_all(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "model.json").write_text("old")
    before = tree_hashes(tmp_path)
    with pytest.raises(RuntimeError):
        with staged_dir(target) as stage:
            (stage / "model.json").write_text("new")
            raise RuntimeError("killed")
    assert tree_hashes(tmp_path) == before
    with staged_dir(target) as stage:
        (stage / "model.json").write_text("new")
    assert tree_hashes(tmp_path) == {"bundle/model.json": tree_hashes(target)["model.json"]}
    assert (target / "model.json").read_text() == "new"


def test_a_geojson_region_named_like_a_cell_gets_its_own_directory(tmp_path):
    from nationmap.data.regions import resolve_region

    polygon = {"type": "Polygon", "coordinates": [[[137.1, 35.1], [137.5, 35.1], [137.5, 35.5], [137.1, 35.1]]]}
    files = [tmp_path / "a" / "N35E137.geojson", tmp_path / "b" / "N35E137.geojson"]
    for path, shift in zip(files, (0.0, 0.2)):
        path.parent.mkdir()
        moved = [[[x + shift, y] for x, y in polygon["coordinates"][0]]]
        path.write_text(json.dumps({**polygon, "coordinates": moved}))
    slugs = {resolve_region("N35E137").slug, resolve_region(str(files[0])).slug, resolve_region(str(files[1])).slug}
    assert len(slugs) == 3  # the cell, and two different areas in files of the same name
    assert resolve_region(str(files[0])).slug == resolve_region(str(files[0])).slug  # stable across runs


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/absolute-run"])
def test_a_run_name_cannot_write_outside_out(name, tiny_dataset, guarded):
    guarded.snapshot()
    outcome = run_cli(["train", "lulc", "--data", tiny_dataset, "--no-pretrain", "--out", guarded.out / "runs",
                       "--name", name, "--epochs", "1", "--batch-size", "2", "--workers", "1"])
    assert_refused(outcome, 2, "leads outside")
    guarded.check()
    assert not Path("/tmp/absolute-run").exists()


@pytest.mark.parametrize("damage, words", [("other settings", "holds a run with other settings"),
                                           ("not json", "not a JSON object")])
def test_ablate_refuses_a_row_run_it_cannot_continue(damage, words, tiny_dataset, guarded):
    """An ablation into an OUT that already holds a row's run keeps or resumes it only when its
    settings are the ablation's: another run there, or a damaged config.json, is refused untouched."""
    from nationmap.train.ablate import TABLE_I
    from nationmap.train.config import resolve_config
    from nationmap.train.run import absolute_inputs

    out, init = guarded.out / "ablation", guarded.out / "pre"
    base = resolve_config("lulc", None, {"data": str(tiny_dataset), "epochs": 1, "out": str(out)})
    row = TABLE_I[0].config(base, str(init))
    (out / row.name).mkdir(parents=True)
    if damage == "not json":
        (out / row.name / "config.json").write_text("{truncated")
    else:
        absolute_inputs(row).replace(epochs=2).write(out / row.name / "config.json")
    guarded.snapshot()
    outcome = run_cli(["ablate", "--data", tiny_dataset, "--init", init, "--epochs", "1", "--out", out])
    assert_refused(outcome, 2, words)
    guarded.check()
