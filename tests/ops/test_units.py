"""Pure parts of operations: publication and pointers, path safety, run history, job specs, tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nationmap.errors import InputError
from nationmap.files import safe_child, write_json
from nationmap.ops.history import discover, find_run, format_table
from nationmap.ops.jobs import JobSpec, api_address, entrypoint, resolve_token, resubmit_argv
from nationmap.ops.lock import LockedError, RunLock, is_locked
from nationmap.ops.publish import MonthDir, publish
from nationmap.ops.refresh import previous_month
from nationmap.records import CellRecord, Failure, FileEntry, Products, RefreshRecord, RunManifest


def fake_run(root: Path, content: bytes, status: str = "ok") -> RunManifest:
    """A run directory with one cell COG, a mosaic and a manifest, as run_inference leaves it."""
    (root / "cells" / "N35E137").mkdir(parents=True, exist_ok=True)
    (root / "mosaic").mkdir(exist_ok=True)
    import hashlib

    for rel in ("cells/N35E137/lulc.tif", "mosaic/demo_lulc.tif"):
        tmp = root / (rel + ".part")
        tmp.write_bytes(content)
        os.replace(tmp, root / rel)  # as the pipeline writes: a new file, renamed
    sha = hashlib.sha256(content).hexdigest()
    manifest = RunManifest(
        run_id=f"infer-demo-{sha[:6]}", status=status, region="demo", month="2022-09",
        failures=[] if status == "ok" else [Failure("scene", "s1", "unreadable")],
        cell_results=[CellRecord(cell="N35E137", key="k", status="ok", files={"lulc": FileEntry("lulc.tif", sha)})],
        products=Products(mosaic={"lulc": FileEntry("mosaic/demo_lulc.tif", sha)}))
    write_json(root / "manifest.json", manifest)
    return manifest


def test_publish_versions_latest_and_immutability(tmp_path):
    month = MonthDir(tmp_path / "products" / "demo" / "2022-09")
    staging = month.staging
    first = publish(month, staging, fake_run(staging, b"one"), "refresh-1")
    assert first == {"version": 1, "new": True, "latest_moved": True, "path": str(month.version(1))}
    assert os.readlink(month.latest) == "v1" and os.readlink(month.region_latest) == "2022-09/v1"
    v1 = month.version(1) / "cells" / "N35E137" / "lulc.tif"
    assert v1.read_bytes() == b"one" and v1.stat().st_mode & 0o222 == 0
    # the same products again: no new version
    assert publish(month, staging, fake_run(staging, b"one"), "refresh-2")["new"] is False
    # new products: v2; the staging files are replaced by rename, so v1 keeps its bytes
    second = publish(month, staging, fake_run(staging, b"two"), "refresh-3")
    assert second["version"] == 2 and os.readlink(month.latest) == "v2" and v1.read_bytes() == b"one"
    # a partial month is published but latest stays
    third = publish(month, staging, fake_run(staging, b"three", "partial"), "refresh-4")
    assert third["version"] == 3 and not third["latest_moved"] and os.readlink(month.latest) == "v2"
    assert json.loads((month.version(3) / "version.json").read_text())["status"] == "partial"
    # a stale file in the reused staging directory (a cell empty this time) is not published
    (staging / "cells" / "N36E138").mkdir()
    (staging / "cells" / "N36E138" / "old_lulc.tif").write_bytes(b"stale")
    fourth = publish(month, staging, fake_run(staging, b"four"), "refresh-6")
    assert not (Path(fourth["path"]) / "cells" / "N36E138").exists()
    assert sorted(p.name for p in Path(fourth["path"]).rglob("*") if p.is_file()) == [
        "demo_lulc.tif", "lulc.tif", "manifest.json", "version.json"]
    # an older month never moves the region's latest back
    august = MonthDir(tmp_path / "products" / "demo" / "2022-08")
    publish(august, august.staging, fake_run(august.staging, b"aug"), "refresh-5")
    assert os.readlink(month.region_latest) == "2022-09/v4"


def test_publish_killed_before_latest_moves_is_completed_by_the_rerun(tmp_path, monkeypatch):
    import nationmap.ops.publish as publish_module

    month = MonthDir(tmp_path / "demo" / "2022-09")
    publish(month, month.staging, fake_run(month.staging, b"one"), "r1")
    real_point = publish_module.point

    def killed(link, target):
        raise KeyboardInterrupt  # the process dies right after v2 was renamed into place

    monkeypatch.setattr(publish_module, "point", killed)
    with pytest.raises(KeyboardInterrupt):
        publish(month, month.staging, fake_run(month.staging, b"two"), "r2")
    assert month.versions() == [1, 2] and os.readlink(month.latest) == "v1"  # v2 complete, not yet latest
    monkeypatch.setattr(publish_module, "point", real_point)
    again = publish(month, month.staging, fake_run(month.staging, b"two"), "r3")
    assert again == {"version": 2, "new": False, "latest_moved": True, "path": str(month.version(2))}
    assert os.readlink(month.latest) == "v2" and os.readlink(month.region_latest) == "2022-09/v2"


def test_paths_from_names_cannot_escape_the_products_dir(tmp_path):
    assert safe_child(tmp_path, "demo", "2022-09") == (tmp_path / "demo" / "2022-09").resolve()
    for parts in (("..", "x"), ("/etc",), ("a", "../../b")):
        with pytest.raises(InputError, match="leads outside"):
            safe_child(tmp_path, *parts)
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(InputError):
        safe_child(tmp_path, "link", "x")
    from nationmap.data.regions import region_slug

    assert region_slug("../../etc/passwd") == "etc_passwd" and region_slug("/x/y/kanto.geojson") == "kanto"


def test_lock_is_exclusive_across_processes_and_released_when_the_holder_dies(tmp_path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from nationmap.ops.lock import RunLock\n"
        f"with RunLock({str(lock)!r}, {{'run_id': 'refresh-x'}}, 'refresh'):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert is_locked(lock)
    with pytest.raises(LockedError, match="refresh-x"):
        with RunLock(lock, {}, "refresh"):
            pass
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    assert not is_locked(lock)
    with RunLock(lock, {"run_id": "refresh-y"}, "refresh"):
        assert is_locked(lock)


def test_history_reads_training_inference_and_refresh_records(tmp_path):
    run = tmp_path / "runs" / "lulc-1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "lulc", "data": "data/ds", "preset": "tiny"}))
    write_json(run / "summary.json", {"run_id": "lulc-1", "kind": "train", "task": "lulc", "status": "finished",
                                      "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T01:00:00+00:00",
                                      "seconds": 3600.0, "best": {"metric": "val/miou", "value": 0.5, "epoch": 3}})
    month = MonthDir(tmp_path / "products" / "demo" / "2022-09")
    fake_run(month.staging, b"x")
    write_json(month.refreshes / "refresh-demo-1.json", RefreshRecord(
        run_id="refresh-demo-1", status="running", region="demo", month="2022-09", started="2026-02-01T00:00:00+00:00"))
    runs = {r.run_id: r for r in discover([tmp_path / "runs", tmp_path / "products"])}
    assert runs["lulc-1"].kind == "train-lulc" and runs["lulc-1"].inputs == ["data/ds"]
    assert runs["refresh-demo-1"].status == "interrupted"  # running, but nobody holds the lock
    infer = next(r for r in runs.values() if r.kind == "infer")
    assert infer.outputs and infer.details["month"] == "2022-09"
    assert "refresh-demo-1" in format_table(list(runs.values()))
    assert find_run([tmp_path / "runs"], "lulc").run_id == "lulc-1"
    with pytest.raises(InputError, match="no run"):
        find_run([tmp_path / "runs"], "nope")


def test_job_specs_become_entrypoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, command in (("pretrain", "train pretrain --spec"), ("lulc", "train lulc --spec"),
                          ("water", "train water --spec"), ("refresh", "refresh --config")):
        spec = JobSpec.load(name, ["--month", "2022-09"])
        assert f"-m nationmap {command} " in spec.entrypoint and spec.entrypoint.endswith("--month 2022-09")
        assert spec.entrypoint_num_cpus == 1
    (tmp_path / "odd.toml").write_text('[refresh]\n[job]\nworkdir = "/data/x y"\npython = "/opt/py"\n')
    spec = JobSpec.load("odd.toml")
    assert spec.entrypoint.startswith("cd '/data/x y' && /opt/py -m nationmap refresh --config ")
    (tmp_path / "bad.toml").write_text("[job]\nwrkdir = 1\n[refresh]\n")
    with pytest.raises(InputError, match="unknown \\[job\\] setting"):
        JobSpec.load("bad.toml")
    (tmp_path / "cpus.toml").write_text('[refresh]\n[job]\nentrypoint_num_cpus = "two"\n')
    with pytest.raises(InputError, match="entrypoint_num_cpus must be a number"):
        JobSpec.load("cpus.toml")
    (tmp_path / "none.toml").write_text("[other]\n")
    with pytest.raises(InputError, match="needs a \\[train\\], \\[infer\\] or \\[refresh\\]"):
        JobSpec.load("none.toml")
    assert entrypoint(["infer", "--region", "a b;rm"], "/w") == "cd /w && python -m nationmap infer --region 'a b;rm'"
    assert resubmit_argv(["refresh", "--submit", "--address", "http://h:8265", "--month", "2022-09",
                          "--token-file=t"]) == ["refresh", "--month", "2022-09"]


def test_token_and_address_resolution(tmp_path, monkeypatch):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert resolve_token() == "home-token"
    (tmp_path / "t").write_text("file-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert resolve_token() == "file-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert resolve_token() == "env-token"
    (tmp_path / "explicit").write_text("explicit-token")
    assert resolve_token(tmp_path / "explicit") == "explicit-token"
    with pytest.raises(InputError, match="not found"):
        resolve_token(tmp_path / "missing")
    assert api_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address is not the job API
    assert api_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://head:8265/")
    assert api_address(None) == "http://head:8265"
    with pytest.raises(InputError, match="http"):
        api_address("head:6379")


def test_default_month_is_the_one_that_just_ended():
    import datetime as dt

    assert str(previous_month(dt.date(2022, 10, 3))) == "2022-09"
    assert str(previous_month(dt.date(2023, 1, 1))) == "2022-12"


def test_cli_bad_input_is_one_line(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "nationmap", *args], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "HOME": str(tmp_path)})

    for args, message in ((("refresh", "--month", "2022-13"), "month"),
                          (("refresh", "--region", "atlantis", "--month", "2022-09"), "atlantis"),
                          (("refresh", "--config", "missing.toml"), "not found"),
                          (("runs", "show", "nope", "--root", "."), "no run"),
                          (("submit", "nope.toml"), "not found"),
                          (("submit", "refresh", "--address", "head:6379"), "http")):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert message in done.stderr
