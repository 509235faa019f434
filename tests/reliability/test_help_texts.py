"""Every command's ``--help`` says what its source says: a bracketed word such as ``[infer]`` or
``[refresh]`` is printed as it is, never taken for terminal markup and dropped."""

from __future__ import annotations

import re

import typer.main

from nationmap.cli.main import app
from tests.reliability.conftest import run_cli

_BRACKETED = re.compile(r"\[[^\[\]\n]+\]")


def _commands(command, path: tuple[str, ...] = ()):
    """(path, command) of the group and every command and group below it."""
    yield path, command
    if hasattr(command, "commands"):  # a group (Typer's own vendored click)
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


def _source_brackets(command) -> set[str]:
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    return {word for text in texts for word in _BRACKETED.findall(text)}


def test_every_help_text_keeps_its_bracketed_words():
    commands = list(_commands(typer.main.get_command(app)))
    checked = 0
    for path, command in commands:
        words = _source_brackets(command)
        outcome = run_cli([*path, "--help"])
        assert outcome.code == 0, (path, outcome.output)
        flat = "".join(outcome.output.split())  # the help is wrapped: compare without whitespace
        missing = [w for w in words if "".join(w.split()) not in flat]
        assert not missing, f"nationmap {' '.join(path)} --help lost {missing}:\n{outcome.output}"
        checked += len(words)
    # the cases the issue found are among them (plan's --config, runs logs' --root)
    assert checked >= 2 and any(path == ("plan",) for path, _ in commands)
    plan = run_cli(["plan", "--help"]).output
    assert "[infer] table" in " ".join(plan.split())
    logs = run_cli(["runs", "logs", "--help"]).output
    assert "the [infer] products root" in " ".join(logs.split())
