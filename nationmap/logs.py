"""A quiet terminal: Ray's own output goes to log files, nationmap's progress stays on screen.

What a long command shows is nationmap's: stage headers, one progress display per stage and
the summary. Everything else has a file:

* the output of Ray's workers and actors (including the per-epoch lines of the training loop,
  which the driver shows as a progress bar instead: :mod:`nationmap.train.progress`) stays in
  Ray's session logs, because :func:`nationmap.parallel.init_ray` starts Ray with
  ``log_to_driver`` off; :func:`capture` links them into the run directory as ``logs/ray``;
* the driver's Python logging of Ray (``ray``, ``ray.data``, ``ray.train``, ...) and Python
  warnings go to ``logs/nationmap.log`` in the run directory while :func:`capture` is active.

``--verbose`` (the environment variable ``NATIONMAP_VERBOSE=1``) shows all of it on the terminal
as well. A worker's failure still reaches the terminal as the command's one error line.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

VERBOSE_ENV = "NATIONMAP_VERBOSE"
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.air", "ray.util")
LOG_NAME = "nationmap.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    (and, with ``--verbose``, the terminal too); on exit the Ray session's logs are linked as
    ``log_dir/ray``. Yields the log file's path."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    _configure_ray_logging()
    handler = logging.FileHandler(log_dir / LOG_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    saved = {}
    for name in (*RAY_LOGGERS, "py.warnings"):
        logger = logging.getLogger(name)
        removed = [] if verbose() else [h for h in logger.handlers if _is_terminal(h)]
        for h in removed:
            logger.removeHandler(h)
        saved[name] = (removed, logger.propagate)
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
    try:
        yield log_dir / LOG_NAME
    finally:
        logging.captureWarnings(False)
        for name, (removed, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            for h in removed:
                logger.addHandler(h)
            logger.propagate = propagate
        handler.close()
        _link_ray_logs(log_dir)


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
