"""Training curves (CSV + PNG) and confusion-matrix figures (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from nationmap.files import atomic_file, atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_curves(run_dir: Path, history: list[dict], monitor: str) -> None:
    """RUN_DIR/curves.csv (one row per epoch) and curves.png (losses, the monitored metric, lr)."""
    run_dir = Path(run_dir)
    keys = [k for k in history[0] if isinstance(history[0][k], (int, float)) and not isinstance(history[0][k], bool)]
    with atomic_file(run_dir / "curves.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)

    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in ("train_loss", "val_loss"):
        axes[0].plot(epochs, [h.get(key, np.nan) for h in history], marker="o", ms=3, label=key)
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(epochs, [h.get(monitor, np.nan) for h in history], marker="o", ms=3, color="tab:green")
    axes[1].set_title(monitor)
    axes[2].plot(epochs, [h["lr"] for h in history], color="tab:red")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_path(run_dir / "curves.png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)


def confusion_png(counts: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (truth rows, prediction columns) with counts."""
    plt = _pyplot()
    counts = np.asarray(counts, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.7 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
