"""What ``nationmap serve`` shows: every products run under a root, found by its manifest.

A products root holds published months (``<root>/<region>/<YYYY-MM>/vN/``, ``latest`` pointing at
the current version) and plain inference runs (``<root>/<region>/<YYYY-MM>/``); each has a
``manifest.json`` (:class:`nationmap.records.RunManifest`). :class:`MapIndex` lists them as
:class:`MapEntry` records with the national COG of each product (its VRT where it has none), the
area and acquisition tables and the cells, so the web layer never builds a path from a request: a
map is picked by its id.

Every file the server opens is named here and passes the path rule (:func:`nationmap.files.safe_child`
against the products root, symlinks resolved): a product path in a manifest that climbs out, is
absolute, or is a symlink leading out of the root is never opened. Nor is a national file that
could make GDAL open another one (:mod:`nationmap.serve.safety`): a VRT not of the form nationmap
writes (a nested or warped VRT, a GDAL syntax name, a source outside the run or not a GeoTIFF), an
external overview or mask beside a raster; and a national file opens with the driver its suffix
names only (:func:`nationmap.serve.tiles.open_raster`: a VRT saved as ``.tif`` is not a GeoTIFF).
A run that cannot be shown (a manifest that cannot be read, a COG that is truncated or not a
raster, a file outside the root or that could open one) is listed as unavailable with its reason;
the other runs are unaffected.

The index is built once and refreshed when the tree changes: :meth:`MapIndex.refresh` walks the
directories (no file is read) at most every ``refresh_s`` seconds and re-reads only manifests and
COGs whose file changed (keyed by inode, size and times).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nationmap.assess.report import run_table_key
from nationmap.data.grid import parse_cell
from nationmap.errors import InputError, first_line
from nationmap.files import read_json, safe_child
from nationmap.records import RUN_FORMAT, RecordError, RunManifest
from nationmap.serve.safety import sidecar_problem, vrt_problem
from nationmap.serve.tiles import CogInfo, file_version, inspect_cog, sidecars

MAX_DEPTH = 4  # <root>/<region>/<month>/<vN>/manifest.json
REFRESH_S = 1.0  # the tree is walked for changes at most this often
_VERSION = re.compile(r"^v(\d+)$")
log = logging.getLogger("nationmap.serve")


@dataclass(frozen=True)
class MosaicFile:
    """One product's national COG: ``path`` (resolved, inside the root), ``rel`` (relative to the
    root, what the server may show) and what :func:`inspect_cog` found in it."""

    product: str
    path: Path
    rel: str
    version: tuple[int, ...]  # of the file inspected (tiles.file_version)
    info: CogInfo


@dataclass(frozen=True)
class MapEntry:
    """One products run: ``id`` (its directory under the root, ``<region>/<month>/v3``), where its
    files are, and what it holds (``mosaics``: product -> national COG; ``areas``: the area table
    CSV or None). ``problem`` is why it cannot be shown (None: it can)."""

    id: str
    region: str
    month: str
    version: str  # "v3" for a published version, "run" for an inference run directory
    latest: bool  # the version the month's ``latest`` points at (a run: True)
    root: Path
    mosaics: dict[str, MosaicFile]
    areas: Path | None
    cells: tuple[str, ...]
    status: str
    problem: str | None = None
    acquisitions: Path | None = None  # the month's acquisition table (CSV), what a ``source`` value names
    accuracy: Path | None = None  # the LULC map's accuracy report (JSON) where a labelled sample assessed it

    @property
    def available(self) -> bool:
        return self.problem is None

    def cell_bounds(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        """(name, (west, south, east, north)) of every cell of the run's region, degrees."""
        return [(name, parse_cell(name).bounds) for name in self.cells]


@dataclass(frozen=True)
class _Found:
    """A run directory the walk found: its manifest (None: a version directory without one)."""

    run: Path
    manifest: Path | None


def _walk(root: Path):
    """Run directories under ``root``: those with a ``manifest.json`` (the walk stops there) and
    version directories (``vN``) without one (a half-written or damaged version)."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if "manifest.json" in filenames:
            dirnames[:] = []
            yield _Found(here, here / "manifest.json")
            continue
        if depth == 3 and _VERSION.match(here.name):
            yield _Found(here, None)
        keep = depth < MAX_DEPTH - 1  # runs are at most three levels down
        dirnames[:] = sorted(d for d in dirnames if keep and not d.startswith(".") and d != "latest")


class _Refused(Exception):
    """A run that cannot be shown; the message is the reason."""


def _inside(root: Path, run: Path, rel: str, what: str) -> Path:
    """``run/rel`` resolved, refused unless it stays inside ``root`` (with its GDAL sidecars)."""
    if not rel or Path(rel).is_absolute():
        raise _Refused(f"{what} path {rel!r} is not relative to the run")
    try:
        path = safe_child(run, rel)  # symlinks resolved: the file itself is inside its run
        for sidecar in sidecars(path):  # what GDAL opens beside it
            if os.path.lexists(sidecar):
                safe_child(root, str(sidecar.relative_to(root)))
    except (InputError, ValueError):
        raise _Refused(f"{what} {rel!r} leads outside its run directory") from None
    return path


def _mosaic(root: Path, run: Path, product: str, rel: str, damaged: dict) -> MosaicFile:
    """The national file of ``product`` (``rel`` in ``run``), refused (:class:`_Refused`) if it is
    outside the run, could make GDAL open another file (:mod:`nationmap.serve.safety`), cannot be
    read, or a read of this version of it failed (``damaged``)."""
    path = _inside(root, run, rel, f"{product} layer")
    if not path.is_file():
        raise _Refused(f"{product} layer {path.relative_to(root)} is missing or not a file")
    version = file_version(path)
    problem = sidecar_problem(path)
    if problem is None and path.suffix.lower() == ".vrt":
        problem = vrt_problem(run, path, version)
    if problem:
        raise _Refused(f"{product} layer {path.relative_to(root)}: {problem}")
    info = inspect_cog(product, path, version)
    problem = info.problem or damaged.get((path, version))
    if problem:
        raise _Refused(f"{product} layer {path.relative_to(root)}: {problem}")
    return MosaicFile(product, path, path.relative_to(root).as_posix(), version, info)


def _table(root: Path, run: Path, manifest: RunManifest, key: str, what: str) -> Path | None:
    entry = manifest.products.tables.get(key)
    if entry is None:
        return None
    path = _inside(root, run, entry.path, what)
    return path if path.is_file() else None


def _areas(root: Path, run: Path, manifest: RunManifest) -> Path | None:
    return _table(root, run, manifest, "areas_csv", "area table")


def _national_files(manifest: RunManifest) -> dict[str, str]:
    """product -> the national file to show: its COG, or its VRT where it has no COG (a layer
    declared VRT only, e.g. the class probabilities)."""
    files = {p: e.path for p, e in manifest.products.vrt.items()}
    files.update({p: e.path for p, e in manifest.products.mosaic.items()})
    return files


class MapIndex:
    """The maps under a products root, built once and refreshed on change (see the module doc).

    Thread-safe: a refresh runs in a worker thread while requests read :attr:`maps`, which is
    replaced whole, never changed in place."""

    def __init__(self, root: str | Path, refresh_s: float | None = None):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: no such products directory")
        self.root = root.resolve()
        self.refresh_s = REFRESH_S if refresh_s is None else refresh_s
        self.maps: dict[str, MapEntry] = {}
        self.generation = 0  # counts the changes of :attr:`maps`
        self._manifests: dict[Path, tuple[tuple[int, ...], RunManifest | str]] = {}
        self._damaged: dict[tuple[Path, tuple[int, ...]], str] = {}  # COGs a read failed on, by version
        self._checked = 0.0
        self._lock = threading.Lock()
        self.refresh(force=True)

    def mark_damaged(self, path: Path, version: tuple[int, ...], reason: str) -> None:
        """A read of COG ``path`` at ``version`` failed: its run is unavailable until the file changes."""
        self._damaged[(path, version)] = reason
        self.refresh(force=True)

    def due(self) -> bool:
        return time.monotonic() - self._checked >= self.refresh_s

    def refresh(self, force: bool = False) -> bool:
        """Walk the tree (if ``force`` or due) and rebuild what changed; True if :attr:`maps` changed."""
        with self._lock:
            if not force and not self.due():
                return False
            self._checked = time.monotonic()
            found = list(_walk(self.root))
            entries = [self._entry_or_unavailable(f) for f in found]
            seen = {f.manifest for f in found}
            self._manifests = {p: v for p, v in self._manifests.items() if p in seen}  # removed runs
            entries = [e for e in entries if e is not None and (e.mosaics or not e.available)]
            entries.sort(key=lambda e: (e.month, e.region, _version_number(e.version)), reverse=True)
            maps = {e.id: e for e in entries}
            if maps == self.maps:
                return False
            self.maps, self.generation = maps, self.generation + 1
            return True

    def _manifest(self, path: Path) -> RunManifest | str:
        """The manifest at ``path`` (read again only when the file changed), or why it cannot be read."""
        version = file_version(path)
        cached = self._manifests.get(path)
        if cached and cached[0] == version:
            return cached[1]
        try:
            safe_child(self.root, str(path.relative_to(self.root)))
            found: RunManifest | str = RunManifest.read(path)
        except InputError:
            found = "manifest.json leads outside the products root"
        except RecordError as exc:
            found = f"manifest.json cannot be read ({self.relative(first_line(exc))})"
        self._manifests[path] = (version, found)
        return found

    def relative(self, text: str) -> str:
        """``text`` with the root's absolute path taken out (the server shows paths under it only)."""
        return text.replace(str(self.root) + os.sep, "").replace(str(self.root), ".")

    def _unavailable(self, entry: MapEntry, reason: str) -> MapEntry:
        return dataclasses.replace(entry, problem=self.relative(reason))

    def _entry_or_unavailable(self, found: _Found) -> MapEntry | None:
        """:meth:`_entry`, with any error it did not foresee kept to that run (logged), never the list's."""
        try:
            return self._entry(found)
        except Exception as exc:  # one run's damage must not take down the whole map
            log.exception("indexing %s", found.run)
            rel = found.run.relative_to(self.root)
            region, month = (rel.parts + ("", ""))[:2]
            return MapEntry(id=rel.as_posix(), region=region, month=month, version=found.run.name, latest=False,
                            root=found.run, mosaics={}, areas=None, cells=(), status="damaged",
                            problem=f"cannot be shown ({type(exc).__name__}, in the server's log)")

    def _entry(self, found: _Found) -> MapEntry | None:
        run = found.run
        rel = run.relative_to(self.root)
        version = run.name if _VERSION.match(run.name) else "run"
        region, month = (rel.parts + ("", ""))[:2]  # until the manifest says
        base = MapEntry(id=rel.as_posix(), region=region, month=month, version=version,
                        latest=_is_latest(run, version), root=run, mosaics={}, areas=None, cells=(), status="damaged")
        try:
            if found.manifest is None:
                raise _Refused("no manifest.json (a half-written or damaged version)")
            manifest = self._manifest(found.manifest)
        except OSError as exc:  # removed while the walk ran, unreadable
            return self._unavailable(base, f"cannot be read ({exc.strerror or type(exc).__name__})")
        except _Refused as exc:
            return self._unavailable(base, str(exc))
        if isinstance(manifest, str):
            return None if _foreign(found.manifest) else self._unavailable(base, manifest)
        base = dataclasses.replace(base, region=manifest.region, month=manifest.month, cells=tuple(manifest.cells),
                                   status=manifest.status)
        try:
            base.cell_bounds()
        except (InputError, ValueError) as exc:
            return self._unavailable(base, f"manifest.json names a cell that is not one ({first_line(exc)})")
        try:
            mosaics = {p: _mosaic(self.root, run, p, rel, self._damaged) for p, rel in _national_files(manifest).items()}
            return dataclasses.replace(base, mosaics=mosaics, areas=_areas(self.root, run, manifest),
                                       acquisitions=_table(self.root, run, manifest, "acquisitions_csv",
                                                           "acquisition table"),
                                       accuracy=_table(self.root, run, manifest, run_table_key("lulc"),
                                                       "accuracy report"))
        except _Refused as exc:
            return self._unavailable(base, str(exc))
        except OSError as exc:
            return self._unavailable(base, f"cannot be read ({exc.strerror or type(exc).__name__})")


def _is_latest(run: Path, version: str) -> bool:
    if version == "run":
        return True
    pointer = run.parent / "latest"
    try:
        return pointer.is_symlink() and os.readlink(pointer) == run.name
    except OSError:
        return False


def _foreign(manifest: Path) -> bool:
    """A ``manifest.json`` of something else (another format): not a map, not a damaged one."""
    data = read_json(manifest)
    return data is not None and data.get("format") != RUN_FORMAT


def find_maps(root: str | Path) -> dict[str, MapEntry]:
    """{id: entry} of every products run under ``root`` that has at least one national COG or
    cannot be shown (``problem`` says why), newest month first, then versions newest first."""
    return MapIndex(root).maps


def _version_number(version: str) -> int:
    match = _VERSION.match(version)
    return int(match.group(1)) if match else 1 << 30
