"""Fit the baseline on a prepared dataset's training split and keep it as a model bundle.

The bundle (``model.json`` + ``model.skops``) loads with :func:`nationmap.train.checkpoint.load_bundle`
like a network's, so ``nationmap eval`` scores it on patches and ``nationmap infer`` maps with it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nationmap import __version__
from nationmap.baseline.features import feature_names
from nationmap.baseline.classifier import (MODEL_KIND, WEIGHTS_FILE, PixelClassifier, PixelClassifierConfig,
                                           fit_pixel_classifier, load_estimator, save_estimator)
from nationmap.data.dataset import PreparedDataset
from nationmap.data.lulc import class_table_from_dict
from nationmap.errors import InputError
from nationmap.files import staged_dir
from nationmap.records import BundleMeta, Normalisation
from nationmap.train.data import SCHEMES

def fit_baseline(data: str | Path, task: str, out: str | Path, max_pixels: int = 400_000, seed: int = 0,
                 log=print) -> Path:
    """Fit the per-pixel baseline for ``task`` (lulc or water) on ``data``'s training split, with
    the training split's normalisation (as the models), and write its bundle at ``out``."""
    from nationmap.train.data import decoder_for, iter_batches, normalisation_for

    if task not in SCHEMES:
        raise InputError(f"the baseline maps lulc or water, not {task!r}")
    dataset = PreparedDataset(data)
    if not dataset.shard_paths("train"):
        raise InputError(f"{data}: the training split has no patches")
    decoder = decoder_for(dataset, task)
    table = class_table_from_dict(dataset.meta["class_table"])
    scheme = table.scheme(SCHEMES[task])
    k = len(scheme.classes)
    config = PixelClassifierConfig(num_classes=1 if task == "water" else k, max_pixels=max_pixels, seed=seed)
    t0 = time.time()
    model = fit_pixel_classifier(config, iter_batches(dataset, "train", decoder, 8))
    freq = np.asarray(dataset.meta["class_frequencies"]["train"][SCHEMES[task]]["pixels"])
    meta = BundleMeta(task=task, model_kind=MODEL_KIND, model_config=config.to_dict(),
                      normalisation=Normalisation.from_fields(normalisation_for(dataset, task), "normalisation"),
                      nationmap_version=__version__, class_table=table.to_dict(),
                      scheme=SCHEMES[task], threshold=0.5 if task == "water" else None,
                      training={"run": f"per-pixel baseline on {data} (train split)", "data": str(Path(data).resolve()),
                                "iterations": int(model.estimator.n_iter_), "seconds": round(time.time() - t0, 1),
                                "majority_class": scheme.names[int(freq.argmax())]})
    write_baseline(out, model, meta)
    log(f"baseline {task}: {model.estimator.n_iter_} boosting rounds on {max_pixels:,} pixels at most "
        f"in {time.time() - t0:.0f} s -> {out}")
    return Path(out)


def training_majority(meta: BundleMeta) -> str | None:
    """The majority class of the training split a baseline bundle recorded (None: not recorded)."""
    value = meta.training.get("majority_class") if meta.model_kind == MODEL_KIND else None
    return value if isinstance(value, str) else None


def write_baseline(out: str | Path, model: PixelClassifier, meta: BundleMeta) -> Path:
    with staged_dir(out, durable=True) as stage:
        save_estimator(model, stage / WEIGHTS_FILE)
        (stage / "model.json").write_text(json.dumps(meta.to_json(), indent=1))
    return Path(out)


def load_baseline(path: Path, meta: BundleMeta) -> PixelClassifier:
    """The classifier of a baseline bundle whose ``model.json`` is ``meta``, checked against it."""
    config = PixelClassifierConfig.from_dict(meta.model_config)
    estimator = load_estimator(path / WEIGHTS_FILE)
    expected = 1 if meta.task == "water" else len(class_table_from_dict(meta.class_table).scheme(meta.scheme).classes)
    if config.num_classes != expected:
        raise InputError(f"{path}: the baseline predicts {config.num_classes} classes, its scheme {meta.scheme} has {expected}")
    if estimator.n_features_in_ != len(feature_names(config.windows)):
        raise InputError(f"{path}: the trees take {estimator.n_features_in_} features, the config names "
                         f"{len(feature_names(config.windows))}")
    top = int(estimator.classes_.max())
    if top >= max(config.num_classes, 2):
        raise InputError(f"{path}: the trees predict class {top}, beyond the {config.num_classes} of the config")
    return PixelClassifier(config, estimator).eval()
