"""Errors that the CLI reports as one line with exit code 2 (bad input), never a traceback."""


class NationmapError(Exception):
    """Base class for expected, user-facing errors (bad paths, names, options)."""


class InputError(NationmapError):
    """A path, name or option given by the user is invalid."""


class RasterError(NationmapError):
    """A raster cannot be used: unreadable, truncated, no georeference, all no data."""
