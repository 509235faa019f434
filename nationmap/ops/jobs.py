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

Every table's types are checked here, before anything is sent: a wrong type is one line naming the
key and the type expected. Every request to the job API has a timeout (``NATIONMAP_JOB_API_TIMEOUT``
seconds, default 30; Ray's SDK sets none), so a head that accepts connections and never answers
is one line and exit code 1, not a hang.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nationmap.config import Config, check_types
from nationmap.errors import FailedError, InputError, NationmapError
from nationmap.files import read_toml

DEFAULT_API = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
TIMEOUT_ENV = "NATIONMAP_JOB_API_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds per connect or read; generous for a head under load


class ClusterError(NationmapError):
    """The cluster refused the request (bad input: a missing or wrong token, exit code 2)."""


class ClusterUnreachable(ClusterError, FailedError):
    """No job API answered at the address, or not in time (exit code 1)."""


def api_timeout() -> float:
    """Seconds any one request to the job API may wait: ``NATIONMAP_JOB_API_TIMEOUT`` or 30."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{TIMEOUT_ENV}={text!r}: expected seconds, a finite number > 0")
    return value


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


@functools.cache
def _timed_client_class():
    from ray.job_submission import JobSubmissionClient

    class TimedJobClient(JobSubmissionClient):
        """Ray's job client with a timeout on every HTTP request (its own requests have none)."""

        def __init__(self, address: str, timeout: float, **kwargs):
            self._timeout = timeout  # before __init__, whose version check is the first request
            super().__init__(address, **kwargs)

        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", self._timeout)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobClient


def client(address: str | None = None, token_file: str | Path | None = None):
    """A job client for the cluster, with the bearer token when there is one and a timeout on
    every request."""
    url = api_address(address)
    timeout = api_timeout()
    token = resolve_token(token_file)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return _timed_client_class()(url, timeout, headers=headers)
    except Exception as exc:
        raise _cluster_error(url, exc, token is not None) from None


def _is_timeout(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.exceptions.Timeout, TimeoutError, asyncio.TimeoutError))


def _cluster_error(url: str, exc: Exception, had_token: bool) -> ClusterError:
    if _is_timeout(exc):
        return ClusterUnreachable(f"no answer from the Ray job API at {url} within {api_timeout():g} s "
                                  f"(is this the dashboard address? {TIMEOUT_ENV} sets the wait)")
    text = str(exc)
    if "Authentication required" in text or "401" in text:
        return ClusterError(f"the Ray cluster at {url} requires a token: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
                            f"(or --token-file)")
    if "Authentication failed" in text or "403" in text:
        return ClusterError(f"the Ray cluster at {url} refused the token (it is not the cluster's token)")
    if isinstance(exc, ConnectionError) or "Failed to connect" in text:
        return ClusterUnreachable(f"no Ray job API at {url} (is the cluster up, and is this its dashboard address?)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return ClusterError(f"Ray job API at {url}: {first[:200]}")


@dataclass(frozen=True)
class JobTable(Config):
    """The ``[job]`` table of a job spec: how the command runs on the cluster."""

    WHAT = "[job] setting"
    workdir: str = ""  # default: the directory submit is run in
    python: str = "python"
    entrypoint_num_cpus: float = 0.0
    entrypoint_num_gpus: float = 0.0
    runtime_env: dict = field(default_factory=dict)

    def __post_init__(self):
        self.check_fields()
        for key in ("entrypoint_num_cpus", "entrypoint_num_gpus"):
            if getattr(self, key) < 0:
                raise InputError(f"[job] {key} must be a number >= 0, not {getattr(self, key)!r}")


def _spec_path(path: Path) -> Path:
    from nationmap.files import job_spec_path

    return job_spec_path(path)


def _command(raw: dict, spec_arg: str) -> list[str]:
    """The nationmap command a spec stands for, its table's types checked by the configs' rule
    (a wrong type is refused here, not on the cluster minutes later)."""
    from nationmap.infer.config import InferConfig
    from nationmap.ops.refresh import RefreshSpec
    from nationmap.train.config import TrainConfig

    for table, cls, what in (("train", TrainConfig, "[train] option"), ("refresh", RefreshSpec, "[refresh] setting"),
                             ("infer", InferConfig, "[infer] setting")):
        if table in raw:
            check_types(cls, raw[table], what)
            if table == "train":
                task = raw["train"].get("task")
                if task not in ("pretrain", "lulc", "water"):
                    raise InputError(f"[train] task must be pretrain, lulc or water, not {task!r}")
                return ["train", task, "--spec", spec_arg]
            return [table, "--config", spec_arg]
    raise InputError("a job spec needs a [train], [infer] or [refresh] table")


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
        path = _spec_path(Path(path))
        raw = read_toml(path)
        # the spec as the job sees it: a spec under this directory has the same relative path under
        # the job's workdir (the cluster's copy of the checkout); any other is passed as it is
        resolved, here = path.resolve(), Path.cwd().resolve()
        spec_arg = str(resolved.relative_to(here)) if here in resolved.parents else str(resolved)
        try:
            job = JobTable.from_dict(raw.get("job", {}))
            command = _command(raw, spec_arg)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        return cls(path=path, command=command + list(extra_args or []), workdir=job.workdir or os.getcwd(),
                   python=job.python, entrypoint_num_cpus=job.entrypoint_num_cpus,
                   entrypoint_num_gpus=job.entrypoint_num_gpus, runtime_env=dict(job.runtime_env))

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
        jobs.get_job_info(job_id)  # an HTTP request with a timeout: the API answers before the tail
        if follow_logs:  # the tail may rightly stay quiet for long (a job between log lines)
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
