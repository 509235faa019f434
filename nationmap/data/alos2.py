"""ALOS-2 PALSAR-2 scene products (L1.5 / L2.1 GeoTIFF): file names and metadata.

A file name like ``IMG-HH-ALOS2237752900-181018-UBSR2.1GUD.tif`` carries the polarisation
(HH), orbit (23775), frame (2900), observation date (2018-10-18), observation mode (UBS),
look side (R), processing level (2.1) and processing code (G: geo-reference, U: UTM,
D: descending). Pixel values are uint16 DN (0 = no data), calibrated by
:mod:`nationmap.data.calibration` through :class:`nationmap.data.sar.SarRaster`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from nationmap.errors import InputError

# Observation modes of PALSAR-2 (beam class + polarisation count letter).
MODES = {
    "SBS": "Spotlight, single pol",
    "UBS": "Ultra-fine (3 m), single pol",
    "UBD": "Ultra-fine (3 m), dual pol",
    "HBS": "High-sensitive (6 m), single pol",
    "HBD": "High-sensitive (6 m), dual pol",
    "HBQ": "High-sensitive (6 m), quad pol",
    "FBS": "Fine (10 m), single pol",
    "FBD": "Fine (10 m), dual pol",
    "FBQ": "Fine (10 m), quad pol",
    "WBS": "ScanSAR nominal (100 m), single pol",
    "WBD": "ScanSAR nominal (100 m), dual pol",
    "WWS": "ScanSAR wide (60 m), single pol",
    "WWD": "ScanSAR wide (60 m), dual pol",
    "VBS": "ScanSAR nominal 2 (single pol)",
    "VBD": "ScanSAR nominal 2 (dual pol)",
}
PROCESSING_OPTIONS = {"G": "geo-reference", "R": "geo-coded", "_": "not applicable"}
MAP_PROJECTIONS = {"U": "UTM", "P": "polar stereographic", "M": "Mercator", "L": "Lambert conformal", "_": "none"}
PASS_DIRECTIONS = {"A": "ascending", "D": "descending"}
LOOK_SIDES = {"R": "right", "L": "left"}

_NAME = re.compile(
    r"^IMG-(?P<pol>HH|HV|VH|VV)-ALOS2(?P<orbit>\d{5})(?P<frame>\d{4})-(?P<date>\d{6})-"
    r"(?P<mode>[A-Z]{3})(?P<look>[RL])(?P<level>1\.1|1\.5|2\.1|3\.1)"
    r"(?P<option>[GR_])(?P<projection>[UPML_])(?P<pass_>[AD])\.tiff?$"
)


@dataclass(frozen=True)
class Alos2Name:
    """The fields of an ALOS-2 product file name."""

    polarisation: str
    orbit: int
    frame: int
    date: dt.date
    mode: str
    look_side: str  # "right" | "left"
    level: str  # "1.5", "2.1", ...
    processing_option: str  # "G" | "R"
    map_projection: str  # "U", "P", ...
    pass_direction: str  # "ascending" | "descending"
    filename: str

    @property
    def scene_id(self) -> str:
        """Acquisition id without polarisation, e.g. ``ALOS2237752900-181018-UBSR2.1GUD``."""
        stem = self.filename.split("-", 2)[2]
        return stem.rsplit(".", 1)[0]

    @property
    def processing_code(self) -> str:
        return self.processing_option + self.map_projection + self.pass_direction[0].upper()


def is_alos2_name(name: str) -> bool:
    return _NAME.match(Path(name).name) is not None


def parse_alos2_name(name: str | Path) -> Alos2Name:
    """Parse an ALOS-2 GeoTIFF file name; raises InputError naming what is wrong."""
    filename = Path(name).name
    m = _NAME.match(filename)
    if m is None:
        raise InputError(
            f"{filename}: not an ALOS-2 product name (expected like IMG-HH-ALOS2237752900-181018-UBSR2.1GUD.tif)"
        )
    if m["mode"] not in MODES:
        raise InputError(f"{filename}: unknown PALSAR-2 observation mode {m['mode']!r}")
    yy, mm, dd = int(m["date"][:2]), int(m["date"][2:4]), int(m["date"][4:])
    try:
        date = dt.date(2000 + yy, mm, dd)
    except ValueError:
        raise InputError(f"{filename}: invalid observation date {m['date']!r}") from None
    return Alos2Name(
        polarisation=m["pol"],
        orbit=int(m["orbit"]),
        frame=int(m["frame"]),
        date=date,
        mode=m["mode"],
        look_side=LOOK_SIDES[m["look"]],
        level=m["level"],
        processing_option=m["option"],
        map_projection=m["projection"],
        pass_direction=PASS_DIRECTIONS[m["pass_"]],
        filename=filename,
    )


def format_alos2_name(
    polarisation: str, orbit: int, frame: int, date: dt.date, mode: str = "UBS",
    look_side: str = "right", level: str = "2.1", processing_option: str = "G",
    map_projection: str = "U", pass_direction: str = "descending",
) -> str:
    """The file name JAXA gives such a product (inverse of :func:`parse_alos2_name`)."""
    look = {v: k for k, v in LOOK_SIDES.items()}[look_side]
    pass_ = {v: k for k, v in PASS_DIRECTIONS.items()}[pass_direction]
    return (
        f"IMG-{polarisation}-ALOS2{orbit:05d}{frame:04d}-{date:%y%m%d}-"
        f"{mode}{look}{level}{processing_option}{map_projection}{pass_}.tif"
    )


def read_summary(path: str | Path) -> dict[str, str]:
    """Parse a product's ``summary.txt`` (``Key="value"`` lines) into a dict."""
    out: dict[str, str] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"')
    return out


def scene_datetime(name: Alos2Name, summary: dict[str, str] | None = None) -> dt.datetime:
    """Scene centre time (UTC) from summary.txt when present, else the date at 00:00 UTC."""
    if summary and summary.get("Img_SceneCenterDateTime"):
        text = summary["Img_SceneCenterDateTime"]
        for fmt in ("%Y%m%d %H:%M:%S.%f", "%Y%m%d %H:%M:%S"):
            try:
                return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
            except ValueError:
                continue
    return dt.datetime.combine(name.date, dt.time(0, 0), tzinfo=dt.timezone.utc)
