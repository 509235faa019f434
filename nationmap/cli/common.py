"""Shared CLI helpers: exit codes, one-line errors, the overwrite rule, Ray start-up, ``--submit``.

Exit codes: 0 success, 1 failure (the run could not produce its outputs), 2 bad input,
3 partial success (some scenes or cells failed; listed), 4 already running (lock held).

Messages are plain text: the consoles have rich markup off, so a path holding ``[`` or a word
such as ``[refresh]`` is printed as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException  # Typer's (vendored click) usage errors derive from it

from nationmap.errors import InputError, NationmapError, os_error_line

err_console = Console(stderr=True, markup=False)
console = Console(markup=False)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4


def error_line(message: str) -> None:
    """``error: MESSAGE`` on stderr as one line of plain text."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err_console.print(Text("error: ", style="bold red") + Text(text), highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    error_line(message)
    raise typer.Exit(code)


def exit_code_of(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code of an expected error (nationmap's, or the OS's during a
    command: read-only or full disk, permissions); None for anything else (a bug: traceback)."""
    if isinstance(exc, NationmapError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        return os_error_line(exc)
    return None


def run_guarded(fn: Callable[[], object]):
    """Run ``fn``; an expected error becomes one line on stderr and its exit code."""
    try:
        return fn()
    except (NationmapError, OSError) as exc:
        message, code = exit_code_of(exc)
        fail(message, code)


def outcome_code(failed: int, done: int) -> int:
    """The exit code of a command over units (scenes, files, cells): 0 when none failed, 3 when some
    failed and some were done, 1 when every one failed."""
    if not failed:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_FAILED


def refuse_existing(path: str | Path, overwrite: bool) -> None:
    """The overwrite rule of every command that writes a named output: an existing output (a
    file, or a directory that is not empty) is replaced only with ``--overwrite``."""
    path = Path(path)
    if overwrite or not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    raise InputError(f"{path} exists; pass --overwrite to replace it")


@contextmanager
def replacing(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """``with replacing(out, overwrite) as stage:`` the overwrite rule, then a staged write: the
    command fills ``stage``, which replaces ``out`` in one rename when it is complete."""
    from nationmap.files import staged_dir

    path = Path(path)
    refuse_existing(path, overwrite)
    missing = [p for p in path.parents if not p.exists()]  # made by staged_dir; removed again on failure
    try:
        with staged_dir(path) as stage:
            yield stage
    except BaseException:
        for directory in missing:  # innermost first; a failed command leaves no new directory behind
            try:
                directory.rmdir()
            except OSError:
                break
        raise


class GuardedGroup(TyperGroup):
    """The top-level command group: whatever a command lets through that is expected (nationmap's
    errors, OS errors such as a read-only or full disk, usage errors) becomes one ``error:`` line
    and its exit code, in a shell as in Typer's test runner."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:  # usage errors: bad option values, unknown options
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # the help text, as without this group
            else:
                error_line(_usage_message(exc))
            rv = exc.exit_code
        except Abort:
            error_line("aborted")
            rv = EXIT_FAILED
        except (NationmapError, OSError) as exc:
            message, rv = exit_code_of(exc)
            error_line(message)
        except Exception as exc:  # a Ray worker's failure outside a run directory (data commands)
            from nationmap.logs import is_ray_error, ray_session_logs, worker_error

            if not is_ray_error(exc):
                raise
            failure = worker_error(exc, ray_session_logs() or "Ray's session logs", log=False)
            error_line(str(failure))
            rv = failure.exit_code
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def _usage_message(exc: TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    return exc.format_message() + where


def start_ray(executor: str, address: str | None) -> None:
    """Validate the executor and set the Ray address; Ray itself starts with the first tasks."""
    if executor not in ("ray", "serial"):
        fail(f"executor must be ray or serial, not {executor!r}")
    if executor == "ray":
        from nationmap.parallel import use_ray_address

        use_ray_address(address)


def submit_instead(address: str | None, token_file=None) -> None:
    """``--submit``: send this very command line (less the submission options) to the cluster as a
    Ray Job that runs in the current directory (which the cluster must share), print the job id."""
    import os

    from nationmap.ops.jobs import entrypoint, resubmit_argv, submit

    args = resubmit_argv(sys.argv[1:])
    command = entrypoint(args, os.getcwd())
    job_id = run_guarded(lambda: submit(command, address=address, token_file=token_file,
                                        metadata={"nationmap_command": " ".join(args)}))
    typer.echo(job_id)
    err_console.print(f"submitted: {command}\nfollow it: nationmap runs logs {job_id}", highlight=False, soft_wrap=True)
