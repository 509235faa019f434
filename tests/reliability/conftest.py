"""The red-team harness: run the CLI as a user would and check what the README promises under bad
input and faults: the exit code, one ``error:`` line and no traceback, nothing written outside
the output root, and no existing output changed (hashes of every file before and after)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nationmap.cli.main import app

runner = CliRunner()


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (symlinks by their target text)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str  # stdout and stderr together

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("error:")]


def run_cli(args: list[str], cwd: Path | None = None) -> Outcome:
    """``nationmap ARGS`` in process (Typer's runner), in ``cwd`` if given."""
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(old)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += "\nTraceback (uncaught): " + repr(result.exception)
    return Outcome(result.exit_code, output)


def run_cli_process(args: list[str], cwd: Path | None = None, timeout: float = 120) -> Outcome:
    """``python -m nationmap.cli.main ARGS`` in a child process (what a shell user sees)."""
    proc = subprocess.run([sys.executable, "-m", "nationmap.cli.main", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout + proc.stderr)


def assert_refused(outcome: Outcome, code: int, *words: str) -> None:
    """Exit ``code``, exactly one ``error:`` line containing every word, no traceback."""
    assert outcome.code == code, outcome.output
    assert "Traceback" not in outcome.output, outcome.output
    assert len(outcome.error_lines) == 1, outcome.output
    for word in words:
        assert word in outcome.error_lines[0], outcome.output


@pytest.fixture()
def guarded(tmp_path):
    """A sandbox: ``sandbox/out`` is the output root, ``sandbox`` its parent. Yields a checker that
    asserts nothing outside ``out`` appeared and nothing that existed changed."""
    sandbox = tmp_path / "sandbox"
    (sandbox / "out").mkdir(parents=True)

    class Guard:
        root = sandbox
        out = sandbox / "out"

        def snapshot(self):
            self.before = tree_hashes(sandbox)

        def check(self, allowed_new: tuple[str, ...] = ()):
            after = tree_hashes(sandbox)
            changed = [p for p, h in self.before.items() if after.get(p) != h]
            assert not changed, f"existing outputs changed or removed: {changed}"
            new = [p for p in after if p not in self.before]
            stray = [p for p in new if not p.startswith("out/") and not any(p.startswith(a) for a in allowed_new)]
            assert not stray, f"written outside the output root: {stray}"

    return Guard()
