"""A real multi-node Ray cluster on this machine: a head and worker nodes, each started by
``cluster/common/ray-node.sh`` (token authentication on, dashboard on loopback) in its own
process group, on 127.0.0.1. Used by the scale benchmark and the cluster tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
RAY_NODE = Path(__file__).resolve().parents[1] / "cluster" / "common" / "ray-node.sh"


@dataclass(frozen=True)
class LocalCluster:
    """A running cluster: ``gcs`` (HEAD:PORT for ``--address``), ``url`` (dashboard and job API),
    the token file, its temporary ``root`` and the environment to reach it with the token."""

    gcs: str
    url: str
    token: Path
    root: Path
    env: dict

    def get(self, path: str, **params) -> dict:
        """A JSON answer of the dashboard's HTTP API, with the token."""
        r = requests.get(f"{self.url}{path}", params=params, timeout=30,
                         headers={"Authorization": f"Bearer {self.token.read_text()}"})
        r.raise_for_status()
        return r.json()

    def alive_nodes(self) -> list[dict]:
        try:
            nodes = self.get("/api/v0/nodes")["data"]["result"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            return []
        return [n for n in nodes if n["state"] == "ALIVE"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra) -> dict:
    """This environment without any Ray address or token, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    raise RuntimeError(f"{what} did not come up in {timeout} s")


@contextmanager
def local_cluster(nodes: int = 2, num_cpus: int = 1, object_store_mb: int = 200, dashboard: bool = True):
    """Start ``nodes`` Ray nodes (the first is the head) of ``num_cpus`` CPUs each; yields a
    :class:`LocalCluster`; every node is killed on exit."""
    root = Path(tempfile.mkdtemp(prefix="nmc", dir="/tmp"))  # short: Ray's socket paths must fit
    token = root / "token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    env = clean_env(RAY_AUTH_TOKEN_PATH=str(token), HOME=str(root), RAY=str(BIN / "ray"),
                    PATH=f"{BIN}:{os.environ['PATH']}")
    gcs, dash = free_port(), free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--object-store-memory",
              str(object_store_mb << 20)]
    head = ["bash", str(RAY_NODE), "head", "--port", str(gcs), "--include-dashboard", str(dashboard).lower(),
            "--dashboard-port", str(dash), "--dashboard-agent-listen-port", str(free_port()),
            "--ray-client-server-port", str(free_port()), "--temp-dir", str(root / "ray"), *common]
    procs = [_start(head, env, root / "head.log")]
    cluster = LocalCluster(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", token, root,
                           {**env, "RAY_AUTH_MODE": "token"})
    try:
        wait_for(lambda: len(cluster.alive_nodes()) >= 1, 90, "head node")
        for i in range(1, nodes):
            worker = ["bash", str(RAY_NODE), "worker", cluster.gcs, "--dashboard-agent-listen-port", str(free_port()),
                      *common]
            procs.append(_start(worker, env, root / f"worker{i}.log"))
            wait_for(lambda: len(cluster.alive_nodes()) >= i + 1, 90, f"worker node {i}")
        yield cluster
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
