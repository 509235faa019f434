"""Versioned publication of a month's products and the ``latest`` pointers.

Layout under the products root::

    <region>/latest -> <YYYY-MM>/v<N>       newest month whose last refresh fully succeeded
    <region>/<YYYY-MM>/
        latest -> v<N>                      newest fully successful version of the month
        v1/ v2/ ...                         published versions (read-only files): manifest.json,
                                            version.json, cells/, mosaic/, quicklooks/, stac/
        .staging/                           the refresh's inference run directory (resumable)
        .lock                               held while a refresh of the month runs
        refreshes/<run_id>.json, .log       one record and log per refresh attempt

A version appears whole or not at all: it is assembled under a temporary name and renamed. A
``latest`` pointer is a symlink replaced atomically (``rename``), and only after its target is
complete, so a reader following it never sees a partial month. Files are hard links to the
staging run's outputs (every stage writes a new file and renames it, never rewrites one in
place), so publishing costs no copy; across filesystems they are copied.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from nationmap.errors import InputError
from nationmap.files import is_temporary, safe_child, read_json, sha256_json, staged_dir, temporary_name, write_json
from nationmap.records import RunManifest
from nationmap.products.pam import sidecar_path

_VERSION = re.compile(r"^v(\d+)$")


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


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    mode = dst.stat().st_mode
    os.chmod(dst, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


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


def _assemble(run_dir: Path, manifest: RunManifest, stage: Path) -> None:
    """Hard-link (or copy) the version's files into ``stage``; a file that resolves outside the
    run directory (a symlink planted in it) is refused, never followed."""
    for rel in published_files(run_dir, manifest):
        src = safe_child(run_dir, str(rel))
        if not src.is_file():
            raise InputError(f"{run_dir / rel}: listed in the manifest but not a file")
        dst = stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src, dst)


def clean_stale(month: MonthDir) -> None:
    """Remove half-assembled versions left by a refresh that was killed while publishing."""
    if month.root.is_dir():
        for path in month.root.glob(".v*"):
            if is_temporary(path) and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def publish(month: MonthDir, run_dir: Path, manifest: RunManifest, refresh_run_id: str) -> dict:
    """Publish the products of ``run_dir`` as the month's next version (or reuse the newest one
    if it holds the same products), and move ``latest`` if the run is complete (status ok).

    Returns ``{"version", "new", "latest_moved", "path"}``.
    """
    key = content_key(manifest)
    versions = month.versions()
    newest = versions[-1] if versions else None
    info = read_json(month.version(newest) / "version.json") if newest else None
    if info is not None and info.get("content_key") == key:
        n, new = newest, False
    else:
        n, new = (newest or 0) + 1, True
        with staged_dir(month.version(n), durable=True) as stage:
            _assemble(run_dir, manifest, stage)
            write_json(stage / "version.json", {
                "version": n, "region": manifest.region, "month": manifest.month, "status": manifest.status,
                "published": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "refresh_run_id": refresh_run_id, "infer_run_id": manifest.run_id, "content_key": key,
                "failures": [f.to_json() for f in manifest.failures]})
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
