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
import os
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


# --- precision: bf16 autocast where the hardware runs it natively, float32 elsewhere -------------

PRECISIONS = ("auto", "bf16", "fp32")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still allow its bf16 kernels: with a lower cap
# (AVX2, AVX512_CORE, ...) torch's bf16 matmuls are emulated, 12x float32's time on the machine
# where this was measured (a Xeon with AMX capped to AVX2), as on a CPU without bf16.
_ONEDNN_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_2_512"}
_ONEDNN_AMX_ISAS = {"AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
                    "AVX10_2_512_AMX_2"}
_ONEDNN_NO_CAP = {"", "ALL", "DEFAULT"}


@dataclass(frozen=True)
class Bf16Support:
    """What a device offers for bf16: its name and the native bf16 features found (CPU: ``AMX``,
    ``AVX512-BF16``; CUDA: ``sm_XY``); none found means bf16 would be emulated."""

    kind: str  # "cpu" or "cuda"
    name: str  # "Intel(R) Xeon(R) Processor", "NVIDIA H100 80GB HBM3"
    native: tuple[str, ...]

    def describe(self) -> str:
        have = f"native bf16: {', '.join(self.native)}" if self.native else "no native bf16"
        return f"{self.kind.upper()} {self.name} ({have})"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a training run uses, decided where its workers run; kept in ``summary.json``."""

    FORMAT = "nationmap-precision/1"
    requested: str  # "auto", "bf16" or "fp32"
    chosen: str  # "bf16" or "fp32"
    device: str  # Bf16Support.describe()
    reason: str

    def describe(self) -> str:
        return f"precision: {self.chosen} ({self.reason}) on {self.device}"

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "requested": self.requested, "chosen": self.chosen,
                "device": self.device, "reason": self.reason}


def onednn_isa_cap() -> str:
    """The ISA cap oneDNN honours (``ONEDNN_MAX_CPU_ISA``, or the older ``DNNL_MAX_CPU_ISA``)."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def cpu_bf16_features(amx: bool, avx512_bf16: bool, cap: str = "") -> tuple[str, ...]:
    """The native bf16 features a CPU lets torch use: what it has (``amx``, ``avx512_bf16`` as
    torch's probes report them) less what an ISA cap (``ONEDNN_MAX_CPU_ISA``) turns off; an
    unknown cap name is ignored, as oneDNN ignores it."""
    known = _ONEDNN_BF16_ISAS | _ONEDNN_AMX_ISAS | _ONEDNN_NO_CAP
    lower_isas = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
    if cap not in known and cap not in lower_isas:
        cap = ""
    allow_amx = cap in _ONEDNN_AMX_ISAS or cap in _ONEDNN_NO_CAP
    allow_bf16 = allow_amx or cap in _ONEDNN_BF16_ISAS
    return tuple(name for name, have, allowed in (("AMX", amx, allow_amx), ("AVX512-BF16", avx512_bf16, allow_bf16))
                 if have and allowed)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def probe_bf16(kind: str) -> Bf16Support:
    """This process's ``kind`` device ("cpu" or "cuda"): torch's CPU feature probes (AMX tiles,
    AVX512-BF16) under the oneDNN ISA cap, or the first CUDA device's compute capability."""
    import torch

    if kind == "cuda":
        major, minor = torch.cuda.get_device_capability(0)
        native = (f"sm_{major}{minor}",) if torch.cuda.is_bf16_supported(including_emulation=False) else ()
        return Bf16Support("cuda", torch.cuda.get_device_name(0), native)
    amx, avx512_bf16 = bool(torch.cpu._is_amx_tile_supported()), bool(torch.cpu._is_avx512_bf16_supported())
    return Bf16Support("cpu", cpu_name(), cpu_bf16_features(amx, avx512_bf16, onednn_isa_cap()))


def choose_precision(requested: str, device: Bf16Support, force: bool = False) -> PrecisionChoice:
    """``auto``: bf16 where ``device`` runs it natively, else float32; ``fp32`` as asked; ``bf16``
    as asked where native, refused (InputError with the reason) where it would be emulated unless
    ``force``."""
    if requested not in PRECISIONS:
        raise InputError(f"unknown precision {requested!r} (choose from {', '.join(PRECISIONS)})")
    where = device.describe()
    if requested == "fp32":
        return PrecisionChoice(requested, "fp32", where, "asked for")
    if device.native:
        return PrecisionChoice(requested, "bf16", where, "asked for" if requested == "bf16" else "auto: native bf16")
    if requested == "auto":
        return PrecisionChoice(requested, "fp32", where, "auto: bf16 would be emulated")
    if not force:
        raise InputError(f"precision bf16 on {where}: bf16 would be emulated there, often 10x slower than "
                         "float32; use precision auto or fp32, or force it with --force-bf16")
    return PrecisionChoice(requested, "bf16", where, "forced, emulated (slow)")


# --- CPUs: what this process may use, not what the host has -------------------------------------


def available_cpus(cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int:
    """CPUs this process may use: its affinity mask (taskset, Slurm, a container's cpuset) capped
    by the CPU quotas of its cgroup and the cgroups above it (``docker --cpus``, a Kubernetes
    limit, systemd's ``CPUQuota=``), rounded up. ``os.cpu_count()`` counts the host's CPUs:
    threads sized by it oversubscribe a limited container many times over."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The smallest CPU quota, in CPUs, on the way from this process's cgroup (``proc_cgroup``)
    up to ``root``: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None
    where there is none or nothing can be read."""
    from pathlib import Path

    quotas = [q for q in (_cgroup_quota(d) for d in _cgroup_dirs(Path(root), proc_cgroup)) if q is not None]
    return min(quotas) if quotas else None


def _cgroup_dirs(root, proc_cgroup: str) -> list:
    """This process's cgroup directories under ``root`` and their parents up to it (v2 and v1's
    cpu controller), innermost first; just ``root`` (and ``root/cpu``) where /proc says nothing."""
    try:
        lines = open(proc_cgroup).read().splitlines()
    except OSError:
        lines = []
    found = []
    for line in lines:
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            base = root  # v2: one unified tree
        elif "cpu" in controllers.split(","):
            base = next((root / n for n in (controllers, "cpu", "cpu,cpuacct") if (root / n).is_dir()), root / "cpu")
        else:
            continue
        here = base / rel.lstrip("/")
        found += [here, *[p for p in here.parents if p.is_relative_to(base) and p != here]]
    return found or [root, root / "cpu"]


def _cgroup_quota(directory) -> float | None:
    try:
        if (directory / "cpu.max").is_file():
            quota, period = (directory / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if (directory / "cpu.cfs_quota_us").is_file():
            quota = int((directory / "cpu.cfs_quota_us").read_text())
            return None if quota <= 0 else quota / int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None
