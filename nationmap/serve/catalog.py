"""What ``nationmap serve`` shows: every products run under a root, found by its manifest.

A products root holds published months (``<root>/<region>/<YYYY-MM>/vN/``, ``latest`` pointing at
the current version) and plain inference runs (``<root>/<region>/<YYYY-MM>/``); each has a
``manifest.json`` (:class:`nationmap.records.RunManifest`). :func:`find_maps` lists them as
:class:`MapEntry` records with the national COG of each product, the area tables and the cells,
so the web layer never builds a path from a request: a map is picked by its id.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nationmap.data.grid import parse_cell
from nationmap.errors import InputError
from nationmap.records import RecordError, RunManifest

MAX_DEPTH = 4  # <root>/<region>/<month>/<vN>/manifest.json
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class MapEntry:
    """One products run: ``id`` (its directory under the root, ``<region>/<month>/v3``), where its files are, and what
    it holds (``mosaics``: product -> national COG; ``areas``: the area table CSV or None)."""

    id: str
    region: str
    month: str
    version: str  # "v3" for a published version, "run" for an inference run directory
    latest: bool  # the version the month's ``latest`` points at (a run: True)
    root: Path
    mosaics: dict[str, Path]
    areas: Path | None
    cells: tuple[str, ...]
    status: str

    def cell_bounds(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        """(name, (west, south, east, north)) of every cell of the run's region, degrees."""
        return [(name, parse_cell(name).bounds) for name in self.cells]


def _manifests(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "latest") if depth < MAX_DEPTH else []
        if "manifest.json" in filenames:
            yield Path(dirpath) / "manifest.json"


def _entry(path: Path, root: Path) -> MapEntry | None:
    try:
        manifest = RunManifest.read(path)
    except RecordError:
        return None  # not an inference run (a training summary, a damaged file): not a map
    run = path.parent
    match = _VERSION.match(run.name)
    version = run.name if match else "run"
    pointer = run.parent / "latest"
    latest = not match or (pointer.is_symlink() and os.readlink(pointer) == run.name)
    mosaics = {p: run / e.path for p, e in manifest.products.mosaic.items() if (run / e.path).is_file()}
    areas = manifest.products.tables.get("areas_csv")
    return MapEntry(id=run.relative_to(root).as_posix(), region=manifest.region, month=manifest.month,
                    version=version, latest=latest, root=run, mosaics=mosaics,
                    areas=run / areas.path if areas and (run / areas.path).is_file() else None,
                    cells=tuple(manifest.cells), status=manifest.status)


def find_maps(root: str | Path) -> dict[str, MapEntry]:
    """{id: entry} of every products run under ``root`` that has at least one national COG,
    newest month first, then versions newest first."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such products directory")
    entries = [e for p in _manifests(root) if (e := _entry(p, root)) is not None and e.mosaics]
    entries.sort(key=lambda e: (e.month, e.region, _version_number(e.version)), reverse=True)
    return {e.id: e for e in entries}


def _version_number(version: str) -> int:
    match = _VERSION.match(version)
    return int(match.group(1)) if match else 1 << 30
