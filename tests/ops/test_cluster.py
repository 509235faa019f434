"""A real two-node Ray cluster on this machine (``ray start`` head + worker, token authentication
on), the monthly refresh submitted to it as a Ray Job, and what must be refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from benchmarks.local_cluster import clean_env, local_cluster, wait_for
from nationmap.ops.lock import is_locked
from nationmap.ops.publish import MonthDir
from nationmap.products.cog import is_valid_cog
from tests.conftest import TINY_CELLS
from tests.ops.test_refresh import SLUG, write_spec

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    """Head and worker node started with cluster/common/ray-node.sh (token auth, loopback dashboard)."""
    with local_cluster(nodes=2, num_cpus=1) as c:
        yield c


def nationmap(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nationmap", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.mark.slow  # starts a two-node cluster: about 1.5 min on 2 cores
def test_refresh_as_a_ray_job_on_a_two_node_cluster(cluster, tiny_world, tiny_bundles, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_world / "alos2", raw)
    spec = write_spec(tmp_path, raw, tmp_path / "catalog.parquet", tiny_bundles, tiny_world / "lulc",
                      executor="ray", concurrency=2)
    # how the job runs on the cluster: here, with this Python, the driver reserving no CPU
    spec.write_text(spec.read_text() + f'\n[job]\nworkdir = "{tmp_path}"\npython = "{sys.executable}"\n'
                                       f'entrypoint_num_cpus = 0\n')
    url = cluster.url
    no_token = clean_env(HOME=str(tmp_path))  # no RAY_AUTH_*, no ~/.ray/auth_token

    refused = nationmap("submit", str(spec), "--address", url, "--", "--month", "2022-09", env=no_token)
    assert refused.returncode == 2 and "requires a token" in refused.stderr, refused.stderr
    wrong = nationmap("submit", str(spec), "--address", url, env={**no_token, "RAY_AUTH_TOKEN": "0" * 64})
    assert wrong.returncode == 2 and "refused the token" in wrong.stderr, wrong.stderr
    assert requests.get(f"{url}/api/jobs/", timeout=5).status_code == 401  # the raw API refuses too

    with_token = {**no_token, "RAY_AUTH_TOKEN_PATH": str(cluster.token)}
    submitted = nationmap("submit", str(spec), "--address", url, "--", "--month", "2022-09", env=with_token)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    assert job_id.startswith("raysubmit_")

    # while the job's refresh holds the month, a second refresh is refused by the lock
    month = MonthDir(tmp_path / "products" / SLUG / "2022-09")

    def job_log() -> str:
        done = nationmap("runs", "logs", job_id, "--address", url, "--no-follow", env=with_token)
        return done.stdout[-4000:] + done.stderr

    def job_status() -> str:
        r = requests.get(f"{url}/api/jobs/{job_id}", timeout=5,
                         headers={"Authorization": f"Bearer {cluster.token.read_text()}"})
        return r.json()["status"]

    wait_for(lambda: is_locked(month.lock) or month.versions() or job_status() in ("FAILED", "STOPPED"), 180,
              "the refresh job")
    assert job_status() not in ("FAILED", "STOPPED"), job_log()
    assert not month.versions(), "the job finished before a second refresh could be tried"
    second = nationmap("refresh", "--config", str(spec), "--month", "2022-09", "--executor", "serial", env=no_token)
    assert second.returncode == 4 and "already running" in second.stderr, second.stderr

    logs = nationmap("runs", "logs", job_id, "--address", url, env=with_token)
    assert logs.returncode == 0, logs.stdout[-4000:] + logs.stderr
    assert "published v1 (ok)" in logs.stdout and f"job {job_id}: SUCCEEDED" in logs.stdout

    assert month.versions() == [1] and os.readlink(month.latest) == "v1"
    assert os.readlink(month.root.parent / "latest") == "2022-09/v1"
    for cell in TINY_CELLS:
        assert is_valid_cog(month.version(1) / "cells" / cell / f"{cell}_2022-09_lulc.tif")
    manifest = json.loads((month.version(1) / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["config"]["executor"] == "ray"
    listed = nationmap("runs", "list", "--root", str(tmp_path / "products"), "--json", env=no_token)
    runs = {r["kind"]: r for r in json.loads(listed.stdout)["runs"]}
    assert runs["refresh"]["status"] == "ok" and runs["infer"]["status"] == "ok"
    assert runs["refresh"]["outputs"] == [str(month.version(1))]
