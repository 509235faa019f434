"""One refresh per region and month at a time: an exclusive ``flock`` on ``<month dir>/.lock``.

The kernel releases the lock when its holder exits, however it exits (SIGKILL, OOM, node
reboot), so there is never a stale lock to clean up. The holder writes who it is into the lock
file for the message the second refresh prints. On network filesystems ``flock`` needs lock
support in the mount (NFSv4 and Lustre with ``-o flock`` have it).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from nationmap.errors import NationmapError


class LockedError(NationmapError):
    """Another process holds the lock (exit code 4: already running)."""

    exit_code = 4


class RunLock:
    """``with RunLock(path, holder):`` an exclusive, non-blocking lock; LockedError if held."""

    def __init__(self, path: str | Path, holder: dict, what: str):
        self.path, self.holder, self.what = Path(path), holder, what
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = read_holder(self.path) or {}
            detail = ", ".join(f"{k} {other[k]}" for k in ("run_id", "pid", "host", "started") if k in other)
            raise LockedError(f"{self.what} is already running ({detail or 'holder unknown'}); "
                              f"lock {self.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**self.holder, "pid": os.getpid(), "host": socket.gethostname()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_locked(path: str | Path) -> bool:
    """Whether some process holds the lock at ``path`` now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock we may have taken
    return False


def read_holder(path: str | Path) -> dict | None:
    try:
        text = Path(path).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
