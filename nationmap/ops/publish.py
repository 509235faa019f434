"""Versioned publication of a month's products and the ``latest`` pointers.

Layout under the products root::

    <region>/latest -> <YYYY-MM>/v<N>       newest month whose last refresh fully succeeded
    <region>/<YYYY-MM>/
        latest -> v<N>                      newest fully successful version of the month
        v1/ v2/ ...                         published versions (read-only files): manifest.json,
                                            version.json, cells/, mosaic/, quicklooks/, stac/
        .staging/                           the refresh's inference run directory (resumable)
        .lock                               held while a refresh of the month runs
        .quarantine/v<N>/...                files found in vN that were never published there (moved,
                                            never deleted, by a repair)
        refreshes/<run_id>.json, .log       one record and log per refresh attempt

A version appears whole or not at all: it is assembled under a temporary name and renamed. A
``latest`` pointer is a symlink replaced atomically (``rename``), and only after its target is
complete, so a reader following it never sees a partial month.

Files are copies of the staging run's outputs, never hard links: a reflink where the filesystem
shares blocks copy-on-write (XFS, Btrfs: no extra space), else a byte copy. A byte changed in
place in a published file then cannot change the staging run it is repaired from, nor the
reverse. Each copy is checked against the manifest's SHA-256 as it is made, and ``version.json``
lists every file of the version with its SHA-256 and size. :func:`check_month` verifies every
version of a month against that list (and the manifest's checksums) and repairs a damaged file
from a verified copy (the staging run's file, or another version's holding the same bytes); a
file either record names is never removed, and one neither names is moved to the quarantine;
``nationmap refresh`` runs it on every rerun, ``nationmap verify`` when an operator asks.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from nationmap.errors import FailedError, InputError
from nationmap.files import (atomic_path, is_temporary, read_json, safe_child, sha256_file, sha256_json, staged_dir,
                             temporary_name, write_json)
from nationmap.records import RunManifest, VersionCheck
from nationmap.products.pam import sidecar_path

_VERSION = re.compile(r"^v(\d+)$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
VERSION_INFO = "version.json"


@dataclass(frozen=True)
class MonthDir:
    """``<products>/<region>/<YYYY-MM>``: the versions, staging run, lock and records of a month.

    Every path below the month goes through the path rule (:func:`nationmap.files.safe_child`):
    a symlink planted inside the month cannot lead a write out of it. The ``latest`` pointers are
    the exception by design: they are symlinks nationmap itself replaces, never written through."""

    root: Path

    @property
    def staging(self) -> Path:
        return safe_child(self.root, ".staging")

    @property
    def lock(self) -> Path:
        return safe_child(self.root, ".lock")

    @property
    def refreshes(self) -> Path:
        return safe_child(self.root, "refreshes")

    @property
    def latest(self) -> Path:
        return self.root / "latest"

    @property
    def region_latest(self) -> Path:
        return self.root.parent / "latest"

    def version(self, n: int) -> Path:
        return safe_child(self.root, f"v{n}")

    def versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir())

    def latest_version(self) -> int | None:
        target = read_pointer(self.latest)
        m = _VERSION.match(target or "")
        return int(m.group(1)) if m else None


def read_pointer(link: Path) -> str | None:
    return os.readlink(link) if link.is_symlink() else None


def point(link: Path, target: str) -> None:
    """Make symlink ``link`` point at ``target`` (relative) in one atomic rename."""
    if link.exists() and not link.is_symlink():
        raise InputError(f"{link} exists and is not a symlink; refusing to replace it")
    tmp = temporary_name(link)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def content_key(manifest: RunManifest) -> str:
    """What a version holds: the checksums of every product file and the run's status."""
    cells = {c.cell: {p: e.sha256 for p, e in c.files.items()} for c in manifest.ok_cells()}
    products = {group: {p: e.sha256 for p, e in getattr(manifest.products, group).items()}
                for group in manifest.products.GROUPS}
    return sha256_json({"cells": cells, "products": products, "status": manifest.status})


def manifest_checksums(manifest: RunManifest) -> dict[str, str]:
    """The SHA-256 the manifest gives each product file, by its path relative to the run."""
    sums = {str(Path("cells") / c.cell / e.path): e.sha256 for c in manifest.ok_cells() for e in c.files.values()}
    sums.update({str(Path(e.path)): e.sha256 for e in manifest.products.files()})
    return sums


@dataclass(frozen=True)
class PublishedFile:
    """A file of a version as published: its SHA-256 and size in bytes (size None: a version
    published before ``version.json`` listed its files, checked by its manifest's SHA-256 only)."""

    sha256: str
    size: int | None = None


_FICLONE = 0x40049409  # Linux ioctl: the copy shares the source's blocks copy-on-write (XFS, Btrfs)
_CHUNK = 4 << 20


def _copy_file(src: Path, dst: Path) -> PublishedFile:
    """Copy ``src`` to ``dst``, read-only, whole or not at all (a temporary name, flushed to disk,
    renamed): a reflink where the filesystem makes one, else a byte copy. Returns the checksum and
    size read back from the copy."""
    import fcntl

    with atomic_path(dst) as tmp:
        with open(src, "rb") as source, open(tmp, "wb") as copy:
            try:
                fcntl.ioctl(copy.fileno(), _FICLONE, source.fileno())
            except OSError:  # not a reflink filesystem, or another one: copy the bytes
                shutil.copyfileobj(source, copy, _CHUNK)
            copy.flush()
            os.fsync(copy.fileno())
        os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        copied = PublishedFile(sha256_file(tmp), tmp.stat().st_size)
    return copied


def published_files(run_dir: Path, manifest: RunManifest) -> list[Path]:
    """What a version holds, relative to the run: the manifest, the files of the cells it lists as
    ok, its national layers (COG, VRT) and quicklooks, the PAM sidecars naming their classes, and the STAC tree (stale files of the reused staging
    directory, e.g. of a cell that is empty this time, are left out)."""
    files = [Path("manifest.json")]
    for cell in manifest.ok_cells():
        files += [Path("cells") / cell.cell / e.path for e in cell.files.values()]
    files += [Path(e.path) for e in manifest.products.files()]
    files += [side for f in files if (run_dir / (side := sidecar_path(f))).is_file()]  # class names of a COG
    stac = run_dir / "stac"
    if stac.is_dir():
        files += sorted(p.relative_to(run_dir) for p in stac.rglob("*") if p.is_file() and not p.name.startswith("."))
    return files


def _assemble(run_dir: Path, manifest: RunManifest, stage: Path) -> dict[str, PublishedFile]:
    """Copy the version's files into ``stage``, each checked against the manifest's SHA-256 where
    it gives one; returns every file's checksum and size. A file that resolves outside the run
    directory (a symlink planted in it) is refused, never followed."""
    expected = manifest_checksums(manifest)
    listing = {}
    for rel in published_files(run_dir, manifest):
        src = safe_child(run_dir, str(rel))
        if not src.is_file():
            raise InputError(f"{run_dir / rel}: listed in the manifest but not a file")
        dst = stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        copied = _copy_file(src, dst)
        if str(rel) in expected and copied.sha256 != expected[str(rel)]:
            raise FailedError(f"{run_dir / rel}: not the file its manifest names (SHA-256 differs); nothing published")
        listing[str(rel)] = copied
    return listing


def clean_stale(month: MonthDir) -> None:
    """Remove half-assembled versions left by a refresh that was killed while publishing."""
    if month.root.is_dir():
        for path in month.root.glob(".v*"):
            if is_temporary(path) and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def publish(month: MonthDir, run_dir: Path, manifest: RunManifest, refresh_run_id: str,
            supersede: Superseded | None = None) -> dict:
    """Publish the products of ``run_dir`` as the month's next version (or reuse the newest one
    if it holds the same products, unless it is the damaged version ``supersede``, which the new
    one replaces: its ``supersedes`` records that version and its files known damaged), and move
    ``latest`` if the run is complete (status ok).

    Returns ``{"version", "new", "latest_moved", "path"}``.
    """
    key = content_key(manifest)
    versions = month.versions()
    newest = versions[-1] if versions else None
    info = read_json(month.version(newest) / VERSION_INFO) if newest else None
    if supersede is None and info is not None and info.get("content_key") == key:
        n, new = newest, False
    else:
        n, new = (newest or 0) + 1, True
        with staged_dir(month.version(n), durable=True) as stage:
            listing = _assemble(run_dir, manifest, stage)
            write_json(stage / VERSION_INFO, {
                "version": n, "region": manifest.region, "month": manifest.month, "status": manifest.status,
                "published": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "refresh_run_id": refresh_run_id, "infer_run_id": manifest.run_id, "content_key": key,
                "failures": [f.to_json() for f in manifest.failures],
                "supersedes": [supersede.to_json()] if supersede is not None else [],
                "files": {rel: {"sha256": f.sha256, "size": f.size} for rel, f in sorted(listing.items())}},
                durable=True)
            os.chmod(stage / VERSION_INFO, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    moved = False
    if manifest.status == "ok" and month.latest_version() != n:
        point(month.latest, f"v{n}")
        moved = True
    if manifest.status == "ok":
        _advance_region_latest(month, n)
    return {"version": n, "new": new, "latest_moved": moved, "path": str(month.version(n))}


def _advance_region_latest(month: MonthDir, n: int) -> None:
    """``<region>/latest`` follows the newest month (an older month's refresh leaves it alone).
    Refreshes of different months may finish together: read and move it under a region lock."""
    import fcntl

    target = f"{month.root.name}/v{n}"
    fd = os.open(month.root.parent / ".latest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = read_pointer(month.region_latest)
        if current != target and (current is None or current.split("/")[0] <= month.root.name):
            point(month.region_latest, target)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- verification


QUARANTINE = ".quarantine"  # <month>/.quarantine/vN/PATH: files found in vN that were never published there


@dataclass(frozen=True)
class Superseded:
    """An entry of a republished version's ``supersedes``: the damaged version it replaced and the
    files of it known damaged then (None: an entry written before they were recorded, which
    counts all of its damage as known)."""

    version: int
    damaged: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        return {"version": self.version, "damaged": list(self.damaged or ())}


def _supersedes(info: dict | None) -> tuple[Superseded, ...]:
    """The ``supersedes`` entries of ``version.json`` (a bare version number: an older entry)."""
    entries = (info or {}).get("supersedes")
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, int) and not isinstance(entry, bool):
            out.append(Superseded(entry))
        elif (isinstance(entry, dict) and isinstance(entry.get("version"), int)
              and isinstance(entry.get("damaged"), list)):
            out.append(Superseded(entry["version"], tuple(str(p) for p in entry["damaged"])))
    return tuple(out)


@dataclass(frozen=True)
class FileDamage:
    """One damaged file of a version (``path`` relative to it), what is wrong and what a repair did.
    ``kind``: ``file`` (a published file, repaired from a verified copy), ``record`` (the version's
    own record: its directory, ``version.json``, or its file list and manifest disagreeing; never
    repaired in place) or ``extra`` (never published there: moved to the month's quarantine)."""

    path: str
    reason: str
    action: str = ""  # "repaired from .staging", "moved to ...", "not repaired: ..."
    kind: str = "file"

    @property
    def fixed(self) -> bool:
        return self.action.startswith(("repaired", "removed", "moved"))

    def line(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.action})" if self.action else "")


@dataclass(frozen=True)
class VersionState:
    """What checking one published version found. ``listing``: its files as published;
    ``complete`` False for a version published before ``version.json`` listed every file (only its
    manifest's files are checked); ``content_key`` None when neither record can be read; ``notes``:
    what was found and is not damage (a GDAL sidecar written beside a published COG);
    ``superseded_by``/``known_damaged``: the version that replaced this one and the files of this
    one known damaged when it did (None: all of its damage)."""

    version: int
    path: Path
    listing: dict[str, PublishedFile]
    damage: tuple[FileDamage, ...] = ()
    content_key: str | None = None
    complete: bool = True
    supersedes: tuple[Superseded, ...] = ()
    superseded_by: int | None = None
    known_damaged: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every file as published (after a repair, when there was one)."""
        return all(d.fixed for d in self.damage)

    def known(self, damage: FileDamage) -> bool:
        """Whether ``damage`` was known when a republished version replaced this one (no alarm)."""
        return self.superseded_by is not None and (self.known_damaged is None or damage.path in self.known_damaged)

    @property
    def alarms(self) -> list[FileDamage]:
        """The damage left that nothing repaired and no republished version replaced: a failure."""
        return [d for d in self.damage if not d.fixed and not self.known(d)]

    @property
    def action(self) -> str:
        if not self.damage:
            return "verified"
        if self.ok:
            return "repaired"
        return f"superseded by v{self.superseded_by}" if not self.alarms else "not repaired"

    def record(self) -> VersionCheck:
        return VersionCheck(self.version, len(self.listing), self.action, [d.line() for d in self.damage],
                            list(self.notes))


def _file_damage(root: Path, rel: str, expected: PublishedFile) -> str | None:
    """What is wrong with ``root/rel`` against its published checksum, None when nothing: it must
    be a regular file reached without a symlink, of the published size and SHA-256."""
    try:
        real = safe_child(root, rel)
    except InputError:
        return "leads outside the version"
    if real != root.resolve() / rel:
        return "a symlink, not the published file"
    if not real.is_file():
        return "missing"
    try:
        size = real.stat().st_size
        if expected.size is not None and size != expected.size:
            return f"{size} bytes, published with {expected.size}"
        if sha256_file(real) != expected.sha256:
            return "SHA-256 differs from the published checksum"
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    return None


def _listing(info: dict | None) -> dict[str, PublishedFile] | None:
    """The file list of ``version.json``; None when it has none or a malformed one."""
    files = (info or {}).get("files")
    if not isinstance(files, dict):
        return None
    try:
        return {str(rel): PublishedFile(str(f["sha256"]), int(f["size"])) for rel, f in files.items()}
    except (TypeError, KeyError, ValueError):
        return None


def _records(vdir: Path) -> tuple[dict | None, RunManifest | None, list[FileDamage]]:
    """``version.json`` and the manifest of a version, each None (with its damage) when it cannot
    be read; a record reached through a symlink is not read."""
    damage, info, manifest = [], None, None
    info_path, manifest_path = vdir / VERSION_INFO, vdir / "manifest.json"
    if not info_path.is_symlink():
        info = read_json(info_path)
    if info is None or _listing(info) is None and "files" in info:
        damage.append(FileDamage(VERSION_INFO, "missing, not JSON or its file list malformed" if info is None
                                 else "its file list is malformed", kind="record"))
    if not manifest_path.is_symlink():
        try:
            manifest = RunManifest.read(manifest_path)
        except InputError:
            pass
    return info, manifest, damage


def _disagreements(listing: dict[str, PublishedFile], named: dict[str, str]) -> list[FileDamage]:
    """The files on which ``version.json``'s list and the manifest disagree: damage to the version's
    own record. Which of the two is right is not known, so the file is neither replaced nor moved."""
    return [FileDamage(rel, "not in version.json's list, though the manifest names it" if rel not in listing
                       else "version.json and the manifest give it different SHA-256", kind="record")
            for rel, sha in sorted(named.items()) if rel not in listing or listing[rel].sha256 != sha]


def check_version(month: MonthDir, n: int) -> VersionState:
    """Every file of version ``n`` against the checksums published with it: ``version.json``'s
    list (and, where the version predates it, the manifest's checksums), the manifest's checksums
    against that list (a disagreement: damage to the version's own record, its file left as it
    is), and no file that neither names (a GDAL sidecar beside a published file: a note)."""
    vdir = month.root / f"v{n}"
    if vdir.is_symlink():
        return VersionState(n, vdir, {}, (FileDamage(".", "the version directory is a symlink", kind="record"),))
    info, manifest, damage = _records(vdir)
    listing = _listing(info)
    complete = listing is not None
    named = manifest_checksums(manifest) if manifest is not None else {}
    if listing is None:  # published before version.json listed its files, or that list is damaged
        listing = {rel: PublishedFile(sha) for rel, sha in named.items()}
        if manifest is None:
            damage.append(FileDamage("manifest.json", "missing or not a readable manifest", kind="record"))
    files = [FileDamage(rel, why) for rel, expected in sorted(listing.items())
             if (why := _file_damage(vdir, rel, expected)) is not None]
    if complete and manifest is not None and not any(d.path == "manifest.json" for d in files):
        disagree = _disagreements(listing, named)
        files = [d for d in files if d.path not in {x.path for x in disagree}] + disagree
        if info.get("content_key") != content_key(manifest):
            damage.append(FileDamage(VERSION_INFO, "its content key is not its manifest's", kind="record"))
    extra, notes = _unexpected(vdir, set(listing) | set(named) | {VERSION_INFO}) if complete else ([], [])
    key = (info or {}).get("content_key")
    key = key if isinstance(key, str) else (content_key(manifest) if manifest is not None else None)
    return VersionState(n, vdir, listing, tuple(damage + files + extra), key, complete, _supersedes(info),
                        notes=tuple(notes))


def _unexpected(vdir: Path, known: set[str]) -> tuple[list[FileDamage], list[str]]:
    """Files (and directory symlinks) in a version that neither its list nor its manifest names,
    as damage; and, as notes, GDAL sidecars written beside a published file after publication
    (``gdalinfo -stats`` writes one: not damage, left in place)."""
    found, notes = [], []
    for here, dirs, files in os.walk(vdir):
        base = Path(here).relative_to(vdir)
        found += [FileDamage(str(base / d), "a symlink to a directory, never published", kind="extra") for d in dirs
                  if (Path(here) / d).is_symlink()]
        for rel in (str(base / f) for f in files if str(base / f) not in known):
            if rel.endswith(".aux.xml") and rel.removesuffix(".aux.xml") in known and not (vdir / rel).is_symlink():
                notes.append(f"{rel}: a GDAL sidecar of a published file, never published itself (left in place)")
            else:
                found.append(FileDamage(rel, "never published in this version", kind="extra"))
    return found, notes


def _sources(month: MonthDir, n: int) -> list[tuple[str, Path]]:
    """Where a damaged file of version ``n`` may be copied from: the staging run, the other
    versions of the month (newest first). Each file is checked again before it is used."""
    sources = []
    try:
        sources.append((".staging", month.staging))
    except InputError:  # a staging directory planted as a symlink leading out: not a source
        pass
    sources += [(f"v{m}", month.root / f"v{m}") for m in reversed(month.versions()) if m != n]
    return [(name, path) for name, path in sources if path.is_dir() and not path.is_symlink()]


def _real_dirs(vdir: Path, rel: str) -> bool:
    """Make the directories of ``vdir/rel`` real ones: a symlink among them (damage) is removed,
    never written through. False when one of them is a file."""
    here = vdir
    for part in Path(rel).parent.parts:
        here = here / part
        if here.is_symlink():
            here.unlink()  # removes the link, never what it points at
        if not here.exists():
            here.mkdir()
        elif not here.is_dir():
            return False
    return True


def _quarantine(vdir: Path, rel: str) -> str:
    """Move ``vdir/rel`` (a file or link never published there) to ``<month>/.quarantine/vN/rel``,
    outside every version, under a free name (never over an earlier one); returns what was done."""
    src = vdir / rel
    if not (src.is_symlink() or src.is_file()):  # a directory link a repair below it already replaced
        return "removed: the link, never what it led to"
    here = vdir.parent
    for part in (QUARANTINE, vdir.name, *Path(rel).parent.parts):
        here = here / part
        if here.is_symlink() or here.exists() and not here.is_dir():
            return f"not repaired: {here} is not a directory to quarantine it in"
        here.mkdir(exist_ok=True)
    dest, i = here / src.name, 0
    while dest.exists() or dest.is_symlink():
        i += 1
        dest = here / f"{src.name}.{i}"
    os.rename(src, dest)  # a link is moved as it is, never followed
    return f"moved to {dest}"


def _repair(vdir: Path, damage: FileDamage, expected: PublishedFile | None, sources) -> FileDamage:
    """``damage`` with what was done: a file replaced by a verified copy, one never published
    moved to the quarantine, the version's own record left as it is (it is republished)."""
    if damage.kind == "record":
        return replace(damage, action="not repaired: the version's own record")
    if damage.kind == "extra":
        if not _real_dirs(vdir, damage.path):
            return replace(damage, action="not repaired: a directory of the version is a file")
        return replace(damage, action=_quarantine(vdir, damage.path))
    for name, root in sources if expected is not None else ():
        if _file_damage(root, damage.path, expected) is None:
            if not _real_dirs(vdir, damage.path):
                return replace(damage, action="not repaired: a directory of the version is a file")
            try:
                copied = _copy_file(root / damage.path, vdir / damage.path)
            except IsADirectoryError:
                return replace(damage, action="not repaired: a directory stands in its place")
            if copied.sha256 == expected.sha256:
                return replace(damage, action=f"repaired from {name}")
    return replace(damage, action="not repaired: no verified copy of it")


def repair_version(month: MonthDir, state: VersionState) -> VersionState:
    """Repair each damaged file of ``state`` from a verified copy (the staging run's file or
    another version's with the published size and SHA-256), each replaced in one rename; move
    files never published there to the month's quarantine. Nothing either record names is ever
    removed, and the version's own record is never rewritten. The caller holds the month's lock."""
    if not state.damage:
        return state
    sources = _sources(month, state.version)
    return replace(state, damage=tuple(_repair(state.path, d, state.listing.get(d.path), sources)
                                       for d in state.damage))


def check_month(month: MonthDir, repair: bool = False) -> list[VersionState]:
    """Every published version of ``month`` checked (and repaired, with ``repair``: the caller
    holds the month's lock), each marked with the version that superseded it, if one did, and the
    files of it known damaged then."""
    states = [check_version(month, n) for n in month.versions()]
    if repair:
        states = [repair_version(month, s) for s in states]
    replaced = {old.version: (s.version, old.damaged) for s in states for old in s.supersedes}
    return [replace(s, superseded_by=replaced[s.version][0], known_damaged=replaced[s.version][1])
            if s.version in replaced else s for s in states]


def published_months(root: Path, region: str | None = None, month: str | None = None) -> list[MonthDir]:
    """The month directories (``<region>/<YYYY-MM>``) under a products root that hold a version,
    of one region directory and month when given. Directories that are symlinks are not followed."""
    regions = [safe_child(root, region)] if region else sorted(p for p in root.iterdir() if p.is_dir())
    months = []
    for here in regions:
        if here.name.startswith(".") or here.is_symlink() or not here.is_dir():
            continue
        names = [month] if month else sorted(p.name for p in here.iterdir() if _MONTH.match(p.name))
        months += [MonthDir(here / m) for m in names if (here / m).is_dir() and not (here / m).is_symlink()]
    return [m for m in months if m.versions()]
