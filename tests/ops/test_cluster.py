"""A real two-node Ray cluster on this machine (``ray start`` head + worker, token authentication
on), the monthly refresh submitted to it as a Ray Job, and what must be refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from nationmap.ops.lock import is_locked
from nationmap.ops.publish import MonthDir
from nationmap.products.cog import is_valid_cog
from tests.conftest import TINY_CELLS
from tests.ops.test_refresh import SLUG, write_spec

pytestmark = pytest.mark.ray
BIN = Path(sys.executable).parent
RAY_NODE = Path(__file__).resolve().parents[2] / "cluster" / "common" / "ray-node.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra) -> dict:
    """This environment without any Ray address or token, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


@pytest.fixture(scope="module")
def cluster():
    """Head and worker node started with cluster/common/ray-node.sh (token auth, loopback
    dashboard), each its own process group."""
    root = Path(tempfile.mkdtemp(prefix="nmc", dir="/tmp"))  # short: Ray's socket paths must fit
    token = root / "token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    env = clean_env(RAY_AUTH_TOKEN_PATH=str(token), HOME=str(root), RAY=str(BIN / "ray"),
                    PATH=f"{BIN}:{os.environ['PATH']}")
    gcs, dashboard = free_port(), free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(200 << 20)]
    head = subprocess.Popen(
        ["bash", str(RAY_NODE), "head", "--port", str(gcs), "--include-dashboard", "true",
         "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(free_port()),
         "--ray-client-server-port", str(free_port()), "--temp-dir", str(root / "ray"), *common],
        env=env, stdout=open(root / "head.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    procs = [head]
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for(lambda: _nodes(url, token) >= 1, 90, "head node")
        procs.append(subprocess.Popen(
            ["bash", str(RAY_NODE), "worker", f"127.0.0.1:{gcs}", "--dashboard-agent-listen-port", str(free_port()),
             *common],
            env=env, stdout=open(root / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for(lambda: _nodes(url, token) >= 2, 90, "worker node")
        yield {"url": url, "token": token, "root": root, "env": env}
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _nodes(url: str, token: Path) -> int:
    try:
        r = requests.get(f"{url}/api/v0/nodes", headers={"Authorization": f"Bearer {token.read_text()}"}, timeout=5)
        return sum(n["state"] == "ALIVE" for n in r.json()["data"]["result"]["result"]) if r.ok else 0
    except (requests.RequestException, ValueError, KeyError):
        return 0


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"{what} did not come up in {timeout} s")


def nationmap(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nationmap", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_refresh_as_a_ray_job_on_a_two_node_cluster(cluster, tiny_world, tiny_bundles, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_world / "alos2", raw)
    spec = write_spec(tmp_path, raw, tmp_path / "catalog.parquet", tiny_bundles, tiny_world / "lulc",
                      executor="ray", concurrency=2)
    # how the job runs on the cluster: here, with this Python, the driver reserving no CPU
    spec.write_text(spec.read_text() + f'\n[job]\nworkdir = "{tmp_path}"\npython = "{sys.executable}"\n'
                                       f'entrypoint_num_cpus = 0\n')
    url = cluster["url"]
    no_token = clean_env(HOME=str(tmp_path))  # no RAY_AUTH_*, no ~/.ray/auth_token

    refused = nationmap("submit", str(spec), "--address", url, "--", "--month", "2022-09", env=no_token)
    assert refused.returncode == 2 and "requires a token" in refused.stderr, refused.stderr
    wrong = nationmap("submit", str(spec), "--address", url, env={**no_token, "RAY_AUTH_TOKEN": "0" * 64})
    assert wrong.returncode == 2 and "refused the token" in wrong.stderr, wrong.stderr
    assert requests.get(f"{url}/api/jobs/", timeout=5).status_code == 401  # the raw API refuses too

    with_token = {**no_token, "RAY_AUTH_TOKEN_PATH": str(cluster["token"])}
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
                         headers={"Authorization": f"Bearer {cluster['token'].read_text()}"})
        return r.json()["status"]

    _wait_for(lambda: is_locked(month.lock) or month.versions() or job_status() in ("FAILED", "STOPPED"), 180,
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
