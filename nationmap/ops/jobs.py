"""Ray Jobs: submit a nationmap command to a running cluster, follow its logs, list jobs.

The job API is the Ray dashboard's HTTP endpoint (``http://HEAD:8265``). Clusters defined in
``cluster/`` run with token authentication (``RAY_AUTH_MODE=token``); the CLI sends the token as
a bearer header when one is found, in Ray's order: ``--token-file``, ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``. The token itself is never printed, written or
put in the job's runtime environment (the cluster's nodes have their own copy).

A job spec is a TOML file of ``jobs/`` whose ``[train]``, ``[infer]`` or ``[refresh]`` table says
which command it is; an optional ``[job]`` table says how to run it::

    [job]
    workdir = "/shared/nationmap"     # where the command runs on the cluster (default: here)
    python = "python"                 # the cluster's Python with nationmap installed
    entrypoint_num_cpus = 1
    entrypoint_num_gpus = 0
    runtime_env = { env_vars = { OMP_NUM_THREADS = "8" } }
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nationmap.errors import InputError, NationmapError
from nationmap.files import read_toml

DEFAULT_API = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_JOB_KEYS = {"workdir", "python", "entrypoint_num_cpus", "entrypoint_num_gpus", "runtime_env"}


class ClusterError(NationmapError):
    """The cluster could not be reached or refused the request."""


def resolve_token(token_file: str | Path | None = None) -> str | None:
    """The Ray auth token from, in order: ``token_file``, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
    ~/.ray/auth_token; None if there is none."""
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise InputError(f"token file {path} not found")
        return _read_token(path)
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        if not path.is_file():
            raise InputError(f"RAY_AUTH_TOKEN_PATH={path}: no such file")
        return _read_token(path)
    default = Path.home() / ".ray" / "auth_token"
    return _read_token(default) if default.is_file() else None


def _read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise InputError(f"token file {path} is empty")
    return token


def api_address(address: str | None) -> str:
    """The job API address: ``address``, RAY_API_SERVER_ADDRESS, an http RAY_ADDRESS, or localhost."""
    for candidate in (address, os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if candidate:
            if not candidate.startswith(("http://", "https://")):
                if candidate is address:
                    raise InputError(f"--address {address!r}: the job API is an http(s):// address "
                                     f"(the dashboard, e.g. {DEFAULT_API})")
                continue
            return candidate.rstrip("/")
    return DEFAULT_API


def client(address: str | None = None, token_file: str | Path | None = None):
    """A JobSubmissionClient for the cluster, with the bearer token when there is one."""
    from ray.job_submission import JobSubmissionClient

    url = api_address(address)
    token = resolve_token(token_file)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except Exception as exc:
        raise _cluster_error(url, exc, token is not None) from None


def _cluster_error(url: str, exc: Exception, had_token: bool) -> ClusterError:
    text = str(exc)
    if "Authentication required" in text or "401" in text:
        return ClusterError(f"the Ray cluster at {url} requires a token: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
                            f"(or --token-file)")
    if "Authentication failed" in text or "403" in text:
        return ClusterError(f"the Ray cluster at {url} refused the token (it is not the cluster's token)")
    if isinstance(exc, ConnectionError) or "Failed to connect" in text:
        return ClusterError(f"no Ray job API at {url} (is the cluster up, and is this its dashboard address?)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return ClusterError(f"Ray job API at {url}: {first[:200]}")


@dataclass(frozen=True)
class JobSpec:
    """A job spec file: the command it stands for and how to run it on the cluster."""

    path: Path
    command: list[str]
    workdir: str
    python: str = "python"
    entrypoint_num_cpus: float = 0.0
    entrypoint_num_gpus: float = 0.0
    runtime_env: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, extra_args: list[str] | None = None) -> "JobSpec":
        path = Path(path)
        if not path.is_file():
            from nationmap.files import JOBS_DIR

            named = JOBS_DIR / f"{path}.toml" if path.suffix != ".toml" else JOBS_DIR / path.name
            if not named.is_file():
                raise InputError(f"job spec {path} not found (a TOML file or a name in jobs/)")
            path = named
        raw = read_toml(path)
        job = raw.get("job", {})
        if not isinstance(job, dict):
            raise InputError(f"{path}: [job] must be a table")
        workdir = str(job.get("workdir") or os.getcwd())
        # the spec as the job sees it: a spec under this directory has the same relative path under
        # the job's workdir (the cluster's copy of the checkout); any other is passed as it is
        resolved, here = path.resolve(), Path.cwd().resolve()
        spec_arg = str(resolved.relative_to(here)) if here in resolved.parents else str(resolved)
        if "train" in raw:
            task = raw["train"].get("task") if isinstance(raw["train"], dict) else None
            if task not in ("pretrain", "lulc", "water"):
                raise InputError(f"{path}: [train] task must be pretrain, lulc or water, not {task!r}")
            command = ["train", task, "--spec", spec_arg]
        elif "refresh" in raw:
            command = ["refresh", "--config", spec_arg]
        elif "infer" in raw:
            command = ["infer", "--config", spec_arg]
        else:
            raise InputError(f"{path}: a job spec needs a [train], [infer] or [refresh] table")
        unknown = sorted(set(job) - _JOB_KEYS)
        if unknown:
            raise InputError(f"{path}: unknown [job] setting(s): {', '.join(unknown)}")
        if not isinstance(job.get("runtime_env", {}), dict):
            raise InputError(f"{path}: [job] runtime_env must be a table")
        resources = {}
        for key in ("entrypoint_num_cpus", "entrypoint_num_gpus"):
            value = job.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"{path}: [job] {key} must be a number >= 0, not {value!r}")
            resources[key] = float(value)
        return cls(path=path, command=command + list(extra_args or []), workdir=workdir,
                   python=str(job.get("python", "python")), runtime_env=dict(job.get("runtime_env", {})), **resources)

    @property
    def entrypoint(self) -> str:
        return entrypoint(self.command, self.workdir, self.python)


def entrypoint(args: list[str], workdir: str, python: str = "python") -> str:
    """The shell command a Ray job runs: ``cd WORKDIR && PYTHON -m nationmap ARGS``."""
    return f"cd {shlex.quote(workdir)} && {shlex.quote(python)} -m nationmap {shlex.join(args)}"


def submit(entrypoint_cmd: str, *, address: str | None = None, token_file: str | Path | None = None,
           runtime_env: dict | None = None, num_cpus: float = 0.0, num_gpus: float = 0.0,
           submission_id: str | None = None, metadata: dict | None = None) -> str:
    """Submit ``entrypoint_cmd`` as a Ray Job; returns the job (submission) id."""
    jobs = client(address, token_file)
    kwargs = {}
    if num_cpus:
        kwargs["entrypoint_num_cpus"] = num_cpus
    if num_gpus:
        kwargs["entrypoint_num_gpus"] = num_gpus
    try:
        return jobs.submit_job(entrypoint=entrypoint_cmd, runtime_env=runtime_env or None,
                               submission_id=submission_id, metadata=metadata or None, **kwargs)
    except Exception as exc:
        raise _cluster_error(api_address(address), exc, True) from None


def follow(job_id: str, *, address: str | None = None, token_file: str | Path | None = None,
           follow_logs: bool = True, out=sys.stdout) -> tuple[str, int | None]:
    """Print the job's logs (following them until it ends if ``follow_logs``); returns its status
    and, for a failed entrypoint, its exit code (from Ray's job message)."""
    import logging

    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed" noise
    jobs = client(address, token_file)
    try:
        if follow_logs:
            async def tail():
                async for chunk in jobs.tail_job_logs(job_id):
                    out.write(chunk)
                    out.flush()

            asyncio.run(tail())
        else:
            out.write(jobs.get_job_logs(job_id))
        info = jobs.get_job_info(job_id)
        found = re.search(r"exit code (\d+)", info.message or "")
        return str(info.status.value), int(found.group(1)) if found else None
    except Exception as exc:
        raise _cluster_error(api_address(address), exc, True) from None


def list_jobs(*, address: str | None = None, token_file: str | Path | None = None) -> list[dict]:
    jobs = client(address, token_file)
    try:
        details = jobs.list_jobs()
    except Exception as exc:
        raise _cluster_error(api_address(address), exc, True) from None
    return [{"job_id": d.submission_id or d.job_id, "status": str(d.status.value), "entrypoint": d.entrypoint,
             "start_time": d.start_time, "end_time": d.end_time, "message": d.message} for d in details]


def resubmit_argv(argv: list[str]) -> list[str]:
    """``argv`` (the command line after ``nationmap``) without the options that only concern the
    submission: ``--submit``, ``--address X`` and ``--token-file X``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--submit":
            continue
        if arg in ("--address", "--token-file"):
            skip = True
            continue
        if arg.startswith(("--address=", "--token-file=")):
            continue
        out.append(arg)
    return out
