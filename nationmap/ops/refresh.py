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
from dataclasses import dataclass
from pathlib import Path

from nationmap.data.months import Month, parse_month
from nationmap.data.regions import region_slug, resolve_region
from nationmap.errors import NationmapError, describe
from nationmap.files import JOBS_DIR, read_defaults_table, read_json, safe_child, write_json
from nationmap.infer.config import InferConfig
from nationmap.ops.lock import RunLock
from nationmap.ops.publish import MonthDir, clean_stale, publish, read_pointer

RECORD_FORMAT = "nationmap-run/1"
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
        unknown = sorted(set(values) - {"raw_dir", "infer"})
        if unknown:
            raise NationmapError(f"{path}: unknown [refresh] setting(s): {', '.join(unknown)}")
        values = {k: str(v) for k, v in values.items()}
        if "infer" in values:
            values["infer"] = str(path.parent / values["infer"])  # absolute stays absolute
        return cls(**values)


def previous_month(today: dt.date | None = None) -> Month:
    """The month that just ended (the default of a monthly refresh)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    first = today.replace(day=1)
    last = first - dt.timedelta(days=1)
    return Month(last.year, last.month)


def month_dir(cfg: InferConfig) -> MonthDir:
    region = resolve_region(cfg.region, cfg.lulc_dir or None)
    return MonthDir(safe_child(cfg.out, region_slug(region.name), str(parse_month(cfg.month))))


def mark_interrupted(month: MonthDir) -> None:
    """Records still ``running`` become ``interrupted``: called under the month's lock, so their
    processes are gone."""
    if not month.refreshes.is_dir():
        return
    for path in month.refreshes.glob("*.json"):
        record = read_json(path)
        if record and record.get("status") == "running":
            record["status"] = "interrupted"
            write_json(path, record)


def run_refresh(cfg: InferConfig, spec: RefreshSpec, force: bool = False, log=print) -> dict:
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
        record_path = month.refreshes / f"{run_id}.json"
        log_path = record_path.with_suffix(".log")
        record = {"format": RECORD_FORMAT, "kind": "refresh", "run_id": run_id, "status": "running",
                  "started": holder["started"], "finished": None, "region": cfg.region, "month": cfg.month,
                  "pid": os.getpid(), "host": socket.gethostname(), "raw_dir": spec.raw_dir,
                  "catalog": cfg.catalog, "config": cfg.to_dict(), "log": str(log_path), "failures": []}
        write_json(record_path, record)
        t0 = time.time()

        def say(message: str) -> None:
            log(message)
            with open(log_path, "a") as f:
                f.write(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}\n")

        try:
            say(f"refresh {run_id}: {cfg.region} {cfg.month} -> {month.root}")
            if spec.raw_dir:
                from nationmap.data.catalog import build_catalog

                report = build_catalog(spec.raw_dir, cfg.catalog, executor=cfg.executor)
                record["catalog_update"] = {"added": report.added, "kept": report.kept, "removed": report.removed,
                                            "total": report.total, "failed": report.failed}
                say(f"catalog {cfg.catalog}: {report.added} added, {report.removed} removed, "
                    f"{report.total} files, {len(report.failed)} unreadable")
            from nationmap.infer.pipeline import run_inference

            manifest = run_inference(cfg, force=force, log=say, run_dir=month.staging)
            record.update(infer_run_id=manifest["run_id"], staging=str(month.staging),
                          failures=manifest["failures"], empty_cells=manifest["empty_cells"])
            if manifest["status"] == "failed":
                raise RefreshFailed(f"no cell of {cfg.region} {cfg.month} could be mapped; nothing published")
            published = publish(month, month.staging, manifest, run_id)
            record.update(status=manifest["status"], version=published["version"], published=published["path"],
                          new_version=published["new"], latest=read_pointer(month.latest))
            say(f"{'published' if published['new'] else 'unchanged, already published as'} v{published['version']}"
                f" ({manifest['status']}); latest -> {record['latest'] or 'none'}")
        except Exception as exc:
            record.update(status="failed", error=str(exc) if isinstance(exc, NationmapError) else describe(exc))
            say(f"failed: {record['error']}")
            raise RefreshFailed(record["error"]) from None
        finally:
            if record["status"] == "running":  # Ctrl-C or SIGTERM
                record["status"] = "interrupted"
            record.update(finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                          seconds=round(time.time() - t0, 1))
            write_json(record_path, record)
    return record
