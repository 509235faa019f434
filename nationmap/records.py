"""Typed records between modules and on disk: one frozen dataclass per record, one format constant each.

Every record a module hands to another (or leaves on disk for a later run, the publisher or the
run history) is declared here, with ``to_json`` / ``from_json``. ``from_json`` checks every
field's type, refuses unknown keys and unknown format versions with one clear line
(:class:`RecordError`), so a damaged or foreign file is a refusal, never a ``KeyError`` three
modules away. This module imports nothing heavy (no torch, rasterio or Ray): every process can
read every record.

Records on disk:

* :class:`SceneRecord` ``.work/state/scenes/<id>.json``, :class:`CellRecord`
  ``.work/state/cells/<cell>.json``: one per unit of an inference run;
* :class:`RunManifest` ``manifest.json`` of an inference run (format :data:`RUN_FORMAT`);
* :class:`RefreshRecord` ``refreshes/<run_id>.json`` of a monthly refresh (same format family);
* :class:`BundleMeta` ``model.json`` of a model bundle (format :data:`BUNDLE_FORMAT`).

In flight: :class:`SceneJob` (driver -> predictor actors, as JSON rows of a Ray Dataset) and
:class:`CellJob` (driver -> cell tasks; it carries the cell, band layout, layers and settings as
Python objects, pickled by Ray, so it has no JSON form).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nationmap.config import check_value
from nationmap.errors import InputError

if TYPE_CHECKING:  # the cell job carries these objects; the module itself stays light
    from nationmap.data.grid import Cell
    from nationmap.products.cells import BandLayout, CellSettings
    from nationmap.products.layers import Layer

RUN_FORMAT = "nationmap-run/1"  # inference manifests, refresh records, training summaries
BUNDLE_FORMAT = "nationmap-bundle/1"
SCENE_RECORD_FORMAT = "nationmap-scene/1"
CELL_RECORD_FORMAT = "nationmap-cell/1"
SCENE_JOB_FORMAT = "nationmap-scene-job/1"


class RecordError(InputError):
    """A record (file or message) is not of the expected type, version or shape."""


class Record:
    """Mixin of the frozen dataclasses below: typed construction from JSON objects.

    ``FORMAT`` (a class constant, None for nested parts) is written as the ``format`` key and
    checked on reading; fields marked ``field(metadata={"json": False})`` are not written."""

    FORMAT: ClassVar[str | None] = None

    @classmethod
    def from_fields(cls, values: dict, what: str | None = None):
        """An instance from the JSON object ``values``: unknown keys and wrong types refused."""
        what = what or cls.__name__
        if not isinstance(values, dict):
            raise RecordError(f"{what} must be a JSON object, not {type(values).__name__}")
        values = dict(values)
        if cls.FORMAT is not None:
            found = values.pop("format", None)
            if found != cls.FORMAT:
                raise RecordError(f"{what}: format {found!r}, expected {cls.FORMAT!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("json", True)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise RecordError(f"{what}: unknown field(s) {', '.join(unknown)}")
        missing = [n for n, f in fields.items() if n not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise RecordError(f"{what}: missing field(s) {', '.join(missing)}")
        try:
            checked = {n: check_value(v, hints[n], f"{what}: {n}") for n, v in values.items()}
            return cls(**checked)
        except InputError as exc:
            raise RecordError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{what}: {exc}") from None

    def to_json(self) -> dict:
        """A JSON object (nested records as objects; the format first when the record has one)."""
        out = {"format": self.FORMAT} if self.FORMAT is not None else {}
        for f in dataclasses.fields(self):
            if f.metadata.get("json", True):
                out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_json(cls, values: dict, source: str | Path | None = None):
        """Like :meth:`from_fields`, naming ``source`` (a file) in errors."""
        return cls.from_fields(values, f"{source}" if source is not None else None)

    @classmethod
    def read(cls, path: str | Path):
        """The record in file ``path``; RecordError if it is missing, not JSON or not this record."""
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RecordError(f"{path}: not found") from None
        except (OSError, ValueError) as exc:
            raise RecordError(f"{path}: not a readable JSON record ({type(exc).__name__})") from None
        return cls.from_json(values, path)

    @classmethod
    def read_or_none(cls, path: str | Path):
        """The record in ``path``, or None if it is missing, damaged or of another version: for the
        per-unit records of a run, which are a cache (a record that cannot be read is redone)."""
        try:
            return cls.read(path)
        except RecordError:
            return None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


# ---------------------------------------------------------------------------- files and failures


@dataclass(frozen=True)
class FileEntry(Record):
    """A file a unit wrote: ``path`` relative to the unit's directory, its SHA-256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Failure(Record):
    """One failed unit of a run: ``what`` (scene, cell, run), its id and the reason."""

    what: str
    id: str
    reason: str = ""


@dataclass(frozen=True)
class Products(Record):
    """The national files of a run, per product (paths relative to the run directory)."""

    mosaic: dict[str, FileEntry] = field(default_factory=dict)
    vrt: dict[str, FileEntry] = field(default_factory=dict)
    quicklooks: dict[str, FileEntry] = field(default_factory=dict)
    tables: dict[str, FileEntry] = field(default_factory=dict)  # areas_csv, areas_parquet, change_csv, ...
    stac: str = ""
    owners: dict[str, str] = field(default_factory=dict)  # table key -> the one product it belongs to (else all)

    GROUPS: ClassVar[tuple[str, ...]] = ("mosaic", "vrt", "quicklooks", "tables")

    def files(self) -> list[FileEntry]:
        return [e for g in self.GROUPS for e in getattr(self, g).values()]


# ---------------------------------------------------------------------------- scene stage


SCENE_STATUSES = ("ok", "failed", "not run")


@dataclass(frozen=True)
class SceneJob(Record):
    """One acquisition to predict: input ``path``, calibration ``units`` ("" = from the file),
    the unit ``key`` (hash of inputs, models, settings), the probability raster ``output``, the
    ``record`` file to write (absolute paths) and the run's ``dem`` ("" = none), from which an
    ALOS-2 scene without a layover/shadow mask of its own gets one."""

    FORMAT: ClassVar[str] = SCENE_JOB_FORMAT
    id: str
    path: str
    units: str
    key: str
    output: str
    record: str
    dem: str = ""


@dataclass(frozen=True)
class SceneRecord(Record):
    """What predicting one acquisition gave. ``status`` ok (``sha256`` of the probability raster,
    its size in px, windows, valid pixels), failed (``error``) or not run. ``started`` (Unix s) and
    ``worker`` (node:pid) place it in time; ``seconds`` and ``model_seconds`` (in the forward
    passes) are wall times. ``skipped``: reused from an earlier run (set in the manifest)."""

    FORMAT: ClassVar[str] = SCENE_RECORD_FORMAT
    id: str
    key: str
    status: str
    path: str = ""
    started: float | None = None
    seconds: float = 0.0
    model_seconds: float = 0.0
    windows: int = 0
    valid_pixels: int = 0
    height: int = 0
    width: int = 0
    sha256: str | None = None
    error: str = ""
    node: str | None = None
    worker: str | None = None
    skipped: bool = False

    def __post_init__(self):
        _one_of(self.status, SCENE_STATUSES, "scene status")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---------------------------------------------------------------------------- cell stage


CELL_STATUSES = ("ok", "empty", "failed")


@dataclass(frozen=True)
class CellRecord(Record):
    """What combining one cell gave: ``status`` ok (``files``: product -> COG file name and SHA-256),
    empty (no valid pixel; ``reason``) or failed (``error``). Pixel counts are of the cell grid;
    ``lulc_pixels`` maps class code (as text) to pixels."""

    FORMAT: ClassVar[str] = CELL_RECORD_FORMAT
    cell: str
    key: str
    status: str
    month: str = ""
    files: dict[str, FileEntry] = field(default_factory=dict)
    pixels: int = 0
    valid_pixels: int = 0
    scenes_used: list[str] = field(default_factory=list)
    lulc_pixels: dict[str, int] | None = None
    water_pixels: int | None = None
    reason: str = ""
    error: str = ""
    seconds: float = 0.0
    node: str | None = None
    skipped: bool = False
    change_key: str = ""  # the change stage's key of the change layers among ``files`` ("" : none)

    def __post_init__(self):
        _one_of(self.status, CELL_STATUSES, "cell status")

    @property
    def done(self) -> bool:
        """Finished (ok or empty): a rerun may reuse it if its key matches and its files verify."""
        return self.status in ("ok", "empty")


@dataclass(frozen=True)
class CellJob:
    """One cell to combine: the scene rasters that cover it (``scenes``, absolute paths, in the
    order of ``scene_ids``; ``scene_indexes``: their rows in the month's acquisition table,
    ``scene_days``: their days since the month's first day), where its COGs go (``out_dir``) and
    its record (``record``), the unit ``key``, the band layout of the scene rasters, the products
    to write (``layers``, in order), the cell settings, GeoTIFF tags, the GDAL warp threads it may
    use and the region's own area (a shapely geometry in degrees) when it cuts the cell."""

    cell: Cell
    month: str
    key: str
    scene_ids: tuple[str, ...]
    scenes: tuple[str, ...]
    out_dir: str
    record: str
    layout: BandLayout
    layers: dict[str, Layer]
    settings: CellSettings
    tags: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    scene_indexes: tuple[int, ...] = ()
    scene_days: tuple[int, ...] = ()
    region: Any = None


@dataclass(frozen=True)
class NationalRecord(Record):
    """``.work/state/mosaic.json``: the national files of a run and the key (cell checksums) they
    were built for."""

    FORMAT: ClassVar[str] = "nationmap-national/1"
    key: str
    products: Products


@dataclass(frozen=True)
class StacRecord(Record):
    """``.work/state/stac.json``: the STAC files of a run (relative paths, SHA-256) and their key."""

    FORMAT: ClassVar[str] = "nationmap-stac/1"
    key: str
    files: dict[str, FileEntry]


# ---------------------------------------------------------------------------- run manifest


RUN_STATUSES = ("ok", "partial", "failed")


@dataclass(frozen=True)
class ModelEntry(Record):
    """A model bundle a run used: its directory and the SHA-256 of each of its files."""

    path: str
    sha256: dict[str, str]


@dataclass(frozen=True)
class InputEntry(Record):
    """An acquisition of a run: catalog id, file, SHA-256, acquisition time (ISO 8601)."""

    id: str
    path: str
    sha256: str
    datetime: str


@dataclass(frozen=True)
class RunManifest(Record):
    """``manifest.json`` of an inference run: inputs and models with checksums, code version,
    config, per-unit records, products, status (ok, partial: some unit failed, failed: no cell),
    timings (s) and units per Ray node. ``run_dir`` is where it was read or written (not stored)."""

    FORMAT: ClassVar[str] = RUN_FORMAT
    run_id: str
    status: str
    region: str
    month: str
    kind: str = "infer"
    started: str | None = None
    finished: str | None = None
    cells: list[str] = field(default_factory=list)
    code: dict[str, str | None] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    models: dict[str, ModelEntry] = field(default_factory=dict)
    inputs: list[InputEntry] = field(default_factory=list)
    scenes: list[SceneRecord] = field(default_factory=list)
    cell_results: list[CellRecord] = field(default_factory=list)
    empty_cells: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    products: Products = field(default_factory=Products)
    timings: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)
    run_dir: str = field(default="", metadata={"json": False})

    def __post_init__(self):
        _one_of(self.status, RUN_STATUSES, "run status")
        _one_of(self.kind, ("infer",), "run kind")

    @classmethod
    def read(cls, path: str | Path) -> "RunManifest":
        return super().read(path).replace(run_dir=str(Path(path).parent))

    def ok_cells(self) -> list[CellRecord]:
        return [c for c in self.cell_results if c.status == "ok"]


# ---------------------------------------------------------------------------- refresh record


REFRESH_STATUSES = ("running", "ok", "partial", "failed", "interrupted")


@dataclass(frozen=True)
class CatalogUpdate(Record):
    """What a refresh's catalog update found: files added, kept, removed, total, unreadable."""

    added: int
    kept: int
    removed: int
    total: int
    failed: list[dict[str, str]] = field(default_factory=list)
    stale: int = 0  # of ``failed``, files the catalog knew (rows kept: their scenes fail their month)


@dataclass(frozen=True)
class VersionCheck(Record):
    """What a refresh found in one published version of its month (its files against the
    checksums published with it) and what it did: ``damaged`` holds one line per damaged file
    (``path: reason (what was done)``); ``action`` is ``verified``, ``repaired``,
    ``republished as vN``, ``superseded by vN`` or ``not repaired``; ``notes``: what was found
    that is not damage (``path: what``, e.g. a GDAL sidecar written beside a published COG)."""

    version: int
    files: int
    action: str
    damaged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeCoverage(Record):
    """What a refresh's change table covers: the published version of the month before it was
    computed against, the cells mapped in both months and their km^2 mapped in both months."""

    previous_month: str
    previous: str
    cells: list[str] = field(default_factory=list)
    common_km2: float = 0.0


@dataclass(frozen=True)
class RefreshRecord(Record):
    """``refreshes/<run_id>.json``: one attempt of a monthly refresh. Its log is the ``.log``
    file beside it (never a path read from the record)."""

    FORMAT: ClassVar[str] = RUN_FORMAT
    run_id: str
    status: str
    region: str
    month: str
    kind: str = "refresh"
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    pid: int | None = None
    host: str = ""
    raw_dir: str = ""
    catalog: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    failures: list[Failure] = field(default_factory=list)
    catalog_update: CatalogUpdate | None = None
    infer_run_id: str | None = None
    staging: str | None = None
    empty_cells: list[str] = field(default_factory=list)
    version: int | None = None
    published: str | None = None
    new_version: bool | None = None
    latest: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. why there is no change table
    checked: list[VersionCheck] = field(default_factory=list)  # the month's published versions, verified
    change_table: ChangeCoverage | None = None

    def __post_init__(self):
        _one_of(self.status, REFRESH_STATUSES, "refresh status")
        _one_of(self.kind, ("refresh",), "record kind")


# ---------------------------------------------------------------------------- model bundles


@dataclass(frozen=True)
class Normalisation(Record):
    """Standardisation of the model input: ``(sigma0_dB - mean_db) / std_db``."""

    mean_db: float
    std_db: float

    def __post_init__(self):
        if not self.std_db > 0:
            raise ValueError(f"std_db must be > 0, not {self.std_db}")


PIXEL_MODEL_KIND = "pixel-gbt"  # the per-pixel baseline (nationmap.baseline)
PIXEL_MODEL_FILE = "model.skops"  # its fitted trees, in place of model.safetensors


@dataclass(frozen=True)
class BundleMeta(Record):
    """``model.json`` of a model bundle (``nationmap export``): what the weights in
    ``model.safetensors`` are (task, model kind and config), the class table and scheme they
    predict, the input normalisation, the water threshold and where they came from."""

    FORMAT: ClassVar[str] = BUNDLE_FORMAT
    task: str
    model_kind: str
    model_config: dict[str, Any]
    normalisation: Normalisation
    nationmap_version: str = ""
    class_table: dict[str, Any] | None = None
    scheme: str | None = None
    threshold: float | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _one_of(self.task, ("lulc", "water", "pretrain"), "bundle task")

    @property
    def weights_file(self) -> str:
        """The bundle's file holding the model: fitted trees for the baseline, tensors otherwise."""
        return PIXEL_MODEL_FILE if self.model_kind == PIXEL_MODEL_KIND else "model.safetensors"

    @property
    def img_size(self) -> int | None:
        """The models' input size (px), from the encoder config; None for a per-pixel model
        (the baseline), which takes windows of any size."""
        if self.model_kind == PIXEL_MODEL_KIND:
            return None
        size = (self.model_config.get("encoder") or {}).get("img_size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise RecordError(f"bundle model_config.encoder.img_size must be a positive int, not {size!r}")
        return size
