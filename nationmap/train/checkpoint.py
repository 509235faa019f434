"""Checkpoints and model bundles without pickle: safetensors for tensors, JSON for the rest.

Training checkpoint (one directory, written by rank 0 and reported through Ray Train):
    model.safetensors       model weights
    ema.safetensors         the moving average of the weights (runs with ``ema_decay``; what is exported)
    optimizer.safetensors   optimiser tensors, keyed "<param index>.<name>"
    state.json              format, epoch, step, scheduler, optimiser scalars and param groups,
                            model kind + config, class table, label scheme, normalisation, metrics

Model bundle (``nationmap export``), what inference loads:
    model.safetensors       weights
    model.json              format, task, model kind + config, class table, scheme, normalisation,
                            threshold (water), training summary

A baseline bundle (``nationmap.baseline``) holds ``model.skops`` (fitted trees) instead of
``model.safetensors``. Nothing is ever unpickled, so a corrupt or foreign file gives a ``CheckpointError`` (an
``InputError`` for the baseline's trees; one line), never code execution.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nationmap import __version__
from nationmap.errors import InputError
from nationmap.files import atomic_file, staged_dir
from nationmap.models import MixMAE, MixMAEConfig, SegmentationConfig, SegmentationModel, SimMIM, SimMIMConfig
from nationmap.models.swin import encoder_state
from nationmap.records import PIXEL_MODEL_KIND, BundleMeta, Normalisation, RecordError

CHECKPOINT_FORMAT = "nationmap-checkpoint/1"
MODEL_KINDS = {
    "segmentation": (SegmentationConfig, SegmentationModel),
    "mixmae": (MixMAEConfig, MixMAE),
    "simmim": (SimMIMConfig, SimMIM),
}


class CheckpointError(InputError):
    """A checkpoint or bundle that cannot be used (missing, corrupt, foreign, mismatched)."""


def model_kind(model: nn.Module) -> str:
    for kind, (_, cls) in MODEL_KINDS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"no checkpoint kind for {type(model).__name__}")


def build_model(kind: str, config: dict) -> nn.Module:
    """Instantiate a model from its kind and config dict (as stored in checkpoints and bundles)."""
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"unknown model kind {kind!r}")
    cfg_cls, model_cls = MODEL_KINDS[kind]
    try:
        cfg = cfg_cls.from_dict(config)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"model config is not valid for {kind} ({exc})") from None
    return model_cls(cfg)


def _tensors_for_file(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path.parent}: not a nationmap {what} (no {path.name})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: corrupt {what} metadata (not JSON)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: corrupt {what} metadata")
    return data


def _read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path.parent}: {what} has no {path.name}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or foreign weights ({str(exc).splitlines()[0][:120]})") from None


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Replace ``dst`` by a copy of ``src``; readers see the old or the new copy, never a partial one."""
    with staged_dir(dst) as stage:
        shutil.copytree(src, stage, dirs_exist_ok=True)
    return Path(dst)


# ---------------------------------------------------------------------------- training state


def save_training_state(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, meta: dict,
                        ema: nn.Module | None = None) -> Path:
    """Write model, optimiser and ``meta`` (epoch, step, scheduler, configs, ...) to ``directory``,
    and ``ema`` (the averaged copy of ``model``) when given."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_tensors_for_file(model.state_dict()), str(directory / "model.safetensors"))
    if ema is not None:
        save_file(_tensors_for_file(ema.state_dict()), str(directory / "ema.safetensors"))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in opt["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    save_file(_tensors_for_file(tensors), str(directory / "optimizer.safetensors"))
    state = {
        "format": CHECKPOINT_FORMAT,
        "nationmap_version": __version__,
        "model_kind": model_kind(model),
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        **meta,
    }
    text = json.dumps(state, indent=1, default=_json_default)
    with atomic_file(directory / "state.json", durable=True) as f:  # written last: it marks the checkpoint whole
        f.write(text)
    return directory


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if torch.is_tensor(value):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass
class TrainingState:
    meta: dict
    model: dict[str, torch.Tensor]
    optimizer: dict  # a torch optimizer state dict
    ema: dict[str, torch.Tensor] | None = None  # the moving average of ``model`` (same keys), if kept

    @property
    def exported(self) -> dict[str, torch.Tensor]:
        """The weights a bundle or a pretrained encoder takes: the moving average when there is one."""
        return self.model if self.ema is None else self.ema


def load_training_state(directory: str | Path) -> TrainingState:
    """Read a training checkpoint directory written by ``save_training_state``."""
    directory = Path(directory)
    meta = _read_json(directory / "state.json", "checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{directory}: not a {CHECKPOINT_FORMAT} checkpoint (format {meta.get('format')!r})")
    model = _read_tensors(directory / "model.safetensors", "checkpoint")
    flat = _read_tensors(directory / "optimizer.safetensors", "checkpoint")
    state: dict[int, dict] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer"]["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer = {"state": state, "param_groups": meta["optimizer"]["param_groups"]}
    ema = _read_tensors(directory / "ema.safetensors", "checkpoint") if (directory / "ema.safetensors").exists() else None
    return TrainingState(meta=meta, model=model, optimizer=optimizer, ema=ema)


def load_model_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a one-line error naming the first mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(f"{source}: weights do not match the model ({what})")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(f"{source}: weight {name!r} has shape {tuple(tensor.shape)}, model expects {tuple(own[name].shape)}")
    model.load_state_dict(weights, strict=True)


# ---------------------------------------------------------------------------- bundles


@dataclass
class Bundle:
    model: nn.Module  # in eval mode, on the CPU
    meta: BundleMeta

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def normalisation(self) -> dict[str, float]:
        """``{"mean_db", "std_db"}`` of the model input (dB)."""
        return self.meta.normalisation.to_json()


def bundle_meta(meta: dict) -> BundleMeta:
    """The bundle metadata of a training checkpoint's ``meta`` (from ``state.json``)."""
    try:
        return BundleMeta(
            task=meta["task"], model_kind=meta["model_kind"], model_config=meta["model_config"],
            normalisation=Normalisation.from_fields(meta["normalisation"], "checkpoint normalisation"),
            nationmap_version=__version__, class_table=meta.get("class_table"), scheme=meta.get("scheme"),
            threshold=meta.get("threshold"),
            training={"run": meta.get("run"), "epoch": meta["epoch"], "metrics": meta.get("metrics", {}),
                      "config": meta.get("train_config")})
    except KeyError as exc:
        raise CheckpointError(f"checkpoint state has no {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint state: {exc}") from None


def write_bundle(out: str | Path, checkpoint_dir: str | Path) -> Path:
    """Export a training checkpoint as a self-contained model bundle (atomically)."""
    state = load_training_state(checkpoint_dir)
    meta = bundle_meta(state.meta)
    with staged_dir(out, durable=True) as stage:
        save_file(_tensors_for_file(state.exported), str(stage / "model.safetensors"))
        (stage / "model.json").write_text(json.dumps(meta.to_json(), indent=1))
    return Path(out)


def load_bundle(path: str | Path, device: str = "cpu") -> Bundle:
    """Load a model bundle: the model (eval mode) and its metadata."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model bundle {path} not found")
    try:
        meta = BundleMeta.read(path / "model.json")
    except RecordError as exc:
        raise CheckpointError(str(exc)) from None
    if meta.model_kind == PIXEL_MODEL_KIND:  # the per-pixel baseline: trees, not tensors
        from nationmap.baseline.bundle import load_baseline

        return Bundle(model=load_baseline(path, meta), meta=meta)
    model = build_model(meta.model_kind, meta.model_config)
    load_model_weights(model, _read_tensors(path / "model.safetensors", "model bundle"), str(path))
    return Bundle(model=model.to(device).eval(), meta=meta)


def random_bundle(out: str | Path, task: str, preset: str = "tiny", img_size: int = 256, seed: int = 0,
                  normalisation: dict | None = None) -> Path:
    """A bundle of an untrained (seeded random-weight) LULC or water model: what benchmarks and
    tests run inference with when the quality of the maps does not matter."""
    import tempfile

    from nationmap.data.lulc import load_class_table

    if task not in ("lulc", "water"):
        raise InputError(f"random bundles are LULC or water models, not {task!r}")
    base = SegmentationConfig.from_preset(preset, task)
    cfg = base.replace(encoder=base.encoder.replace(img_size=img_size))
    torch.manual_seed(seed)
    model = SegmentationModel(cfg)
    meta = {"task": task, "model_config": cfg.to_dict(),
            "normalisation": normalisation or {"mean_db": -12.0, "std_db": 6.5},
            "class_table": load_class_table().to_dict(), "scheme": "lulc9" if task == "lulc" else "water",
            "threshold": 0.5 if task == "water" else None, "epoch": 0, "step": 0, "metrics": {},
            "run": f"random weights, seed {seed}"}
    with tempfile.TemporaryDirectory() as tmp:
        save_training_state(tmp, model, torch.optim.SGD(model.parameters(), lr=0.1), meta)
        return write_bundle(out, tmp)


# ---------------------------------------------------------------------------- pretrained encoders


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """A run's checkpoint directory: ``best`` (RUN_DIR/best) or ``last`` (newest epoch reported to Ray)."""
    run_dir = Path(run_dir)
    if which == "best" and (run_dir / "best" / "state.json").exists():
        return run_dir / "best"
    candidates = []
    for d in run_dir.glob("checkpoint_*"):
        state = d / "state.json"
        if state.exists():
            try:
                candidates.append((int(json.loads(state.read_text())["epoch"]), d))
            except (json.JSONDecodeError, KeyError, ValueError):
                continue
    if not candidates:
        raise CheckpointError(f"{run_dir}: no checkpoint found (not a training run directory?)")
    return max(candidates)[1]


def load_encoder_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Encoder tensors from a bundle, a checkpoint, a run directory or a .safetensors file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"pretrained encoder {path} not found")
    if path.is_file():
        weights = _read_tensors(path, "encoder file")
    elif (path / "model.json").exists():
        weights = _read_tensors(path / "model.safetensors", "model bundle")
    elif (path / "state.json").exists():
        weights = load_training_state(path).exported
    else:
        weights = load_training_state(find_checkpoint(path)).exported
    encoder = encoder_state(weights)
    if not any(k.startswith("swin.") for k in encoder):
        raise CheckpointError(f"{path}: holds no Swin encoder weights")
    return encoder
