"""Errors that the CLI reports as one line and an exit code, never a traceback.

Every :class:`NationmapError` carries the exit code the CLI gives it: 2 (bad input) unless the
class says otherwise; :class:`FailedError` is 1 (the command ran and could not produce its
outputs). The codes are the README's: 0 ok, 1 failed, 2 bad input, 3 partial, 4 already running.
"""

import errno


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (GDAL errors run over many lines)."""
    text = str(exc)
    return text.splitlines()[0][:limit] if text else ""


def describe(exc: BaseException) -> str:
    """``Type: first line`` for an unforeseen error reported as data (per-scene reasons)."""
    return f"{type(exc).__name__}: {first_line(exc)}"


class NationmapError(Exception):
    """Base class for expected, user-facing errors (bad paths, names, options)."""

    exit_code = 2


class FailedError(NationmapError):
    """The command ran but could not produce its outputs (a cluster that does not answer, ...)."""

    exit_code = 1


class InputError(NationmapError):
    """A path, name or option given by the user is invalid."""


class RasterError(NationmapError):
    """A raster cannot be used: unreadable, truncated, no georeference, all no data."""


# a missing or wrong path given by the user is bad input; any other OS error (read-only or full
# disk, permissions) is a failure of the run
_BAD_PATH = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG)


def os_error_line(exc: OSError) -> tuple[str, int]:
    """One line for an OS error met during a command, naming the path, and its exit code."""
    reason = exc.strerror or first_line(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p]
    where = " -> ".join(str(p) for p in paths)
    line = f"{reason}: {where}" if where else reason
    return line, 2 if exc.errno in _BAD_PATH else 1
