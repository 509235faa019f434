"""Evaluate a model bundle on a prepared dataset split (in-process; no Ray needed).

Writes OUT/metrics.json, OUT/table.md (the paper's Table II layout for LULC, Table III for
water, with the majority-class baseline as a reference row) and OUT/confusion.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nationmap.data.dataset import PreparedDataset
from nationmap.data.lulc import class_table_from_dict
from nationmap.errors import InputError
from nationmap.files import atomic_file
from nationmap.losses import water_mask
from nationmap.metrics import ConfusionMatrix, render_class_table, render_water_table
from nationmap.parallel import progress_bar
from nationmap.train.checkpoint import Bundle, load_bundle
from nationmap.train.data import PatchDecoder, iter_batches
from nationmap.train.report import confusion_png


def predict(bundle: Bundle, x: torch.Tensor) -> torch.Tensor:
    """Class indices (N, H, W) from standardised input (N, 1, H, W)."""
    with torch.inference_mode():
        logits = bundle.model(x)
    if bundle.task == "water":
        return water_mask(logits, 0.5 if bundle.meta.threshold is None else bundle.meta.threshold)
    return logits.argmax(1)


def evaluate(bundle_path: str | Path, data: str | Path, split: str = "test", out: str | Path | None = None,
             batch_size: int = 8, task: str | None = None) -> dict:
    """``task``, when given, is the task the caller expects the bundle to be (checked first)."""
    bundle = load_bundle(bundle_path)
    if task is not None and bundle.task != task:
        raise InputError(f"{bundle_path} is a {bundle.task} model, not {task}")
    if bundle.task not in ("lulc", "water"):
        raise InputError(f"{bundle_path}: a {bundle.task} bundle cannot be evaluated on labels (lulc or water)")
    dataset = PreparedDataset(data)
    if not dataset.shard_paths(split):
        raise InputError(f"{data}: split {split!r} has no patches")
    table = class_table_from_dict(bundle.meta.class_table)
    scheme = table.scheme(bundle.meta.scheme)
    norm = bundle.normalisation
    decoder = PatchDecoder(dataset.patch_size, norm["mean_db"], norm["std_db"], scheme.index_lut())
    k = len(scheme.classes)
    cm, majority = ConfusionMatrix(k), ConfusionMatrix(k)
    freq = np.asarray(dataset.meta["class_frequencies"]["train"][bundle.meta.scheme]["pixels"])
    majority_class = int(freq.argmax())
    total = int(dataset.meta["patches"][split])
    with progress_bar() as progress:
        task = progress.add_task(f"evaluating {split}", total=total)
        for batch in iter_batches(dataset, split, decoder, batch_size):
            pred = predict(bundle, torch.from_numpy(batch["x"]))
            target = torch.from_numpy(batch["target"])
            cm.update(pred, target)
            majority.update(torch.full_like(target, majority_class), target)
            progress.advance(task, len(batch["x"]))
    names = scheme.names
    result = {"bundle": str(bundle_path), "data": str(data), "split": split, "task": bundle.task,
              "patches": total, "confusion_matrix": cm.counts.tolist(), "class_names": names}
    if bundle.task == "lulc":
        scores, base = cm.scores(names), majority.scores(names)
        result.update(scores.to_dict(), majority_baseline=base.to_dict(), majority_class=names[majority_class])
        text = render_class_table({"nationmap": scores, f"majority class ({names[majority_class]})": base},
                                  title=f"Per-class IoU on the {split} split (layout of Table II)")
        text += "\n" + render_class_table({"nationmap": scores, "majority class": base}, metric="accuracy",
                                          title="Per-class accuracy")
    else:
        scores, base = cm.binary_scores(), majority.binary_scores()
        result.update(scores.to_dict(), majority_baseline=base.to_dict())
        text = render_water_table({"nationmap": scores, f"majority class ({names[majority_class]})": base},
                                  title=f"Water detection on the {split} split, % (layout of Table III)")
    if out is not None:
        out = Path(out)
        with atomic_file(out / "metrics.json") as f:
            f.write(json.dumps(result, indent=2))
        with atomic_file(out / "table.md") as f:
            f.write(text)
        confusion_png(cm.counts, names, out / "confusion.png", f"{bundle.task} {split}: row-normalised confusion")
    result["table"] = text
    return result
