"""``nationmap refresh``: the monthly job. Update the catalog from the raw-data location, run
inference for the region's month, publish the products as a new version and move ``latest``.

One refresh per region and month at a time (:class:`~nationmap.ops.lock.RunLock`). Each attempt
leaves a record ``refreshes/<run_id>.json`` (status, times, catalog changes, inference run,
published version, failures) and a log beside it. A killed refresh is simply run again: the
inference resumes in the month's staging directory, and nothing is published until it has
finished, so ``latest`` only ever points at a complete version.

Outcomes: ``ok`` (published, ``latest`` moved), ``partial`` (some scenes or cells failed: the
version is published for inspection but ``latest`` stays; or a published version of the month is
damaged and could not be repaired), ``failed`` (nothing published).

Every rerun first verifies the month's published versions against the checksums they were
published with and repairs a damaged file from a verified copy, before the catalog update and
the inference (so a rerun that fails there has checked them all the same); a damaged newest
version that cannot be repaired is republished as a new version once the inference has made its
products again (:mod:`nationmap.ops.publish`). The record says what was found and done
(``checked``), and why a month has no change table or what area its table covers (``warnings``,
``change_table``).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from nationmap.config import from_dict
from nationmap.data.months import Month, parse_month
from nationmap.data.regions import region_slug, resolve_region
from nationmap.errors import NationmapError, describe, os_error_line
from nationmap.files import JOBS_DIR, atomic_file, read_defaults_table, safe_child, write_json
from nationmap.infer.config import InferConfig
from nationmap.ops.lock import RunLock
from nationmap.ops.publish import (MonthDir, Superseded, VersionState, check_month, clean_stale, content_key, publish,
                                   read_pointer)
from nationmap.records import CatalogUpdate, ChangeCoverage, Failure, RefreshRecord, RunManifest

DEFAULT_SPEC = JOBS_DIR / "refresh.toml"


class RefreshFailed(NationmapError):
    """The refresh ran but could not publish anything (its record says why)."""


@dataclass(frozen=True)
class RefreshSpec:
    """The ``[refresh]`` table of a job spec.

    Attributes:
        raw_dir: where new ALOS-2 files arrive; the catalog is updated from it first ("" skips).
        infer: the inference defaults file (an ``[infer]`` table); a relative path is taken from the
            spec's own directory, so a spec and its defaults travel together.
    """

    raw_dir: str = ""
    infer: str = str(JOBS_DIR / "infer.toml")

    @classmethod
    def load(cls, path: str | Path | None) -> "RefreshSpec":
        path, values = read_defaults_table(path, DEFAULT_SPEC, "refresh", "refresh spec")
        spec = from_dict(cls, values, f"{path}: [refresh] setting")
        if "infer" in values:
            spec = replace(spec, infer=str(path.parent / spec.infer))  # absolute stays absolute
        return spec


def previous_month(today: dt.date | None = None) -> Month:
    """The month that just ended (the default of a monthly refresh)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    first = today.replace(day=1)
    last = first - dt.timedelta(days=1)
    return Month(last.year, last.month)


def month_dir(cfg: InferConfig) -> MonthDir:
    region = resolve_region(cfg.region, cfg.lulc_dir or None)
    return MonthDir(safe_child(cfg.out, region.slug, str(parse_month(cfg.month))))


def mark_interrupted(month: MonthDir) -> None:
    """Records still ``running`` become ``interrupted``: called under the month's lock, so their
    processes are gone."""
    if not month.refreshes.is_dir():
        return
    for path in month.refreshes.glob("*.json"):
        record = RefreshRecord.read_or_none(path)
        if record is not None and record.status == "running":
            write_json(path, record.replace(status="interrupted"), durable=True)


def run_refresh(cfg: InferConfig, spec: RefreshSpec, force: bool = False, log=print) -> RefreshRecord:
    """Run one refresh of ``cfg.region`` / ``cfg.month``; returns its record.

    Raises LockedError if another refresh of the month runs, RefreshFailed if nothing could be
    published (the record is written either way).
    """
    month = month_dir(cfg)
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"refresh-{region_slug(cfg.region)}-{cfg.month}-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    holder = {"run_id": run_id, "started": started.isoformat(timespec="seconds")}
    with RunLock(month.lock, holder, what=f"a refresh of {cfg.region} {cfg.month}"):
        clean_stale(month)
        mark_interrupted(month)
        path = month.refreshes / f"{run_id}.json"
        attempt = _Attempt(path, RefreshRecord(
            run_id=run_id, status="running", region=cfg.region, month=cfg.month, started=holder["started"],
            pid=os.getpid(), host=socket.gethostname(), raw_dir=spec.raw_dir, catalog=cfg.catalog,
            config=cfg.to_dict(), log=str(path.with_suffix(".log"))), log)
        try:
            attempt.say(f"refresh {run_id}: {cfg.region} {cfg.month} -> {month.root}")
            states = _check_published(month, attempt)  # first: whatever happens next, it is checked
            if spec.raw_dir:
                _update_catalog(cfg, spec, attempt)
            _infer_and_publish(cfg, month, attempt, force, states)
        except Exception as exc:
            attempt.update(status="failed", error=_reason(exc))
            attempt.say(f"failed: {attempt.record.error}")
            raise RefreshFailed(attempt.record.error) from None
        finally:
            attempt.finish()
    return attempt.record


def _reason(exc: Exception) -> str:
    """The one line a failed refresh records: an OS error (a full disk) names its path."""
    if isinstance(exc, NationmapError):
        return str(exc)
    return os_error_line(exc)[0] if isinstance(exc, OSError) else describe(exc)


# Bytes of spaces after the running record (JSON allows them): on a full disk the finished record
# is written over them in place, which needs no new block, so a record never stays "running".
RECORD_RESERVE = 8192


class _Attempt:
    """One refresh attempt's record (rewritten as it advances) and its log beside it."""

    def __init__(self, path, record: RefreshRecord, log):
        self.path, self.record, self.log = path, record, log
        self.t0 = time.time()
        with atomic_file(path, durable=True) as f:
            f.write(_record_text(record) + " " * RECORD_RESERVE)

    def update(self, **changes) -> None:
        self.record = self.record.replace(**changes)

    def say(self, message: str) -> None:
        self.log(message)
        try:
            with open(self.record.log, "a") as f:
                f.write(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}\n")
        except OSError:  # a full disk: the terminal has the line, and the record the error
            pass

    def warn(self, message: str) -> None:
        """A warning: in the record's ``warnings`` and on the terminal and log."""
        self.update(warnings=[*self.record.warnings, message])
        self.say(f"warning: {message}")

    def finish(self) -> None:
        if self.record.status == "running":  # Ctrl-C or SIGTERM
            self.update(status="interrupted")
        self.update(finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    seconds=round(time.time() - self.t0, 1))
        try:
            _end_record(self.path, self.record)
        except OSError as exc:
            before = f"{self.record.error}; " if self.record.error else ""
            raise RefreshFailed(f"{before}the refresh record could not be written ({os_error_line(exc)[0]})") from None


def _record_text(record: RefreshRecord) -> str:
    return json.dumps(record.to_json(), indent=1, default=str) + "\n"


def _end_record(path: Path, record: RefreshRecord) -> None:
    """Write the finished record; on a full disk, over the running record's reserved bytes in place."""
    try:
        write_json(path, record, durable=True)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not _overwrite_in_place(path, _record_text(record)):
            raise


def _overwrite_in_place(path: Path, text: str) -> bool:
    """Write ``text`` over the file ``path`` without growing it (padded with spaces); False if it
    does not fit or cannot be written. Not atomic: only for when the atomic write cannot be made."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        if len(data) > size:
            return False
        rest = memoryview(data + b" " * (size - len(data)))
        while rest:
            rest = rest[os.write(fd, rest):]
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _update_catalog(cfg: InferConfig, spec: RefreshSpec, attempt: _Attempt) -> None:
    """Update the catalog from the raw directory. A catalogued file that cannot be read any more
    keeps its row (:func:`~nationmap.data.catalog.build_catalog`), so its month's inference fails
    that scene and the month is ``partial``, never ``ok`` with an acquisition fewer."""
    from nationmap.data.catalog import build_catalog

    report = build_catalog(spec.raw_dir, cfg.catalog, executor=cfg.executor)
    attempt.update(catalog_update=CatalogUpdate(report.added, report.kept, report.removed, report.total,
                                                [dict(f) for f in report.failed], report.stale))
    attempt.say(f"catalog {cfg.catalog}: {report.added} added, {report.removed} removed, "
                f"{report.total} files, {len(report.failed)} unreadable ({report.stale} catalogued before)")


def _change_reference(cfg: InferConfig, month: MonthDir, attempt: _Attempt) -> Path | None:
    """The published version ``latest`` points at for the month before ``cfg.month`` (the change
    tables' reference), read and checked (:func:`~nationmap.infer.tables.read_previous`: its
    manifest, COGs inside it with their checksums, the same grid). None, with a warning in the
    record, when there is none or it cannot be used or maps none of the region's cells: the month's
    maps are published without a change table, and the record says why. A ``previous`` the config
    names is the inference's to read (refused there when unusable)."""
    from nationmap.infer.tables import read_previous

    if cfg.previous:
        return None
    before_month = str(previous_month(parse_month(cfg.month).start.date()))
    before = MonthDir(month.root.parent / before_month)
    n = before.latest_version()
    if n is None:
        attempt.warn(f"no change table: {before_month} has no complete published version")
        return None
    where = f"the published {before_month} v{n}"
    try:
        version = before.version(n)
        previous = read_previous(version, cfg.month, cfg.pixels_per_degree)
    except NationmapError as exc:
        attempt.warn(f"no change table: {where} cannot be used: {exc}")
        return None
    cells = resolve_region(cfg.region, cfg.lulc_dir or None).cell_names
    if not set(previous.cells) & set(cells):
        attempt.warn(f"no change table: {where} maps none of the {len(cells)} cells of {cfg.region} "
                     f"(it maps {', '.join(sorted(previous.cells)[:5]) or 'no cell'})")
        return None
    attempt.say(f"change tables against {where}")
    return version


def _record_change_table(previous: Path, manifest: RunManifest, attempt: _Attempt) -> None:
    """The area the change table covers (km^2 mapped in both months), in the record and the
    summary; a warning when it is none, or leaves out cells mapped this month."""
    from nationmap.products.areas import read_common_area, read_status_km2

    entry = manifest.products.tables.get("change_csv")
    where = f"the published {previous.parent.name} {previous.name}"
    if entry is None:
        attempt.warn(f"no change table against {where}: the run wrote none")
        return
    common = read_common_area(Path(manifest.run_dir) / entry.path)
    attempt.update(change_table=ChangeCoverage(previous.parent.name, str(previous), list(common.cells), common.km2))
    attempt.say(f"change table against {where}: {common.km2:,.1f} km2 mapped in both months "
                f"({len(common.cells)} cells)")
    status = manifest.products.tables.get("change_status_csv")
    if status is not None:
        km2 = read_status_km2(Path(manifest.run_dir) / status.path)
        attempt.say(f"change layers: {km2.get('confirmed', 0.0):,.2f} km2 of LULC change confirmed this month, "
                    f"{km2.get('provisional', 0.0):,.2f} km2 provisional (seen, not yet confirmed)")
    mapped = sorted(c.cell for c in manifest.ok_cells())
    left_out = [c for c in mapped if c not in common.cells]
    if not common.km2 > 0:
        attempt.warn(f"the change table against {where} covers no area mapped in both months")
    elif left_out:
        attempt.warn(f"the change table against {where} leaves out {len(left_out)} of the {len(mapped)} cells "
                     f"mapped this month, not mapped then: {', '.join(left_out[:10])}")


def _check_published(month: MonthDir, attempt: _Attempt) -> list[VersionState]:
    """Check every published version of the month against its checksums and repair what a
    verified copy allows (the staging run, other versions), said and recorded (``checked``; the
    damage left, as failures) before anything else runs. Returns the versions' states."""
    states = check_month(month, repair=True)
    for state in states:
        for damage in state.damage:
            attempt.say(f"v{state.version} damaged: {damage.line()}")
        for note in state.notes:
            attempt.say(f"v{state.version} note: {note}")
    others = [f for f in attempt.record.failures if f.what != "published"]
    attempt.update(checked=[s.record() for s in states], failures=[*others, *_unrepaired(states, None)])
    return states


def _to_supersede(states: list[VersionState], manifest: RunManifest) -> Superseded | None:
    """The damaged newest version to republish (its products are this run's), if there is one,
    with its files damaged now (known when it is replaced: no alarm for them later)."""
    newest = states[-1] if states else None
    if newest is not None and not newest.ok and newest.content_key == content_key(manifest):
        return Superseded(newest.version, tuple(d.path for d in newest.damage if not d.fixed))
    return None


def _unrepaired(states: list[VersionState], supersede: Superseded | None) -> list[Failure]:
    """The damaged files nothing repaired nor a republished version replaced, as failures."""
    replaced = supersede.version if supersede is not None else None
    return [Failure("published", f"v{s.version}/{d.path}", d.reason) for s in states
            if s.version != replaced for d in s.alarms]


def _record_checks(states: list[VersionState], supersede: Superseded | None, version: int,
                   attempt: _Attempt) -> list[Failure]:
    """The checks in the record; the damaged files nothing repaired or superseded, as failures."""
    replaced = supersede.version if supersede is not None else None
    checks = [s.record() for s in states]
    checks = [c.replace(action=f"republished as v{version}") if c.version == replaced else c for c in checks]
    attempt.update(checked=checks)
    for check in checks:
        if check.damaged:
            attempt.say(f"v{check.version}: {len(check.damaged)} damaged files, {check.action}")
    return _unrepaired(states, supersede)


def _infer_and_publish(cfg: InferConfig, month: MonthDir, attempt: _Attempt, force: bool,
                       states: list[VersionState]) -> None:
    """Run the month's inference and publish it (``states``: its published versions, checked;
    checked again after the inference where damage remains)."""
    from nationmap.infer.pipeline import run_inference

    previous = _change_reference(cfg, month, attempt)
    if previous is not None:
        cfg = replace(cfg, previous=str(previous))
    manifest = run_inference(cfg, force=force, log=attempt.say, run_dir=month.staging)
    attempt.update(infer_run_id=manifest.run_id, staging=str(month.staging),
                   failures=[*manifest.failures, *attempt.record.failures], empty_cells=manifest.empty_cells)
    if manifest.status == "failed":
        raise RefreshFailed(f"no cell of {cfg.region} {cfg.month} could be mapped; nothing published")
    if previous is not None:
        _record_change_table(previous, manifest, attempt)
    if not all(s.ok for s in states):  # the staging run just made may hold a verified copy now
        attempt.say("damaged published files remain: checked again against the staging run just made")
        states = _check_published(month, attempt)
    supersede = _to_supersede(states, manifest)
    published = publish(month, month.staging, manifest, attempt.record.run_id, supersede=supersede)
    unrepaired = _record_checks(states, supersede, published["version"], attempt)
    status = "partial" if unrepaired and manifest.status == "ok" else manifest.status
    attempt.update(status=status, version=published["version"], published=published["path"],
                   new_version=published["new"], latest=read_pointer(month.latest),
                   failures=[*manifest.failures, *unrepaired])
    done = ("published" if published["new"] else "unchanged, already published as")
    if supersede is not None:
        done = f"v{supersede.version} could not be repaired: republished as"
    attempt.say(f"{done} v{published['version']} ({manifest.status}); latest -> {attempt.record.latest or 'none'}")
    if unrepaired:
        attempt.say(f"{len(unrepaired)} damaged published files could not be repaired (nationmap verify lists them); "
                    f"the refresh is partial")
