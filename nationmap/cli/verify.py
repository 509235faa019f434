"""``nationmap verify``: every published version's files against the checksums published with them.

An operator schedules it (cron, a CI job): it prints one line per damaged file and a summary, and
exits 0 when every version verifies, 1 when a damaged file remains (with ``--repair``: one that
could not be repaired), 2 on bad input. Listed without failing: damage a version had when a
republished one replaced it (damage since is a failure), and a GDAL sidecar written beside a
published COG after publication (a note). The check and the repair are
:func:`nationmap.ops.publish.check_month`; ``nationmap refresh`` runs the same on every rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from nationmap.cli.common import EXIT_FAILED, console, run_guarded


@dataclass
class _Tally:
    """What the months checked add up to, for the summary and the exit code."""

    versions: int = 0
    files: int = 0
    damaged: int = 0
    repaired: int = 0
    superseded: int = 0  # damaged files left in versions a republished one replaced, known damaged then
    left: int = 0  # damaged files left otherwise (new damage in a superseded version too): the exit code
    notes: int = 0  # found and not damage (a GDAL sidecar written beside a published COG)

    def add(self, states) -> None:
        for state in states:
            self.versions += 1
            self.files += len(state.listing)
            self.damaged += len(state.damage)
            self.repaired += sum(d.fixed for d in state.damage)
            self.notes += len(state.notes)
            alarms = len(state.alarms)
            self.left += alarms
            self.superseded += sum(not d.fixed for d in state.damage) - alarms

    def summary(self, months: int, root: Path) -> str:
        head = f"{_count(self.versions, 'version')} of {_count(months, 'month')} under {root}, {self.files} files: "
        noted = f" ({_count(self.notes, 'note')}, not damage)" if self.notes else ""
        if not self.damaged:
            return head + "every file as published" + noted
        tail = f", {self.superseded} in versions superseded by a republished one" if self.superseded else ""
        return head + f"{self.damaged} damaged, {self.repaired} repaired, {self.left} not repaired{tail}{noted}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def verify(
    root: Path = typer.Argument(Path("products"), help="Products root (REGION/YYYY-MM/vN below it)."),
    region: str = typer.Option(None, help="Only this region: its directory under the root, or the region "
                                          "as refresh was given it (japan, cells, a bbox, a GeoJSON file)."),
    month: str = typer.Option(None, help="Only this month, YYYY-MM."),
    repair: bool = typer.Option(False, "--repair", help="Repair each damaged file from a verified copy (the "
                                                        "month's staging run, or another version holding the "
                                                        "same bytes) and move files never published to "
                                                        "REGION/MONTH/.quarantine/vN; a month whose refresh "
                                                        "is running is only checked."),
):
    """Check every published version (its files' SHA-256 and sizes, as listed in its version.json,
    and its manifest's checksums): one line per damaged file, then a summary. Exit 0 when every
    version verifies (after --repair; a GDAL sidecar written beside a published COG is noted, not
    damage), 1 when a damaged file remains, 2 on bad input."""
    months = run_guarded(lambda: _months(root, region, month))
    tally = _Tally()
    for one in months:
        tally.add(run_guarded(lambda: _verify_month(root, one, repair)))
    console.print(tally.summary(len(months), root), highlight=False, soft_wrap=True)
    if tally.left:
        raise typer.Exit(EXIT_FAILED)


def _months(root: Path, region: str | None, month: str | None):
    from nationmap.data.months import parse_month
    from nationmap.errors import InputError
    from nationmap.ops.publish import published_months

    if not root.is_dir():
        raise InputError(f"products root {root} not found")
    month = str(parse_month(month)) if month else None
    if region and not (root / region).is_dir():
        from nationmap.data.regions import resolve_region

        region = resolve_region(region).slug
    months = published_months(root, region, month)
    if not months:
        what = " ".join(w for w in (region, month) if w)
        raise InputError(f"no published version{' of ' + what if what else ''} under {root}")
    return months


def _verify_month(root: Path, month, repair: bool):
    """Check (and repair) one month, printing a line per damaged file; returns its versions' states."""
    from nationmap.ops.lock import LockedError, RunLock
    from nationmap.ops.publish import check_month

    where = month.root.resolve().relative_to(root.resolve())
    states = None
    if repair:
        try:
            with RunLock(month.lock, {"run_id": "nationmap verify --repair"}, what=f"a refresh of {where}"):
                states = check_month(month, repair=True)
        except LockedError as exc:
            console.print(f"{where}: only checked, not repaired: {exc}", highlight=False, soft_wrap=True)
    states = states if states is not None else check_month(month)
    for state in states:
        for damage in state.damage:
            console.print(f"{where}/v{state.version}/{damage.line()}{_superseded(state, damage)}", highlight=False,
                          soft_wrap=True)
        for note in state.notes:
            console.print(f"{where}/v{state.version}/{note}", highlight=False, soft_wrap=True)
        if not state.complete:
            console.print(f"{where}/v{state.version}: no list of its files' checksums (published before nationmap "
                          f"kept one, or damaged): only its manifest's files were checked", highlight=False,
                          soft_wrap=True)
    return states


def _superseded(state, damage) -> str:
    """What a damaged file's line adds in a version a republished one replaced: whether its damage
    was known then (no alarm) or came since (an alarm until repaired)."""
    if state.superseded_by is None:
        return ""
    if damage.fixed or state.known(damage):
        return f" (superseded by v{state.superseded_by})"
    return f" (superseded by v{state.superseded_by}; damaged since it was replaced)"
