"""Training figures a person reads: titled, axes labelled, the best epoch marked, class names on
the confusion matrix and shares that match the counts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nationmap import __version__
from nationmap.train.report import confusion_figure, curves_figure, curves_title, write_curves

HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_miou": m, "lr": 1e-3 * e, "step": 10 * e}
           for e, m in zip(range(1, 6), (0.20, 0.41, 0.38, 0.52, 0.49))]


def _texts(fig) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def test_the_curves_say_what_ran_and_mark_the_best_epoch():
    title = curves_title("lulc", "lulc-20261207", "tiny", 5, 16)
    assert title == f"lulc finetuning, run lulc-20261207: tiny preset, 5 epochs, batch 16; nationmap {__version__}"
    fig = curves_figure(HISTORY, "val_miou", title, "max")
    assert fig._suptitle.get_text() == title
    loss, metric, lr = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    assert (loss.get_ylabel(), metric.get_ylabel(), lr.get_ylabel()) == ("loss (mean per batch)", "val_miou",
                                                                         "learning rate")
    assert [t.get_text() for t in metric.get_legend().get_texts()] == ["validation val_miou", "best 0.520 (epoch 4)"]
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["training", "validation"]


def test_a_loss_monitor_stars_its_minimum():
    fig = curves_figure(HISTORY, "val_loss", "pretraining", "min")
    assert fig.axes[1].get_legend().get_texts()[1].get_text() == f"best {1.1 / 5:.3f} (epoch 5)"


def test_write_curves_keeps_the_csv_and_draws_the_png(tmp_path):
    write_curves(tmp_path, HISTORY, "val_miou", "t")
    assert (tmp_path / "curves.csv").read_text().splitlines()[0] == "epoch,train_loss,val_loss,val_miou,lr,step"
    assert Image.open(tmp_path / "curves.png").size == (1170, 360)  # 13 x 4 in at 90 dpi


def test_the_confusion_matrix_names_classes_and_shows_row_shares():
    counts = np.array([[8, 2, 0], [1, 1, 2], [0, 0, 0]])
    names = ["forest", "paddy field", "water"]
    fig = confusion_figure(counts, names, "lulc confusion\nmodel m: 14 px")
    ax = fig.axes[0]
    texts = _texts(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("prediction", "truth (reference map)",
                                                                  "lulc confusion\nmodel m: 14 px")
    cells = [t.get_text() for t in ax.texts]
    assert cells == ["0.80", "0.20", "0.00", "0.25", "0.25", "0.50", "0.00", "0.00", "0.00"]  # a row without truth: 0
    assert fig.axes[1].get_ylabel() == "share of the truth row" and "share of the truth row" in texts
    assert ax.images[0].get_array().sum() == pytest.approx(2.0)
