"""Paths and writes: the one path rule, the one write rule, checksums, TOML tables.

Path rule: a path built from a name a user gave (run, region, product) goes through
:func:`safe_child`: it stays inside its root, symlinks included.

Write rule: every file or directory nationmap writes appears whole or not at all. It is written
under :func:`temporary_name` (``.<name>.part-<pid>``, beside the target, so the rename stays on one
filesystem), flushed to disk where a crash must not leave an empty file (records, manifests,
checkpoints), then renamed over the target; on failure the temporary is removed and the target
is left as it was. :func:`atomic_file` writes one file, :func:`staged_dir` one directory. A write
error that names no file (a full disk's ``[Errno 28]`` from ``write``) is raised naming the target
(:func:`naming`), so its one-line error says where.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nationmap.errors import InputError

JOBS_DIR = Path(__file__).resolve().parent / "jobs"  # the job specs shipped in the package (jobs/ links here)


def job_spec_path(spec: str | Path) -> Path:
    """The TOML file a job spec argument means: a file that exists (relative to the working
    directory), else one of the specs shipped in the package, named with or without ``.toml``
    and with or without a leading ``jobs/`` (``cpu-demo/lulc``, ``jobs/cpu-demo/lulc.toml``);
    InputError when neither exists. A name never leaves the shipped specs (the path rule)."""
    path = Path(spec)
    if path.is_file():
        return path
    parts = [p for p in path.with_suffix("").parts if p not in ("", ".")] if path.suffix == ".toml" else list(path.parts)
    if parts and parts[0] == "jobs":
        parts = parts[1:]
    if parts and not path.is_absolute():
        try:
            named = safe_child(JOBS_DIR, *parts[:-1], parts[-1] + ".toml")
        except InputError:
            named = None
        if named is not None and named.is_file():
            return named
    raise InputError(f"job spec {spec} not found (a TOML file, or the name of a spec shipped in {JOBS_DIR})")


def safe_child(root: str | Path, *parts: str) -> Path:
    """``root/parts...``, refused (InputError) if it would resolve outside ``root`` (``..``, absolute
    parts, symlinks leading out): paths built from user-given names stay in their directory."""
    root = Path(root).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise InputError(f"{'/'.join(parts)!r} leads outside {root}")
    return path


def temporary_name(path: str | Path, keep_suffix: bool = False) -> Path:
    """The temporary sibling of ``path`` a writer fills before renaming it to ``path``: hidden (so
    globs and listings of finished outputs skip it) and unique per process; ``keep_suffix`` ends
    it with the suffix of ``path`` too (for a writer that goes by it: GDAL's GeoPackage driver)."""
    path = Path(path)
    return path.with_name(f".{path.name}.part-{os.getpid()}{path.suffix if keep_suffix else ''}")


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a temporary name of :func:`temporary_name` (a writer's leftover)."""
    name = Path(path).name
    return name.startswith(".") and ".part-" in name


# errors of a write that say nothing of where: f.write, sendfile and a library's buffered writes
# raise them without a file name
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def naming(exc: OSError, path: str | Path) -> OSError:
    """``exc`` with ``path`` as its file name when it is a write error that names none (a full
    disk's ``[Errno 28]``), so its one-line error says which file could not be written."""
    if exc.filename is None and exc.errno in _WRITE_ERRNOS:
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    return exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", durable: bool = False, **open_kwargs) -> Iterator:
    """``with atomic_file(path) as f:`` write ``f``; on success it replaces ``path`` by a rename,
    on an exception it is removed and ``path`` is unchanged. ``durable``: fsync the file and its
    directory (records other runs trust: a crash leaves the old or the new file, never an empty one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    with _removed_on_failure(tmp, path):
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """``with atomic_path(path) as tmp:`` a library writes the file ``tmp`` (GDAL, Arrow, matplotlib);
    on success ``tmp`` replaces ``path``, on an exception it is removed and ``path`` is unchanged.
    The directory must exist (a writer that makes its own is told so by the failure).
    ``keep_suffix``: see :func:`temporary_name`."""
    path = Path(path)
    tmp = temporary_name(path, keep_suffix)
    tmp.unlink(missing_ok=True)
    with _removed_on_failure(tmp, path):
        yield tmp
        os.replace(tmp, path)


@contextmanager
def _removed_on_failure(tmp: Path, path: Path) -> Iterator[None]:
    """The temporary file ``tmp`` of ``path`` removed when the block fails; an OSError that does
    not say which file (a full disk's ``[Errno 28]``) names ``path``."""
    try:
        yield
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        named = naming(exc, path)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_dir(target: str | Path, durable: bool = False) -> Iterator[Path]:
    """``with staged_dir(target) as stage:`` fill the empty directory ``stage``; on success it
    replaces ``target`` (see :func:`replace_dir`), on an exception it is removed and ``target`` is
    unchanged. ``durable``: fsync the parent directory after the rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = temporary_name(target)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        replace_dir(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if durable:
        _fsync_dir(target.parent)


def replace_dir(stage: Path, target: Path) -> None:
    """Move the complete directory ``stage`` to ``target``, replacing what was there."""
    old = None
    if target.exists():
        old = temporary_name(target.with_name(target.name + ".old"))
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, data, durable: bool = False) -> Path:
    """Write ``data`` (a JSON value or a record with ``to_json``) as indented JSON to ``path``
    atomically (:func:`atomic_file`)."""
    if hasattr(data, "to_json"):
        data = data.to_json()
    text = json.dumps(data, indent=1, sort_keys=False, default=str) + "\n"
    with atomic_file(path, durable=durable) as f:
        f.write(text)
    return Path(path)


def read_json(path: str | Path) -> dict | None:
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_toml(path: Path) -> dict:
    """The TOML document in ``path``; InputError if it is not TOML."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def read_toml_table(path: Path, table: str) -> dict:
    """The ``[table]`` of TOML file ``path``; InputError if it is not TOML or has no such table."""
    raw = read_toml(path)
    if table not in raw:
        raise InputError(f"{path}: no [{table}] table")
    return dict(raw[table])


def read_defaults_table(path: str | Path | None, default: Path, table: str, what: str) -> tuple[Path, dict]:
    """The ``[table]`` of ``path``, or of ``default`` when no path is given. A given file that is
    missing is an InputError; a missing default gives ``{}``. Returns the file read and the table."""
    explicit = path is not None
    path = Path(path) if explicit else default
    if not path.exists():
        if explicit:
            raise InputError(f"{what} {path} not found")
        return path, {}
    return path, read_toml_table(path, table)


def sha256_file(path: str | Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data) -> str:
    """A stable hash of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
