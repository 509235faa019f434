"""What an assessment publishes: ``accuracy.json`` (:class:`AccuracyReport`), ``accuracy.md`` (the
tables a person reads) and ``areas_estimated.csv`` (per class: the pixel-count area beside the
estimated area and its 95 % confidence interval)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nationmap.assess.estimators import Z95, Assessment, Estimate
from nationmap.files import atomic_file, atomic_path, write_json
from nationmap.records import Record

ACCURACY_FORMAT = "nationmap-accuracy/1"
# (kind of table, file name): a run's table keys are ``<product>_<kind>`` (run_table_key), its files
# ``<region>_<month>_<product>_<file name>``; an estimate's files are the names alone
ACCURACY_TABLES = (("accuracy_json", "accuracy.json"), ("accuracy_md", "accuracy.md"),
                   ("areas-estimated_csv", "areas_estimated.csv"))
ACCURACY_KINDS = tuple(kind for kind, _ in ACCURACY_TABLES)
ACCURACY_FILES = tuple(name for _, name in ACCURACY_TABLES)


def run_table_key(product: str, kind: str = "accuracy_json") -> str:
    """The manifest's table key of a product's accuracy table (``lulc_accuracy_json``)."""
    return f"{product}_{kind}"


@dataclass(frozen=True)
class EstimateRecord(Record):
    """An estimate, its standard error and the half-width of its 95 % interval (null: undefined)."""

    estimate: float | None
    se: float | None
    ci95: float | None

    @classmethod
    def of(cls, est: Estimate) -> "EstimateRecord":
        return cls(_finite(est.value), _finite(est.se), _finite(est.ci95))


@dataclass(frozen=True)
class ClassAccuracy(Record):
    """One class: the map's (pixel-count) area, the estimated area, user's and producer's accuracy,
    and the sample points mapped as it and referenced as it."""

    code: int
    name: str
    mapped_km2: float | None  # None: strata other than the map's classes (the map's areas are not the strata's)
    area_km2: EstimateRecord
    users: EstimateRecord
    producers: EstimateRecord
    points_mapped: int
    points_reference: int


@dataclass(frozen=True)
class AccuracyReport(Record):
    """An accuracy assessment of one map layer from a labelled stratified sample."""

    FORMAT = ACCURACY_FORMAT

    map: str
    product: str
    sample: str
    points: int
    unlabelled_dropped: int
    strata: int
    allocation: str
    seed: int
    total_km2: float
    overall: EstimateRecord
    classes: list[ClassAccuracy]
    matrix: list[list[float]]  # estimated area proportions, rows map, columns reference (classes order)
    sample_counts: list[list[int]]
    outside_km2: EstimateRecord  # the map's area where the reference holds no class (accuracy is of the rest)
    points_outside: int
    estimator: str = "stratified, Stehman (2014) eqs. 27-29, finite population correction"
    confidence: str = f"95 % (estimate +- {Z95} x standard error)"
    created: str = field(default="")


def build_report(result: Assessment, names: dict[int, str], *, map_source: str, product: str, sample: str,
                 dropped: int, strata: int, allocation: str, seed: int, created: str) -> AccuracyReport:
    """The record of an :class:`Assessment` (``names``: the legend, code -> class name)."""
    counts = np.array(result.sample_counts)
    classes = [ClassAccuracy(code=c, name=names.get(c, f"class {c}"), mapped_km2=_finite(result.mapped_km2[i]),
                             area_km2=EstimateRecord.of(result.area_km2[i]), users=EstimateRecord.of(result.users[i]),
                             producers=EstimateRecord.of(result.producers[i]), points_mapped=int(counts[i].sum()),
                             points_reference=int(counts[:, i].sum()))
               for i, c in enumerate(result.classes)]
    return AccuracyReport(map=map_source, product=product, sample=sample, points=int(counts.sum()) + result.points_outside,
                          unlabelled_dropped=dropped, strata=strata, allocation=allocation, seed=seed,
                          total_km2=round(result.total_km2, 6), overall=EstimateRecord.of(result.overall),
                          classes=classes, matrix=[[round(e.value, 6) for e in row] for row in result.matrix],
                          sample_counts=counts.tolist(), outside_km2=EstimateRecord.of(result.outside_km2),
                          points_outside=result.points_outside, created=created)


def _finite(value: float, digits: int = 6) -> float | None:
    return round(float(value), digits) if np.isfinite(value) else None


def _pm(est: EstimateRecord, digits: int) -> str:
    if est.estimate is None:
        return "n/a"
    return f"{est.estimate:.{digits}f} ± {est.ci95:.{digits}f}" if est.ci95 is not None else f"{est.estimate:.{digits}f}"


def markdown(report: AccuracyReport) -> str:
    """accuracy.md: the headline, the per-class table and the error matrix."""
    lines = [f"# Accuracy and area: {report.product} of {report.map}", "",
             f"Stratified random sample of {report.points} labelled points in {report.strata} strata "
             f"({report.allocation}, seed {report.seed}; {report.unlabelled_dropped} unlabelled left out). "
             f"Estimators: {report.estimator}. Intervals: {report.confidence}.", "",
             f"**Overall accuracy: {_pm(report.overall, 3)}** (area-weighted)", "",
             *([f"{report.points_outside} points fell where the reference holds no class (outside its domain: "
                f"{_pm(report.outside_km2, 2)} km²); the accuracies are of the rest of the map, the areas of all of it.",
                ""] if report.points_outside else []),
             "| Class | Map area km² (pixel count) | Estimated area km² (95 % CI) | User's accuracy | "
             "Producer's accuracy | Points mapped / reference |", "|---|---:|---:|---:|---:|---:|"]
    for c in report.classes:
        mapped = "n/a" if c.mapped_km2 is None else f"{c.mapped_km2:.2f}"
        lines.append(f"| {c.name} | {mapped} | {_pm(c.area_km2, 2)} | {_pm(c.users, 3)} | "
                     f"{_pm(c.producers, 3)} | {c.points_mapped} / {c.points_reference} |")
    names = [c.name for c in report.classes]
    lines += ["", "Error matrix in estimated area proportions (rows: map, columns: reference):", "",
              "| map \\ reference | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for name, row in zip(names, report.matrix)]
    return "\n".join(lines) + "\n"


def area_table(report: AccuracyReport) -> pd.DataFrame:
    """areas_estimated.csv: one row per class."""
    return pd.DataFrame([{"class": c.code, "name": c.name, "mapped_km2": c.mapped_km2,
                          "area_estimate_km2": c.area_km2.estimate, "se_km2": c.area_km2.se,
                          "ci95_km2": c.area_km2.ci95, "users_accuracy": c.users.estimate,
                          "users_ci95": c.users.ci95, "producers_accuracy": c.producers.estimate,
                          "producers_ci95": c.producers.ci95} for c in report.classes])


def write_report(report: AccuracyReport, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """accuracy.json, accuracy.md and areas_estimated.csv in ``out_dir``, their names after
    ``prefix`` (a run's tables: ``<tag>_lulc_``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, csv_path = (out_dir / f"{prefix}{name}" for name in ACCURACY_FILES)
    write_json(json_path, report.to_json())
    with atomic_file(md_path) as f:
        f.write(markdown(report))
    with atomic_path(csv_path) as tmp:
        area_table(report).to_csv(tmp, index=False)
    return [json_path, md_path, csv_path]


def append_summary(path: str | Path, report: AccuracyReport) -> None:
    """Add the headline and per-class table of ``report`` to a Markdown file (the demo's
    agreement.md), replacing the section an earlier run added; rewritten whole."""
    path = Path(path)
    marker = "\n## Accuracy and area from a stratified sample\n"
    text = path.read_text() if path.is_file() else ""
    text = text.split(marker)[0].rstrip("\n") + "\n" + marker + "\n" + markdown(report).split("\n", 2)[2]
    with atomic_file(path) as f:
        f.write(text)
