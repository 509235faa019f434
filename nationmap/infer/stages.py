"""The stages of an inference run: scenes, cells, national layers, STAC.

Every stage is a unit of the data flow with one small interface (:class:`Stage`): ``plan()``
lists the units that are not done and verified (their record's key matches the inputs, models
and settings, and the files they wrote still have their SHA-256), ``run(units)`` runs those and
keeps their records, which the manifest then gathers. A rerun of a complete month plans nothing
and runs nothing; an interrupted one runs only what is missing. Stages hand each other typed
records (:mod:`nationmap.records`), never dicts read by key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import shapely

from nationmap import __version__
from nationmap.assess.design import layer_checksums
from nationmap.assess.protocol import CheckedSample, run_assessment
from nationmap.assess.report import AccuracyReport, run_table_key
from nationmap.change.cells import ChangeCellJob, change_cell
from nationmap.change.rule import FORMAT as RULE_FORMAT
from nationmap.data.catalog import footprints
from nationmap.data.alos2 import is_alos2_name
from nationmap.data.grid import Cell
from nationmap.data.masks import mask_path
from nationmap.data.mosaic import is_mosaic_name
from nationmap.data.months import Month
from nationmap.data.regions import Region
from nationmap.files import safe_child, sha256_file, sha256_json, write_json
from nationmap.devices import available_cpus, plan_predictors
from nationmap.infer.config import InferConfig
from nationmap.infer.tables import PreviousMonth, write_area_tables
from nationmap.parallel import progress_bar, run_tasks
from nationmap.products.acquisitions import acquisition_rows, read_acquisition_table, write_acquisition_table
from nationmap.products.cells import SCENE_RASTER_FORMAT, BandLayout, product_name, run_cell
from nationmap.products.layers import Layer
from nationmap.products.mosaic import build_mosaic
from nationmap.products.quicklook import write_quicklook
from nationmap.products.stac import ProductFile, write_stac
from nationmap.records import (CellJob, CellRecord, FileEntry, NationalRecord, Products, SceneJob, SceneRecord,
                               StacRecord)


class Stage(Protocol):
    """A stage of the run: ``plan`` what is left to do, ``run`` it."""

    name: str

    def plan(self) -> list[str]:
        """The units (ids) that are not done and verified."""

    def run(self, units: list[str]) -> None:
        """Run ``units`` and keep their records."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps what: every path below the run directory goes through the path rule
    (:func:`nationmap.files.safe_child`), so a symlink inside the run cannot lead writes out of it."""

    root: Path

    def _child(self, *parts: str) -> Path:
        return safe_child(self.root, *parts)

    @property
    def manifest(self) -> Path:
        return self._child("manifest.json")

    @property
    def work(self) -> Path:
        return self._child(".work")

    def scene_raster(self, scene_id: str) -> Path:
        return self._child(".work", "scenes", f"{scene_id}.tif")

    def scene_record(self, scene_id: str) -> Path:
        return self._child(".work", "state", "scenes", f"{scene_id}.json")

    def cell_dir(self, cell: str) -> Path:
        return self._child("cells", cell)

    def cell_record(self, cell: str) -> Path:
        return self._child(".work", "state", "cells", f"{cell}.json")

    @property
    def national_record(self) -> Path:
        return self._child(".work", "state", "mosaic.json")

    @property
    def stac_record(self) -> Path:
        return self._child(".work", "state", "stac.json")

    def national_file(self, group: str, name: str) -> Path:
        return self._child(group, name)

    def national_dir(self, group: str) -> Path:
        return self._child(group)


@dataclass(frozen=True)
class ModelSet:
    """The bundles of a run (paths and hashes) and what they imply for the products."""

    paths: dict[str, str]  # task -> bundle dir
    hashes: dict[str, dict[str, str]]  # task -> {file: sha256}
    window: int
    layout: BandLayout
    layers: dict[str, Layer]

    @property
    def key(self) -> str:
        return sha256_json(self.hashes)


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares."""

    cfg: InferConfig
    region: Region
    month: Month
    models: ModelSet
    paths: RunPaths
    force: bool
    log: Callable[[str], None] = print
    previous: PreviousMonth | None = None  # the month before, for the change tables (read before any work)
    assessment: CheckedSample | None = None  # the labelled sample of the LULC map, checked before any work

    @property
    def tag(self) -> str:
        """``<region>_<YYYY-MM>``: the prefix of the national files."""
        return f"{self.region.slug}_{self.cfg.month}"


def file_verifies(path: Path, sha256: str | None) -> bool:
    return sha256 is not None and path.exists() and sha256_file(path) == sha256


def files_verify(directory: Path, files: dict[str, FileEntry]) -> bool:
    return all(file_verifies(directory / e.path, e.sha256) for e in files.values())


# ---------------------------------------------------------------------------- scenes


class SceneStage:
    """Acquisitions -> probability rasters on their own grid (Ray Data actor pool, or serially).

    A scene's key hashes its input checksum, calibration units, the models and the window
    settings. The rasters are removed after a complete run, so a scene counts as done from its
    record alone; :meth:`rasters_needed` finds those the cells still to combine must read again."""

    name = "scenes"

    def __init__(self, ctx: RunContext, catalog):
        self.ctx = ctx
        self.rows = {r.id: r for r in catalog.itertuples()}
        self.settings = ctx.cfg.window_settings(ctx.models.window)
        window = {k: v for k, v in self.settings.__dict__.items() if not (k == "tta" and v == "none")}
        # (without test-time augmentation the key is what it was before the option existed; the batch
        # size as set, "auto" before the devices are known)
        window["batch_size"] = ctx.cfg.batch_size
        dem = sha256_file(Path(ctx.cfg.dem)) if ctx.cfg.dem else None  # once: a national DEM is GBs
        self.keys = {r.id: sha256_json({"input": r.sha256, "models": ctx.models.key, "window": window,
                                        "units": r.units, "raster": SCENE_RASTER_FORMAT, **_mask_key(r.path, dem)})
                     for r in self.rows.values()}
        self.index = {sid: i for i, sid in enumerate(self.rows)}  # rows of the month's acquisition table
        self.records: dict[str, SceneRecord | None] = {
            sid: SceneRecord.read_or_none(ctx.paths.scene_record(sid)) for sid in self.rows}
        self.footprints = dict(zip(catalog.id, footprints(catalog)))
        self.ran: set[str] = set()

    def day(self, sid: str) -> int:
        """Days from the month's first day to the acquisition's."""
        return (self.rows[sid].datetime.date() - self.ctx.month.start.date()).days

    def _done(self, sid: str, verify_raster: bool) -> bool:
        rec = self.records[sid]
        if rec is None or rec.key != self.keys[sid] or not rec.ok:
            return False
        return not verify_raster or file_verifies(self.ctx.paths.scene_raster(sid), rec.sha256)

    def plan(self) -> list[str]:
        return [sid for sid in self.rows if not self._done(sid, verify_raster=False)]

    def rasters_needed(self, scene_ids: set[str]) -> list[str]:
        """Of ``scene_ids`` (read by cells still to combine), those not run now whose raster is
        missing or damaged (removed after an earlier complete run, or since)."""
        return [s for s in sorted(scene_ids - self.ran) if not self._done(s, verify_raster=True)]

    def job(self, sid: str) -> SceneJob:
        r, paths = self.rows[sid], self.ctx.paths
        return SceneJob(id=sid, path=r.path, units=r.units or "", key=self.keys[sid],
                        output=str(paths.scene_raster(sid)), record=str(paths.scene_record(sid)),
                        dem=str(Path(self.ctx.cfg.dem).resolve()) if self.ctx.cfg.dem else "")

    def run(self, units: list[str]) -> None:
        if not units:  # a verified rerun: no models to load, no Ray to reach
            return
        self.ran |= set(units)
        for rec in predict_scenes([self.job(s) for s in units], self.ctx.cfg, self.ctx.models, self.settings,
                                  self.ctx.log):
            self.records[rec.id] = rec

    def ok(self) -> list[str]:
        return sorted(s for s, r in self.records.items() if r is not None and r.ok)

    def entries(self) -> list[SceneRecord]:
        """The manifest's scene list: every acquisition in catalog order, reused ones marked."""
        return [(self.records[s] or SceneRecord(id=s, key=self.keys[s], status="not run", path=self.rows[s].path))
                .replace(skipped=s not in self.ran) for s in self.rows]


def _mask_key(path: str, dem: str | None) -> dict:
    """What a scene's layover/shadow mask depends on: its own mask file's SHA-256, else the DEM's
    for an ALOS-2 scene (:func:`nationmap.infer.predict.dem_mask`); nothing otherwise (the keys
    of scenes without either are what they were before masks)."""
    own = mask_path(path) if is_alos2_name(Path(path).name) or is_mosaic_name(Path(path).name) else None
    if own is not None:
        return {"mask": sha256_file(own)}
    return {"dem": dem} if dem and is_alos2_name(Path(path).name) else {}


def predict_scenes(jobs: list[SceneJob], cfg: InferConfig, models: ModelSet, settings, log) -> list[SceneRecord]:
    """Predict ``jobs`` with a progress bar (per scene): Ray Data actors or this process, on the
    devices :func:`nationmap.devices.plan_predictors` finds (printed first)."""
    if cfg.executor == "serial":
        from nationmap.infer.predict import local_resources, predict_serial as predict
    else:
        from nationmap.infer.ray_data import cluster_resources as local_resources, predict_scenes_ray as predict
    plan = plan_predictors(cfg.gpus_per_actor, cfg.batch_size, cfg.concurrency if cfg.executor == "ray" else 1,
                           cfg.cpus_per_actor, local_resources(), len(jobs))
    log(f"devices: {plan.describe()}" + (" (in this process)" if cfg.executor == "serial" else ""))
    settings = dataclasses.replace(settings, batch_size=plan.batch_size)
    windows = 0
    with progress_bar() as progress:
        bar = progress.add_task("scenes", total=len(jobs))

        def on_done(record: SceneRecord) -> None:  # the bar counts scenes; its label the windows predicted
            nonlocal windows
            windows += record.windows
            progress.update(bar, advance=1, description=f"scenes ({windows:,} windows predicted)")

        return predict(jobs, cfg, models.paths, settings, plan, on_done)


# ---------------------------------------------------------------------------- cells


class CellStage:
    """Scene rasters -> a COG per declared product and cell, one Ray task per cell.

    A cell's key hashes the keys of the scenes that cover it (with their rows and days in the
    month's acquisition table), the models, the cell settings, the month, the products and the
    region's cut of the cell; it is done when its record has that key and its COGs verify."""

    name = "cells"

    def __init__(self, ctx: RunContext, scenes: SceneStage):
        self.ctx, self.scenes = ctx, scenes
        self.cells: dict[str, Cell] = {c.name: c for c in ctx.region.cells}
        self.records: dict[str, CellRecord | None] = {
            c: CellRecord.read_or_none(ctx.paths.cell_record(c)) for c in self.cells}
        self.jobs: dict[str, CellJob] = {}
        self.todo: list[str] = []
        # the products a cell's blocks compute (the change layers come after, from its COGs)
        self.layers = {p: layer for p, layer in ctx.models.layers.items() if layer.compute is not None}

    def plan(self) -> list[str]:
        ctx, ok = self.ctx, self.scenes.ok()
        settings = ctx.cfg.cell_settings()
        tree = shapely.STRtree([self.scenes.footprints[s] for s in ok])  # cells x scenes grow fast nationally
        for name, cell in self.cells.items():
            covering = [ok[i] for i in sorted(tree.query(cell.polygon, predicate="intersects"))]
            region = None if ctx.region.geometry.covers(cell.polygon) else ctx.region.geometry.intersection(cell.polygon)
            key = sha256_json({"scenes": [self.scenes.keys[s] for s in covering], "models": ctx.models.key,
                               "cell": settings.__dict__, "month": ctx.cfg.month, "products": list(self.layers),
                               "sources": [(self.scenes.index[s], self.scenes.day(s)) for s in covering],
                               "region": None if region is None else region.wkb_hex})
            self.jobs[name] = CellJob(
                cell=cell, month=ctx.cfg.month, key=key, scene_ids=tuple(covering),
                scenes=tuple(str(ctx.paths.scene_raster(s)) for s in covering), out_dir=str(ctx.paths.cell_dir(name)),
                layout=ctx.models.layout, layers=self.layers, settings=settings,
                record=str(ctx.paths.cell_record(name)), tags={"MODELS": ctx.models.key[:16]},
                # a Ray cell task holds one CPU; serially the cores are the cell's
                threads=1 if ctx.cfg.executor == "ray" else available_cpus(),
                scene_indexes=tuple(self.scenes.index[s] for s in covering),
                scene_days=tuple(self.scenes.day(s) for s in covering), region=region)
        self.todo = [c for c in self.cells if not self._done(c)]
        return self.todo

    def _done(self, name: str) -> bool:
        rec = self.records[name]
        # the cell's own COGs only: the change stage checks (and redoes) the change layers it added
        return (rec is not None and rec.key == self.jobs[name].key and rec.done
                and files_verify(self.ctx.paths.cell_dir(name), {p: e for p, e in rec.files.items() if p in self.layers}))

    def scenes_read_by(self, names: list[str]) -> set[str]:
        return {s for c in names for s in self.jobs[c].scene_ids}

    def run(self, units: list[str]) -> None:
        for rec in run_tasks(run_cell, [self.jobs[c] for c in units], desc="cells", executor=self.ctx.cfg.executor):
            self.records[rec.cell] = rec

    def ok(self) -> dict[Cell, CellRecord]:
        return {cell: self.records[name] for name, cell in self.cells.items()
                if self.records[name] is not None and self.records[name].status == "ok"}

    def entries(self) -> list[CellRecord]:
        return [self.records[c].replace(skipped=c not in self.todo) for c in self.cells]


# ---------------------------------------------------------------------------- change layers


class ChangeStage:
    """Each ok cell's LULC and confidence COGs and the previous month's change state of the cell
    -> its ``change`` and ``change_classes`` COGs (:mod:`nationmap.change.cells`), one task per
    cell, added to the cell's record. Only when the run has a previous month. A cell's key hashes
    its two COGs, the previous month, the rule and the month."""

    name = "change"
    FORMAT = "change-layers/1"

    def __init__(self, ctx: RunContext, cells: CellStage):
        self.ctx, self.cells = ctx, cells
        self.layers = {p: layer for p, layer in ctx.models.layers.items() if layer.compute is None}
        self.jobs: dict[str, tuple[str, ChangeCellJob]] = {}

    def plan(self) -> list[str]:
        ctx = self.ctx
        if not self.layers:
            return []
        rule = ctx.cfg.change_rule()
        for cell, rec in self.cells.ok().items():
            before = ctx.previous.cells.get(cell.name, {}) if ctx.previous else {}
            state = ("change", "change_classes") if {"change", "change_classes"} <= set(before) else ("lulc",)
            previous = {p: before[p] for p in state if p in before}
            key = sha256_json({"lulc": rec.files["lulc"].sha256, "confidence": rec.files["confidence"].sha256,
                               "previous": [ctx.previous.key if ctx.previous else None, sorted(previous)],
                               "rule": dataclasses.asdict(rule), "month": ctx.cfg.month,
                               "format": [self.FORMAT, RULE_FORMAT]})
            d = ctx.paths.cell_dir(cell.name)
            self.jobs[cell.name] = (key, ChangeCellJob(
                cell.name, ctx.cfg.month, d / rec.files["lulc"].path, d / rec.files["confidence"].path, previous,
                self.layers, {p: d / product_name(cell.name, ctx.cfg.month, p) for p in self.layers}, rule,
                {"CELL": cell.name, "MONTH": ctx.cfg.month, "MODELS": ctx.models.key[:16]}))
        return [c for c, (key, _) in self.jobs.items() if not self._done(c, key)]

    def _done(self, cell: str, key: str) -> bool:
        rec = self.cells.records[cell]
        return (not self.ctx.force and rec.change_key == key and set(self.layers) <= set(rec.files)
                and files_verify(self.ctx.paths.cell_dir(cell), {p: rec.files[p] for p in self.layers}))

    def run(self, units: list[str]) -> None:
        jobs = [self.jobs[c][1] for c in units]
        for job, written in zip(jobs, run_tasks(change_cell, jobs, desc="change layers", executor=self.ctx.cfg.executor)):
            rec = self.cells.records[job.cell]
            files = {p: FileEntry(path.name, sha256_file(path)) for p, path in written.items()}
            rec = rec.replace(files={**rec.files, **files}, change_key=self.jobs[job.cell][0])
            write_json(self.ctx.paths.cell_record(job.cell), rec, durable=True)
            self.cells.records[job.cell] = rec


# ---------------------------------------------------------------------------- national layers


@dataclass(frozen=True)
class NationalJob:
    """One product's national layer: VRT over the cell COGs, sparse COG, quicklook (paths absolute)."""

    layer: Layer
    cell_files: dict  # Cell -> Path of the cell COG, None for a cell without data
    pixels_per_degree: int
    cog: Path
    vrt: Path
    quicklook: Path
    tags: dict


def national_layer(job: NationalJob) -> dict[str, FileEntry]:
    """Build one product's national layer and quicklook (a Ray task on a cluster); returns
    ``{"mosaic"|"vrt"|"quicklooks": FileEntry}`` with absolute paths."""
    national = build_mosaic(job.cell_files, job.layer, job.pixels_per_degree, job.cog, job.tags, vrt=job.vrt)
    t = job.tags
    png = None
    if job.layer.style != "none":  # what the layer declares is drawn is drawn here too
        png = write_quicklook(national.cog or national.vrt, job.quicklook, job.layer,
                              title=f"{t['PRODUCT']}: {job.layer.description}, {t['REGION']}, {t['MONTH']}",
                              subtitle=f"nationmap {__version__}, models {t['MODELS']}; WGS84 longitude/latitude "
                                       f"(EPSG:4326), {job.pixels_per_degree} px per degree")
    return {group: FileEntry(str(path), sha256_file(path))
            for group, path in (("mosaic", national.cog), ("vrt", national.vrt), ("quicklooks", png))
            if path is not None}


class NationalStage:
    """Cell COGs -> a national layer per product (VRT + sparse COG) and its quicklook, one task
    each; one unit for all products, keyed by the checksums of the cells' COGs."""

    name = "national"

    def __init__(self, ctx: RunContext, cells: CellStage):
        self.ctx, self.cells = ctx, cells
        self.ok_cells = cells.ok()
        self.previous = ctx.previous
        self.key = sha256_json({"cells": {c.name: {p: e.sha256 for p, e in r.files.items()}
                                          for c, r in self.ok_cells.items()},
                                "region": [c.name for c in ctx.region.cells], "format": "vrt+sparse-cog+tables/4",
                                "previous": self.previous.key if self.previous else None,
                                "acquisitions": [(r.id, str(r.sha256), r.path, str(r.datetime))
                                                 for r in cells.scenes.rows.values()],
                                "assessment": ctx.assessment.key if ctx.assessment is not None else None})
        self.record = NationalRecord.read_or_none(ctx.paths.national_record)

    def plan(self) -> list[str]:
        if not self.ok_cells:
            return []
        rec, root = self.record, self.ctx.paths.root
        if (not self.ctx.force and rec is not None and rec.key == self.key
                and all(files_verify(root, getattr(rec.products, g)) for g in Products.GROUPS)):
            return []
        return list(self.ctx.models.layers)

    def run(self, units: list[str]) -> None:
        if not units:
            return
        ctx, paths = self.ctx, self.ctx.paths
        jobs = [NationalJob(ctx.models.layers[p], self._cell_files(p), ctx.cfg.pixels_per_degree,
                            paths.national_file("mosaic", f"{ctx.tag}_{p}.tif"),
                            paths.national_file("mosaic", f"{ctx.tag}_{p}.vrt"),
                            paths.national_file("quicklooks", f"{ctx.tag}_{p}.png"),
                            {"REGION": ctx.region.name, "MONTH": ctx.cfg.month, "PRODUCT": p,
                             "MODELS": ctx.models.key[:16]}) for p in units]
        results = run_tasks(national_layer, jobs, desc="national layers", executor=ctx.cfg.executor)
        groups = {g: {p: FileEntry(str(Path(r[g].path).relative_to(paths.root)), r[g].sha256)
                      for p, r in zip(units, results) if g in r} for g in ("mosaic", "vrt", "quicklooks")}
        cell_files = {c.name: {p: paths.cell_dir(c.name) / e.path for p, e in r.files.items()}
                      for c, r in self.ok_cells.items()}
        unmapped = {c.name: _cell_km2(c, ctx.region) for c in ctx.region.cells  # empty cells, not failed ones
                    if self.cells.records[c.name] is not None and self.cells.records[c.name].status == "empty"}
        tables = write_area_tables(cell_files, ctx.models.layers, ctx.region.name, ctx.cfg.month,
                                   paths.national_file("tables", ctx.tag), self.previous, ctx.cfg.executor,
                                   unmapped)
        acquisitions = acquisition_rows(self.cells.scenes.rows.values(), ctx.month)  # the source layer's index
        tables |= dict(zip(("acquisitions_csv", "acquisitions_parquet"), write_acquisition_table(
            acquisitions, paths.national_file("tables", f"{ctx.tag}_acquisitions"))))
        assessed = self._assessment()
        tables |= assessed
        groups["tables"] = {k: FileEntry(str(path.relative_to(paths.root)), sha256_file(path))
                            for k, path in tables.items()}
        owned = [*assessed, *(k for k in tables if k.startswith("change_status_"))]  # the LULC map's own
        self.record = NationalRecord(self.key, Products(**groups, owners={k: "lulc" for k in owned}))
        write_json(paths.national_record, self.record)

    def _assessment(self) -> dict[str, Path]:
        """The LULC map's accuracy tables, from the run's labelled sample (none without one)."""
        if self.ctx.assessment is None or "lulc" not in self.ctx.models.layers:
            return {}
        lulc = layer_checksums(self.ok_cells.values(), "lulc")
        return run_assessment(self.ctx.assessment, lulc, self.ctx.paths.national_dir("tables"), self.ctx.tag)

    def _cell_files(self, product: str) -> dict:
        return {c: (self.ctx.paths.cell_dir(c.name) / self.ok_cells[c].files[product].path) if c in self.ok_cells
                else None for c in self.ctx.region.cells}

    def products(self) -> Products:
        return self.record.products if self.ok_cells and self.record is not None else Products()


def _cell_km2(cell: Cell, region: Region) -> tuple[float, float]:
    """(km^2 of the cell inside the region, outside it) on the WGS84 ellipsoid."""
    from nationmap.products.areas import geometry_km2

    inside = geometry_km2(region.geometry.intersection(cell.polygon))
    return inside, geometry_km2(cell.polygon) - inside


# ---------------------------------------------------------------------------- STAC


class StacStage:
    """The run's STAC tree (a collection per product, an item per cell, the national layers),
    rewritten when a file it describes changed or one of its own files is missing or damaged."""

    name = "stac"
    CATALOG = "stac/catalog.json"

    def __init__(self, ctx: RunContext, cells: CellStage, national: NationalStage):
        self.ctx, self.ok_cells, self.national = ctx, cells.ok(), national
        products = national.products()
        self.key = sha256_json({"cells": {c.name: _plain(r.files) for c, r in self.ok_cells.items()},
                                "models": ctx.models.key, "national": {"mosaic": _plain(products.mosaic),
                                                                       "vrt": _plain(products.vrt),
                                                                       "tables": _plain(products.tables)},
                                "sources": {c.name: r.scenes_used for c, r in self.ok_cells.items()},
                                "format": "stac/4"})
        self.record = StacRecord.read_or_none(ctx.paths.stac_record)

    def plan(self) -> list[str]:
        rec = self.record
        if not self.ok_cells or (not self.ctx.force and rec is not None and rec.key == self.key
                                 and files_verify(self.ctx.paths.root, rec.files)):
            return []
        return ["catalog"]

    def run(self, units: list[str]) -> None:
        if not units:
            return
        ctx, root = self.ctx, self.ctx.paths.root
        cell_files = {p: {c: _product_file(ctx.paths.cell_dir(c.name) / r.files[p].path, r.files[p])
                          for c, r in self.ok_cells.items()} for p in ctx.models.layers}
        products = self.national.products()
        national = {g: {p: _product_file(root / e.path, e) for p, e in getattr(products, g).items()}
                    for g in ("mosaic", "vrt", "tables")}
        table = products.tables.get("acquisitions_csv")  # the acquisitions as published, with their index
        acquisitions = list(read_acquisition_table(root / table.path).rows) if table else None
        write_stac(root / "stac", ctx.region.slug, ctx.month, ctx.models.layers, cell_files,
                   national["mosaic"], ctx.cfg.pixels_per_degree, {"nationmap:models": ctx.models.key[:16]},
                   vrts=national["vrt"], tables=national["tables"], acquisitions=acquisitions,
                   sources={c: r.scenes_used for c, r in self.ok_cells.items()} if acquisitions else None,
                   table_owners=products.owners, collection_fields=self._accuracy_fields(products))
        files = {str(p.relative_to(root)): FileEntry(str(p.relative_to(root)), sha256_file(p))
                 for p in sorted((root / "stac").rglob("*.json"))}
        self.record = StacRecord(self.key, files)
        write_json(ctx.paths.stac_record, self.record)

    def _accuracy_fields(self, products: Products) -> dict[str, dict]:
        """product -> the headline of its accuracy assessment, as its collection's fields."""
        fields = {}
        for product in ("lulc", "water"):
            entry = products.tables.get(run_table_key(product))
            if entry is not None:
                report = AccuracyReport.read(self.ctx.paths.root / entry.path)
                fields[product] = {"nationmap:overall_accuracy": report.overall.estimate,
                                   "nationmap:overall_accuracy_ci95": report.overall.ci95,
                                   "nationmap:accuracy_sample_points": report.points}
        return fields

    def catalog(self) -> str:
        return self.CATALOG if self.ok_cells else ""


def _plain(entries: dict[str, FileEntry]) -> dict:
    return {p: e.to_json() for p, e in entries.items()}


def _product_file(path: Path, entry: FileEntry) -> ProductFile:
    return ProductFile(path, entry.sha256, path.stat().st_size)
