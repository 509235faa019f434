"""A quiet terminal: Ray's own output goes to log files, nationmap's progress stays on screen.

What a long command shows is nationmap's: stage headers, one progress display per stage and
the summary. Everything else has a file:

* the output of Ray's workers and actors (including the per-epoch lines of the training loop,
  which the driver shows as a progress bar instead: :mod:`nationmap.train.progress`) stays in
  Ray's session logs, because :func:`nationmap.parallel.init_ray` starts Ray with
  ``log_to_driver`` off; :func:`capture` links them into the run directory as ``logs/ray``;
* the driver's Python logging of Ray (``ray``, ``ray.data``, ``ray.train``, ...) and Python
  warnings go to ``logs/nationmap.log`` in the run directory while :func:`capture` is active;
* so do the driver's native stderr (file descriptor 2: the C++ log lines of Ray's core worker,
  which copies every ERROR-level line there, such as the actor-restart notice of Ray issue
  57733 that every Ray Data actor pool gets) and the error messages Ray's driver prints as they
  are published (task retries, dead workers). Python's ``sys.stderr``, where nationmap's progress
  and error lines go, stays on the terminal.

``--verbose`` (the environment variable ``NATIONMAP_VERBOSE=1``) shows it on the terminal: worker
output, native stderr and published errors there only, Ray's Python logs there and in the file.
A worker's failure still reaches the terminal: a Ray error leaving :func:`capture` becomes
:class:`WorkerError`, one line with the cause and the log file's path, and its full traceback
goes to the log file.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

from nationmap.errors import FailedError, NationmapError, describe, os_error_line

VERBOSE_ENV = "NATIONMAP_VERBOSE"
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.air", "ray.util")
LOG_NAME = "nationmap.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGGER = "nationmap.run"  # nationmap's own records in the log file (a worker's traceback)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class WorkerError(FailedError):
    """A Ray task or actor failed; the message names the cause and the log file."""


def verbose() -> bool:
    """Whether Ray's output is shown on the terminal too (``--verbose``)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    os.environ[VERBOSE_ENV] = "1" if on else "0"


def ray_session_logs() -> Path | None:
    """The log directory of the Ray session this process is connected to (None: no Ray, or
    a remote cluster, whose logs stay on its nodes)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        from ray._private.worker import global_worker

        session = Path(global_worker.node.get_session_dir_path())
    except (AttributeError, RuntimeError):
        return None
    return session / "logs" if (session / "logs").is_dir() else None


@contextmanager
def capture(log_dir: str | Path):
    """While active: Ray's Python loggers and warnings write to ``log_dir/nationmap.log``
    (and, with ``--verbose``, the terminal too), and unless ``--verbose`` so do the native stderr
    and Ray's published error messages; a Ray error leaving the block becomes :class:`WorkerError`.
    On exit the Ray session's logs are linked as ``log_dir/ray``. Yields the log file's path."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    _configure_ray_logging()
    handler = logging.FileHandler(log_dir / LOG_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)  # Ray Data's DEBUG records have their own file (logs/ray/ray-data)
    saved = {}
    for name in (*RAY_LOGGERS, "py.warnings", LOGGER):
        logger = logging.getLogger(name)
        removed = [] if verbose() else [h for h in logger.handlers if _is_terminal(h)]
        for h in removed:
            logger.removeHandler(h)
        saved[name] = (removed, logger.propagate)
        logger.addHandler(handler)
        logger.propagate = False
    capturing = logging._warnings_showwarning is not None  # an outer capture's; left on at exit
    logging.captureWarnings(True)
    path = log_dir / LOG_NAME
    try:
        with ExitStack() as stack:
            if not verbose():
                stack.enter_context(_native_stderr_to(path))
                # not the "ray" logger: ray.init(logging_level="ERROR") leaves it at ERROR
                stack.enter_context(_ray_driver_errors_to(logging.getLogger(LOGGER)))
            yield path
    except Exception as exc:
        if not is_ray_error(exc):
            raise
        raise worker_error(exc, path) from None
    finally:
        logging.captureWarnings(capturing)
        for name, (removed, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            for h in removed:
                logger.addHandler(h)
            logger.propagate = propagate
        handler.close()
        try:
            _link_ray_logs(log_dir)
        except OSError:  # the run directory removed meanwhile: the link is a convenience, the error is not
            pass


def worker_reason(exc: BaseException) -> str:
    """``Type: message`` of what failed on a Ray worker: :func:`_user_cause`, else the last line
    of Ray's remote traceback (an ActorDiedError carries its cause only there)."""
    cause = _user_cause(exc)
    if cause is not None:
        return describe(cause)
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def worker_error(exc: BaseException, log_path: Path | str, what: str = "a Ray worker failed",
                 log: bool = True) -> WorkerError:
    """The one-line error of a failure on a worker; its full traceback is written to the log
    (``log``: a run's log is open). Its exit code is that of the cause where the cause is one
    nationmap reports (bad input on a worker is bad input, as with ``--executor serial``), else 1."""
    if log:
        logging.getLogger(LOGGER).error("%s", what, exc_info=exc)
    error = WorkerError(f"{what}: {worker_reason(exc)} (full log: {log_path})")
    cause = _user_cause(exc)
    if isinstance(cause, NationmapError):
        error.exit_code = cause.exit_code
    elif isinstance(cause, OSError):
        error.exit_code = os_error_line(cause)[1]
    return error


def _user_cause(exc: BaseException) -> BaseException | None:
    """The innermost exception of ``exc``'s chain (a RayTaskError's user exception ``cause``, else
    ``__cause__``) that has a message and is not one of Ray's wrappers; None if there is none."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
    ray_error = _ray_error_types()
    for inner in reversed(chain):
        if not isinstance(inner, ray_error) and type(inner).__module__.split(".")[0] != "ray" and str(inner).strip():
            return inner
    return None


def _ray_error_types() -> tuple[type, ...]:
    ray = sys.modules.get("ray")
    if ray is None:
        return ()
    import ray.exceptions

    return (ray.exceptions.RayError,)


def is_ray_error(exc: BaseException) -> bool:
    return bool(_ray_error_types()) and isinstance(exc, _ray_error_types())


@contextmanager
def _native_stderr_to(path: Path):
    """File descriptor 2 (what native code writes: Ray's C++ core worker) appends to ``path``;
    ``sys.stderr`` keeps writing to the terminal through a duplicate of the old descriptor. Only
    where ``sys.stderr`` is descriptor 2 (a real terminal or pipe, not pytest's or Typer's
    capture); nested calls move descriptor 2 to their own file and back."""
    outermost = _writes_to_fd(sys.stderr, 2) and not _redirected
    if not (outermost or _redirected):
        yield
        return
    sys.stderr.flush()
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        previous = os.dup(2)
    except OSError:
        os.close(log_fd)
        raise
    swapped = sys.stderr
    if outermost:  # Python's stderr stays on the terminal
        sys.stderr = _terminal(swapped.encoding, swapped.errors)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    _redirected.append(path)
    try:
        yield
    finally:
        _redirected.pop()
        os.dup2(previous, 2)
        os.close(previous)
        if outermost:
            sys.stderr = swapped


_redirected: list[Path] = []  # the log files descriptor 2 points at, outermost first


@functools.cache
def _terminal(encoding: str, errors: str):
    """A text stream on a duplicate of descriptor 2 as it is now (the terminal), made once per
    process and never closed: Python's crash handler (``faulthandler``, which ``ray.init``
    enables on ``sys.stderr``) may hold its descriptor after the run."""
    return open(os.dup(2), "w", buffering=1, encoding=encoding, errors=errors)


def _writes_to_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def _ray_driver_errors_to(logger: logging.Logger):
    """Ray's driver prints the error messages the cluster publishes (a task to be retried, a
    worker that died) to ``sys.stdout`` from a thread of its own, whatever ``log_to_driver`` says,
    through ``ray._private.worker.print_to_stdstream``; while active they go to ``logger``. Ray
    has no setting for it; without that function (another Ray) nothing changes."""
    worker = sys.modules.get("ray._private.worker")
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def to_log(data: dict, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            logger.warning("(%s) %s", data.get("pid", "ray"), _ANSI.sub("", str(line)))

    worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        worker.print_to_stdstream = original


def _is_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def _configure_ray_logging() -> None:
    """Import Ray Data (when Ray is installed) so that its loggers have their handlers before
    :func:`capture` takes the terminal ones off: it configures them on import."""
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        import ray.data  # noqa: F401


def _link_ray_logs(log_dir: Path) -> None:
    session = ray_session_logs()
    link = log_dir / "ray"
    if session is None or (link.is_symlink() and os.readlink(link) == str(session)):
        return
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        link.symlink_to(session, target_is_directory=True)
