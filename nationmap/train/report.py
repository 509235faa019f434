"""Training curves (CSV + PNG) and confusion-matrix figures, labelled as the quicklooks are.

The figures are matplotlib ``Figure`` objects (no pyplot state: safe in Ray Train's worker
thread); :func:`curves_figure` and :func:`confusion_figure` build them, the ``write_*`` functions
save them atomically.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from nationmap.files import atomic_file, atomic_path


def curves_title(task: str, run_id: str, preset: str, epochs: int, batch_size: int) -> str:
    """The title of a run's curves.png: what was trained, where, with what."""
    from nationmap import __version__

    kind = "pretraining (SAR-W-MixMAE)" if task == "pretrain" else f"{task} finetuning"
    return (f"{kind}, run {run_id}: {preset} preset, {epochs} epochs, batch {batch_size}; "
            f"nationmap {__version__}")


def curves_figure(history: list[dict], monitor: str, title: str = "", mode: str = "max") -> Figure:
    """Three panels over epochs: training and validation loss, the monitored validation metric with
    its best epoch starred (``mode``: best at its "max" or "min"), the learning rate."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(13, 4.0))
    axes = fig.subplots(1, 3)
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        axes[0].plot(epochs, [h.get(key, np.nan) for h in history], marker="o", ms=3, label=label)
    axes[0].set(title="loss", ylabel="loss (mean per batch)")
    axes[0].legend(fontsize=8)
    values = np.array([h.get(monitor, np.nan) for h in history], dtype=float)
    axes[1].plot(epochs, values, marker="o", ms=3, color="tab:green", label=f"validation {monitor}")
    if np.isfinite(values).any():
        best = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
        axes[1].plot([epochs[best]], [values[best]], marker="*", ms=12, color="tab:orange", ls="",
                     label=f"best {values[best]:.3f} (epoch {epochs[best]})")
    axes[1].set(title=f"validation {monitor}", ylabel=monitor)
    axes[1].legend(fontsize=8)
    axes[2].plot(epochs, [h["lr"] for h in history], color="tab:red")
    axes[2].set(title="learning rate (end of epoch)", ylabel="learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_curves(run_dir: Path, history: list[dict], monitor: str, title: str = "", mode: str = "max") -> None:
    """RUN_DIR/curves.csv (one row per epoch) and curves.png (:func:`curves_figure`)."""
    run_dir = Path(run_dir)
    keys = [k for k in history[0] if isinstance(history[0][k], (int, float)) and not isinstance(history[0][k], bool)]
    with atomic_file(run_dir / "curves.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    with atomic_path(run_dir / "curves.png") as tmp:
        curves_figure(history, monitor, title, mode).savefig(tmp, dpi=90, format="png")


def confusion_figure(counts: np.ndarray, names: list[str], title: str) -> Figure:
    """Row-normalised confusion matrix (truth rows, prediction columns), each cell's share written
    in it, a colour bar, the class names on both axes and ``title`` (may hold a newline) above."""
    counts = np.asarray(counts, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    k = len(names)
    fig = Figure(figsize=(max(5.0, 2.2 + 0.75 * k), max(4.0, 1.4 + 0.7 * k)))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the truth row")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth (reference map)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_png(counts: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """:func:`confusion_figure` saved as a PNG at ``path`` (atomic write)."""
    with atomic_path(path) as tmp:
        confusion_figure(counts, names, title).savefig(tmp, dpi=100, format="png")
