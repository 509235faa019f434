"""Training run configuration: a TOML job spec (``jobs/*.toml``) plus command-line overrides.

One ``TrainConfig`` describes a pretraining, LULC or water finetuning run. It is validated on
construction and written next to the run's outputs (``RUN_DIR/config.json``) so the run can be
resumed and reproduced.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from nationmap.config import Config
from nationmap.errors import InputError
from nationmap.files import atomic_file, job_spec_path, read_toml_table
from nationmap.devices import PRECISIONS, check_auto

TASKS = ("pretrain", "lulc", "water")
METHODS = ("mixmae", "simmim")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Every option of a training run (``[train]`` table of a job spec, options of the CLI);
    built by ``from_dict`` (:class:`~nationmap.config.Config`): types, finite numbers, no unknown keys."""

    WHAT = "training option"
    task: str
    data: str = ""  # prepared dataset directory
    out: str = "runs"  # runs are written to OUT/NAME
    name: str = ""  # default: TASK-YYYYmmdd-HHMMSS
    preset: str = "swin-b"
    # pretraining
    method: str = "mixmae"
    sar_weight: bool = True
    mask_ratio: float = 0.0  # 0: the method's default (MixMAE 0.5, SimMIM 0.6)
    # finetuning model and loss (Table I switches)
    highres: bool = True
    refine_up: bool = True
    guide: bool = False  # image-guided full-resolution refinement (not in the paper)
    alpha_scale: float = 2.25
    gamma: float = 1.1
    lambda_focal: float = 0.57
    lambda_dice: float = 0.32
    init: str = ""  # pretrained encoder: pretrain run dir, bundle dir or checkpoint dir
    no_pretrain: bool = False
    # optimisation
    epochs: int = 200
    batch_size: int = 512  # global, over all workers
    lr: float = 6e-4  # base learning rate
    lr_batch_scaling: bool = False  # lr = base lr * global batch / 256 (pretraining)
    min_lr: float = 1e-6
    warmup_epochs: float = 10.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float = 0.7  # 1.0 = none
    clip_grad: float = 5.0  # max gradient norm; 0 = off
    drop_path: float = 0.1
    # Mixed precision of the forward and loss (nationmap.devices.choose_precision, decided on the
    # machine the workers run on): auto = bf16 autocast where the device runs bf16 natively (a CUDA
    # GPU that supports it; a CPU with AMX or AVX512-BF16), float32 elsewhere, where emulated bf16
    # costs 10-18x float32's time per step; bf16 = bf16, refused where emulated unless force_bf16; fp32
    precision: str = "auto"
    force_bf16: bool = False  # run an explicit bf16 even where it would be emulated (slow)
    # exponential moving average of the weights (timm's ModelEmaV3, decay warmed up from 0): what is
    # validated, kept as best and exported; 0 = off
    ema_decay: float = 0.0
    steps_per_epoch: int = 0  # 0: the whole training split each epoch
    augment: bool = True  # random flips and 90-degree rotations of training patches
    seed: int = 0
    # resources and recovery
    workers: int = 1
    gpus_per_worker: float | str = "auto"  # auto: one GPU per worker where the cluster has them, else CPU
    cpus_per_worker: float = 1.0
    threads_per_worker: int = 0  # torch threads per worker; 0 = node cores / workers
    placement: str = "PACK"  # Ray placement strategy of the workers (PACK or SPREAD)
    keep_last: int = 2  # Ray keeps the last N epoch checkpoints; the best is kept in RUN_DIR/best
    max_failures: int = 3  # worker-group restarts from the last checkpoint before giving up
    extra: dict = field(default_factory=dict)  # free-form notes carried into the run record

    def __post_init__(self):
        self.check_fields()  # types and finite numbers (a nan lr would cost minutes of Ray retries)
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r} (choose from {', '.join(PRECISIONS)})")
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r} (choose from {', '.join(TASKS)})")
        from nationmap.models.presets import PRESETS  # here: nationmap.models imports torch

        if self.preset not in PRESETS:
            raise InputError(f"unknown model preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        if self.method not in METHODS:
            raise InputError(f"unknown pretraining method {self.method!r} (choose from {', '.join(METHODS)})")
        positive = dict(epochs=self.epochs, batch_size=self.batch_size, workers=self.workers, lr=self.lr)
        for key, value in positive.items():
            if value <= 0:
                raise InputError(f"{key.replace('_', '-')} must be positive, got {value}")
        if self.batch_size % self.workers:
            raise InputError(f"batch size {self.batch_size} must be a multiple of the {self.workers} workers")
        if self.task == "pretrain" and self.method == "mixmae" and self.batch_size // self.workers < 2:
            raise InputError("MixMAE mixes pairs: the batch per worker must be at least 2")
        if not 0.0 < self.layer_decay <= 1.0:
            raise InputError("layer decay must be in (0, 1]")
        if self.min_lr < 0 or self.warmup_epochs < 0 or self.weight_decay < 0 or self.clip_grad < 0:
            raise InputError("min-lr, warmup-epochs, weight-decay and clip-grad must be >= 0")
        check_auto(self.gpus_per_worker, "gpus per worker")
        if self.cpus_per_worker <= 0:
            raise InputError("cpus per worker must be > 0")
        if self.placement not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise InputError("placement must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD")
        if self.keep_last < 1 or self.max_failures < 0 or self.steps_per_epoch < 0:
            raise InputError("keep-last must be >= 1, max-failures and steps-per-epoch >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError("ema-decay must be in [0, 1) (0 = no moving average)")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise InputError("mask ratio must be in [0, 1)")
        if self.init and self.no_pretrain:
            raise InputError("--init and --no-pretrain exclude each other")

    @property
    def finetune(self) -> bool:
        return self.task in ("lulc", "water")

    @property
    def batch_per_worker(self) -> int:
        return self.batch_size // self.workers

    @property
    def peak_lr(self) -> float:
        return self.lr * self.batch_size / 256 if self.lr_batch_scaling else self.lr

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: Path) -> None:
        with atomic_file(path) as f:
            f.write(json.dumps(self.to_dict(), indent=2) + "\n")


def load_job_spec(spec: str | Path) -> dict:
    """Read a job spec: a path to a TOML file, or a name of the shipped specs (``lulc`` ->
    nationmap/jobs/lulc.toml; :func:`nationmap.files.job_spec_path`).

    The file's ``[train]`` table holds TrainConfig fields.
    """
    return read_toml_table(job_spec_path(spec), "train")


def resolve_config(task: str, spec: str | Path | None, overrides: dict) -> TrainConfig:
    """Job spec (default ``jobs/<task>.toml``) updated by the options given on the command line."""
    values = load_job_spec(spec or task)
    if values.get("task", task) != task:
        raise InputError(f"job spec is for task {values['task']!r}, not {task!r}")
    values["task"] = task
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)
