"""Inference configuration: defaults from a TOML file (``jobs/infer.toml``), then options.

The ops command is exactly ``nationmap infer --region japan --date 2022-09``: where the catalog,
the model bundles and the products live comes from the ``[infer]`` table of the config file.
Relative paths in the file are taken relative to the working directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from nationmap.change.rule import ChangeRule
from nationmap.config import Config, default_of
from nationmap.devices import AUTO, CPU_BATCH, check_auto
from nationmap.data.months import parse_month
from nationmap.errors import InputError
from nationmap.files import read_defaults_table
from nationmap.infer.windows import WindowSettings, check_blend, check_tta
from nationmap.products.cells import CellSettings
from nationmap.files import JOBS_DIR

DEFAULT_CONFIG = JOBS_DIR / "infer.toml"
EXECUTORS = ("ray", "serial")


@dataclass(frozen=True)
class InferConfig(Config):
    """One inference run: a region and month, its inputs, models, outputs and settings.

    Attributes:
        region: region spec (``japan``, ``demo``, cells, bbox, GeoJSON).
        month: ``YYYY-MM``: every acquisition of that month in the region is used.
        catalog: acquisition catalog (``nationmap data catalog``).
        lulc_model / water_model: model bundles (``nationmap export``); either may be empty.
        out: products root; this run writes ``OUT/<region>/<YYYY-MM>/``.
        lulc_dir: LULC tiles directory (the ``japan`` cell list when present); optional.
        pixels_per_degree: national grid resolution.
        window / overlap / blend / batch_size / tta: sliding-window prediction (window 0: the
            models' input size; batch_size ``auto``: by the device, :mod:`nationmap.devices`;
            tta: test-time flips and rotations, :class:`WindowSettings`).
        resampling / min_validity / water_threshold / min_count / cell_block: scene -> cell
            combination (:class:`CellSettings`).
        probabilities: also publish the LULC class probabilities (one uint8 band per class).
        dem: a DEM (any GDAL raster of heights in metres) from which acquisitions without a
            layover/shadow mask of their own get one; empty: such acquisitions have none.
        assessment: a labelled stratified sample of this month's LULC map (``nationmap assess``;
            its CSV or GeoPackage, the design beside it): the run publishes the map's accuracy and
            estimated class areas with 95 % intervals. Empty: none.
        executor: ``ray`` (Ray Data + Ray tasks) or ``serial`` (in-process, for debugging).
        concurrency: predictor actors (0: one per GPU, or per ``cpus_per_actor`` CPUs).
        gpus_per_actor / cpus_per_actor: resources of each predictor actor (``auto`` GPUs: one
            when the cluster has GPUs, else the CPU; :mod:`nationmap.devices`).
        keep_scenes: keep the per-scene probability rasters after a complete run.
        previous: the previous month's products (a run directory or published version) for the
            change tables and layers; empty: area tables only (``nationmap refresh`` sets it).
        change_confirm_months / change_confirm_confidence / change_min_confidence /
            change_min_patch_px: the change rule of the change layers (:class:`ChangeRule`, which
            declares them and checks their ranges; :meth:`change_rule`).
        compile: ``torch.compile`` the models in each predictor (GPU: faster after a warm-up of
            about a minute; off by default).

    The window and cell settings keep their flat names (the ``[infer]`` keys of ``jobs/infer.toml``)
    and take their defaults from :class:`WindowSettings` and :class:`CellSettings`, which declare
    them and check their ranges (:meth:`window_settings`, :meth:`cell_settings`).
    """

    WHAT = "inference setting"

    region: str = ""
    month: str = ""
    catalog: str = "catalog.parquet"
    lulc_model: str = ""
    water_model: str = ""
    out: str = "products"
    lulc_dir: str = ""
    pixels_per_degree: int = default_of(CellSettings, "pixels_per_degree")
    window: int = 0
    overlap: int = default_of(WindowSettings, "overlap")
    blend: str = default_of(WindowSettings, "blend")
    batch_size: int | str = AUTO
    tta: str = default_of(WindowSettings, "tta")
    resampling: str = default_of(CellSettings, "resampling")
    min_validity: float = default_of(CellSettings, "min_validity")
    water_threshold: float = default_of(CellSettings, "water_threshold")
    min_count: int = default_of(CellSettings, "min_count")
    probabilities: bool = False
    dem: str = ""
    assessment: str = ""
    cell_block: int = default_of(CellSettings, "block")
    executor: str = "ray"
    concurrency: int = 0
    gpus_per_actor: float | str = AUTO
    cpus_per_actor: float = 1.0
    keep_scenes: bool = False
    compile: bool = False
    previous: str = ""
    change_confirm_months: int = default_of(ChangeRule, "confirm_months")
    change_confirm_confidence: float = default_of(ChangeRule, "confirm_confidence")
    change_min_confidence: float = default_of(ChangeRule, "min_confidence")
    change_min_patch_px: int = default_of(ChangeRule, "min_patch_px")

    def __post_init__(self):
        self.check_fields()  # types and finite numbers first: a nan never reaches a range check
        if not self.region:
            raise InputError("no region given (--region, e.g. japan)")
        if not self.month:
            raise InputError("no month given (--date YYYY-MM)")
        parse_month(self.month)
        if not (self.lulc_model or self.water_model):
            raise InputError("no model given: set --lulc-model and/or --water-model (or lulc_model/water_model in the config)")
        if self.executor not in EXECUTORS:
            raise InputError(f"executor must be one of {', '.join(EXECUTORS)}, not {self.executor!r}")
        if self.concurrency < 0 or self.cpus_per_actor <= 0:
            raise InputError("concurrency must be >= 0 and cpus_per_actor > 0")
        check_auto(self.gpus_per_actor, "gpus_per_actor")
        check_auto(self.batch_size, "batch_size")
        check_blend(self.blend)  # the window size, hence the overlap check, waits for the models
        check_tta(self.tta)
        if self.window:
            self.window_settings(self.window)
        self.cell_settings()
        self.change_rule()
        if self.dem and not Path(self.dem).is_file():
            raise InputError(f"DEM {self.dem}: no such file")
        if self.assessment and not Path(self.assessment).is_file():
            raise InputError(f"assessment sample {self.assessment}: no such file")

    def window_settings(self, size: int) -> WindowSettings:
        """The window settings for models of input ``size``; an ``auto`` batch size is
        ``CPU_BATCH`` until the devices are known (:func:`nationmap.devices.plan_predictors`)."""
        batch = CPU_BATCH if self.batch_size == AUTO else self.batch_size
        return WindowSettings(size=size, overlap=self.overlap, blend=self.blend, batch_size=batch, tta=self.tta)

    def cell_settings(self) -> CellSettings:
        return CellSettings(pixels_per_degree=self.pixels_per_degree, block=self.cell_block, resampling=self.resampling,
                            min_validity=self.min_validity, water_threshold=self.water_threshold,
                            min_count=self.min_count)

    def change_rule(self) -> ChangeRule:
        return ChangeRule(confirm_months=self.change_confirm_months, confirm_confidence=self.change_confirm_confidence,
                          min_confidence=self.change_min_confidence, min_patch_px=self.change_min_patch_px)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # from_dict (Config): types checked, unknown keys refused, by the one rule of nationmap.config


def load_infer_defaults(path: str | Path | None) -> dict:
    """The ``[infer]`` table of ``path`` (default ``jobs/infer.toml``; missing default: {})."""
    return read_defaults_table(path, DEFAULT_CONFIG, "infer", "inference config")[1]


def resolve_infer_config(config_file: str | Path | None, overrides: dict) -> InferConfig:
    values = load_infer_defaults(config_file)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return InferConfig.from_dict(values)
