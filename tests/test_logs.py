"""A quiet terminal: Ray's Python logging and warnings go to the run's log file, not the terminal."""

from __future__ import annotations

import logging
import warnings

import pytest

from nationmap.logs import LOG_NAME, WorkerError, capture, set_verbose


def test_ray_logs_and_warnings_go_to_the_file_and_the_terminal_handlers_come_back(tmp_path, capsys, monkeypatch):
    import ray.data  # noqa: F401  (configures its loggers on import, as capture() makes sure first)

    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")
    logger = logging.getLogger("ray.data")
    terminal = logging.StreamHandler()  # as Ray Data configures its console output
    logger.addHandler(terminal)
    try:
        with capture(tmp_path / "logs") as path:
            assert terminal not in logger.handlers
            logger.warning("parquet datasource says hello")
            warnings.warn("a deprecation of Ray's", DeprecationWarning, stacklevel=1)
        assert path == tmp_path / "logs" / LOG_NAME
        text = path.read_text()
        assert "parquet datasource says hello" in text and "a deprecation of Ray's" in text
        captured = capsys.readouterr()
        assert "hello" not in captured.err + captured.out and "deprecation" not in captured.err + captured.out
        assert terminal in logger.handlers  # restored
    finally:
        logger.removeHandler(terminal)


def test_verbose_keeps_the_terminal_too(tmp_path, monkeypatch):
    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")
    set_verbose(True)
    logger = logging.getLogger("ray.train")
    terminal = logging.StreamHandler()
    logger.addHandler(terminal)
    try:
        with capture(tmp_path) as path:
            assert terminal in logger.handlers
            logger.error("shown and kept")  # ray.init(logging_level="ERROR") leaves ray.train at ERROR
        assert "shown and kept" in path.read_text()
    finally:
        logger.removeHandler(terminal)


NATIVE_SCRIPT = """
import os, sys
from nationmap.logs import capture
original = sys.stderr
with capture(sys.argv[1]) as path:
    os.write(2, b"native line of a C++ library\\n")
    print("nationmap's own line", file=sys.stderr)
    with capture(sys.argv[2]):
        os.write(2, b"native line of the inner run\\n")
        print("inner line of nationmap", file=sys.stderr)
    os.write(2, b"outer again\\n")
os.write(2, b"after the run\\n")
opened = len(os.listdir("/proc/self/fd"))
try:
    with capture(sys.argv[1]):
        raise KeyError("a bug")
except KeyError:
    pass
os.write(2, b"after a failed run\\n")
print(opened == len(os.listdir("/proc/self/fd")), sys.stderr is original)
"""


def test_native_stderr_goes_to_the_log_and_python_stderr_stays_on_the_terminal(tmp_path, monkeypatch):
    """What Ray's C++ core worker writes to descriptor 2 lands in the run's log (each nested run its
    own); nationmap's lines through sys.stderr reach the terminal; after the run, so does fd 2."""
    import subprocess
    import sys

    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    proc = subprocess.run([sys.executable, "-c", NATIVE_SCRIPT, str(outer), str(inner)], capture_output=True,
                          text=True, timeout=120, check=True)
    assert proc.stderr.splitlines() == ["nationmap's own line", "inner line of nationmap", "after the run",
                                        "after a failed run"]
    assert proc.stdout.split() == ["True", "True"]  # no descriptor left open by a run; sys.stderr restored
    assert (outer / LOG_NAME).read_text().splitlines() == ["native line of a C++ library", "outer again"]
    assert (inner / LOG_NAME).read_text().splitlines() == ["native line of the inner run"]


def test_verbose_leaves_native_stderr_on_the_terminal(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("NATIONMAP_VERBOSE", "1")
    proc = subprocess.run([sys.executable, "-c", NATIVE_SCRIPT, str(tmp_path / "a"), str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "native line of a C++ library" in proc.stderr and "native line of the inner run" in proc.stderr


@pytest.mark.ray
def test_a_failed_ray_task_is_one_line_naming_the_cause_and_the_log(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")

    @ray_local.remote(num_cpus=1)
    def read_model():
        raise KeyError("lulc.safetensors")

    with pytest.raises(WorkerError) as info:
        with capture(tmp_path / "logs") as path:
            ray_local.get(read_model.remote(), timeout=120)
    message = str(info.value)
    assert message == f"a Ray worker failed: KeyError: 'lulc.safetensors' (full log: {path})"
    assert info.value.exit_code == 1 and "\n" not in message
    log = path.read_text()
    assert "Traceback" in log and "read_model" in log  # the worker's traceback, for whoever reads the log


@pytest.mark.ray
def test_a_predictor_that_cannot_start_is_one_line_naming_its_cause(ray_local, tmp_path, monkeypatch):
    """A Ray Data actor whose constructor raises: Ray reports an ActorDiedError, whose cause is
    only in its remote traceback; the line names the constructor's error."""
    import ray.data

    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")

    class Predictor:
        def __init__(self, path):
            raise FileNotFoundError(2, "No such file or directory", path)

        def __call__(self, batch):
            return batch

    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.range(2, override_num_blocks=2).map_batches(
        Predictor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
        fn_constructor_kwargs={"path": "/models/lulc"})
    with pytest.raises(WorkerError, match=r"^a Ray worker failed: FileNotFoundError: \[Errno 2\] No such file or "
                                          r"directory: '/models/lulc' \(full log: .*nationmap.log\)$"):
        with capture(tmp_path / "logs"):
            list(ds.iter_rows())


def test_an_error_that_is_not_ray_s_passes_through(tmp_path, monkeypatch):
    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")
    with pytest.raises(ZeroDivisionError):  # a bug on the driver keeps its traceback
        with capture(tmp_path / "logs"):
            1 / 0


def test_errors_ray_publishes_to_the_driver_go_to_the_log(tmp_path, capsys, monkeypatch):
    """Ray's driver prints published errors (a task to be retried, a dead worker) from its
    listener thread through ``ray._private.worker.print_to_stdstream``, looked up at each call."""
    import ray._private.worker as worker

    monkeypatch.setenv("NATIONMAP_VERBOSE", "0")
    original = worker.print_to_stdstream
    message = {"lines": ["Task f failed. There are infinite retries remaining"], "pid": "raylet", "is_err": False}
    with capture(tmp_path / "logs") as path:
        worker.print_to_stdstream(message, ignore_prefix=False)
    assert "(raylet) Task f failed. There are infinite retries remaining" in path.read_text()
    assert "retries" not in capsys.readouterr().out
    assert worker.print_to_stdstream is original
    worker.print_to_stdstream(message, ignore_prefix=False)  # outside a run: Ray's own printing again
    assert "Task f failed" in capsys.readouterr().out


@pytest.mark.ray
def test_a_ray_failure_outside_a_run_is_one_line_naming_ray_s_logs(ray_local):
    """A command without a run directory (the data commands) gets the same one line from the CLI's
    top-level group, naming the Ray session's log directory; bad input on a worker stays exit 2."""
    import typer
    from typer.testing import CliRunner

    from nationmap.cli.common import GuardedGroup
    from nationmap.errors import InputError
    from nationmap.logs import ray_session_logs

    app = typer.Typer(cls=GuardedGroup)

    @ray_local.remote(num_cpus=1)
    def crash(kind):
        raise InputError("scene N35E137: not HH") if kind == "input" else MemoryError("worker ran out of memory")

    @app.command()
    def work(kind: str):
        ray_local.get(crash.remote(kind), timeout=120)

    @app.command()
    def other():
        pass

    runner = CliRunner()
    crashed = runner.invoke(app, ["work", "memory"])
    assert crashed.exit_code == 1, crashed.output
    assert crashed.output.strip() == (f"error: a Ray worker failed: MemoryError: worker ran out of memory "
                                      f"(full log: {ray_session_logs()})")
    bad = runner.invoke(app, ["work", "input"])
    assert bad.exit_code == 2 and "InputError: scene N35E137: not HH" in bad.output, bad.output
