"""Errors that the CLI reports as one line with exit code 2 (bad input), never a traceback."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (GDAL errors run over many lines)."""
    text = str(exc)
    return text.splitlines()[0][:limit] if text else ""


def describe(exc: BaseException) -> str:
    """``Type: first line`` for an unforeseen error reported as data (per-scene reasons)."""
    return f"{type(exc).__name__}: {first_line(exc)}"


class NationmapError(Exception):
    """Base class for expected, user-facing errors (bad paths, names, options)."""


class InputError(NationmapError):
    """A path, name or option given by the user is invalid."""


class RasterError(NationmapError):
    """A raster cannot be used: unreadable, truncated, no georeference, all no data."""
