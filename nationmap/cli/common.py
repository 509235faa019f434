"""Shared CLI helpers: one-line errors with exit code 2, Ray start-up."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from nationmap.errors import NationmapError

err_console = Console(stderr=True)
console = Console()
EXIT_BAD_INPUT = 2


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
