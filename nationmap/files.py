"""Atomic file and directory writes (readers see the old or the new output, never a mix), checksums, TOML tables."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tomllib
from pathlib import Path

from nationmap.errors import InputError

JOBS_DIR = Path(__file__).resolve().parents[1] / "jobs"  # the job specs shipped with the code


def safe_child(root: str | Path, *parts: str) -> Path:
    """``root/parts...``, refused (InputError) if it would resolve outside ``root`` (``..``, absolute
    parts, symlinks leading out): paths built from user-given names stay in their directory."""
    root = Path(root).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise InputError(f"{'/'.join(parts)!r} leads outside {root}")
    return path


def replace_dir(stage: Path, target: Path) -> None:
    """Move the complete directory ``stage`` to ``target``, replacing what was there."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` through a temporary name and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


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
