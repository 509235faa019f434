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

from collections.abc import Iterable, Mapping, Sequence
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


# ---------------------------------------------------------------------------- boundaries and thin structures
#
# Boundary F-score (Csurka et al., BMVC 2013) per class at a tolerance of ``tolerance`` pixels:
# the boundary of class k is its pixels with an 8-neighbour of another class (no-data pixels
# neither make nor hold boundaries); precision is the share of predicted boundary pixels within
# ``tolerance`` (Euclidean, pixel centres) of a reference boundary pixel, recall the reverse,
# BF = 2PR / (P + R). Thin water: reference water pixels outside every
# (max_width + 1) x (max_width + 1) all-water square, i.e. rivers and channels at most
# ``max_width`` px wide along rows or columns; its recall is the share of them mapped as water.

BOUNDARY_TOLERANCE = 2  # px
THIN_WIDTH = 3  # px
WATER = "Water"  # the class whose thin structures are measured


def water_index(names: Sequence[str]) -> int | None:
    """Index of the water class in a scheme's class names (None: the scheme has none)."""
    return list(names).index(WATER) if WATER in names else None


def class_boundaries(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W) labels and validity -> (H, W) bool: valid pixels with a valid 8-neighbour of another label."""
    labels = np.asarray(labels)
    h, w = labels.shape
    pad = np.pad(labels.astype(np.int16), 1, constant_values=-1)
    vpad = np.pad(np.asarray(valid, bool), 1, constant_values=False)
    edge = np.zeros((h, w), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                nb = pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                nv = vpad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                edge |= nv & (nb != labels)
    return edge & np.asarray(valid, bool)


def thin_mask(mask: np.ndarray, max_width: int = THIN_WIDTH) -> np.ndarray:
    """(H, W) bool -> pixels of ``mask`` that no (max_width + 1)-square inside ``mask`` covers."""
    from scipy.ndimage import binary_opening

    mask = np.asarray(mask, bool)
    k = max_width + 1
    return mask & ~binary_opening(mask, structure=np.ones((k, k), bool), border_value=0)


class StructureMeter:
    """Boundary F-score counts per class and thin-water recall counts, added up image by image
    (cells, patches) so the scores of many images are those of their sum.

    ``counts[k]`` = (predicted boundary pixels near a reference boundary, predicted boundary
    pixels, reference boundary pixels near a predicted boundary, reference boundary pixels).
    """

    def __init__(self, num_classes: int, water_class: int | None, tolerance: float = BOUNDARY_TOLERANCE,
                 max_width: int = THIN_WIDTH, ignore_index: int = 255):
        self.num_classes, self.water_class = num_classes, water_class
        self.tolerance, self.max_width, self.ignore_index = tolerance, max_width, ignore_index
        self.counts = np.zeros((num_classes, 4), dtype=np.int64)
        self.thin = np.zeros(2, dtype=np.int64)  # thin reference water pixels mapped as water, all of them

    def update(self, prediction, truth) -> "StructureMeter":
        """Add one image or a batch: (H, W) or (N, H, W) class indices, truth == ignore_index skipped."""
        pred, true = np.asarray(prediction), np.asarray(truth)
        if pred.shape != true.shape:
            raise ValueError(f"prediction {pred.shape} and truth {true.shape} differ in size")
        if pred.ndim == 2:
            pred, true = pred[None], true[None]
        for p, t in zip(pred, true):
            self._add(p.astype(np.int16), t.astype(np.int16))  # classes < 256 and 255: small and exact
        return self

    def _add(self, pred: np.ndarray, true: np.ndarray) -> None:
        from scipy.ndimage import binary_dilation

        valid = true != self.ignore_index
        pb, tb = class_boundaries(pred, valid), class_boundaries(true, valid)
        r = int(self.tolerance)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        disk = yy * yy + xx * xx <= self.tolerance ** 2  # pixel centres within the tolerance
        for k in range(self.num_classes):
            pk, tk = pb & (pred == k), tb & (true == k)
            n_p, n_t = int(pk.sum()), int(tk.sum())
            if not n_p and not n_t:
                continue
            near_t = binary_dilation(tk, structure=disk) if n_t else np.zeros_like(tk)
            near_p = binary_dilation(pk, structure=disk) if n_p else np.zeros_like(pk)
            self.counts[k] += (int((pk & near_t).sum()), n_p, int((tk & near_p).sum()), n_t)
        if self.water_class is not None:
            thin = thin_mask(valid & (true == self.water_class), self.max_width)
            self.thin += (int((thin & (pred == self.water_class)).sum()), int(thin.sum()))

    def merge(self, other: "StructureMeter") -> "StructureMeter":
        self.counts += other.counts
        self.thin += other.thin
        return self

    def scores(self, class_names: Sequence[str] | None = None) -> "StructureScores":
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        per_class = {}
        for name, (pm, pn, tm, tn) in zip(names, self.counts):
            if not pn and not tn:
                per_class[name] = None  # no boundary of this class in either map
                continue
            precision, recall = (float(pm / pn) if pn else 0.0), (float(tm / tn) if tn else 0.0)
            per_class[name] = float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0
        thin_recall = float(self.thin[0] / self.thin[1]) if self.thin[1] else None
        return StructureScores(per_class, _mean(per_class.values()), thin_recall, int(self.thin[1]),
                               self.tolerance, self.max_width)


@dataclass(frozen=True)
class StructureScores:
    boundary_f: dict  # class name -> boundary F-score, None where neither map has its boundary
    mean_boundary_f: float  # over the classes with a boundary in either map
    thin_water_recall: float | None  # None: no thin water in the reference
    thin_water_pixels: int
    tolerance: float
    max_width: int

    def to_dict(self) -> dict:
        return {"boundary_f": self.boundary_f, "mean_boundary_f": self.mean_boundary_f,
                "thin_water_recall": self.thin_water_recall, "thin_water_pixels": self.thin_water_pixels,
                "boundary_tolerance_px": self.tolerance, "thin_max_width_px": self.max_width}


def render_structure_table(rows: Iterable["MethodScores"], headline_name: str, title: str | None = None) -> str:
    """Markdown table: per method, its headline score (mIoU or IoU_Water), the boundary F-score
    (mean over classes, or of its ``boundary_class``) and the thin-water recall."""
    rows = list(rows)
    first = rows[0]
    s = first.structures
    where = "" if first.boundary_class is None else ", " + first.boundary_class
    lines = [title, ""] if title else []
    lines.append(f"| Method | {headline_name} (0-1) | boundary F ({s.tolerance:g} px{where}) "
                 f"| thin-water recall (<= {s.max_width} px) |")
    lines.append("|---|---|---|---|")
    for m in rows:
        lines.append(f"| {m.name} | {_cell(m.headline, 3)} | {_cell(m.boundary_f, 3)} | {_cell(m.thin_water_recall, 3)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- methods side by side


MODEL_ROW, BASELINE_ROW = "nationmap", "per-pixel baseline (GBT)"  # the methods' names in reports


@dataclass
class MapCounts:
    """One method's confusion matrix and boundary / thin-water counts, over the same pixels as
    the other methods it is reported beside (model, per-pixel baseline, majority class)."""

    cm: ConfusionMatrix
    structures: StructureMeter

    @classmethod
    def new(cls, num_classes: int, water_class: int | None) -> "MapCounts":
        return cls(ConfusionMatrix(num_classes), StructureMeter(num_classes, water_class))

    def update(self, prediction, truth) -> "MapCounts":
        """(N, H, W) or (H, W) class indices; truth 255 = not scored."""
        self.cm.update(prediction, truth)
        self.structures.update(np.asarray(prediction), np.asarray(truth))
        return self

    def constant(self, k: int) -> "MapCounts":
        """The counts of a map of class ``k`` everywhere on the same pixels, derived exactly from
        this one's truth totals: every truth pixel in column k, no predicted boundary, thin water
        found only if k is water."""
        counts = np.zeros_like(self.cm.counts)
        counts[:, k] = self.cm.counts.sum(axis=1)
        meter = StructureMeter(self.cm.num_classes, self.structures.water_class, self.structures.tolerance,
                               self.structures.max_width)
        meter.counts[:, 3] = self.structures.counts[:, 3]
        thin_total = self.structures.thin[1]
        meter.thin[:] = (thin_total if k == self.structures.water_class else 0, thin_total)
        return MapCounts(ConfusionMatrix(self.cm.num_classes, counts=counts), meter)


@dataclass(frozen=True)
class MethodScores:
    """One method's scores on the pixels it shares with the methods reported beside it: Table
    II's (LULC, ``SegmentationScores``) or Table III's (water, ``BinaryScores``), and the
    boundary / thin-water scores."""

    name: str
    scores: SegmentationScores | BinaryScores
    structures: StructureScores
    boundary_class: str | None = None  # water: the boundary F of this class; LULC: the mean over classes

    @property
    def headline(self) -> float:
        """mIoU (LULC) or IoU_Water (water), 0-1."""
        return self.scores.miou if isinstance(self.scores, SegmentationScores) else self.scores.iou

    @property
    def boundary_f(self) -> float | None:
        s = self.structures
        return s.mean_boundary_f if self.boundary_class is None else s.boundary_f.get(self.boundary_class)

    @property
    def thin_water_recall(self) -> float | None:
        return self.structures.thin_water_recall

    def to_dict(self) -> dict:
        return {**self.scores.to_dict(), "structures": self.structures.to_dict()}


@dataclass(frozen=True)
class MethodReport:
    """The methods scored on the same pixels for one task, by role, and their markdown tables."""

    task: str  # lulc or water
    model: MethodScores
    majority: MethodScores
    baseline: MethodScores | None
    text: str

    @property
    def methods(self) -> tuple[MethodScores, ...]:
        """In the tables' order: model, baseline (when there is one), majority class."""
        return tuple(m for m in (self.model, self.baseline, self.majority) if m is not None)

    def to_dict(self) -> dict:
        return {m.name: m.to_dict() for m in self.methods}


def report_methods(methods: Mapping[str, MapCounts], names: Sequence[str], task: str, where: str,
                   majority: str) -> MethodReport:
    """``methods`` (``MODEL_ROW``, optionally ``BASELINE_ROW``, and the row named ``majority``)
    scored and rendered: Table II layout (IoU, accuracy) for ``task`` lulc, Table III for water,
    then mIoU / IoU_Water with the boundary F-score and thin-water recall."""
    if task == "lulc":
        scores = {m: c.cm.scores(names) for m, c in methods.items()}
        text = render_class_table(scores, title=f"Per-class IoU {where} (layout of Table II)")
        text += "\n" + render_class_table(scores, metric="accuracy", title="Per-class accuracy")
    else:
        scores = {m: c.cm.binary_scores() for m, c in methods.items()}
        text = render_water_table(scores, title=f"Water detection {where}, % (layout of Table III)")
    boundary_class = None if task == "lulc" else names[-1]
    rows = {m: MethodScores(m, scores[m], c.structures.scores(names), boundary_class) for m, c in methods.items()}
    text += "\n" + render_structure_table(rows.values(), "mIoU" if task == "lulc" else "IoU_Water",
                                          title=f"Boundaries and thin water {where}")
    return MethodReport(task, rows[MODEL_ROW], rows[majority], rows.get(BASELINE_ROW), text)
