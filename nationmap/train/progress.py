"""Training progress in the driver's terminal, from the run's own files.

Rank 0 rewrites ``RUN_DIR/curves.csv`` after every epoch (:func:`nationmap.train.report.write_curves`)
and ``RUN_DIR/steps.json`` (:class:`StepWriter`: the epoch, steps done and steps per epoch) at most
once a second during one. :class:`EpochProgress` follows both on a thread while ``trainer.fit()``
blocks and shows two bars per training: epochs done of the total with the monitored validation
metric of the last epoch, and the steps of the current epoch, each with elapsed time and ETA. The
files work the same whether rank 0 runs on this machine or (shared storage) another node. The
workers' own per-epoch lines stay in Ray's logs (see :mod:`nationmap.logs`); with ``--verbose``
they show as well.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from pathlib import Path

from nationmap.files import read_json, write_json
from nationmap.parallel import progress_bar

STEPS_FILE = "steps.json"


class StepWriter:
    """``on_step`` of :func:`nationmap.train.step.train_epoch` on rank 0: writes RUN_DIR/steps.json
    ``{"epoch": E (1-based), "step": n, "steps": per epoch}`` at the first step, at the end of the
    epoch (``last``) and at most every ``interval_s`` between (an atomic rename: never half a
    file). A write that fails (a full disk) is skipped: progress must not stop the training."""

    def __init__(self, run_dir: Path, epoch: int, steps: int, interval_s: float = 1.0):
        self.path, self.epoch, self.steps, self.interval_s = Path(run_dir) / STEPS_FILE, epoch, steps, interval_s
        self._last = 0.0

    def __call__(self, step: int, last: bool = False) -> None:
        now = time.monotonic()
        if last or step == 1 or now - self._last >= self.interval_s:
            try:
                write_json(self.path, {"epoch": self.epoch, "step": step, "steps": self.steps})
            except OSError:
                return
            self._last = now


def read_steps(path: Path) -> tuple[int, int, int] | None:
    """(epoch, step, steps) of a steps.json; None while it does not exist or is not one."""
    data = read_json(path)
    try:
        return int(data["epoch"]), int(data["step"]), int(data["steps"])
    except (KeyError, TypeError, ValueError):  # None, or not this file's keys
        return None


def read_curves(path: Path) -> list[dict[str, str]]:
    """The rows of a curves.csv; [] while it does not exist (an atomic rename: never half a file)."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


class EpochProgress:
    """``with EpochProgress(run_dir, "lulc", epochs, "val_miou"):`` the bars of epochs and of the
    steps of the current epoch."""

    def __init__(self, run_dir: Path, label: str, epochs: int, monitor: str, interval_s: float = 1.0):
        self.path, self.label, self.epochs, self.monitor = Path(run_dir) / "curves.csv", label, epochs, monitor
        self.steps_path = Path(run_dir) / STEPS_FILE
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._progress = progress_bar()
        self._task = self._steps_task = None
        self._shown: tuple[int, int] | None = None  # (epoch, step) of the steps bar
        self._thread = threading.Thread(target=self._follow, name="epoch-progress", daemon=True)

    def __enter__(self) -> "EpochProgress":
        self.steps_path.unlink(missing_ok=True)  # a resumed run's last steps are not this one's
        self._progress.start()
        self._task = self._progress.add_task(f"{self.label} epochs", total=self.epochs)
        self._steps_task = self._progress.add_task(f"{self.label} steps", total=None)
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
        self._update_steps()
        rows = read_curves(self.path)
        if not rows:
            return
        last = rows[-1]
        description = f"{self.label} epochs"
        value = _number(last.get(self.monitor))
        if value is not None:
            description += f" ({self.monitor} {value:.3f})"
        self._progress.update(self._task, completed=int(float(last["epoch"])), description=description)

    def _update_steps(self) -> None:
        """The steps bar: restarted (its clock too, so the ETA is this epoch's) when an epoch begins."""
        state = read_steps(self.steps_path)
        if state is None:
            return
        epoch, step, steps = state
        shown = self._shown
        if shown is None or epoch != shown[0] or step < shown[1]:
            # a new epoch, or the same one again after Ray restarted the worker group
            self._progress.reset(self._steps_task, total=steps, completed=0,
                                 description=f"{self.label} steps of epoch {epoch}")
        self._shown = (epoch, step)
        self._progress.update(self._steps_task, completed=step)


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
