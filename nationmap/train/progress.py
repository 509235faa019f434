"""Training progress in the driver's terminal, from the run's own curves.

Rank 0 rewrites ``RUN_DIR/curves.csv`` after every epoch (:func:`nationmap.train.report.write_curves`).
:class:`EpochProgress` follows that file on a thread while ``trainer.fit()`` blocks and shows one
progress bar per training: epochs done of the total, the monitored validation metric of the last
epoch, elapsed time and ETA. The workers' own per-epoch lines stay in Ray's logs (see
:mod:`nationmap.logs`); with ``--verbose`` they show as well.
"""

from __future__ import annotations

import csv
import math
import threading
from pathlib import Path

from nationmap.parallel import progress_bar


def read_curves(path: Path) -> list[dict[str, str]]:
    """The rows of a curves.csv; [] while it does not exist (an atomic rename: never half a file)."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


class EpochProgress:
    """``with EpochProgress(run_dir, "lulc", epochs, "val_miou"):`` a progress bar of epochs."""

    def __init__(self, run_dir: Path, label: str, epochs: int, monitor: str, interval_s: float = 1.0):
        self.path, self.label, self.epochs, self.monitor = Path(run_dir) / "curves.csv", label, epochs, monitor
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._progress = progress_bar()
        self._task = None
        self._thread = threading.Thread(target=self._follow, name="epoch-progress", daemon=True)

    def __enter__(self) -> "EpochProgress":
        self._progress.start()
        self._task = self._progress.add_task(f"{self.label} epochs", total=self.epochs)
        self.update()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.update()
        self._progress.stop()

    def _follow(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.update()

    def update(self) -> None:
        rows = read_curves(self.path)
        if not rows:
            return
        last = rows[-1]
        description = f"{self.label} epochs"
        value = _number(last.get(self.monitor))
        if value is not None:
            description += f" ({self.monitor} {value:.3f})"
        self._progress.update(self._task, completed=int(float(last["epoch"])), description=description)


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
