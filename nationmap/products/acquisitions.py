"""The month's acquisition table: which ALOS-2 acquisition each ``source`` index names.

The acquisitions of a run are the catalog rows :func:`nationmap.infer.pipeline.select_scenes`
picks, sorted by id; row ``i`` of the table is the acquisition whose index is ``i`` in the
``source`` layer (65535: none), in the order of the run manifest's ``inputs``. A run publishes it
beside the area tables (:func:`write_acquisition_table`)::

    tables/<region>_<YYYY-MM>_acquisitions.csv / .parquet
        index, id, datetime (UTC), day (days since the month's first day, the ``date`` layer's
        value), kind (scene | mosaic), polarisation, mode, level, look_side, pass_direction,
        orbit, frame, incidence_near_deg, incidence_far_deg, footprint (WKT, EPSG:4326, full
        precision), path, sha256, size_bytes

Readers (the web map's pixel click) use :func:`read_acquisition_table`, whose
:meth:`AcquisitionTable.get` answers a ``source`` value with its row in constant time.

The near- and far-range incidence angles are those a CARD4L NRB mosaic tile's XML gives for the
one acquisition it was made from; an ALOS-2 L2.1 scene's name, summary and catalog row give none,
so they are empty there (never estimated).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import shapely

from nationmap.data.months import Month
from nationmap.errors import InputError, NationmapError, first_line
from nationmap.files import atomic_path
from nationmap.products.pixels import NO_SOURCE  # the source layer's value where no acquisition decided

COLUMNS = ("index", "id", "datetime", "day", "kind", "polarisation", "mode", "level", "look_side",
           "pass_direction", "orbit", "frame", "incidence_near_deg", "incidence_far_deg", "footprint", "path",
           "sha256", "size_bytes")
_INTEGERS = ("orbit", "frame", "size_bytes")  # nullable integer columns
_FLOATS = ("incidence_near_deg", "incidence_far_deg")
_TEXT = ("mode", "level", "look_side", "pass_direction", "sha256")  # nullable text columns


@dataclass(frozen=True)
class Acquisition:
    """One acquisition of the month, as its catalog row says (:data:`nationmap.data.catalog.SCHEMA`).

    Attributes:
        index: its row in the month's acquisition table = its value in the ``source`` layer.
        id: catalog id (scene id without polarisation, or mosaic tile id).
        datetime: acquisition time, UTC.
        day: days from the month's first day (UTC) to the acquisition's: the ``date`` layer's value.
        kind: ``scene`` (ALOS-2 L1.5/L2.1) or ``mosaic`` (PALSAR-2 CARD4L NRB tile).
        polarisation: of the catalogued file (``HH``).
        mode: PALSAR-2 observation mode (``UBS``, ``FBD``, ``WBD``...), None if unknown.
        level: processing level (``2.1``, ``CARD4L-NRB``), None if unknown.
        look_side: ``right`` or ``left``; pass_direction: ``ascending`` or ``descending``.
        orbit: total (absolute) orbit number from the scene name; frame: frame number.
        footprint: valid-data footprint, shapely geometry in EPSG:4326 degrees.
        path: the input file as catalogued; sha256: its SHA-256 (hex); size_bytes: its size.
        incidence_near_deg, incidence_far_deg: near/far-range incidence angles (degrees) the
            product's metadata gives, None where it gives none.
    """

    index: int
    id: str
    datetime: dt.datetime
    day: int
    kind: str
    polarisation: str
    mode: str | None
    level: str | None
    look_side: str | None
    pass_direction: str | None
    orbit: int | None
    frame: int | None
    footprint: Any
    path: str
    sha256: str | None
    size_bytes: int | None
    incidence_near_deg: float | None = None
    incidence_far_deg: float | None = None


def _value(v):
    """A catalog value as Python: None for NaN/NA/None."""
    if v is None or (not isinstance(v, (str, bytes)) and pd.isna(v)):
        return None
    return v


def _int(v) -> int | None:
    v = _value(v)
    return None if v is None else int(v)


def card4l_incidence(xml: Path) -> tuple[float | None, float | None]:
    """(near, far) range incidence angles in degrees of the single acquisition a CARD4L NRB XML
    describes (``IncAngleNearRange`` / ``IncAngleFarRange``); (None, None) when it describes none
    or several, the values are not angles in (0, 90), or the file cannot be read."""
    try:
        root = ET.parse(xml).getroot()
        near = [float(n.text) for n in root.iter("IncAngleNearRange")]
        far = [float(n.text) for n in root.iter("IncAngleFarRange")]
    except (OSError, ET.ParseError, TypeError, ValueError):
        return None, None
    if len(near) != 1 or len(far) != 1 or not 0 < near[0] <= far[0] < 90:
        return None, None
    return near[0], far[0]


def _incidence(kind: str, path: str) -> tuple[float | None, float | None]:
    if kind != "mosaic":
        return None, None
    from nationmap.data.mosaic import parse_mosaic_name

    try:
        return card4l_incidence(parse_mosaic_name(path).xml_path)
    except NationmapError:
        return None, None


def acquisition_rows(rows: Iterable, month: Month) -> list[Acquisition]:
    """The month's acquisition table from its catalog rows (``DataFrame.itertuples()`` of the
    catalog, in the run's order): row ``i`` gets index ``i``. InputError when an acquisition is not
    of ``month`` or there are more than the ``source`` layer can index."""
    out = []
    for i, r in enumerate(rows):
        when = pd.Timestamp(r.datetime).tz_convert("UTC").to_pydatetime()
        if not month.contains(when):
            raise InputError(f"acquisition {r.id} ({when:%Y-%m-%d}) is not of the month {month}")
        near, far = _incidence(r.kind, r.path)
        out.append(Acquisition(
            index=i, id=r.id, datetime=when, day=(when.date() - month.start.date()).days, kind=r.kind,
            polarisation=r.polarisation, mode=_value(r.mode), level=_value(r.level), look_side=_value(r.look_side),
            pass_direction=_value(r.pass_direction), orbit=_int(r.orbit), frame=_int(r.frame),
            footprint=shapely.from_wkb(r.geometry), path=str(r.path), sha256=_value(r.sha256),
            size_bytes=_int(r.size_bytes), incidence_near_deg=near, incidence_far_deg=far))
    if len(out) >= NO_SOURCE:
        raise InputError(f"{len(out)} acquisitions in {month}: the source layer indexes at most {NO_SOURCE - 1}")
    return out


def _frame(rows: list[Acquisition]) -> pd.DataFrame:
    records = [{**{f.name: getattr(a, f.name) for f in dataclasses.fields(Acquisition)},
                "footprint": shapely.to_wkt(a.footprint, rounding_precision=-1)} for a in rows]
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True).astype("datetime64[us, UTC]")
    for name in ("index", "day"):
        frame[name] = frame[name].astype("int32")
    for name in _INTEGERS:
        frame[name] = frame[name].astype("Int64")
    for name in _FLOATS:
        frame[name] = frame[name].astype("Float64")
    for name in ("id", "kind", "polarisation", "footprint", "path", *_TEXT):
        frame[name] = frame[name].astype("string")
    return frame


def write_acquisition_table(rows: list[Acquisition], stem: Path) -> tuple[Path, Path]:
    """``rows`` as ``<stem>.csv`` and ``<stem>.parquet`` (each written whole or not at all);
    returns both paths. Times are ISO 8601 UTC with microseconds in the CSV, timestamps in Parquet."""
    if [a.index for a in rows] != list(range(len(rows))):
        raise ValueError("acquisition rows must be indexed 0..n-1 in order")
    frame = _frame(rows)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, parquet = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".parquet")
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    with atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    return csv, parquet


@dataclass(frozen=True)
class AcquisitionTable:
    """A month's acquisition table as read back: ``rows[i]`` has index ``i``."""

    rows: tuple[Acquisition, ...]

    def get(self, source: int) -> Acquisition | None:
        """The acquisition a ``source`` layer value names; None for :data:`NO_SOURCE` (no acquisition)
        or an index the table does not hold."""
        return self.rows[source] if 0 <= source < len(self.rows) else None

    def ids(self) -> list[str]:
        return [a.id for a in self.rows]


def read_acquisition_table(csv: str | Path) -> AcquisitionTable:
    """The table written by :func:`write_acquisition_table` (its ``.csv``); one-line InputError
    naming the file when it cannot be read whole (missing, a column missing, a value that does not
    parse, indexes not 0..n-1)."""
    csv = Path(csv)
    try:
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        rows = tuple(_parse(r) for r in frame.to_dict("records"))
    except (OSError, ValueError, TypeError, shapely.errors.GEOSException) as exc:
        raise InputError(f"{csv}: not a readable acquisition table ({first_line(exc)})") from None
    if [a.index for a in rows] != list(range(len(rows))):
        raise InputError(f"{csv}: not a readable acquisition table (indexes are not 0..{len(rows) - 1} in order)")
    return AcquisitionTable(rows)


def _parse(r: dict) -> Acquisition:
    """One CSV record (all text, "" = empty) as an Acquisition; ValueError when a value does not parse."""
    text = {k: (v if v != "" else None) for k, v in r.items()}
    when = dt.datetime.fromisoformat(r["datetime"].replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"datetime {r['datetime']!r} has no time zone")
    near, far = (None if text[k] is None else float(text[k]) for k in _FLOATS)
    if any(v is not None and not math.isfinite(v) for v in (near, far)):
        raise ValueError("an incidence angle is not a number")
    return Acquisition(
        index=int(r["index"]), id=r["id"], datetime=when.astimezone(dt.timezone.utc), day=int(r["day"]),
        kind=r["kind"], polarisation=r["polarisation"], mode=text["mode"], level=text["level"],
        look_side=text["look_side"], pass_direction=text["pass_direction"],
        orbit=None if text["orbit"] is None else int(text["orbit"]),
        frame=None if text["frame"] is None else int(text["frame"]),
        footprint=shapely.from_wkt(r["footprint"]), path=r["path"], sha256=text["sha256"],
        size_bytes=None if text["size_bytes"] is None else int(text["size_bytes"]),
        incidence_near_deg=near, incidence_far_deg=far)
