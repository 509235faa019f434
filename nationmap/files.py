"""Atomic replacement of output directories: readers see the old or the new one, never a mix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(stage: Path, target: Path) -> None:
    """Move the complete directory ``stage`` to ``target``, replacing what was there."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
