"""Shared CLI helpers: exit codes, one-line errors, Ray start-up, ``--submit``.

Exit codes: 0 success, 1 failure (the run could not produce its outputs), 2 bad input,
3 partial success (some scenes or cells failed; listed), 4 already running (lock held).
"""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from nationmap.errors import NationmapError

err_console = Console(stderr=True)
console = Console()
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_guarded(fn: Callable[[], object]):
    """Run ``fn``; a NationmapError becomes one line on stderr and exit code 2."""
    try:
        return fn()
    except NationmapError as exc:
        fail(str(exc))


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
    import sys

    from nationmap.ops.jobs import entrypoint, resubmit_argv, submit

    args = resubmit_argv(sys.argv[1:])
    command = entrypoint(args, os.getcwd())
    job_id = run_guarded(lambda: submit(command, address=address, token_file=token_file,
                                        metadata={"nationmap_command": " ".join(args)}))
    typer.echo(job_id)
    err_console.print(f"submitted: {command}\nfollow it: nationmap runs logs {job_id}", highlight=False, soft_wrap=True)
