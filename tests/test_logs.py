"""A quiet terminal: Ray's Python logging and warnings go to the run's log file, not the terminal."""

from __future__ import annotations

import logging
import warnings

from nationmap.logs import LOG_NAME, capture, set_verbose


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
