"""Windowed reading of SAR backscatter rasters as sigma0 (dB and linear power).

One reader for every SAR GeoTIFF nationmap uses: ALOS-2 L1.5/L2.1 scenes and JAXA mosaic
tiles (uint16 DN, calibrated with :mod:`nationmap.data.calibration`) and rasters that are
already calibrated (float, dB or linear power, declared by the caller or by the band's unit
tag). A scene is never read whole unless the caller asks for it (``window=None``).

Every reader of SAR values goes through :meth:`SarRaster.read` (or :meth:`SarRaster.valid_mask`):
a pixel is valid only when it is finite, not a no-data value, and calibrates into the physical
range :data:`~nationmap.data.calibration.SIGMA0_DB_RANGE`; anything else is no data, so neither
inference nor dataset preparation ever feeds a model a non-finite or unphysical value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from nationmap.data.calibration import SIGMA0_DB_RANGE, UNITS, db_to_linear, dn_to_db, linear_to_db, physical_db
from nationmap.errors import InputError, RasterError, first_line

__all__ = ["SIGMA0_DB_RANGE", "SarRaster", "Sigma0", "read_sigma0"]

_UNIT_TAGS = {"db": "db", "decibel": "db", "decibels": "db", "linear": "linear", "power": "linear"}


@dataclass(frozen=True)
class Sigma0:
    """A calibrated window.

    Attributes:
        db: (H, W) float32 sigma0 in dB, NaN where there is no data.
        valid: (H, W) bool, True where the pixel holds data.
        transform: affine transform of the window (CRS units, usually metres or degrees).
        crs: the raster's CRS.
    """

    db: np.ndarray
    valid: np.ndarray
    transform: Affine
    crs: rasterio.crs.CRS

    @property
    def linear(self) -> np.ndarray:
        """(H, W) float32 linear power ``10^(dB/10)``, NaN where there is no data."""
        return db_to_linear(self.db)


class SarRaster:
    """An open SAR raster; read windows of it as :class:`Sigma0`.

    Args:
        path: GeoTIFF path.
        units: ``"dn"``, ``"db"`` or ``"linear"``; ``None`` infers DN for integer rasters and
            reads the band's unit tag (``dB`` / ``linear``) for float rasters.
        extra_nodata: further DN values meaning no data (JAXA mosaics use DN 1).
    """

    def __init__(self, path: str | Path, units: str | None = None, extra_nodata: tuple = ()):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        try:
            self._ds = rasterio.open(self.path)
        except RasterioError as exc:
            raise RasterError(f"{self.path.name}: cannot open as a GeoTIFF ({first_line(exc)})") from None
        try:
            self.units = _resolve_units(self._ds, units)
            if self._ds.crs is None or self._ds.transform == Affine.identity():
                raise RasterError(f"{self.path.name}: no georeference (no CRS or geotransform)")
        except Exception:
            self._ds.close()
            raise
        nodata = {v for v in (self._ds.nodata, *extra_nodata) if v is not None}
        self.nodata_values = tuple(sorted(nodata))

    # -- metadata ---------------------------------------------------------------------------
    @property
    def crs(self) -> rasterio.crs.CRS:
        return self._ds.crs

    @property
    def transform(self) -> Affine:
        return self._ds.transform

    @property
    def width(self) -> int:
        return self._ds.width

    @property
    def height(self) -> int:
        return self._ds.height

    @property
    def bounds(self):
        return self._ds.bounds

    @property
    def dataset(self) -> rasterio.io.DatasetReader:
        """The underlying rasterio dataset (for masks and decimated reads)."""
        return self._ds

    # -- reading ----------------------------------------------------------------------------
    def read_raw(self, window: Window | None = None, out_shape=None) -> np.ndarray:
        """Band 1 as stored (DN or float), (H, W); raises RasterError on truncated data."""
        try:
            return self._ds.read(1, window=window, out_shape=out_shape, boundless=False)
        except RasterioError as exc:
            raise RasterError(f"{self.path.name}: read failed ({first_line(exc)})") from None

    def valid_mask(self, raw: np.ndarray) -> np.ndarray:
        """(H, W) bool: pixels of ``raw`` that hold data under this raster's conventions and
        calibrate into the physical sigma0 range."""
        return self.calibrate(raw)[1]

    def _convention_mask(self, raw: np.ndarray) -> np.ndarray:
        """(H, W) bool: pixels that are not no data by the raster's conventions (DN > 0, finite
        float, positive linear power, not a declared no-data value)."""
        if self.units == "dn":
            valid = raw > 0
        else:
            valid = np.isfinite(raw)
            if self.units == "linear":
                valid &= raw > 0
        for value in self.nodata_values:
            if not (isinstance(value, float) and np.isnan(value)):
                valid &= raw != value
        return valid

    def no_data_mask(self, raw: np.ndarray) -> np.ndarray:
        """(H, W) bool: pixels of ``raw`` that are no data by declaration (DN 0, a no-data
        value, NaN), as opposed to values that are present but invalid (inf, negative power,
        outside the physical range): the no-data reason layer tells the two apart."""
        nodata = raw == 0 if self.units == "dn" else np.isnan(raw)
        for value in self.nodata_values:
            if not (isinstance(value, float) and np.isnan(value)):
                nodata |= raw == value
        return nodata

    def calibrate(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band values as stored -> ((H, W) float32 sigma0 dB, NaN where no data; (H, W) bool
        validity). Values outside :data:`SIGMA0_DB_RANGE` after calibration are no data."""
        valid = self._convention_mask(raw)
        if self.units == "dn":
            db = dn_to_db(np.where(valid, raw, 0))
        elif self.units == "db":
            with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: checked below
                db = np.where(valid, raw, np.nan).astype(np.float32)
        else:
            db = linear_to_db(np.where(valid, raw, np.nan))
        unphysical = valid & ~physical_db(db)
        if unphysical.any():  # rare: normal rasters leave db and valid untouched (same bytes out)
            valid &= ~unphysical
            db[unphysical] = np.nan
        return db, valid

    def read(self, window: Window | None = None, out_shape=None) -> Sigma0:
        """Read a window (``None``: the whole raster) and calibrate it to sigma0."""
        db, valid = self.calibrate(self.read_raw(window, out_shape))
        transform = self._ds.transform if window is None else self._ds.window_transform(window)
        if out_shape is not None:
            h = window.height if window is not None else self.height
            w = window.width if window is not None else self.width
            transform = transform @ Affine.scale(w / out_shape[-1], h / out_shape[-2])
        return Sigma0(db=db, valid=valid, transform=transform, crs=self._ds.crs)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> "SarRaster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_sigma0(path: str | Path, window: Window | None = None, units: str | None = None) -> Sigma0:
    """Open ``path``, read ``window`` (``None``: whole raster) as sigma0, close."""
    with SarRaster(path, units=units) as raster:
        return raster.read(window)


def _resolve_units(ds, declared: str | None) -> str:
    if declared is not None:
        declared = declared.lower()
        if declared not in UNITS:
            raise InputError(f"units must be one of {', '.join(UNITS)}, not {declared!r}")
        return declared
    if np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
        return "dn"
    tag = (ds.units[0] or ds.tags(1).get("units") or ds.tags().get("units") or "").strip().lower()
    if tag in _UNIT_TAGS:
        return _UNIT_TAGS[tag]
    raise InputError(
        f"{Path(ds.name).name}: float raster without a unit tag; declare units as 'db' or 'linear'"
    )
