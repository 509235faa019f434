"""The three steps of an accuracy assessment, one function each (the CLI bodies call them):
:func:`design_sample` (a stratified sample of a map, ready for labelling), :func:`fill_reference`
(labels from reference tiles, where they exist) and :func:`estimate_sample` (accuracy and area
with confidence intervals, written as ``accuracy.json``, ``accuracy.md`` and an area table)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from nationmap.assess.design import Allocation, allocate, census, draw, map_layer, overall_se, sample_size
from nationmap.assess.estimators import assess
from nationmap.assess.reference import fill_reference  # noqa: F401  (the second step, re-exported)
from nationmap.assess.report import AccuracyReport, build_report, write_report
from nationmap.assess.samples import (SUFFIXES, SampleDesign, StratumRecord, design_path, labelled_sample, read_design,
                                      read_points, write_sample)
from nationmap.errors import InputError
from nationmap.products.agreement import check_destination


@dataclass(frozen=True)
class DesignOutcome:
    """A written sample: its files and its design."""

    files: tuple[Path, ...]
    design: SampleDesign


def _refuse_overwrite(stem: Path) -> None:
    """A sample may hold a person's labels: it is never replaced."""
    existing = [p for p in (*(stem.with_name(stem.name + s) for s in SUFFIXES), design_path(stem.with_name(stem.name + ".csv")))
                if p.exists()]
    if existing:
        raise InputError(f"{existing[0]} exists: a sample is never overwritten (it may hold labels); choose another --out")


def _points(layer, tally, pixels, design_strata: dict[int, StratumRecord], total_km2: float) -> pd.DataFrame:
    pixels = sorted(pixels, key=lambda p: (p.raster, p.row, p.col))
    rows = []
    for i, p in enumerate(pixels, start=1):
        s = design_strata[p.code]
        rows.append({"id": i, "lon": round(p.lon, 8), "lat": round(p.lat, 8), "stratum": p.code, "stratum_name": s.name,
                     "map_class": p.code, "map_name": s.name, "pixel_km2": p.km2,
                     "stratum_weight": s.area_km2 / total_km2, "inclusion_probability": s.n / s.pixels,
                     "raster": str(tally.rasters[p.raster].relative_to(layer.source)) if layer.source.is_dir()
                     else tally.rasters[p.raster].name, "row": p.row, "col": p.col, "reference": ""})
    return pd.DataFrame(rows)


def design_sample(source: str | Path, out: str | Path, n: int, allocation: str = "proportional",
                  seed: int | None = None, product: str = "lulc", target_se: float = 0.01,
                  expected_ua: dict[int, float] | None = None, default_ua: float = 0.8) -> DesignOutcome:
    """A stratified random sample of ``n`` pixels of a map's layer ``product``, its strata the
    map's classes, written as ``out``.csv, .gpkg and .design.json (never over an existing one)."""
    stem = Path(out)
    _refuse_overwrite(stem)
    how = Allocation.parse(allocation)
    layer = map_layer(source, product)
    tally = census(list(layer.rasters))
    px, km2 = tally.pixels.sum(axis=0), tally.km2.sum(axis=0)
    codes = [c for c in range(len(px)) if px[c] > 0 and c != layer.nodata]
    if not codes:
        raise InputError(f"{source}: the {product} layer has no mapped pixel")
    weights = km2[codes] / km2[codes].sum()
    ua = np.array([(expected_ua or {}).get(c, default_ua) for c in codes])
    counts = allocate(n, weights, px[codes], how, ua)
    seed = secrets.randbits(32) if seed is None else seed
    pixels = draw(tally, {c: int(k) for c, k in zip(codes, counts)}, np.random.default_rng(seed))
    strata = [StratumRecord(c, layer.legend.get(c, f"class {c}"), int(px[c]), float(km2[c]), int(k))
              for c, k in zip(codes, counts)]
    design = SampleDesign(map=str(layer.source), product=product,
                          classes={str(c): name for c, name in {**layer.legend, **{s.code: s.name for s in strata}}.items()},
                          strata=strata, allocation=str(how), seed=seed, n=int(counts.sum()), target_se=target_se,
                          recommended_n=sample_size(weights, ua, target_se),
                          expected_overall_se=overall_se(weights, ua, counts),
                          expected_ua={str(c): float(u) for c, u in zip(codes, ua)}, map_files=layer.checksums,
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    points = _points(layer, tally, pixels, {s.code: s for s in strata}, float(km2[codes].sum()))
    stem.parent.mkdir(parents=True, exist_ok=True)
    return DesignOutcome(tuple(write_sample(stem, design, points)), design)


@dataclass(frozen=True)
class EstimateOutcome:
    """An estimate written: its files and its report."""

    files: tuple[Path, ...]
    report: AccuracyReport


def estimate_sample(sample: str | Path, out: str | Path | None = None, design: str | Path | None = None,
                    drop_unlabelled: bool = False) -> EstimateOutcome:
    """Accuracy and area of the sample's map from its labelled points, written as accuracy.json,
    accuracy.md and areas_estimated.csv in ``out`` (default: beside the sample; never into a
    published version). Every check runs before anything is written."""
    sample = Path(sample)
    plan = read_design(sample, design)
    labelled, dropped = labelled_sample(plan, read_points(sample), str(sample), drop_unlabelled)
    out_dir = Path(out) if out is not None else sample.parent
    check_destination(out_dir)
    result = assess(labelled, plan.strata_table(), tuple(plan.legend))
    report = build_report(result, plan.legend, map_source=plan.map, product=plan.product, sample=str(sample.resolve()),
                          dropped=dropped, strata=len(plan.strata), allocation=plan.allocation, seed=plan.seed,
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return EstimateOutcome(tuple(write_report(report, out_dir)), report)
