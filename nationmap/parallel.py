"""The thin Ray layer for embarrassingly parallel work (one task per scene or tile).

``run_tasks(fn, items)`` runs ``fn(item)`` for every item as Ray tasks (bounded in flight,
results in input order, a progress bar on stderr) or serially for debugging and pure tests.
``fn`` must be a module-level function; it should catch the errors it expects and return
them as data, so one bad scene never stops a run.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nationmap.devices import available_cpus

EXECUTORS = ("ray", "serial")
_stderr = Console(stderr=True, markup=False, highlight=False)  # descriptions are plain text


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console or _stderr, transient=False,
    )


# Ray Train runs the training function, and Ray Data an actor's map_batches UDF, in a thread
# that is not the worker's main thread, and glibc gives each such thread its own malloc arena,
# where the tens-of-MB tensors of every step are mmapped and unmapped again (page faults). One
# arena, as the main thread has: the bare training loop of benchmarks/training.py ran at 12.5
# samples/s in a thread and 15.2 in a thread with MALLOC_ARENA_MAX=1 (14.8 in the main thread).
# It is set once, for every worker of the job (:func:`init_ray`), not per trainer or actor pool:
# a per-actor runtime_env makes Ray start a fresh process for each actor instead of reusing one.
WORKER_ENV = {"MALLOC_ARENA_MAX": "1"}
"""Environment of nationmap's Ray workers (set when their process starts)."""

_address: str | None = None


def use_ray_address(address: str | None) -> None:
    """Where later Ray work runs: a cluster address, or ``None`` (RAY_ADDRESS or embedded)."""
    global _address
    _address = address


def init_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool | None = None) -> None:
    """Connect to ``address`` (or the one set by :func:`use_ray_address`, or ``RAY_ADDRESS``) or
    start an embedded local Ray (``address="local"`` forces it); no-op if up. Called by
    :func:`run_tasks` on first use, so bad input is reported before Ray spends seconds starting."""
    import ray

    if ray.is_initialized():
        return
    if log_to_driver is None:  # worker output stays in Ray's logs unless --verbose (nationmap.logs)
        from nationmap.logs import verbose

        log_to_driver = verbose()
    address = address or _address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        # keys a submitted job already sets stay the job's (Ray refuses to merge the two)
        env = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
        ray.init(address=address, logging_level="ERROR", log_to_driver=log_to_driver,
                 runtime_env={"env_vars": env} if env else None)
    else:
        # the embedded raylet, and so every worker it starts, inherits the driver's environment
        for key, value in WORKER_ENV.items():
            os.environ.setdefault(key, value)
        # "local": a new embedded instance, never one found running on the machine (ray start)
        # the dashboard process serves Ray's state API, which Ray Train's controller and placement-group
        # cleaner query every few seconds (without it they log warnings and tracebacks); bound to
        # this machine only
        ray.init(address="local", num_cpus=num_cpus or available_cpus(), include_dashboard=True,
                 dashboard_host="127.0.0.1", logging_level="ERROR", log_to_driver=log_to_driver)


def node_id() -> str:
    """The Ray node this code runs on (its node id), or ``local:<hostname>`` outside Ray: recorded
    with each scene and cell so a run shows how its work spread over the cluster."""
    ray = sys.modules.get("ray")  # never imported just for this: serial runs stay Ray-free
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return f"local:{platform.node()}"


def run_tasks(
    fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str, executor: str = "ray",
    num_cpus_per_task: float = 1.0, max_in_flight: int | None = None,
) -> list[Any]:
    """``[fn(item) for item in items]``, on Ray tasks or serially, with a progress bar."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}")
    results: list[Any] = [None] * len(items)
    with progress_bar() as progress:
        task = progress.add_task(desc, total=len(items))
        if executor == "serial" or not items:
            for i, item in enumerate(items):
                results[i] = fn(item)
                progress.advance(task)
            return results
        import ray

        init_ray()
        remote = ray.remote(num_cpus=num_cpus_per_task, max_retries=1)(fn)
        limit = max_in_flight or max(2, 2 * int(ray.available_resources().get("CPU", 2)))
        pending: dict = {}
        next_item = 0
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < limit:
                pending[remote.remote(items[next_item])] = next_item
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                progress.advance(task)
    return results

