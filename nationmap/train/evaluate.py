"""Evaluate a model bundle on a prepared dataset split (in-process; no Ray needed).

A score comes with references scored on the same pixels: the majority class of the model's
training split and, when asked (``baseline`` / ``fit_baseline_to``; the CLI always does), the
per-pixel baseline (:mod:`nationmap.baseline`, gradient-boosted trees fitted on the model's
training split, fed with its own normalisation). Beside IoU: the boundary F-score and the recall of thin
water (:class:`nationmap.metrics.StructureMeter`).

Writes OUT/metrics.json, OUT/table.md (the paper's Table II layout for LULC, Table III for
water, then boundaries and thin water) and OUT/confusion.png.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nationmap.data.dataset import PreparedDataset
from nationmap.data.lulc import class_table_from_dict
from nationmap.errors import InputError
from nationmap.files import atomic_file
from nationmap.losses import water_mask
from nationmap.metrics import BASELINE_ROW, MODEL_ROW, MapCounts, MethodReport, report_methods, water_index
from nationmap.records import PIXEL_MODEL_KIND
from nationmap.parallel import progress_bar
from nationmap.train.checkpoint import Bundle, load_bundle
from nationmap.train.data import PatchDecoder, iter_batches, standardise
from nationmap.train.report import confusion_png

def predict(bundle: Bundle, x: torch.Tensor) -> torch.Tensor:
    """Class indices (N, H, W) from standardised input (N, 1, H, W)."""
    with torch.inference_mode():
        logits = bundle.model(x)
    if bundle.task == "water":
        return water_mask(logits, 0.5 if bundle.meta.threshold is None else bundle.meta.threshold)
    return logits.argmax(1)


EVAL_FORMAT = "nationmap-eval/1"


@dataclass(frozen=True)
class Evaluation:
    """A bundle's scores on a split, beside the majority class and the per-pixel baseline on the
    same pixels (``report``); ``to_dict`` is OUT/metrics.json."""

    bundle: str
    data: str
    split: str
    task: str
    patches: int
    class_names: tuple[str, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]  # the model's, rows truth, columns prediction
    majority_class: str  # the majority class of the model's training split
    baseline_bundle: str | None
    report: MethodReport

    @property
    def table(self) -> str:
        return self.report.text

    def to_dict(self) -> dict:
        r = self.report
        return {"format": EVAL_FORMAT, "bundle": self.bundle, "data": self.data, "split": self.split,
                "task": self.task, "patches": self.patches, "confusion_matrix": [list(x) for x in self.confusion_matrix],
                "class_names": list(self.class_names), **r.model.to_dict(), "majority_baseline": r.majority.to_dict(),
                "majority_class": self.majority_class,
                "baseline": None if r.baseline is None else {"bundle": self.baseline_bundle, **r.baseline.to_dict()}}


@dataclass
class _Setup:
    bundle: Bundle
    dataset: PreparedDataset
    decoder: PatchDecoder
    names: list[str]
    training_data: Path  # the model's training dataset: the baseline's fit and the majority class
    majority: int
    methods: dict[str, MapCounts] = field(default_factory=dict)


def training_data_of(bundle: Bundle, fallback: str | Path) -> Path:
    """The dataset the bundle was trained on (a model's training config, a baseline's ``data``
    record), if it is still there; else ``fallback``."""
    config = bundle.meta.training.get("config")
    data = config.get("data") if isinstance(config, dict) else bundle.meta.training.get("data")
    if isinstance(data, str) and data and (Path(data) / "dataset.json").is_file():
        return Path(data)
    return Path(fallback)


def _setup(bundle_path, data, split: str, task: str | None) -> _Setup:
    bundle = load_bundle(bundle_path)
    if task is not None and bundle.task != task:
        raise InputError(f"{bundle_path} is a {bundle.task} model, not {task}")
    if bundle.task not in ("lulc", "water"):
        raise InputError(f"{bundle_path}: a {bundle.task} bundle cannot be evaluated on labels (lulc or water)")
    dataset = PreparedDataset(data)
    if not dataset.shard_paths(split):
        raise InputError(f"{data}: split {split!r} has no patches")
    scheme = class_table_from_dict(bundle.meta.class_table).scheme(bundle.meta.scheme)
    norm = bundle.normalisation
    decoder = PatchDecoder(dataset.patch_size, norm["mean_db"], norm["std_db"], scheme.index_lut())
    train = training_data_of(bundle, data)
    freq = np.asarray(PreparedDataset(train).meta["class_frequencies"]["train"][bundle.meta.scheme]["pixels"])
    if not freq.any():
        raise InputError(f"{train}: the training split has no labelled pixel (no majority class)")
    return _Setup(bundle, dataset, decoder, scheme.names, train, int(freq.argmax()))


def _load_baseline(path, setup: _Setup) -> Bundle:
    baseline = load_bundle(path)
    if baseline.meta.model_kind != PIXEL_MODEL_KIND:
        raise InputError(f"baseline {path} is a {baseline.meta.model_kind} model, not the per-pixel baseline")
    if baseline.task != setup.bundle.task or baseline.meta.scheme != setup.bundle.meta.scheme:
        raise InputError(f"baseline {path} is a {baseline.task} model ({baseline.meta.scheme}), "
                         f"not {setup.bundle.task} ({setup.bundle.meta.scheme})")
    return baseline


def _input(bundle: Bundle, batch: dict) -> torch.Tensor:
    """The batch standardised with ``bundle``'s own normalisation, no data 0 (as in training)."""
    norm = bundle.normalisation
    return torch.from_numpy(standardise(batch["db"], batch["valid"], norm["mean_db"], norm["std_db"]))


def evaluate(bundle_path: str | Path, data: str | Path, split: str = "test", out: str | Path | None = None,
             batch_size: int = 8, task: str | None = None, baseline: str | Path | None = None,
             fit_baseline_to: str | Path | None = None, log=print) -> Evaluation:
    """Scores of the bundle, the majority class and (with ``baseline``, a baseline bundle, or
    ``fit_baseline_to``, where to write one fitted on ``data``'s training split) the per-pixel
    baseline on ``split``. ``task``, when given, is the task the caller expects the bundle to be
    (checked first, before any fitting)."""
    s = _setup(bundle_path, data, split, task)
    if baseline is None and fit_baseline_to is not None:  # on the model's own training split
        from nationmap.baseline.bundle import fit_baseline

        baseline = fit_baseline(s.training_data, s.bundle.task, fit_baseline_to, log=log)
    predictors = {MODEL_ROW: s.bundle}
    if baseline is not None:
        predictors[BASELINE_ROW] = _load_baseline(baseline, s)
    s.methods = {row: MapCounts.new(len(s.names), water_index(s.names)) for row in predictors}
    total = int(s.dataset.meta["patches"][split])
    with progress_bar() as progress:
        bar = progress.add_task(f"evaluating {split}", total=total)
        for batch in iter_batches(s.dataset, split, s.decoder, batch_size):
            for row, b in predictors.items():
                x = torch.from_numpy(batch["x"]) if b is s.bundle else _input(b, batch)
                s.methods[row].update(predict(b, x).numpy(), batch["target"])
            progress.advance(bar, len(batch["x"]))
    majority = f"majority class ({s.names[s.majority]})"
    s.methods[majority] = s.methods[MODEL_ROW].constant(s.majority)
    report = report_methods(s.methods, s.names, s.bundle.task, f"on the {split} split", majority)
    result = Evaluation(str(bundle_path), str(data), split, s.bundle.task, total, tuple(s.names),
                        tuple(tuple(int(v) for v in row) for row in s.methods[MODEL_ROW].cm.counts),
                        s.names[s.majority], None if baseline is None else str(baseline), report)
    if out is not None:
        _write(Path(out), result, s)
    return result


def _write(out: Path, result: Evaluation, s: _Setup) -> None:
    with atomic_file(out / "metrics.json") as f:
        f.write(json.dumps(result.to_dict(), indent=2))
    with atomic_file(out / "table.md") as f:
        f.write(result.table)
    confusion_png(s.methods[MODEL_ROW].cm.counts, s.names, out / "confusion.png", confusion_title(result))


def confusion_title(result: Evaluation) -> str:
    """Two lines: what was scored on which pixels; the model, pixel count, the task's headline
    score (mIoU, or IoU_Water), overall accuracy and version."""
    from nationmap import __version__
    from nationmap.metrics import segmentation_scores

    counts = np.asarray(result.confusion_matrix)
    scores = segmentation_scores(counts, result.class_names)
    headline = "IoU_Water" if result.task == "water" else "mIoU"
    return (f"{result.task} confusion on the {result.split} split of {Path(result.data).name} (row-normalised)\n"
            f"model {Path(result.bundle).name}: {scores.pixels:,} px, {headline} {result.report.model.headline:.3f}, "
            f"overall accuracy {scores.overall_accuracy:.3f}; nationmap {__version__}")
