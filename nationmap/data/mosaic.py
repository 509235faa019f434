"""JAXA PALSAR-2 annual mosaic tiles (CARD4L NRB): ``<TILE>_<YY>_sl_<POL>_<CODE>.tif`` + XML.

A 1 x 1 degree tile ships one uint16 DN GeoTIFF per polarisation (``..._sl_HH_...``), a date
layer (``..._date_...``: days since the XML's ZeroReferenceDate, DN 0/1 = no data), a local
incidence angle layer (``..._linci_...``: uint8 degrees), a data mask (``..._mask_...``: uint8,
JAXA's values 0 no data, 50 ocean and water, 100 layover, 150 shadow, 255 land; see
:mod:`nationmap.data.masks`) and an XML document with the acquisition times, mode, look side and
pass direction. Backscatter uses the same DN convention as the scenes (DN 0 and 1 = no data).
Not every tile ships every layer (the shared real tile N23W161 has ``linci`` and ``date`` but no
``mask``): the readers of the optional layers return ``None`` for a tile without one.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from nationmap.data.sar import SarRaster
from nationmap.errors import InputError, RasterError, first_line

MOSAIC_NODATA_DN = (1,)
"""DN values the mosaics use for no data besides 0."""

_NAME = re.compile(
    r"^(?P<tile>[NS]\d{2}[EW]\d{3})_(?P<yy>\d{2})_sl_(?P<pol>HH|HV|VV|VH)_(?P<code>[A-Za-z0-9]+)\.tiff?$"
)


@dataclass(frozen=True)
class MosaicMetadata:
    """What the tile's XML says (``None`` for fields the document lacks)."""

    first_date: dt.date | None
    last_date: dt.date | None
    start_times: tuple[dt.datetime, ...] = ()
    mode: str | None = None
    polarisations: tuple[str, ...] = ()
    look_side: str | None = None
    pass_direction: str | None = None
    measurement: str | None = None  # "Gamma-0" for the NRB mosaics
    zero_reference_date: dt.date | None = None
    conversion: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MosaicTile:
    """One polarisation of a mosaic tile and its sibling files."""

    path: Path
    tile: str
    year: int
    polarisation: str
    code: str

    def _sibling(self, kind: str, suffix: str = ".tif") -> Path:
        """``<TILE>_<YY>_<kind>_<CODE><suffix>`` beside the tile (no ``kind``: the XML's name)."""
        middle = f"{kind}_" if kind else ""
        return self.path.with_name(f"{self.tile}_{self.year % 100:02d}_{middle}{self.code}{suffix}")

    @property
    def xml_path(self) -> Path:
        return self._sibling("", ".xml")

    @property
    def date_path(self) -> Path:
        return self._sibling("date")

    @property
    def mask_path(self) -> Path:
        """The tile's data mask ``<TILE>_<YY>_mask_<CODE>.tif`` (it may not exist)."""
        return self._sibling("mask")

    @property
    def linci_path(self) -> Path:
        """The tile's local incidence angle layer ``<TILE>_<YY>_linci_<CODE>.tif`` (it may not exist)."""
        return self._sibling("linci")

    @property
    def tile_id(self) -> str:
        return f"{self.tile}_{self.year % 100:02d}_{self.code}"

    def open(self) -> SarRaster:
        """The backscatter raster (DN), with the mosaic no-data convention."""
        return SarRaster(self.path, units="dn", extra_nodata=MOSAIC_NODATA_DN)

    def metadata(self) -> MosaicMetadata:
        return read_mosaic_xml(self.xml_path)

    def read_dates(self, window: Window | None = None) -> np.ndarray:
        """Acquisition date per pixel as ``datetime64[D]`` (NaT where no data), shape (H, W)."""
        zero = self.metadata().zero_reference_date
        if zero is None:
            raise RasterError(f"{self.xml_path.name}: no ZeroReferenceDate for the date layer")
        with SarRaster(self.date_path, units="dn", extra_nodata=MOSAIC_NODATA_DN) as raster:
            days = raster.read_raw(window)
            valid = raster.valid_mask(days)
        out = np.datetime64(zero, "D") + days.astype("timedelta64[D]")
        out[~valid] = np.datetime64("NaT")
        return out


    def read_mask(self, window: Window | None = None) -> np.ndarray | None:
        """(H, W) uint8 JAXA mask codes of ``window`` (``None``: the whole tile), or ``None`` when
        the tile ships no mask file."""
        if not self.mask_path.exists():
            return None
        return read_uint8_layer(self.mask_path, window)[0]

    def read_linci(self, window: Window | None = None) -> np.ndarray | None:
        """(H, W) float32 local incidence angle in degrees (NaN where no data) of ``window``, or
        ``None`` when the tile ships no ``linci`` file."""
        if not self.linci_path.exists():
            return None
        return read_local_incidence(self.linci_path, window)


def read_uint8_layer(path: Path, window: Window | None = None) -> tuple[np.ndarray, dict]:
    """Band 1 of an 8-bit ancillary layer (mask, local incidence) as stored, (H, W) uint8, and its
    ``{"nodata", "scale", "offset"}`` tags; RasterError for a file that is not one."""
    try:
        with rasterio.open(path) as src:
            if src.dtypes[0] != "uint8":
                raise RasterError(f"{Path(path).name}: expected an 8-bit layer, found {src.dtypes[0]}")
            raw = src.read(1, window=window)
            tags = {"nodata": src.nodata, "scale": src.scales[0], "offset": src.offsets[0]}
    except RasterioError as exc:
        raise RasterError(f"{Path(path).name}: cannot read ({first_line(exc)})") from None
    return raw, tags


def read_local_incidence(path: Path, window: Window | None = None) -> np.ndarray:
    """A local incidence angle layer (uint8 degrees) as (H, W) float32 degrees, NaN where no data.

    Value 0 and the file's declared no-data value are no data (JAXA's ``linci`` declares 1); the
    band's scale and offset, when set, apply (JAXA's are 1 and 0: whole degrees).
    """
    raw, tags = read_uint8_layer(path, window)
    out = raw.astype(np.float32) * np.float32(tags["scale"] or 1.0) + np.float32(tags["offset"] or 0.0)
    nodata = raw == 0
    if tags["nodata"] is not None:
        nodata |= raw == tags["nodata"]
    out[nodata] = np.nan
    return out


def is_mosaic_name(name: str) -> bool:
    return _NAME.match(Path(name).name) is not None


def parse_mosaic_name(path: str | Path) -> MosaicTile:
    path = Path(path)
    m = _NAME.match(path.name)
    if m is None:
        raise InputError(f"{path.name}: not a PALSAR-2 mosaic name (expected like N23W161_20_sl_HH_F02DAR.tif)")
    return MosaicTile(path=path, tile=m["tile"], year=2000 + int(m["yy"]), polarisation=m["pol"], code=m["code"])


def read_mosaic_xml(path: str | Path) -> MosaicMetadata:
    """Parse a CARD4L NRB mosaic XML document."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: mosaic metadata XML not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RasterError(f"{path.name}: malformed XML ({exc})") from None

    def text(tag: str) -> str | None:
        node = root.find(f".//{tag}")
        return node.text.strip() if node is not None and node.text else None

    def date(tag: str) -> dt.date | None:
        value = text(tag)
        return dt.date.fromisoformat(value[:10]) if value else None

    starts = []
    for node in root.iter("UTCStartTime"):
        if node.text:
            starts.append(dt.datetime.fromisoformat(node.text.strip().replace("Z", "+00:00")))
    pols = text("Polarizations")
    pointing = text("AntennaPointing")
    return MosaicMetadata(
        # JAXA's schema spells these two tags this way.
        first_date=date("FirstAcquistionDate"),
        last_date=date("LastAcquistitionDate") or date("LastAcquisitionDate"),
        start_times=tuple(starts),
        mode=text("ObservationMode"),
        polarisations=tuple(pols.split("+")) if pols else (),
        look_side=pointing.lower() if pointing else None,
        pass_direction=(text("PassDirection") or "").lower() or None,
        measurement=text("BackscatterMeasurement"),
        zero_reference_date=date("ZeroReferenceDate"),
        conversion=text("BackscatterConversionEq"),
    )
