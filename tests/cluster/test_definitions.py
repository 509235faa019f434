"""The cluster definitions in ``cluster/`` parse, pass their tools' schemas, and are secure by
default: token authentication everywhere, no token in the repository, no public dashboard."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cluster.k8s_schema import check_object

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
SCRIPTS = [CLUSTER / "common" / "ray-node.sh", CLUSTER / "slurm" / "nationmap-ray.sbatch", CLUSTER / "pbs" / "nationmap-ray.pbs"]


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_definition_has_a_readme():
    for sub in ("launcher", "kuberay", "slurm", "pbs"):
        text = (CLUSTER / sub / "README.md").read_text()
        assert "RAY_AUTH" in text or "token" in text


def test_launcher_config_passes_ray_up_validation():
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((CLUSTER / "launcher" / "nationmap.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` does before touching a node
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start)
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    broken = copy.deepcopy(config)
    broken["head_start_ray_commandz"] = []
    with pytest.raises(Exception, match="head_start_ray_commandz"):
        validate_config(prepare_config(broken))


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kubernetes_manifests_pass_the_api_schemas(path):
    for doc in docs(path):
        assert check_object(doc) == [], f"{path.name} {doc['kind']}"
        if doc["kind"] == "ConfigMap":
            for text in doc["data"].values():
                for inner in yaml.safe_load_all(text):
                    assert check_object(inner) == []


def test_schema_check_catches_mistakes():
    cluster = docs(CLUSTER / "kuberay" / "raycluster.yaml")[0]
    bad = copy.deepcopy(cluster)
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    del bad["spec"]["workerGroupSpecs"][0]["groupName"]
    errors = check_object(bad)
    assert any("imagee: unknown field" in e for e in errors) and any("groupName: required" in e for e in errors)
    cron = next(d for d in docs(CLUSTER / "kuberay" / "cronjob-refresh.yaml") if d["kind"] == "CronJob")
    del cron["spec"]["schedule"]
    assert check_object(cron)


def _containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                found.extend(node["containers"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def test_kuberay_is_token_authenticated_and_private():
    cluster = docs(CLUSTER / "kuberay" / "raycluster.yaml")[0]
    job = docs(CLUSTER / "kuberay" / "rayjob-refresh.yaml")[0]
    for doc in (cluster, job):
        for container in _containers(doc):
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "nationmap-ray-token"
            assert "value" not in env["RAY_AUTH_TOKEN"]  # from the Secret, never inline
    head = cluster["spec"]["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP" and not head.get("enableIngress")
    policy = docs(CLUSTER / "kuberay" / "networkpolicy.yaml")[0]
    assert policy["spec"]["podSelector"]["matchLabels"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert "nationmap refresh" in job["spec"]["entrypoint"]
    config_map = next(d for d in docs(CLUSTER / "kuberay" / "cronjob-refresh.yaml") if d["kind"] == "ConfigMap")
    assert yaml.safe_load(config_map["data"]["rayjob.yaml"]) == job  # the CronJob submits this very RayJob


def test_no_token_is_committed():
    token_like = re.compile(r"(RAY_AUTH_TOKEN\s*[=:]\s*['\"]?[0-9a-f]{16,})|(auth_token\s*[=:]\s*['\"][^'\"$]{8,})")
    for path in CLUSTER.rglob("*"):
        if path.is_file():
            assert not token_like.search(path.read_text()), path


def test_batch_scripts_parse_and_start_secure_nodes():
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True)
        code = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
        assert not any("0.0.0.0" in line for line in code), script  # the dashboard stays on loopback
    for script in SCRIPTS[1:]:
        assert "ray-node.sh" in script.read_text() and "RAY_AUTH_MODE=token" in script.read_text()
    assert "#SBATCH --gpus-per-node=8" in SCRIPTS[1].read_text()
    assert "#PBS -l select=1:ncpus=96:ngpus=8" in SCRIPTS[2].read_text()


def test_ray_node_script_refuses_a_missing_or_shared_token(tmp_path):
    script = str(CLUSTER / "common" / "ray-node.sh")
    env = {**os.environ, "HOME": str(tmp_path), "RAY": "false"}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    missing = subprocess.run(["bash", script, "head"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no Ray auth token" in missing.stderr
    token = tmp_path / "token"
    token.write_text("0123456789abcdef")
    token.chmod(0o644)
    shared = subprocess.run(["bash", script, "head"], capture_output=True, text=True,
                            env={**env, "RAY_AUTH_TOKEN_PATH": str(token)})
    assert shared.returncode == 2 and "readable by others" in shared.stderr
