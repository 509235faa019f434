"""The classical baseline: per-pixel gradient-boosted trees on sigma0 and local statistics.

scikit-learn's ``HistGradientBoostingClassifier`` on the features of
:mod:`nationmap.baseline.features`, fitted on pixels of a prepared dataset's training split
(the same split, normalisation and targets the deep models are trained on). Wrapped as a torch
module with the segmentation models' interface, so evaluation and inference run it as they run
a network: ``(N, 1, H, W)`` standardised sigma0 in, ``(N, K, H, W)`` logits out (log
probabilities for K classes; the water logit for the binary water task).

On disk it is a model bundle like the networks' (``model.json``), with the fitted trees in
``model.skops`` (skops' format: loading builds only scikit-learn and numpy types, never
unpickles).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nationmap.baseline.features import WINDOWS, feature_names, feature_rows
from nationmap.errors import InputError
from nationmap.records import PIXEL_MODEL_FILE, PIXEL_MODEL_KIND

MODEL_KIND, WEIGHTS_FILE = PIXEL_MODEL_KIND, PIXEL_MODEL_FILE
_EPS = 1e-6
MIN_CLASS_PIXELS = 10  # a class with fewer drawn pixels is left out of the fit (predicted with p = 0)


@dataclass(frozen=True)
class PixelClassifierConfig:
    """Settings of the baseline.

    Attributes:
        num_classes: K classes (1: binary water, the logit of class 1).
        windows: box sides (px) of the local mean / std features.
        max_pixels: training pixels drawn at random from the training split's valid pixels.
        max_iter / learning_rate / max_leaf_nodes: the boosting (scikit-learn's parameters).
        seed: pixel draw and boosting seed.
    """

    num_classes: int
    windows: tuple[int, ...] = WINDOWS
    max_pixels: int = 400_000
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    seed: int = 0

    def __post_init__(self):
        if self.num_classes < 1:
            raise InputError("the baseline needs at least one class")
        if not self.windows or any(w < 1 or w % 2 == 0 for w in self.windows):
            raise InputError(f"baseline windows must be odd and positive, not {self.windows}")
        if self.max_pixels < 100 or self.max_iter < 1 or not 0 < self.learning_rate <= 1 or self.max_leaf_nodes < 2:
            raise InputError("baseline: max_pixels >= 100, max_iter >= 1, 0 < learning_rate <= 1, max_leaf_nodes >= 2")

    def to_dict(self) -> dict:
        return {"num_classes": self.num_classes, "windows": list(self.windows), "max_pixels": self.max_pixels,
                "max_iter": self.max_iter, "learning_rate": self.learning_rate,
                "max_leaf_nodes": self.max_leaf_nodes, "seed": self.seed, "features": feature_names(self.windows)}

    @classmethod
    def from_dict(cls, d: dict) -> "PixelClassifierConfig":
        keys = ("num_classes", "windows", "max_pixels", "max_iter", "learning_rate", "max_leaf_nodes", "seed")
        try:
            return cls(**{k: tuple(d[k]) if k == "windows" else d[k] for k in keys})
        except (KeyError, TypeError) as exc:
            raise InputError(f"baseline model config: {exc}") from None


class PixelClassifier(nn.Module):
    """Gradient-boosted trees per pixel, as a segmentation model (no trainable torch weights)."""

    def __init__(self, config: PixelClassifierConfig, estimator=None):
        super().__init__()
        self.config = config
        self.estimator = estimator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) standardised sigma0 -> (N, K, H, W) float32 logits (K = 1 for water)."""
        if self.estimator is None:
            raise InputError("the baseline classifier is not fitted")
        n, _, h, w = x.shape
        rows = feature_rows(x, self.config.windows)
        k = self.config.num_classes
        full = np.full((rows.shape[0], max(k, 2)), 1.0 / max(k, 2), dtype=np.float32)
        # no-data pixels are exactly 0 in the standardised input: skipped (their output is
        # weighted by validity 0 in maps and ignored in scores) to save half a swath's trees; a
        # real pixel exactly at the mean dB (a float32 tie) gets the uniform output too
        data = np.flatnonzero(rows[:, 0] != 0)
        if data.size:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=torch.get_num_threads()):  # an actor's share of the cores
                proba = self.estimator.predict_proba(rows[data])
            seen = np.zeros((data.size, full.shape[1]), dtype=np.float32)
            seen[:, self.estimator.classes_.astype(int)] = proba  # classes never seen in training: p = 0
            full[data] = seen
        if k == 1:
            p = np.clip(full[:, 1], _EPS, 1 - _EPS)
            out = np.log(p / (1 - p))[:, None]
        else:
            out = np.log(np.clip(full, _EPS, 1.0))
        out = torch.from_numpy(out.astype(np.float32)).reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()
        return out.to(x.device)


def fit_pixel_classifier(config: PixelClassifierConfig, batches) -> PixelClassifier:
    """Fit on ``batches`` of ``{"x": (N, 1, H, W), "target": (N, H, W) uint8, 255 = ignore}``
    (numpy), drawing ``config.max_pixels`` of their valid pixels uniformly at random."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows, labels = _sample_pixels(config, batches)
    classes, counts = np.unique(labels, return_counts=True)
    rare = classes[counts < MIN_CLASS_PIXELS]  # too few for early stopping's stratified split: not learnt
    if rare.size:
        keep = ~np.isin(labels, rare)
        rows, labels = rows[keep], labels[keep]
    if len(np.unique(labels)) < 2:
        raise InputError("the baseline's training pixels hold a single class; nothing to learn")
    gbt = HistGradientBoostingClassifier(max_iter=config.max_iter, learning_rate=config.learning_rate,
                                         max_leaf_nodes=config.max_leaf_nodes, early_stopping=True,
                                         validation_fraction=0.1, n_iter_no_change=10, random_state=config.seed)
    gbt.fit(rows, labels)
    return PixelClassifier(config, gbt)


def _sample_pixels(config: PixelClassifierConfig, batches) -> tuple[np.ndarray, np.ndarray]:
    """A uniform draw of valid pixels: every valid pixel gets a random key and the
    ``max_pixels`` smallest keys are kept (one pass, memory bounded by the draw)."""
    rng = np.random.default_rng(config.seed)
    keep_rows, keep_labels, keep_keys = [], [], []
    for batch in batches:
        target = np.asarray(batch["target"]).reshape(-1)
        valid = np.flatnonzero(target != 255)
        if valid.size == 0:
            continue
        keys = rng.random(valid.size)
        take = np.argsort(keys)[: config.max_pixels]
        x = torch.from_numpy(np.ascontiguousarray(batch["x"]))
        keep_rows.append(feature_rows(x, config.windows)[valid[take]])
        keep_labels.append(target[valid[take]])
        keep_keys.append(keys[take])
        keys = np.concatenate(keep_keys)
        if keys.size > 2 * config.max_pixels:  # shrink to the current smallest keys
            order = np.argsort(keys)[: config.max_pixels]
            keep_rows, keep_labels, keep_keys = ([np.concatenate(a)[order]] for a in (keep_rows, keep_labels, keep_keys))
    if not keep_rows:
        raise InputError("the baseline found no labelled pixel in the training split")
    order = np.argsort(np.concatenate(keep_keys))[: config.max_pixels]
    return np.concatenate(keep_rows)[order], np.concatenate(keep_labels)[order]


def save_estimator(model: PixelClassifier, path: str | Path) -> None:
    import skops.io as sio

    sio.dump(model.estimator, str(path))


# The one type beyond skops' defaults that a fitted HistGradientBoostingClassifier holds; any
# other type in a file (a function, a foreign class) is refused before anything is built.
TRUSTED_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


def load_estimator(path: str | Path):
    """The fitted trees of ``model.skops``; refused unless every type in it is skops' default
    trusted set or :data:`TRUSTED_TYPES` (the file is read once, checked and loaded from memory)."""
    import skops.io as sio

    try:
        data = Path(path).read_bytes()
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # unreadable, corrupt or foreign file
        raise InputError(f"{path}: not a skops model file ({exc})") from None
    foreign = [t for t in untrusted if t not in TRUSTED_TYPES]
    if foreign:
        raise InputError(f"{path}: holds types a baseline model does not ({', '.join(foreign[:3])}); refused")
    try:
        estimator = sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise InputError(f"{path}: not a skops model file ({exc})") from None
    from sklearn.ensemble import HistGradientBoostingClassifier

    if not isinstance(estimator, HistGradientBoostingClassifier):
        raise InputError(f"{path}: holds a {type(estimator).__name__}, not the baseline's trees")
    return estimator
