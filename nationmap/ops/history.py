"""Run history read from the files runs leave behind (no database, no service).

* training: ``<runs>/<name>/summary.json`` beside ``config.json`` (``nationmap train``);
* inference: ``manifest.json`` (:class:`~nationmap.records.RunManifest`; ``nationmap infer``, and
  the staging run of a refresh);
* refresh: ``<products>/<region>/<YYYY-MM>/refreshes/<run_id>.json``
  (:class:`~nationmap.records.RefreshRecord`) and its log beside it.

Records of another format or damaged ones are not runs of this version and are left out.

A refresh record still marked ``running`` whose month lock is free belongs to a process that
died; it is shown as ``interrupted``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nationmap.errors import InputError
from nationmap.files import read_json
from nationmap.ops.lock import is_locked
from nationmap.records import RefreshRecord, RunManifest

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

    def to_dict(self) -> dict:
        return asdict(self)


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


def _training(run_dir: Path, summary: dict) -> RunInfo:
    config = read_json(run_dir / "config.json") or {}
    task = summary.get("task") or config.get("task", "?")
    started = summary.get("started")
    started = _iso(started) if isinstance(started, (int, float)) else started
    inputs = [v for v in (config.get("data"), config.get("init")) if v]
    outputs = _existing(run_dir, ["best"]) + sorted(str(p) for p in run_dir.glob("checkpoint_*"))
    reports = _existing(run_dir, ["curves.png", "curves.csv", "summary.json", "events.jsonl"])
    best = summary.get("best") or {}
    details = {"run_dir": str(run_dir), "epochs": summary.get("epochs"), "preset": config.get("preset")}
    if best:
        details["best"] = f"{best.get('metric')} {best.get('value')} at epoch {best.get('epoch')}"
    failures = [{"what": "run", "id": run_dir.name, "reason": summary["error"]}] if summary.get("error") else []
    return RunInfo(summary.get("run_id") or run_dir.name, f"train-{task}", summary.get("status", "unknown"), started,
                   summary.get("finished"), summary.get("seconds"), str(run_dir / "summary.json"), inputs, outputs,
                   reports, failures, details)


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
        details["areas_km2"] = region_areas(root / areas.path)
    return RunInfo(manifest.run_id, "infer", manifest.status, manifest.started, manifest.finished,
                   manifest.timings.get("total_s"), str(path), [i.path for i in manifest.inputs], outputs, reports,
                   [f.to_json() for f in manifest.failures], details)


def region_areas(csv: Path) -> dict[str, dict[str, float]]:
    """{layer: {class: km^2}} of the region's rows of an area table (``tables/*_areas.csv``)."""
    from nationmap.products.areas import read_region_areas

    rows = read_region_areas(csv)
    return {layer: {r["class"]: round(float(r.area_km2), 1) for _, r in group.iterrows()}
            for layer, group in rows.groupby("layer", sort=False)}


def _refresh(path: Path, record: RefreshRecord) -> RunInfo:
    status = record.status
    if status == "running" and not is_locked(path.parent.parent / ".lock"):
        status = "interrupted"
    inputs = [v for v in (record.raw_dir, record.catalog) if v]
    outputs = [record.published] if record.published else []
    log = path.with_suffix(".log")  # the log is the file beside the record, whatever the record says
    reports = [str(log)] if log.is_file() else []
    details = {k: getattr(record, k) for k in ("region", "month", "version", "new_version", "latest", "infer_run_id",
                                               "staging", "error", "host", "pid") if getattr(record, k) is not None}
    if record.catalog_update is not None:
        details["catalog_update"] = record.catalog_update.to_json()
    return RunInfo(record.run_id, "refresh", status, record.started, record.finished,
                   record.seconds or _duration(record.started, record.finished), str(path),
                   inputs, outputs, reports, [f.to_json() for f in record.failures], details)


def discover(roots: list[str | Path]) -> list[RunInfo]:
    """Every run recorded under ``roots``, newest first."""
    runs: dict[str, RunInfo] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not _PRUNE.match(d))
            found: list[RunInfo] = []
            if "summary.json" in filenames and "config.json" in filenames:
                summary = read_json(here / "summary.json")
                if summary is not None:
                    found.append(_training(here, summary))
            if "manifest.json" in filenames:
                manifest = RunManifest.read_or_none(here / "manifest.json")
                if manifest is not None:
                    found.append(_inference(here / "manifest.json", manifest))
            if here.name == "refreshes":
                for name in filenames:
                    record = RefreshRecord.read_or_none(here / name) if name.endswith(".json") else None
                    if record is not None:
                        found.append(_refresh(here / name, record))
            for info in found:
                runs.setdefault(info.run_id, info)
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
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)


def format_run(run: RunInfo) -> str:
    lines = [f"run       {run.run_id}", f"kind      {run.kind}", f"status    {run.status}",
             f"started   {run.started or '-'}", f"finished  {run.finished or '-'}",
             f"duration  {format_duration(run.seconds)}", f"record    {run.record}"]
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
