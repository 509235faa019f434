"""``nationmap refresh`` on the tiny world: versions, ``latest``, lock, kill and re-run, partial months."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nationmap.data.alos2 import is_alos2_name
from nationmap.data.catalog import read_catalog
from nationmap.ops.lock import RunLock
from nationmap.ops.publish import MonthDir
from tests.conftest import TINY_CELLS

REGION = ",".join(TINY_CELLS)
SLUG = "N35E137_N35E138"
EXIT_PARTIAL, EXIT_LOCKED = 3, 4


def write_spec(root: Path, raw: Path, catalog: Path, bundles: dict, lulc_dir: Path, **infer) -> Path:
    """A refresh spec and its [infer] defaults, as an ops team would keep them."""
    values = {"region": REGION, "catalog": str(catalog), "lulc_model": str(bundles["lulc"]),
              "water_model": str(bundles["water"]), "out": str(root / "products"), "lulc_dir": str(lulc_dir),
              "pixels_per_degree": 600, "overlap": 16, "batch_size": 8, "executor": "serial", "cell_block": 512,
              "gpus_per_actor": 0.0, "cpus_per_actor": 1.0, **infer}
    (root / "infer.toml").write_text("[infer]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    spec = root / "refresh.toml"
    spec.write_text(f'[refresh]\nraw_dir = "{raw}"\ninfer = "{root / "infer.toml"}"\n')
    return spec


def refresh_cmd(spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nationmap", "refresh", "--config", str(spec), "--month", "2022-09", *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def scene_files(raw: Path, month: str = "2022-09") -> list[Path]:
    """The month's scene files (not their MSK-/LINCI- sidecars)."""
    return sorted(p for p in raw.rglob("*.tif")
                  if is_alos2_name(p.name) and (month.replace("-", "") in p.name or month in str(p)))


@pytest.fixture(scope="module")
def ops_world(tiny_world, tiny_bundles, tmp_path_factory):
    """A raw-data location with one September scene held back (it arrives later) and a spec."""
    root = tmp_path_factory.mktemp("ops")
    raw = root / "raw"
    shutil.copytree(tiny_world / "alos2", raw)
    late = scene_files(raw)[-1]
    held = root / "late" / late.relative_to(raw)
    held.parent.mkdir(parents=True)
    shutil.move(late, held)
    spec = write_spec(root, raw, root / "catalog.parquet", tiny_bundles, tiny_world / "lulc")
    return {"root": root, "raw": raw, "spec": spec, "late": (held, late),
            "month": MonthDir(root / "products" / SLUG / "2022-09")}


@pytest.fixture(scope="module")
def first_refresh(ops_world):
    done = run(refresh_cmd(ops_world["spec"]))
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_refresh_publishes_a_version_and_moves_latest(ops_world, first_refresh):
    month: MonthDir = ops_world["month"]
    assert month.versions() == [1] and os.readlink(month.latest) == "v1"
    assert os.readlink(month.root.parent / "latest") == "2022-09/v1"
    v1 = month.version(1)
    version = json.loads((v1 / "version.json").read_text())
    assert version["status"] == "ok" and version["version"] == 1
    manifest = json.loads((v1 / "manifest.json").read_text())
    for cell in TINY_CELLS:
        for product in ("lulc", "water", "confidence", "count"):
            entry = next(c for c in manifest["cell_results"] if c["cell"] == cell)["files"][product]
            path = v1 / "cells" / cell / entry["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
            assert path.stat().st_mode & 0o222 == 0  # published files are read-only
    assert (v1 / "stac" / "catalog.json").exists() and list((v1 / "mosaic").glob("*.tif"))
    record = json.loads(next(month.refreshes.glob("*.json")).read_text())
    assert record["status"] == "ok" and record["version"] == 1 and record["catalog_update"]["added"] > 0
    # the catalog was built from the raw-data location
    assert Path(record["catalog"]).exists()


def test_the_next_month_publishes_its_change_from_the_last_published_month(ops_world, first_refresh):
    """October's refresh finds September's latest version and publishes the class-to-class change
    from it beside the area tables; class names travel with the COGs (PAM sidecars)."""
    import pandas as pd

    september = ops_world["month"].version(1)
    assert (september / "cells" / TINY_CELLS[0] / f"{TINY_CELLS[0]}_2022-09_lulc.tif.aux.xml").is_file()
    assert not list(september.glob("tables/*_change.csv"))  # no month before September was published
    done = run([*refresh_cmd(ops_world["spec"])[:-1], "2022-10"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "change tables against the published 2022-09 v1" in done.stdout
    october = MonthDir(ops_world["root"] / "products" / SLUG / "2022-10").version(1)
    change = pd.read_parquet(october / "tables" / f"{SLUG}_2022-10_change.parquet")
    assert set(change.previous_month) == {"2022-09"} and change.area_km2.sum() > 0
    assert (october / "tables" / f"{SLUG}_2022-10_areas.csv").is_file()
    manifest = json.loads((october / "manifest.json").read_text())
    assert manifest["config"]["previous"] == str(september)


def test_rerun_with_nothing_new_publishes_nothing(ops_world, first_refresh):
    month: MonthDir = ops_world["month"]
    before = tree_digest(month.version(1))
    again = run(refresh_cmd(ops_world["spec"]))
    assert again.returncode == 0, again.stderr
    assert "already published as v1" in again.stdout
    assert month.versions() == [1] and os.readlink(month.latest) == "v1"
    assert tree_digest(month.version(1)) == before


def test_second_refresh_of_the_month_is_refused_by_the_lock(ops_world, first_refresh):
    month: MonthDir = ops_world["month"]
    with RunLock(month.lock, {"run_id": "refresh-held-by-test"}, what="test"):
        refused = run(refresh_cmd(ops_world["spec"]))
    assert refused.returncode == EXIT_LOCKED
    assert "already running" in refused.stderr and "refresh-held-by-test" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_killed_refresh_reruns_and_never_exposes_an_incomplete_month(ops_world, first_refresh):
    month: MonthDir = ops_world["month"]
    v1_before = tree_digest(month.version(1))
    held, late = ops_world["late"]
    shutil.move(held, late)  # the late acquisition arrives: the month changes
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(refresh_cmd(ops_world["spec"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    cells_state = month.staging / ".work" / "state" / "cells"
    seen = set()
    deadline = time.time() + 300
    # wait until the staging run has rewritten a cell (the scenes are done), watching `latest`
    start = time.time()
    while time.time() < deadline and proc.poll() is None:
        seen.add(os.readlink(month.latest))
        if any(p.stat().st_mtime > start for p in cells_state.glob("*.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the refresh ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen.add(os.readlink(month.latest))
    assert seen == {"v1"} and month.versions() == [1]
    listed = run([sys.executable, "-m", "nationmap", "runs", "list", "--root", str(month.root.parent.parent)])
    assert "interrupted" in listed.stdout

    resumed = run(refresh_cmd(ops_world["spec"]))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert month.versions() == [1, 2] and os.readlink(month.latest) == "v2"
    assert tree_digest(month.version(1)) == v1_before  # nothing published before was changed
    v2 = json.loads((month.version(2) / "manifest.json").read_text())
    assert len(v2["inputs"]) == len(json.loads((month.version(1) / "manifest.json").read_text())["inputs"]) + 1
    for cell in v2["cell_results"]:  # complete: every listed product is there, with its checksum
        for entry in cell["files"].values():
            path = month.version(2) / "cells" / cell["cell"] / entry["path"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    records = [json.loads(p.read_text()) for p in month.refreshes.glob("*.json")]
    statuses = [r["status"] for r in records]
    assert statuses.count("interrupted") == 1 and "running" not in statuses  # the killed attempt, on disk


def test_partial_month_is_published_but_latest_stays(ops_world, first_refresh):
    month: MonthDir = ops_world["month"]
    versions, latest = month.versions(), os.readlink(month.latest)
    # the catalog is maintained elsewhere (no raw_dir): a listed scene turns out truncated
    spec = ops_world["root"] / "refresh-no-catalog.toml"
    spec.write_text(f'[refresh]\ninfer = "{ops_world["root"] / "infer.toml"}"\n')
    victim = scene_files(ops_world["raw"])[0]
    victim.write_bytes(victim.read_bytes()[:4096])
    partial = run(refresh_cmd(spec, "--force"))
    assert partial.returncode == EXIT_PARTIAL, partial.stdout + partial.stderr
    assert "failed scene" in partial.stdout
    assert month.versions() == versions + [versions[-1] + 1]  # published for inspection ...
    assert os.readlink(month.latest) == latest  # ... but latest stays on the complete version
    info = json.loads((month.version(versions[-1] + 1) / "version.json").read_text())
    assert info["status"] == "partial" and info["failures"][0]["what"] == "scene"


def test_a_catalogued_scene_that_became_unreadable_is_a_failure_of_its_month(ops_world, first_refresh):
    """The catalog update re-reads a changed file; one it knew and cannot read any more keeps its
    row, so the month is partial (latest stays), never ok with an acquisition fewer."""
    month: MonthDir = ops_world["month"]
    latest = os.readlink(month.latest)
    inputs = json.loads((month.latest / "manifest.json").read_text())["inputs"]  # the month's acquisitions
    victim = Path(inputs[-1]["path"])
    victim.write_bytes(victim.read_bytes()[:4096])
    done = run(refresh_cmd(ops_world["spec"]))
    assert done.returncode == EXIT_PARTIAL, done.stdout + done.stderr
    assert os.readlink(month.latest) == latest  # the month is incomplete: latest stays where it was
    record = json.loads(max(month.refreshes.glob("*.json"), key=os.path.getmtime).read_text())
    assert record["status"] == "partial" and record["catalog_update"]["stale"] >= 1
    catalog = read_catalog(ops_world["root"] / "catalog.parquet")
    assert inputs[-1]["id"] in set(catalog.id)  # the update kept its row ...
    assert inputs[-1]["id"] in {f["id"] for f in record["failures"] if f["what"] == "scene"}  # ... and it failed
