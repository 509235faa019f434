"""Run history read from the files runs leave behind (no database, no service).

* training: ``<runs>/<name>/summary.json`` beside ``config.json`` (``nationmap train``);
* inference: ``manifest.json`` (:class:`~nationmap.records.RunManifest`; ``nationmap infer``, and
  the staging run of a refresh);
* refresh: ``<products>/<region>/<YYYY-MM>/refreshes/<run_id>.json``
  (:class:`~nationmap.records.RefreshRecord`) and its log beside it.

Records of another format (another version's, or not nationmap's) are left out. A damaged record
(not JSON, a missing or mistyped field) is listed as ``damaged`` with its reason, under the path
of the record, and never stops the listing of the others; so is an area table that cannot be
read, as one line of its run. A refresh's log is the file beside its record, by the path rule:
a link leading out of the record's directory is refused.

A refresh record still marked ``running`` whose month lock is free belongs to a process that
died; it is shown as ``interrupted``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nationmap.config import check_value
from nationmap.errors import InputError
from nationmap.files import safe_child
from nationmap.ops.lock import is_locked
from nationmap.records import RUN_FORMAT, RecordError, RefreshRecord, RunManifest

# directories that hold products or checkpoints, never run records
_PRUNE = re.compile(r"^(\.work|v\d+|cells|mosaic|quicklooks|tables|logs|stac|checkpoint_.*|best|latest|models?)$")


@dataclass
class RunInfo:
    run_id: str
    kind: str  # train-pretrain | train-lulc | train-water | infer | refresh
    status: str
    started: str | None
    finished: str | None
    seconds: float | None
    record: str  # the file this was read from
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    damage: str | None = None  # why the record could not be read (status "damaged")

    def to_dict(self) -> dict:
        return asdict(self)


class ForeignRecord(Exception):
    """A record of another format: not a run of this version, left out of the history."""


def _load(path: Path, fmt: str | None) -> dict:
    """The JSON object in ``path``; RecordError if it is not one, ForeignRecord if it declares
    another format than ``fmt`` (None: any)."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: not a readable JSON record ({type(exc).__name__})") from None
    if not isinstance(values, dict):
        raise RecordError(f"{path}: not a record (a JSON {type(values).__name__}, not an object)")
    if fmt is not None and isinstance(values.get("format"), str) and values["format"] != fmt:
        raise ForeignRecord(values["format"])
    return values


def _damaged(record: Path, root: Path, kind: str, reason: str) -> RunInfo:
    """A record that cannot be read, listed under its path below ``root`` with the reason."""
    rel = record.relative_to(root) if record.is_relative_to(root) else record
    return RunInfo(str(rel), kind, "damaged", None, None, None, str(record), damage=reason)


@dataclass(frozen=True)
class BestEpoch:
    metric: str
    value: float
    epoch: int


@dataclass(frozen=True)
class TrainingSummary:
    """What history reads of a training run's ``summary.json`` and ``config.json`` (typed: a
    mistyped value makes the run damaged, never a crash)."""

    run_id: str | None
    task: str | None
    status: str
    started: str | None
    finished: str | None
    seconds: float | None
    epochs: int | None
    error: str | None
    best: BestEpoch | None
    data: str | None
    init: str | None
    preset: str | None

    @classmethod
    def read(cls, run_dir: Path) -> "TrainingSummary":
        summary = _load(run_dir / "summary.json", RUN_FORMAT)
        try:
            config = _load(run_dir / "config.json", None)
        except RecordError:
            config = {}  # the settings are details; the summary is the record

        def get(values: dict, key: str, hint: Any, where: str, default: Any = None) -> Any:
            return check_value(values.get(key, default), hint, f"{where}: {key}")

        where, cfg = str(run_dir / "summary.json"), str(run_dir / "config.json")
        started = get(summary, "started", str | float | None, where)
        best = get(summary, "best", dict | None, where) or None
        return cls(get(summary, "run_id", str | None, where), get(summary, "task", str | None, where)
                   or get(config, "task", str | None, cfg), get(summary, "status", str, where, "unknown"),
                   _iso(started) if isinstance(started, float) else started, get(summary, "finished", str | None, where),
                   get(summary, "seconds", float | None, where), get(summary, "epochs", int | None, where),
                   get(summary, "error", str | None, where),
                   None if best is None else BestEpoch(get(best, "metric", str, f"{where}: best"),
                                                       get(best, "value", float, f"{where}: best"),
                                                       get(best, "epoch", int, f"{where}: best")),
                   get(config, "data", str | None, cfg), get(config, "init", str | None, cfg),
                   get(config, "preset", str | None, cfg))


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def _duration(started: str | None, finished: str | None) -> float | None:
    try:
        return round((dt.datetime.fromisoformat(finished) - dt.datetime.fromisoformat(started)).total_seconds(), 1)
    except (TypeError, ValueError):
        return None


def _existing(root: Path, names) -> list[str]:
    return [str(root / n) for n in names if (root / n).exists()]


def _training(run_dir: Path, summary: TrainingSummary) -> RunInfo:
    inputs = [v for v in (summary.data, summary.init) if v]
    outputs = _existing(run_dir, ["best"]) + sorted(str(p) for p in run_dir.glob("checkpoint_*"))
    reports = _existing(run_dir, ["curves.png", "curves.csv", "summary.json", "events.jsonl"])
    details = {"run_dir": str(run_dir), "epochs": summary.epochs, "preset": summary.preset}
    if summary.best is not None:
        best = summary.best
        details["best"] = f"{best.metric} {best.value} at epoch {best.epoch}"
    failures = [{"what": "run", "id": run_dir.name, "reason": summary.error}] if summary.error else []
    return RunInfo(summary.run_id or run_dir.name, f"train-{summary.task or '?'}", summary.status, summary.started,
                   summary.finished, summary.seconds, str(run_dir / "summary.json"), inputs, outputs, reports,
                   failures, details)


def _inference(path: Path, manifest: RunManifest) -> RunInfo:
    root = path.parent
    products = manifest.products
    outputs = [str(root / e.path) for group in ("mosaic", "vrt") for e in getattr(products, group).values()]
    outputs += sorted({str(root / "cells" / c.cell) for c in manifest.ok_cells()})
    reports = [str(root / e.path) for e in products.quicklooks.values()]
    reports += [str(root / e.path) for e in products.tables.values()]
    reports += _existing(root, ["stac/catalog.json"])
    details = {"run_dir": str(root), "region": manifest.region, "month": manifest.month,
               "scenes": f"{sum(s.ok for s in manifest.scenes)}/{len(manifest.scenes)} ok",
               "empty_cells": manifest.empty_cells, "models": {t: m.to_json() for t, m in manifest.models.items()}}
    areas = products.tables.get("areas_csv")
    if areas is not None and (root / areas.path).is_file():
        try:
            details["areas_km2"] = region_areas(root / areas.path)
        except InputError as exc:  # one line of the run, never the end of the listing
            details["areas"] = f"unreadable: {exc}"
    return RunInfo(manifest.run_id, "infer", manifest.status, manifest.started, manifest.finished,
                   manifest.timings.get("total_s"), str(path), [i.path for i in manifest.inputs], outputs, reports,
                   [f.to_json() for f in manifest.failures], details)


def region_areas(csv: Path) -> dict[str, dict[str, float]]:
    """{layer: {class: km^2}} of the region's rows of an area table (``tables/*_areas.csv``);
    InputError naming the file if it cannot be read whole (cut short, a column or value missing)."""
    from nationmap.products.areas import read_region_areas

    try:
        rows = read_region_areas(csv)
        areas = {str(layer): {str(r["class"]): float(r.area_km2) for _, r in group.iterrows()}
                 for layer, group in rows.groupby("layer", sort=False)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # pandas' parse errors are ValueErrors
        raise InputError(f"{csv}: not a readable area table ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not areas or not all(math.isfinite(v) for classes in areas.values() for v in classes.values()):
        raise InputError(f"{csv}: not a readable area table (no region row, or an area that is not a number)")
    return {layer: {name: round(km2, 1) for name, km2 in classes.items()} for layer, classes in areas.items()}


def _refresh(path: Path, record: RefreshRecord) -> RunInfo:
    status = record.status
    if status == "running" and not is_locked(path.parent.parent / ".lock"):
        status = "interrupted"
    inputs = [v for v in (record.raw_dir, record.catalog) if v]
    outputs = [record.published] if record.published else []
    try:  # the log is the file beside the record, whatever the record says, and stays beside it
        reports = [str(refresh_log(path))]
    except InputError:
        reports = []
    details = {k: getattr(record, k) for k in ("region", "month", "version", "new_version", "latest", "infer_run_id",
                                               "staging", "error", "host", "pid") if getattr(record, k) is not None}
    if record.catalog_update is not None:
        details["catalog_update"] = record.catalog_update.to_json()
    return RunInfo(record.run_id, "refresh", status, record.started, record.finished,
                   record.seconds or _duration(record.started, record.finished), str(path),
                   inputs, outputs, reports, [f.to_json() for f in record.failures], details)


def refresh_log(record: str | Path) -> Path:
    """The log of the refresh whose record is ``record``: the ``.log`` file beside it, by the path
    rule (a link leading out of the record's directory is refused); InputError if there is none."""
    record = Path(record)
    log = safe_child(record.parent, record.with_suffix(".log").name)
    if not log.is_file():
        raise InputError(f"run {record.stem} has no log")
    return log


def _training_run(here: Path, root: Path) -> RunInfo | None:
    try:
        return _training(here, TrainingSummary.read(here))
    except ForeignRecord:
        return None
    except InputError as exc:  # RecordError, or a mistyped value
        return _damaged(here / "summary.json", root, "train", str(exc))


def _inference_run(path: Path, root: Path) -> RunInfo | None:
    try:
        manifest = RunManifest.from_json(_load(path, RUN_FORMAT), path).replace(run_dir=str(path.parent))
        return _inference(path, manifest)
    except ForeignRecord:
        return None
    except InputError as exc:
        return _damaged(path, root, "infer", str(exc))


def _refresh_run(path: Path, root: Path) -> RunInfo | None:
    try:
        return _refresh(path, RefreshRecord.from_json(_load(path, RUN_FORMAT), path))
    except ForeignRecord:
        return None
    except InputError as exc:
        return _damaged(path, root, "refresh", str(exc))


def discover(roots: list[str | Path]) -> list[RunInfo]:
    """Every run recorded under ``roots``, newest first; damaged records last, each by its path."""
    runs: dict[str, RunInfo] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not _PRUNE.match(d))
            found: list[RunInfo | None] = []
            if "summary.json" in filenames and "config.json" in filenames:
                found.append(_training_run(here, root))
            if "manifest.json" in filenames:
                found.append(_inference_run(here / "manifest.json", root))
            if here.name == "refreshes":
                found += [_refresh_run(here / name, root) for name in sorted(filenames) if name.endswith(".json")]
            for info in filter(None, found):
                runs.setdefault(info.record if info.damage else info.run_id, info)
    return sorted(runs.values(), key=lambda r: r.started or "", reverse=True)


def find_run(roots: list[str | Path], run_id: str) -> RunInfo:
    """The run whose id is ``run_id`` (or starts with it, if only one does)."""
    runs = discover(roots)
    exact = [r for r in runs if r.run_id == run_id]
    matches = exact or [r for r in runs if r.run_id.startswith(run_id)]
    if not matches:
        raise InputError(f"no run {run_id!r} under {', '.join(map(str, roots))} (nationmap runs list shows them)")
    if len(matches) > 1:
        raise InputError(f"{run_id!r} matches {len(matches)} runs: {', '.join(r.run_id for r in matches[:5])}")
    return matches[0]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def format_table(runs: list[RunInfo]) -> str:
    rows = [("RUN_ID", "KIND", "STATUS", "STARTED", "DURATION", "FAILURES")]
    rows += [(r.run_id, r.kind, r.status, (r.started or "-")[:19], format_duration(r.seconds), str(len(r.failures)))
             for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines += [f"damaged {r.run_id}: {r.damage}" for r in runs if r.damage]
    return "\n".join(lines)


def format_run(run: RunInfo) -> str:
    lines = [f"run       {run.run_id}", f"kind      {run.kind}", f"status    {run.status}",
             f"started   {run.started or '-'}", f"finished  {run.finished or '-'}",
             f"duration  {format_duration(run.seconds)}", f"record    {run.record}"]
    if run.damage:
        lines.append(f"damage    {run.damage}")
    for key, value in run.details.items():
        if key == "areas_km2":  # a table, one layer per line
            lines.append("areas (km^2, the region):")
            lines += [f"  {layer}: " + ", ".join(f"{name} {km2:,.1f}" for name, km2 in classes.items())
                      for layer, classes in value.items()]
        else:
            lines.append(f"{key:<9} {value}")
    for title, items in (("inputs", run.inputs), ("outputs", run.outputs), ("reports", run.reports)):
        lines.append(f"{title} ({len(items)}):")
        lines += [f"  {item}" for item in items[:20]]
        if len(items) > 20:
            lines.append(f"  ... {len(items) - 20} more")
    lines.append(f"failures ({len(run.failures)}):")
    lines += [f"  {f.get('what', '')} {f.get('id', '')}: {f.get('reason', '')}" for f in run.failures]
    return "\n".join(lines)
