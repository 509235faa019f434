"""Agreement of a run's cell products with reference LULC tiles on the same grid.

Used by the demo against the synthetic truth, by ``nationmap eval products`` and the quality
benchmark (and usable against JAXA's tiles for a real month): every written cell's ``lulc``
layer is compared pixel for pixel with the reference tile remapped to the model's scheme
(9 classes), and ``water`` with water / non-water. Beside IoU: the boundary F-score and the
recall of thin water (:class:`nationmap.metrics.StructureMeter`). With a baseline run (the same
region and month mapped by the per-pixel baseline's bundles) both are scored on the pixels
that both mapped, with the training split's majority class as a third row. A product that does
not line up with its reference tile (grid, size) is an error, not a resampling.

A reference code that is not one of the class table's (JAXA's no-data code aside) is unknown:
never scored, counted in ``reference_unknown_pixels``; codes are compared as they are, never cast
into the table's range first (a uint16 code 257 is not class 1). References holding no known code
where the run mapped are bad input. The agreement is never written into a published version
(``vN`` of a products root, or ``latest`` leading to one): its files are the version's checksummed
record; ``out`` puts the agreement elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from nationmap.data.lulc import ClassTable, LabelScheme, find_lulc_tiles, load_class_table
from nationmap.errors import InputError
from nationmap.files import atomic_file, write_json
from nationmap.metrics import BASELINE_ROW, MODEL_ROW, MapCounts, MethodReport, report_methods, water_index
from nationmap.records import BundleMeta, RecordError, RunManifest

AGREEMENT_FORMAT = "nationmap-agreement/1"
AGREEMENT_FILES = ("agreement.json", "agreement.md")
_VERSION = re.compile(r"^v\d+$")


@dataclass(frozen=True)
class ProductAgreement:
    """One product's agreement (lulc or water): the methods on the same pixels, and the model's
    confusion matrix (rows reference, columns map)."""

    pixels: int
    confusion_matrix: tuple[tuple[int, ...], ...]
    report: MethodReport

    def to_dict(self) -> dict:
        return {**self.report.model.to_dict(), "pixels": self.pixels,
                "confusion_matrix": [list(r) for r in self.confusion_matrix], "methods": self.report.to_dict()}


@dataclass(frozen=True)
class Agreement:
    """A run's products against reference tiles (``to_dict``: RUN/agreement.json; ``table``:
    RUN/agreement.md). ``products`` holds the products the run mapped."""

    run: str
    reference: str
    cells: tuple[str, ...]
    baseline_run: str | None
    products: dict[str, ProductAgreement]
    table: str
    reference_unknown_pixels: int = 0  # reference pixels holding a code the class table does not know

    def to_dict(self) -> dict:
        return {"format": AGREEMENT_FORMAT, "run": self.run, "reference": self.reference, "cells": list(self.cells),
                "baseline_run": self.baseline_run, "reference_unknown_pixels": self.reference_unknown_pixels,
                **{p: a.to_dict() for p, a in self.products.items()}}


@dataclass(frozen=True)
class _Product:
    scheme: LabelScheme
    index: np.ndarray  # (256,) product code -> class index, 255 = no data / unknown

    @classmethod
    def of(cls, scheme: LabelScheme) -> "_Product":
        return cls(scheme, scheme.code_index())


def published_version(path: str | Path) -> Path | None:
    """The published version (``vN`` beside a month's ``latest`` or holding ``version.json``) that
    ``path`` is or lies in, links resolved; None if it is in none."""
    resolved = Path(path).resolve()
    for directory in (resolved, *resolved.parents):
        if _VERSION.match(directory.name) and ((directory / "version.json").is_file()
                                               or (directory.parent / "latest").is_symlink()):
            return directory
    return None


def check_destination(out: str | Path) -> None:
    """Refuse to write an agreement into a published version (InputError)."""
    version = published_version(out)
    if version is not None:
        raise InputError(f"{out} is in the published version {version}, which nationmap never changes; "
                         "write the agreement elsewhere with --out DIR")


def _read_run(run_dir: Path) -> RunManifest:
    if not (run_dir / "manifest.json").is_file():
        raise InputError(f"{run_dir}: no run manifest (not an inference run directory)")
    return RunManifest.read(run_dir / "manifest.json")


def _majorities(baseline: RunManifest | None) -> dict[str, str | None]:
    """Per product, the training split's majority class as the baseline run's bundles recorded it
    (None without a baseline run, or when a bundle records none or cannot be read)."""
    from nationmap.baseline.bundle import training_majority

    out = {}
    for product in ("lulc", "water"):
        entry = baseline.models.get(product) if baseline is not None else None
        try:
            out[product] = None if entry is None else training_majority(BundleMeta.read(Path(entry.path) / "model.json"))
        except (RecordError, OSError):
            out[product] = None
    return out


def _layer(run_dir: Path, cell: str, entry, grid, reference: Path) -> np.ndarray:
    with rasterio.open(run_dir / "cells" / cell / entry.path) as ds:
        if (ds.transform, ds.shape, ds.crs) != grid:
            raise InputError(f"{entry.path} does not line up with {reference.name}")
        return ds.read(1)


def map_agreement(run_dir: str | Path, reference_dir: str | Path, baseline_run: str | Path | None = None,
                  write: bool = True, out: str | Path | None = None) -> Agreement:
    """Per-class IoU / accuracy (LULC), water IoU / precision / recall, boundary F-score and
    thin-water recall of a run's products, beside the baseline run's and the majority class's;
    written (``write``) as agreement.json and agreement.md in ``out`` (default: the run)."""
    run_dir = Path(run_dir)
    out = run_dir if out is None else Path(out)
    if write:
        check_destination(out)
    manifest = _read_run(run_dir)
    runs = {MODEL_ROW: (run_dir, {r.cell: r for r in manifest.ok_cells()})}
    base = None
    if baseline_run is not None:
        base = _read_run(Path(baseline_run))
        if (base.region, base.month) != (manifest.region, manifest.month):
            raise InputError(f"baseline run {baseline_run} maps {base.region} {base.month}, "
                             f"not {manifest.region} {manifest.month}")
        runs[BASELINE_ROW] = (Path(baseline_run), {r.cell: r for r in base.ok_cells()})
    tiles = find_lulc_tiles(reference_dir)
    table = load_class_table()
    products = {"lulc": _Product.of(table.scheme("lulc9")), "water": _Product.of(table.scheme("water"))}
    counts = {p: {row: MapCounts.new(len(prod.scheme.classes), water_index(prod.scheme.names)) for row in runs}
              for p, prod in products.items()}
    cells = [c for c in manifest.cells if c in tiles and c in runs[MODEL_ROW][1]]
    if not cells:
        raise InputError(f"{run_dir}: no written cell has a reference tile in {reference_dir}")
    cells = [c for c in cells if all(c in recs for _, recs in runs.values())]
    if not cells:
        raise InputError(f"baseline run {baseline_run} wrote none of the cells of {run_dir}")
    known = unknown = 0
    for cell in cells:
        k, u = _score_cell(cell, tiles[cell], runs, products, counts, table)
        known, unknown = known + k, unknown + u
    if not known:
        raise InputError(f"the reference tiles in {reference_dir} hold no code of the class table {table.name} "
                         f"over the run's cells ({unknown:,} pixels of codes it does not know, the rest no data)")
    return _report(run_dir, reference_dir, cells, base, counts, products, out if write else None, unknown)


def _reference_codes(tile: Path, truth: np.ndarray, table: ClassTable) -> tuple[np.ndarray, int, int]:
    """The reference's codes where the class table knows them, its no-data code elsewhere (compared
    in the tile's own type: no cast wraps a code into the table's range); and the numbers of known
    pixels and of pixels holding a code the table does not know."""
    if not np.issubdtype(truth.dtype, np.integer):
        raise InputError(f"{tile}: a reference holds integer class codes, not {truth.dtype} values")
    known = np.isin(truth, table.codes)
    unknown = ~known & (truth != table.nodata)
    return np.where(known, truth, table.nodata).astype(np.uint8), int(known.sum()), int(unknown.sum())


def _score_cell(cell: str, tile: Path, runs: dict, products: dict, counts: dict,
                table: ClassTable) -> tuple[int, int]:
    """Add one cell's layers of every run to ``counts``, on the pixels all of them mapped; returns
    the reference's known and unknown pixels."""
    with rasterio.open(tile) as ref:
        truth, known, unknown = _reference_codes(tile, ref.read(1), table)
        grid = (ref.transform, ref.shape, ref.crs)
    for product, prod in products.items():
        entries = {row: (d, recs[cell].files[product]) for row, (d, recs) in runs.items()
                   if product in recs[cell].files}  # a run may map one product only
        if MODEL_ROW not in entries:
            continue
        preds = {row: _layer(d, cell, e, grid, tile) for row, (d, e) in entries.items()}
        target = prod.scheme.to_targets(truth)  # class index, 255 = no data
        for pred in preds.values():
            target = np.where(prod.index[pred] == 255, 255, target)
        for row, pred in preds.items():
            index = prod.index[pred]
            counts[product][row].update(np.where(index == 255, 0, index), target)
    return known, unknown


def _report(run_dir: Path, reference_dir, cells: list[str], base: RunManifest | None, counts: dict, products: dict,
            out: Path | None, unknown: int) -> Agreement:
    majorities = _majorities(base)
    reports, text = {}, ""
    for product, methods in counts.items():
        model = methods[MODEL_ROW]
        if not model.cm.total:
            continue
        methods = {row: c for row, c in methods.items() if c.cm.total}  # the runs that mapped it
        names = products[product].scheme.names
        if majorities[product] in names:
            k = names.index(majorities[product])
            label = f"majority class ({names[k]})"
        else:  # no baseline run to say what the training split's majority was
            k = int(model.cm.counts.sum(axis=1).argmax())
            label = f"reference's majority class ({names[k]})"
        report = report_methods({**methods, label: model.constant(k)}, names, product,
                                "of the maps vs the reference", label)
        reports[product] = ProductAgreement(model.cm.total, tuple(tuple(int(v) for v in r) for r in model.cm.counts),
                                            report)
        text += ("\n" if text else "") + report.text
    if not reports:
        raise InputError(f"no pixel the run mapped has a known code in the reference tiles in {reference_dir}")
    if unknown:
        text += f"\n{unknown:,} reference pixels hold codes the class table does not know: not scored.\n"
    result = Agreement(str(run_dir), str(reference_dir), tuple(cells), base.run_dir if base is not None else None,
                       reports, text, unknown)
    if out is not None:
        write_json(out / "agreement.json", result.to_dict())
        with atomic_file(out / "agreement.md") as f:
            f.write(text)
    return result
