"""Confusion-matrix metrics for segmentation and water detection, mergeable across workers.

A ``ConfusionMatrix`` counts (truth, prediction) pairs over valid pixels; matrices from different
workers, batches or scenes add up (``merge`` or ``+``), and every score derives from the sum, so a
distributed evaluation gives exactly the single-process numbers.

Per class k with TP = C[k, k], FN = row sum - TP, FP = column sum - TP:
IoU_k = TP / (TP + FP + FN), Acc_k = TP / (TP + FN) (the class's recall, "per-class accuracy").
A class absent from both truth and prediction has no IoU: it is reported as absent and left out
of the means. A class absent from truth only has IoU 0 (counted) and no accuracy (left out of mAcc).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


class ConfusionMatrix:
    """(K, K) int64 counts, rows = truth, columns = prediction."""

    def __init__(self, num_classes: int, ignore_index: int = 255, counts: np.ndarray | None = None):
        if num_classes < 2:
            raise ValueError("a confusion matrix needs at least 2 classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if counts is None:
            counts = np.zeros((num_classes, num_classes), dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (num_classes, num_classes):
            raise ValueError(f"counts must be ({num_classes}, {num_classes}), got {counts.shape}")
        self.counts = counts.copy()

    def update(self, prediction, truth) -> "ConfusionMatrix":
        """Add pixels. prediction, truth: same shape, integer class indices (torch or numpy);
        truth == ignore_index is skipped. Returns self."""
        pred = torch.as_tensor(prediction).reshape(-1).long()
        true = torch.as_tensor(truth).reshape(-1).long()
        if pred.shape != true.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(true.shape)} differ in size")
        keep = true != self.ignore_index
        pred, true = pred[keep], true[keep]
        k = self.num_classes
        if true.numel() and (int(true.min()) < 0 or int(true.max()) >= k):
            raise ValueError(f"truth values must be in 0..{k - 1} or {self.ignore_index}")
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= k):
            raise ValueError(f"predicted values must be in 0..{k - 1}")
        counts = torch.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        self.counts += counts.cpu().numpy().astype(np.int64)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another worker's counts in place. Returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different class counts")
        self.counts += other.counts
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return ConfusionMatrix(self.num_classes, self.ignore_index, self.counts).merge(other)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def scores(self, class_names: Sequence[str] | None = None) -> "SegmentationScores":
        return segmentation_scores(self.counts, class_names)

    def binary_scores(self, positive: int = 1) -> "BinaryScores":
        return binary_scores(self.counts, positive)


@dataclass(frozen=True)
class ClassScore:
    name: str
    iou: float | None  # None: absent from truth and prediction
    accuracy: float | None  # None: absent from truth
    truth_pixels: int
    predicted_pixels: int

    @property
    def absent(self) -> bool:
        return self.iou is None


@dataclass(frozen=True)
class SegmentationScores:
    classes: tuple[ClassScore, ...]
    miou: float  # mean IoU over classes present in truth or prediction
    macc: float  # mean accuracy over classes present in truth
    overall_accuracy: float
    pixels: int

    def to_dict(self) -> dict:
        return {
            "miou": self.miou,
            "macc": self.macc,
            "overall_accuracy": self.overall_accuracy,
            "pixels": self.pixels,
            "classes": {
                c.name: {
                    "iou": c.iou,
                    "accuracy": c.accuracy,
                    "absent": c.absent,
                    "truth_pixels": c.truth_pixels,
                    "predicted_pixels": c.predicted_pixels,
                }
                for c in self.classes
            },
        }


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def _mean(values) -> float:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def segmentation_scores(counts: np.ndarray, class_names: Sequence[str] | None = None) -> SegmentationScores:
    """Scores from a (K, K) confusion matrix (rows truth, columns prediction)."""
    c = np.asarray(counts, dtype=np.int64)
    k = c.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    tp = np.diag(c)
    truth = c.sum(axis=1)
    pred = c.sum(axis=0)
    classes = tuple(
        ClassScore(
            name=names[i],
            iou=_ratio(tp[i], truth[i] + pred[i] - tp[i]),
            accuracy=_ratio(tp[i], truth[i]),
            truth_pixels=int(truth[i]),
            predicted_pixels=int(pred[i]),
        )
        for i in range(k)
    )
    total = int(c.sum())
    return SegmentationScores(
        classes=classes,
        miou=_mean(s.iou for s in classes),
        macc=_mean(s.accuracy for s in classes),
        overall_accuracy=float(tp.sum()) / total if total else float("nan"),
        pixels=total,
    )


@dataclass(frozen=True)
class BinaryScores:
    iou: float  # positive-class IoU (IoU_water)
    precision: float
    recall: float
    f1: float
    pixels: int

    def to_dict(self) -> dict:
        return {"iou": self.iou, "precision": self.precision, "recall": self.recall, "f1": self.f1, "pixels": self.pixels}


def binary_scores(counts: np.ndarray, positive: int = 1) -> BinaryScores:
    """Positive-class IoU, precision, recall, F1 from a (2, 2) confusion matrix. NaN when undefined."""
    c = np.asarray(counts, dtype=np.int64)
    if c.shape != (2, 2):
        raise ValueError("binary scores need a 2 x 2 confusion matrix")
    tp = c[positive, positive]
    fn = c[positive].sum() - tp
    fp = c[:, positive].sum() - tp
    nan = float("nan")

    def ratio(num, den):
        r = _ratio(num, den)
        return nan if r is None else r

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return BinaryScores(
        iou=ratio(tp, tp + fp + fn),
        precision=precision,
        recall=recall,
        f1=ratio(2 * tp, 2 * tp + fp + fn),
        pixels=int(c.sum()),
    )


def _cell(value: float | None, digits: int, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "absent"
    return f"{value * scale:.{digits}f}"


def render_class_table(
    rows: Mapping[str, SegmentationScores], metric: str = "iou", digits: int = 2, title: str | None = None
) -> str:
    """Markdown table in the layout of the paper's Table II: one row per method, one column per
    class (the classes' IoU, or accuracy with ``metric='accuracy'``), then the mean. Absent
    classes print as 'absent'."""
    if metric not in ("iou", "accuracy"):
        raise ValueError("metric must be 'iou' or 'accuracy'")
    if not rows:
        raise ValueError("no rows to render")
    first = next(iter(rows.values()))
    names = [c.name for c in first.classes]
    mean_name = "mIoU" if metric == "iou" else "mAcc"
    lines = []
    if title:
        lines += [title, ""]
    lines.append("| Method | " + " | ".join(names) + f" | {mean_name} |")
    lines.append("|---" * (len(names) + 2) + "|")
    for method, scores in rows.items():
        if [c.name for c in scores.classes] != names:
            raise ValueError(f"row {method!r} has different classes")
        values = [getattr(c, metric) for c in scores.classes]
        mean = scores.miou if metric == "iou" else scores.macc
        lines.append(f"| {method} | " + " | ".join(_cell(v, digits) for v in values) + f" | {_cell(mean, digits)} |")
    return "\n".join(lines) + "\n"


def render_water_table(rows: Mapping[str, BinaryScores], digits: int = 2, title: str | None = None) -> str:
    """Markdown table in the layout of the paper's Table III (percent)."""
    lines = []
    if title:
        lines += [title, ""]
    lines.append("| Method | IoU_Water | Precision | Recall |")
    lines.append("|---|---|---|---|")
    for method, s in rows.items():
        lines.append(f"| {method} | {_cell(s.iou, digits, 100)} | {_cell(s.precision, digits, 100)} | {_cell(s.recall, digits, 100)} |")
    return "\n".join(lines) + "\n"
