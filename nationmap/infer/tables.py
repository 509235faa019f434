"""The area tables of a run: km^2 per class, cell and region, and the change from the previous month.

Part of the national stage (:class:`nationmap.infer.stages.NationalStage`): one task per cell
reads its COGs (:func:`nationmap.products.areas.cell_area_rows`, and the class-to-class change
against the same cell of the previous month's products when ``previous`` is set), then the
driver sums the region and writes

    tables/<tag>_areas.csv / .parquet     region, month, scope, cell, layer, code, class, area_km2, share
    tables/<tag>_change.csv / .parquet    ... previous_month, from_code/class, to_code/class, area_km2
    tables/<tag>_change_status.csv / .parquet   ... previous_month, status (confirmed, provisional),
                                          from_code/class, to_code/class, area_km2: the change layers

The change table states the area it covers: its ``mapped`` rows (from the ``reason`` COGs: reason
0; from the ``count`` COGs against a month published before that layer) give the km^2 mapped in
both months, per cell and for the region (0 when none). The previous month is a
products run directory or a published version (its ``manifest.json``); that manifest and the COGs
read from it must lie inside it (the path rule, links resolved), and the COGs match its manifest's
SHA-256, so a manifest or COG replaced by a symlink leading out, or a damaged COG, is refused,
never measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nationmap.errors import InputError
from nationmap.files import safe_child, sha256_file, sha256_json
from nationmap.parallel import run_tasks
from nationmap.products.areas import (AREA_COLUMNS, CHANGE_COLUMNS, STATUS_COLUMNS, cell_area_rows,
                                      cell_change_rows, cell_coverage_rows, cell_status_rows, region_area_rows,
                                      region_change_rows, region_status_rows, unmapped_cell_rows, write_tables)
from nationmap.products.layers import Layer, declared_layers
from nationmap.records import FileEntry, RunManifest

COVERAGE_PRODUCTS = ("reason", "count")  # where each month mapped: the reason (0), else the count (> 0)
PREVIOUS_PRODUCTS = (*(n for n, layer in declared_layers().items() if layer.change), *COVERAGE_PRODUCTS,
                     "change", "change_classes")
"""What a run reads of the previous month: the declared ``change`` products and the coverage (the
change table), the change layers (the state the change rule goes on from)."""
CHANGE_FORMAT = "change/3"  # the mapped rows by the reason layer: tables of an earlier format are redone


@dataclass(frozen=True)
class CellTablesJob:
    """One cell's COGs of this month and, for the change, of the previous month (absolute paths)."""

    cell: str
    files: dict[str, Path]
    previous: dict[str, Path]
    layers: dict[str, Layer]


def cell_tables(job: CellTablesJob) -> tuple[list, list, list]:
    """(area rows, change rows, change status rows) of one cell (a Ray task on a cluster)."""
    areas = cell_area_rows(job.cell, job.files, job.layers)
    change = [row for p, before in sorted(job.previous.items()) if p in job.layers and job.layers[p].change
              for row in cell_change_rows(job.cell, before, job.files[p], job.layers[p])]
    # the area both months mapped: by the no-data reason, or by the count for an older month
    coverage = COVERAGE_PRODUCTS[0] if all(COVERAGE_PRODUCTS[0] in f for f in (job.previous, job.files)) else "count"
    if coverage in job.previous:
        change += cell_coverage_rows(job.cell, job.previous[coverage], job.files[coverage], coverage == "reason")
    status = (cell_status_rows(job.cell, job.files["change"], job.files["change_classes"], job.layers["lulc"])
              if "change" in job.layers and "change" in job.files else [])
    return areas, change, status


@dataclass(frozen=True)
class PreviousMonth:
    """The previous month's products: its month, each ok cell's COG paths (absolute) and a key
    of their checksums (the change tables are redone when it changes)."""

    month: str
    cells: dict[str, dict[str, Path]]
    key: str


def read_previous(path: str | Path, month: str, pixels_per_degree: int) -> PreviousMonth:
    """The products at ``path`` (a run directory or published version) as the month before
    ``month`` on the same grid, each COG the change table reads inside ``path`` and matching its
    manifest's SHA-256; one-line InputError otherwise. The manifest is read by the path rule
    too: one replaced by a symlink leading out of ``path`` is refused, never read."""
    try:
        where = safe_child(path, "manifest.json")
    except InputError:
        raise InputError(f"previous products {path}: manifest.json leads outside them; no change table from "
                         f"them") from None
    manifest = RunManifest.read(where)
    if manifest.month >= month:
        raise InputError(f"previous products {path} are of {manifest.month}, not a month before {month}")
    ppd = manifest.config.get("pixels_per_degree")
    if ppd != pixels_per_degree:
        raise InputError(f"previous products {path} are on a grid of {ppd} px per degree, this run on "
                         f"{pixels_per_degree}: no change table between them")
    cells = {c.cell: {p: _checked(Path(path), c.cell, e) for p, e in c.files.items() if p in PREVIOUS_PRODUCTS}
             for c in manifest.ok_cells()}
    key = sha256_json({"cells": {c.cell: {p: e.sha256 for p, e in c.files.items()} for c in manifest.ok_cells()},
                       "format": CHANGE_FORMAT})
    return PreviousMonth(manifest.month, cells, key)


def _checked(root: Path, cell: str, entry: FileEntry) -> Path:
    """The previous month's COG ``cells/<cell>/<file>``, refused when it leads outside ``root`` (a
    symlink planted in it) or is not the file its manifest names (damaged, replaced)."""
    rel = f"cells/{cell}/{entry.path}"
    try:
        path = safe_child(root, "cells", cell, entry.path)
    except InputError:
        raise InputError(f"previous products {root}: {rel} leads outside them; no change table from it") from None
    if not path.is_file() or sha256_file(path) != entry.sha256:
        raise InputError(f"previous products {root}: {rel} is missing or not the file its manifest names "
                         f"(SHA-256 differs); no change table from it")
    return path


def write_area_tables(cell_files: dict[str, dict[str, Path]], layers: dict[str, Layer], region: str, month: str,
                      stem: Path, previous: PreviousMonth | None, executor: str,
                      unmapped: dict[str, tuple[float, float]] | None = None) -> dict[str, Path]:
    """Area (and change) tables of the cells in ``cell_files`` (cell -> product -> COG) and of the
    region's cells without products (``unmapped``: cell -> (km^2 inside the region, outside it))
    under ``stem`` (``<dir>/<tag>``); returns {"areas_csv", "areas_parquet"[, "change_csv",
    "change_parquet"]: path}."""
    jobs = [CellTablesJob(cell, files, _previous_files(cell, files, previous), layers)
            for cell, files in sorted(cell_files.items())]
    results = run_tasks(cell_tables, jobs, desc="area tables", executor=executor)
    areas = [row for rows, _, _ in results for row in rows]
    areas += [row for cell, (inside, outside) in sorted((unmapped or {}).items())
              for row in unmapped_cell_rows(cell, inside, outside, layers)]
    fixed = {"region": region, "month": month}
    out = dict(zip(("areas_csv", "areas_parquet"),
                   write_tables(region_area_rows(areas, region, layers) + areas, AREA_COLUMNS, fixed,
                                stem.with_name(stem.name + "_areas"))))
    if previous is not None:
        change = [row for _, rows, _ in results for row in rows]
        out |= dict(zip(("change_csv", "change_parquet"),
                        write_tables(region_change_rows(change, region) + change, CHANGE_COLUMNS,
                                     {**fixed, "previous_month": previous.month},
                                     stem.with_name(stem.name + "_change"))))
    if previous is not None and "change" in layers:
        status = [row for _, _, rows in results for row in rows]
        out |= dict(zip(("change_status_csv", "change_status_parquet"),
                        write_tables(region_status_rows(status, region) + status, STATUS_COLUMNS,
                                     {**fixed, "previous_month": previous.month},
                                     stem.with_name(stem.name + "_change_status"))))
    return out


def _previous_files(cell: str, files: dict[str, Path], previous: PreviousMonth | None) -> dict[str, Path]:
    if previous is None or cell not in previous.cells:
        return {}
    return {p: previous.cells[cell][p] for p in PREVIOUS_PRODUCTS if p in files and p in previous.cells[cell]}
