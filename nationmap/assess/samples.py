"""A sample on disk: the points (CSV and GeoPackage, one row per point) and the design record.

``<stem>.csv`` and ``<stem>.gpkg`` hold the same points: ``id``, ``lon`` / ``lat`` (the pixel's
centre, degrees, EPSG:4326), ``stratum`` and ``stratum_name``, ``map_class`` and ``map_name``,
``pixel_km2`` (the pixel's area on the ellipsoid), ``stratum_weight`` (the stratum's share of
the map's area), ``inclusion_probability`` (``n_h / N_h``), ``raster``, ``row``, ``col`` (where
the pixel is), and ``reference``: empty until a person (QGIS) or ``nationmap assess reference``
fills it with a class code or name of the legend. ``<stem>.design.json`` (:class:`SampleDesign`)
holds the strata (``N_h``, ``A_h``, ``n_h``), the legend, the allocation and the seed: the
estimators read the strata from it, never from the rows. The design writes both point files; the
later steps read and rewrite the one they are given (a person labels one of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nationmap.assess.estimators import OUTSIDE, LabelledSample, Strata
from nationmap.errors import InputError
from nationmap.files import atomic_path, write_json
from nationmap.records import Record

DESIGN_FORMAT = "nationmap-sample-design/1"
COLUMNS = ("id", "lon", "lat", "stratum", "stratum_name", "map_class", "map_name", "pixel_km2", "stratum_weight",
           "inclusion_probability", "raster", "row", "col", "reference")
NEEDED = ("id", "stratum", "map_class", "pixel_km2", "reference")  # what the estimators read
SUFFIXES = (".csv", ".gpkg")
# a reference that holds no class at the point (open sea beyond a land-cover map's coast, a hole
# in the reference): not an error, the point is outside the reference's domain
OUTSIDE_LABEL = "outside"
LAYER = "sample"


@dataclass(frozen=True)
class StratumRecord(Record):
    """One stratum: its code and name, population pixels ``N_h``, area ``A_h`` (km^2), points ``n_h``."""

    code: int
    name: str
    pixels: int
    area_km2: float
    n: int


@dataclass(frozen=True)
class SampleDesign(Record):
    """How a sample was drawn (``<stem>.design.json``). ``classes``: the map's legend, code (as
    text) to name; ``expected_ua``: the anticipated user's accuracy per stratum code (as text)."""

    FORMAT = DESIGN_FORMAT

    map: str
    product: str
    classes: dict[str, str]
    strata: list[StratumRecord]
    allocation: str
    seed: int
    n: int
    target_se: float
    recommended_n: int
    expected_overall_se: float
    expected_ua: dict[str, float] = field(default_factory=dict)
    map_files: dict[str, str] = field(default_factory=dict)  # the map's rasters -> SHA-256 when drawn
    buffers: dict[str, int] = field(default_factory=dict)  # class code -> px of its buffer stratum
    map_km2: dict[str, float] = field(default_factory=dict)  # the map's area of each class (pixel count)
    created: str = ""

    def __post_init__(self):
        if not self.strata:
            raise InputError("sample design: no stratum")
        if len({s.code for s in self.strata}) != len(self.strata):
            raise InputError("sample design: a stratum code appears twice")
        if not all(code.strip().lstrip("-").isdigit() for code in self.classes):
            raise InputError("sample design: the classes' codes must be integers")
        for s in self.strata:
            if s.pixels < 1 or not s.area_km2 > 0 or not 0 <= s.n <= s.pixels:
                raise InputError(f"sample design: stratum {s.code} needs pixels >= 1, area_km2 > 0 and "
                                 f"0 <= n <= pixels (found {s.pixels}, {s.area_km2}, {s.n})")

    def strata_table(self) -> Strata:
        return Strata(tuple(s.code for s in self.strata), tuple(s.pixels for s in self.strata),
                      tuple(s.area_km2 for s in self.strata))

    @property
    def legend(self) -> dict[int, str]:
        return {int(code): name for code, name in self.classes.items()}

    def mapped_km2(self) -> tuple[float, ...] | None:
        """The map's area of each legend class, where the design recorded it."""
        if not self.map_km2:
            return None
        return tuple(float(self.map_km2.get(str(c), 0.0)) for c in self.legend)


def design_path(sample: str | Path) -> Path:
    """``<stem>.design.json`` beside a sample's CSV or GeoPackage."""
    sample = Path(sample)
    return sample.with_name(sample.stem + ".design.json")


def sample_stem(path: str | Path) -> Path:
    """A sample's name without ``.csv`` / ``.gpkg`` (``--out s.csv`` and ``--out s`` are one sample)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in SUFFIXES else path


def write_sample(stem: str | Path, design: SampleDesign, points: pd.DataFrame) -> list[Path]:
    """``stem``.csv, .gpkg and .design.json, each written whole or not at all."""
    stem = Path(stem)
    points = points.loc[:, list(COLUMNS)]
    csv_path, gpkg_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".gpkg")
    written = []
    try:  # the three or none: a sample left half-written would refuse the retry
        for path in (csv_path, gpkg_path):
            write_points(path, points)
            written.append(path)
        write_json(design_path(csv_path), design.to_json())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return [csv_path, gpkg_path, design_path(csv_path)]


def _text(value) -> str:
    """A cell as text: empty for a missing value."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


TEXT_COLUMNS = ("stratum_name", "map_name", "raster", "reference")


def _typed(points: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each column as numbers where all its cells are numbers (ids, coordinates, codes, areas,
    weights), else as text: a GIS sorts and styles the numbers as numbers."""
    out = {}
    for name in points.columns:
        numbers = None if name in TEXT_COLUMNS else pd.to_numeric(points[name], errors="coerce")
        if numbers is not None and not numbers.isna().any():
            out[name] = numbers.to_numpy()
        else:
            out[name] = np.asarray([_text(v) for v in points[name]], dtype=object)
    return out


def write_geopackage(path: Path, points: pd.DataFrame) -> None:
    """The points as a GeoPackage point layer in EPSG:4326 (pyogrio, GDAL's GPKG driver)."""
    import pyogrio.raw
    import shapely

    columns = _typed(points)
    geometry = shapely.to_wkb(shapely.points(columns["lon"].astype(float), columns["lat"].astype(float)))
    with atomic_path(path, keep_suffix=True) as tmp:
        pyogrio.raw.write(str(tmp), geometry, list(columns.values()), list(columns), crs="EPSG:4326", driver="GPKG",
                          geometry_type="Point", layer=LAYER)


def write_points(path: Path, points: pd.DataFrame) -> None:
    """A sample's points as the CSV or GeoPackage ``path`` names, written whole or not at all."""
    if path.suffix.lower() == ".gpkg":
        write_geopackage(path, points)
        return
    with atomic_path(path) as tmp:
        points.to_csv(tmp, index=False)


def point_coordinates(points: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(n,) longitudes and latitudes (degrees) of a sample's points; InputError naming the first
    point without them or outside -180..180, -90..90."""
    missing = [c for c in ("lon", "lat") if c not in points.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}")
    lons = pd.to_numeric(points["lon"], errors="coerce").to_numpy(float)
    lats = pd.to_numeric(points["lat"], errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(lons) & np.isfinite(lats) & (np.abs(lats) < 90) & (np.abs(lons) <= 180))
    if bad.any():
        point = points["id"].iloc[int(np.argmax(bad))] if "id" in points else int(np.argmax(bad)) + 1
        raise InputError(f"{source} point {point}: lon and lat must be degrees (-180..180, -90..90)")
    return lons, lats


def read_points(path: str | Path) -> pd.DataFrame:
    """The rows of a sample's CSV or GeoPackage (every column as text, empty cells as "")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such sample file")
    if path.suffix.lower() == ".csv":
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
    if path.suffix.lower() == ".gpkg":
        return _read_geopackage(path)
    raise InputError(f"{path}: a sample is a .csv or .gpkg file")


def _read_geopackage(path: Path) -> pd.DataFrame:
    """The points of layer ``sample``, or of the file's only layer (a copy saved from QGIS)."""
    import pyogrio
    import pyogrio.raw
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(str(path))]
        layer = LAYER if LAYER in layers or len(layers) != 1 else layers[0]
        meta, _, _, fields = pyogrio.raw.read(str(path), layer=layer)
    except (DataSourceError, DataLayerError) as exc:
        raise InputError(f"{path}: not a sample GeoPackage (layer {LAYER!r}): {str(exc).splitlines()[0]}") from None
    frame = pd.DataFrame({name: values for name, values in zip(meta["fields"], fields)})
    return frame.map(_text)


def read_design(sample: str | Path, design: str | Path | None = None) -> SampleDesign:
    """The design record of ``sample`` (``design``, or the ``.design.json`` beside it)."""
    path = Path(design) if design else design_path(sample)
    if not path.is_file():
        raise InputError(f"{path}: no sample design beside the sample (written by `nationmap assess design`)")
    return SampleDesign.read(path)


def _codes(values: pd.Series, ids: pd.Series, what: str, allowed: dict[int, str], source: str,
           names: bool = False) -> np.ndarray:
    """(n,) int codes of a column: each a code of ``allowed`` (or, with ``names``, a class name,
    case aside, or ``outside``: OUTSIDE); InputError naming the first point that is not."""
    by_name = {name.casefold(): code for code, name in allowed.items()} if names else {}
    if names:
        by_name[OUTSIDE_LABEL] = OUTSIDE
    out = np.empty(len(values), int)
    for i, (value, point) in enumerate(zip(values, ids)):
        text = str(value).strip()
        code = by_name.get(text.casefold())
        if code is None:
            try:
                code = int(float(text)) if text and float(text).is_integer() else None
            except ValueError:
                code = None
        if code is None or (code not in allowed and not (names and text.casefold() == OUTSIDE_LABEL)):
            legend = ", ".join(f"{c} {n}" for c, n in allowed.items()) + (f" or {OUTSIDE_LABEL}" if names else "")
            raise InputError(f"{source} point {point}: {what} {text!r} is not one of {legend}")
        out[i] = code
    return out


def _check_strata_counts(design: SampleDesign, stratum: np.ndarray, source: str) -> None:
    for s in design.strata:
        n = int((stratum == s.code).sum())
        if n > s.pixels:
            raise InputError(f"{source}: stratum {s.code} ({s.name}) has {n} points but only {s.pixels} pixels")
        if n < min(2, s.pixels):
            raise InputError(f"{source}: stratum {s.code} ({s.name}) has {n} labelled point(s); its variance "
                             "needs at least 2")


def labelled_sample(design: SampleDesign, points: pd.DataFrame, source: str,
                    drop_unlabelled: bool = False, unmapped: int | None = None) -> tuple[LabelledSample, int]:
    """The estimators' arrays from a sample's rows, checked: the needed columns, strata of the
    design, map and reference classes of the legend (a reference by code or name), a positive
    pixel area, at least 2 labelled points per stratum. Unlabelled points are an error, or with
    ``drop_unlabelled`` left out (non-response within their stratum) and counted. ``unmapped``:
    a map code allowed beside the legend's (another map's no data: a point it left unmapped)."""
    missing = [c for c in NEEDED if c not in points.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} (a sample has {', '.join(NEEDED)})")
    if points["id"].duplicated().any():
        raise InputError(f"{source}: point id {points['id'][points['id'].duplicated()].iloc[0]} appears twice")
    blank = points["reference"].astype(str).str.strip() == ""
    if blank.any() and not drop_unlabelled:
        raise InputError(f"{source} point {points['id'][blank].iloc[0]}: no reference class ({int(blank.sum())} "
                         "unlabelled; label every point, or pass --drop-unlabelled)")
    kept = points[~blank]
    strata = {s.code: s.name for s in design.strata}
    stratum = _codes(kept["stratum"], kept["id"], "stratum", strata, source)
    map_legend = design.legend | ({unmapped: "not mapped"} if unmapped is not None else {})
    map_class = _codes(kept["map_class"], kept["id"], "map class", map_legend, source)
    reference = _codes(kept["reference"], kept["id"], "reference", design.legend, source, names=True)
    km2 = pd.to_numeric(kept["pixel_km2"], errors="coerce").to_numpy(float)
    if not (np.isfinite(km2) & (km2 > 0)).all():
        raise InputError(f"{source} point {kept['id'].iloc[int(np.argmin(np.isfinite(km2) & (km2 > 0)))]}: "
                         "pixel_km2 must be a positive number")
    _check_strata_counts(design, stratum, source)
    return LabelledSample(stratum, map_class, reference, km2), int(blank.sum())
