"""``nationmap refresh``: the monthly job. Update the catalog from the raw-data location, run
inference for the region's month, publish the products as a new version and move ``latest``.

One refresh per region and month at a time (:class:`~nationmap.ops.lock.RunLock`). Each attempt
leaves a record ``refreshes/<run_id>.json`` (status, times, catalog changes, inference run,
published version, failures) and a log beside it. A killed refresh is simply run again: the
inference resumes in the month's staging directory, and nothing is published until it has
finished, so ``latest`` only ever points at a complete version.

Outcomes: ``ok`` (published, ``latest`` moved), ``partial`` (some scenes or cells failed: the
version is published for inspection but ``latest`` stays), ``failed`` (nothing published).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from nationmap.config import from_dict
from nationmap.data.months import Month, parse_month
from nationmap.data.regions import region_slug, resolve_region
from nationmap.errors import NationmapError, describe
from nationmap.files import JOBS_DIR, read_defaults_table, safe_child, write_json
from nationmap.infer.config import InferConfig
from nationmap.ops.lock import RunLock
from nationmap.ops.publish import MonthDir, clean_stale, publish, read_pointer
from nationmap.records import CatalogUpdate, RefreshRecord

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
            if spec.raw_dir:
                _update_catalog(cfg, spec, attempt)
            _infer_and_publish(cfg, month, attempt, force)
        except Exception as exc:
            attempt.update(status="failed", error=str(exc) if isinstance(exc, NationmapError) else describe(exc))
            attempt.say(f"failed: {attempt.record.error}")
            raise RefreshFailed(attempt.record.error) from None
        finally:
            attempt.finish()
    return attempt.record


class _Attempt:
    """One refresh attempt's record (rewritten as it advances) and its log beside it."""

    def __init__(self, path, record: RefreshRecord, log):
        self.path, self.record, self.log = path, record, log
        self.t0 = time.time()
        write_json(path, record, durable=True)

    def update(self, **changes) -> None:
        self.record = self.record.replace(**changes)

    def say(self, message: str) -> None:
        self.log(message)
        with open(self.record.log, "a") as f:
            f.write(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}\n")

    def finish(self) -> None:
        if self.record.status == "running":  # Ctrl-C or SIGTERM
            self.update(status="interrupted")
        self.update(finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    seconds=round(time.time() - self.t0, 1))
        write_json(self.path, self.record, durable=True)


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


def _previous_version(cfg: InferConfig, month: MonthDir) -> Path | None:
    """The published version ``latest`` points at for the month before ``cfg.month`` (the change
    tables' reference), unless the config names one; None when that month was never published."""
    if cfg.previous:
        return None
    before = MonthDir(month.root.parent / str(previous_month(parse_month(cfg.month).start.date())))
    n = before.latest_version()
    return before.version(n) if n is not None and (before.version(n) / "manifest.json").is_file() else None


def _infer_and_publish(cfg: InferConfig, month: MonthDir, attempt: _Attempt, force: bool) -> None:
    from nationmap.infer.pipeline import run_inference

    previous = _previous_version(cfg, month)
    if previous is not None:
        attempt.say(f"change tables against the published {previous.parent.name} {previous.name}")
        cfg = replace(cfg, previous=str(previous))
    manifest = run_inference(cfg, force=force, log=attempt.say, run_dir=month.staging)
    attempt.update(infer_run_id=manifest.run_id, staging=str(month.staging), failures=manifest.failures,
                   empty_cells=manifest.empty_cells)
    if manifest.status == "failed":
        raise RefreshFailed(f"no cell of {cfg.region} {cfg.month} could be mapped; nothing published")
    published = publish(month, month.staging, manifest, attempt.record.run_id)
    attempt.update(status=manifest.status, version=published["version"], published=published["path"],
                   new_version=published["new"], latest=read_pointer(month.latest))
    attempt.say(f"{'published' if published['new'] else 'unchanged, already published as'} v{published['version']}"
                f" ({manifest.status}); latest -> {attempt.record.latest or 'none'}")
