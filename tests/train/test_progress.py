"""The training progress the driver shows: epochs from curves.csv, steps of the epoch from
steps.json, both written by rank 0 and followed by :class:`EpochProgress`."""

from __future__ import annotations

import json

from nationmap.train.progress import STEPS_FILE, EpochProgress, StepWriter, read_steps
from nationmap.train.report import write_curves


def test_the_step_writer_writes_the_first_and_last_step_and_at_most_once_an_interval(tmp_path):
    write = StepWriter(tmp_path, epoch=3, steps=10, interval_s=3600)
    seen = []
    for step in range(1, 11):
        write(step)
        seen.append(read_steps(tmp_path / STEPS_FILE))
    assert seen == [(3, 1, 10)] * 10  # throttled after the first
    write(10, last=True)  # the end of the epoch
    assert read_steps(tmp_path / STEPS_FILE) == (3, 10, 10)


def test_a_step_file_that_cannot_be_written_does_not_stop_the_training(tmp_path):
    (tmp_path / "run").write_text("a file where the run directory should be")
    StepWriter(tmp_path / "run", epoch=1, steps=10)(1)  # no error
    every = StepWriter(tmp_path, epoch=4, steps=10, interval_s=0.0)
    every(2)
    assert json.loads((tmp_path / STEPS_FILE).read_text()) == {"epoch": 4, "step": 2, "steps": 10}


def test_read_steps_of_nothing_or_something_else_is_none(tmp_path):
    assert read_steps(tmp_path / STEPS_FILE) is None
    (tmp_path / STEPS_FILE).write_text('{"epoch": 1}')
    assert read_steps(tmp_path / STEPS_FILE) is None


def test_the_bars_follow_epochs_and_the_steps_of_the_current_epoch(tmp_path):
    (tmp_path / STEPS_FILE).write_text('{"epoch": 9, "step": 9, "steps": 9}')  # left by an earlier run
    history = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_miou": m, "lr": 1e-3}
               for e, m in ((1, 0.25), (2, 0.5))]
    with EpochProgress(tmp_path, "lulc", 30, "val_miou", interval_s=3600) as bars:
        epochs, steps = bars._progress.tasks
        assert steps.total is None and steps.completed == 0  # the stale file was not shown
        write_curves(tmp_path, history, "val_miou")
        StepWriter(tmp_path, 3, 40)(1)
        StepWriter(tmp_path, 3, 40, interval_s=0)(25)
        bars.update()
        assert (epochs.completed, epochs.total, epochs.description) == (2, 30, "lulc epochs (val_miou 0.500)")
        assert (steps.completed, steps.total, steps.description) == (25, 40, "lulc steps of epoch 3")
        StepWriter(tmp_path, 4, 40)(1)
        bars.update()
        assert (steps.completed, steps.description) == (1, "lulc steps of epoch 4")  # restarted for the epoch
        StepWriter(tmp_path, 4, 40)(40, last=True)
        bars.update()
        assert steps.finished
        StepWriter(tmp_path, 4, 40)(3)  # epoch 4 again: Ray restarted the worker group
        bars.update()
        assert (steps.completed, steps.finished, steps.finished_time) == (3, False, None)
