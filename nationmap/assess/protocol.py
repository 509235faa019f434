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

from nationmap.assess.design import (MIN_STRATUM_SAMPLE, Allocation, Buffer, Census, MapLayer, allocate, census, draw,
                                     map_layer, map_values_at, overall_se, sample_size, strata_of)
from nationmap.assess.estimators import LabelledSample, assess
from nationmap.assess.reference import fill_reference  # noqa: F401  (the second step, re-exported)
from nationmap.assess.report import ACCURACY_KINDS, AccuracyReport, build_report, run_table_key, write_report
from nationmap.assess.samples import (SUFFIXES, SampleDesign, StratumRecord, design_path, labelled_sample, read_design,
                                      point_coordinates, read_points, sample_stem, write_sample)
from nationmap.errors import InputError
from nationmap.files import sha256_file, sha256_json


@dataclass(frozen=True)
class DesignOutcome:
    """A written sample: its files and its design."""

    files: tuple[Path, ...]
    design: SampleDesign


def _refuse_overwrite(stem: Path) -> None:
    """A sample may hold a person's labels: it is never replaced."""
    csv = stem.with_name(stem.name + ".csv")
    existing = [p for p in (*(stem.with_name(stem.name + s) for s in SUFFIXES), design_path(csv)) if p.exists()]
    if existing:
        raise InputError(f"{existing[0]} exists: a sample is never overwritten (it may hold labels); choose another --out")


def _points(layer: MapLayer, legend: dict[int, str], pixels: list, strata: dict[int, StratumRecord],
            total_km2: float) -> pd.DataFrame:
    """The sample's rows (see :mod:`nationmap.assess.samples`), in raster and row order."""
    names = list(layer.checksums)  # each raster's name: relative to the products, or the file's
    rows = []
    for i, p in enumerate(sorted(pixels, key=lambda p: (p.raster, p.row, p.col)), start=1):
        s = strata[p.code]
        rows.append({"id": i, "lon": round(p.lon, 8), "lat": round(p.lat, 8), "stratum": p.code, "stratum_name": s.name,
                     "map_class": p.map_code, "map_name": legend[p.map_code], "pixel_km2": p.km2,
                     "stratum_weight": s.area_km2 / total_km2, "inclusion_probability": s.n / s.pixels,
                     "raster": names[p.raster], "row": p.row, "col": p.col, "reference": ""})
    return pd.DataFrame(rows)


def _check_design_options(n: int, allocation: str, seed: int | None, target_se: float,
                          expected_ua: dict[int, float]) -> Allocation:
    """The options refused before the map is read."""
    if seed is not None and seed < 0:
        raise InputError(f"--seed {seed}: a seed is a non-negative integer")
    if not 0 < target_se < 1:
        raise InputError(f"--target-se {target_se}: expected between 0 and 1")
    if n < MIN_STRATUM_SAMPLE:
        raise InputError(f"--n {n}: a sample needs at least {MIN_STRATUM_SAMPLE} points")
    if any(not 0 <= u <= 1 for u in expected_ua.values()):
        raise InputError("an anticipated user's accuracy is between 0 and 1")
    return Allocation.parse(allocation)


def _stratum_name(code: int, legend: dict[int, str], buffers: tuple[Buffer, ...]) -> str:
    for b in buffers:
        if code == b.stratum:
            return f"within {b.pixels} px of {legend.get(b.code, f'class {b.code}')}"
    return legend.get(code, f"class {code}")


def _check_buffers(buffers: tuple[Buffer, ...], tally: Census, nodata: int | None) -> None:
    """A buffer names a class on the map, once, and its stratum code is no code of the map."""
    mapped = tally.map_km2.sum(axis=0)
    seen = set()
    for b in buffers:
        where = f"--buffer {b.code}={b.pixels}"
        if b.code in seen:
            raise InputError(f"{where}: class {b.code} has a buffer already")
        if b.code == nodata or not mapped[b.code] > 0:
            raise InputError(f"{where}: class {b.code} is not on the map")
        if b.stratum == nodata or mapped[b.stratum] > 0:
            raise InputError(f"{where}: its stratum code {b.stratum} is a code of the map")
        seen.add(b.code)


def design_sample(source: str | Path, out: str | Path, n: int, allocation: str = "proportional",
                  seed: int | None = None, product: str = "lulc", target_se: float = 0.01,
                  expected_ua: dict[int, float] | None = None, default_ua: float = 0.8,
                  buffers: tuple[Buffer, ...] = ()) -> DesignOutcome:
    """A stratified random sample of ``n`` pixels of a map's layer ``product``, its strata the
    map's classes (and ``buffers``: strata of the pixels near a class), written as ``out``.csv,
    .gpkg and .design.json (never over an existing one)."""
    stem = sample_stem(out)
    _refuse_overwrite(stem)
    how = _check_design_options(n, allocation, seed, target_se, expected_ua or {})
    layer = map_layer(source, product)
    tally = census(list(layer.rasters), tuple(buffers), layer.nodata)
    _check_buffers(tuple(buffers), tally, layer.nodata)
    strata = strata_of(tally, layer.nodata)
    ua = np.array([(expected_ua or {}).get(c, default_ua) for c in strata.codes])
    counts = allocate(n, strata.weights, strata.pixels, how, ua)
    seed = secrets.randbits(32) if seed is None else seed
    pixels = draw(tally, {c: int(k) for c, k in zip(strata.codes, counts)}, np.random.default_rng(seed))
    legend = {**{c: f"class {c}" for c in strata.map_km2}, **layer.legend}
    records = [StratumRecord(c, _stratum_name(c, legend, tuple(buffers)), int(px), float(km2), int(k))
               for c, px, km2, k in zip(strata.codes, strata.pixels, strata.km2, counts)]
    design = SampleDesign(map=str(layer.source), product=product, classes={str(c): v for c, v in sorted(legend.items())},
                          strata=records, allocation=str(how), seed=seed, n=int(counts.sum()), target_se=target_se,
                          recommended_n=sample_size(strata.weights, ua, target_se),
                          expected_overall_se=overall_se(strata.weights, ua, counts),
                          expected_ua={str(c): float(u) for c, u in zip(strata.codes, ua)}, map_files=layer.checksums,
                          buffers={str(b.code): b.pixels for b in buffers},
                          map_km2={str(c): km2 for c, km2 in strata.map_km2.items()}, created=_now())
    points = _points(layer, legend, pixels, {s.code: s for s in records}, float(strata.km2.sum()))
    stem.parent.mkdir(parents=True, exist_ok=True)
    return DesignOutcome(tuple(write_sample(stem, design, points)), design)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _report(plan: SampleDesign, sample: LabelledSample, path: Path, dropped: int) -> AccuracyReport:
    """The estimates of a checked sample as the report a person and the web map read."""
    result = assess(sample, plan.strata_table(), tuple(plan.legend), mapped_km2=plan.mapped_km2())
    return build_report(result, plan.legend, map_source=plan.map, product=plan.product, sample=str(path.resolve()),
                        dropped=dropped, strata=len(plan.strata), allocation=plan.allocation, seed=plan.seed,
                        created=_now())


@dataclass(frozen=True)
class EstimateOutcome:
    """An estimate written: its files and its report."""

    files: tuple[Path, ...]
    report: AccuracyReport


def _on_another_map(plan: SampleDesign, points: pd.DataFrame, source: str | Path) -> tuple[SampleDesign, pd.DataFrame, int]:
    """The sample read against another map of the same legend (a later month's): each point's map
    class from that map (its no data where it left the point unmapped), the map's class areas in
    the design; the strata stay the design's (the general estimator)."""
    layer = map_layer(source, plan.product)
    nodata = layer.nodata if layer.nodata is not None else -1
    values = map_values_at(layer, *point_coordinates(points, str(source)))
    areas = strata_of(census(list(layer.rasters), (), layer.nodata), layer.nodata).map_km2
    plan = plan.replace(map=str(layer.source), map_files=layer.checksums,
                        map_km2={str(c): km2 for c, km2 in areas.items()})
    return plan, points.assign(map_class=[str(v) for v in values]), nodata


def estimate_sample(sample: str | Path, out: str | Path | None = None, design: str | Path | None = None,
                    drop_unlabelled: bool = False, map_source: str | Path | None = None) -> EstimateOutcome:
    """Accuracy and area of the sample's map (or of ``map_source``, another map of the same legend)
    from its labelled points, written as accuracy.json, accuracy.md and areas_estimated.csv in
    ``out`` (default: ``<sample>-accuracy/`` beside the sample; never into a published version).
    Every check runs before anything is written."""
    sample = Path(sample)
    plan, points, unmapped = read_design(sample, design), read_points(sample), None
    if map_source is not None:
        plan, points, unmapped = _on_another_map(plan, points, map_source)
    labelled, dropped = labelled_sample(plan, points, str(sample), drop_unlabelled, unmapped)
    from nationmap.products.agreement import check_destination  # (its module imports torch: not at start-up)

    out_dir = Path(out) if out is not None else sample.with_name(sample_stem(sample).name + "-accuracy")
    check_destination(out_dir)
    report = _report(plan, labelled, sample, dropped)
    return EstimateOutcome(tuple(write_report(report, out_dir)), report)


@dataclass(frozen=True)
class CheckedSample:
    """A labelled sample read and checked before a run does any work: its design, the estimators'
    arrays, and ``key``: the SHA-256 of its points and design files (what a run's stage keys on)."""

    path: Path
    design: SampleDesign
    sample: LabelledSample
    key: str


def check_sample(path: str | Path, product: str = "lulc") -> CheckedSample:
    """The labelled sample ``path`` of a ``product`` map (CSV or GeoPackage, its design beside it)
    read and checked: InputError on anything :func:`labelled_sample` refuses, an unlabelled point
    included."""
    path = Path(path)
    plan = read_design(path)
    if plan.product != product:
        raise InputError(f"{path}: a sample of the {plan.product} map, not of {product}")
    sample, _ = labelled_sample(plan, read_points(path), str(path))
    return CheckedSample(path.resolve(), plan, sample, sha256_json([sha256_file(path), sha256_file(design_path(path))]))


def run_assessment(checked: CheckedSample, map_files: dict[str, str], out_dir: Path, prefix: str,
                   product: str = "lulc") -> dict[str, Path]:
    """A run's accuracy tables of ``product`` from a sample drawn on this very map: ``map_files``
    (the run's cell COGs of the product, ``cells/<cell>/<file>`` -> SHA-256) must be the design's.
    Returns the manifest's table keys (``lulc_accuracy_json``...) -> the files written."""
    plan = checked.design
    if plan.map_files != map_files:
        raise InputError(f"{checked.path}: drawn on another {product} map (its cells' checksums differ from this "
                         "run's): draw a sample of this month's map (nationmap assess design)")
    files = write_report(_report(plan, checked.sample, checked.path, 0), out_dir, prefix=f"{prefix}_{product}_")
    return {run_table_key(product, kind): path for kind, path in zip(ACCURACY_KINDS, files)}
