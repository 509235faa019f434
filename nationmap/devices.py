"""Devices a job finds by itself: ``auto`` GPUs and batch sizes resolved against the cluster.

``gpus_per_actor`` (inference) and ``gpus_per_worker`` (training) default to ``auto``: one GPU
per predictor actor or training worker when the Ray cluster (or the machine) reports GPUs, else
the CPU. An explicit number always wins and is checked against the cluster. For inference the
batch size follows (``batch_size = "auto"``): ``GPU_BATCH`` windows per forward pass on a GPU,
``CPU_BATCH`` on a CPU; and the number of predictor actors, unless given, is one per GPU or one
per ``cpus_per_actor`` CPUs. Pure functions of the cluster's resources (``ray.cluster_resources()``
as a dict), so they are tested without GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nationmap.errors import InputError

AUTO = "auto"
GPU_BATCH = 32  # windows per forward pass on a GPU: jobs/infer.toml's setting before ``auto``
CPU_BATCH = 8  # on a CPU: jobs/cpu-demo/infer.toml's (a larger batch only adds memory there)


def check_auto(value: float | int | str, name: str) -> None:
    """``value`` is ``"auto"`` or a number >= 0 (InputError naming ``name`` otherwise)."""
    if isinstance(value, str):
        if value != AUTO:
            raise InputError(f"{name} must be a number or {AUTO!r}, not {value!r}")
    elif not math.isfinite(value):
        raise InputError(f"{name} must be a finite number or {AUTO!r}, not {value}")
    elif value < 0:
        raise InputError(f"{name} must be >= 0 or {AUTO!r}, not {value:g}")


def parse_auto(text: str | None, name: str, integer: bool = False) -> float | int | str | None:
    """A command-line value: None (not given), ``"auto"`` or a number >= 0 (a whole one if ``integer``)."""
    if text is None or text == AUTO:
        return text
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InputError(f"--{name} must be {kind} or {AUTO!r}, not {text!r}") from None
    check_auto(value, f"--{name}")
    return value


def cluster_gpus(resources: dict) -> float:
    return float(resources.get("GPU", 0.0))


def resolve_gpus(requested: float | str, units: int, resources: dict, what: str) -> float:
    """GPUs per unit (actor or worker) for ``units`` of them: ``requested`` when a number (the
    cluster must hold ``units`` x that many), else 1 when the cluster has a GPU per unit and 0
    (the CPU) when it has none. ``what`` names the units in errors ("training workers")."""
    have = cluster_gpus(resources)
    if requested != AUTO:
        if requested * units > have:
            raise InputError(f"{units} {what} x {requested:g} GPU = {requested * units:g} GPU, but the Ray cluster "
                             f"has {have:g}; use {AUTO!r} or 0 to run on CPUs")
        return float(requested)
    if have == 0:
        return 0.0
    if have < units:
        raise InputError(f"{units} {what} and the Ray cluster has {have:g} GPU: lower the number of {what} "
                         f"or give the GPUs per unit")
    return 1.0


@dataclass(frozen=True)
class PredictorPlan:
    """How the scene stage runs: predictor actors, each with ``gpus`` GPUs (0: CPU) and
    ``cpus`` CPUs, predicting ``batch_size`` windows per forward pass."""

    actors: int
    gpus: float
    cpus: float
    batch_size: int

    def describe(self) -> str:
        device = f"{self.gpus:g} GPU" if self.gpus else f"{self.cpus:g} CPU"
        return f"{self.actors} predictor actor(s) x {device}, batch {self.batch_size} windows"


def plan_predictors(gpus: float | str, batch_size: int | str, concurrency: int, cpus_per_actor: float,
                    resources: dict, scenes: int) -> PredictorPlan:
    """The predictor actors for ``scenes`` acquisitions on a cluster with ``resources``: GPUs per
    actor (:func:`resolve_gpus`), the batch size (``auto``: ``GPU_BATCH`` or ``CPU_BATCH``) and
    the number of actors (``concurrency``, or 0: one per GPU or per ``cpus_per_actor`` CPUs;
    never more than the scenes)."""
    if concurrency:
        actors = concurrency
        per_actor = resolve_gpus(gpus, actors, resources, "predictor actors")
    else:
        per_actor = resolve_gpus(gpus, 1, resources, "predictor actor")
        if per_actor:
            actors = max(1, int(cluster_gpus(resources) // per_actor))
        else:
            actors = max(1, int(resources.get("CPU", 1) // cpus_per_actor))
    batch = (GPU_BATCH if per_actor else CPU_BATCH) if batch_size == AUTO else int(batch_size)
    return PredictorPlan(max(1, min(actors, scenes)), per_actor, cpus_per_actor, batch)
