"""Radiometric calibration of ALOS-2 PALSAR-2 digital numbers.

JAXA's convention for PALSAR-2 L1.5/L2.1 amplitude products and the 25 m mosaics:
``sigma0_dB = 10 * log10(DN^2) + CF`` with ``CF = -83.0 dB``; linear power is
``10 ** (sigma0_dB / 10)``. DN 0 is no data (the mosaics also use DN 1).
"""

from __future__ import annotations

import numpy as np

CALIBRATION_FACTOR_DB = -83.0
"""CF of ``sigma0_dB = 10*log10(DN^2) + CF`` for PALSAR-2 (dB)."""

UNITS = ("dn", "db", "linear")
"""Pixel units a SAR raster may carry: digital numbers, sigma0 in dB, linear power."""

# Why these bounds: natural surfaces lie in about -40..+10 dB at L-band, PALSAR-2's noise floor
# is about -30 dB, and the brightest targets (corner reflectors, building double bounce) reach
# +20..+30 dB; the uint16 DN of the products spans -83..+13.3 dB. A value outside [-100, +60] dB
# cannot be backscatter: it is a fill value (3.4e38 is float32's maximum), a scaling error or
# corruption, and a single one fed to a model turns a whole window's output into NaN.
SIGMA0_DB_RANGE = (-100.0, 60.0)
"""Physically possible sigma0 (dB, inclusive); values outside are no data."""


def physical_db(db: np.ndarray) -> np.ndarray:
    """(same shape) bool: sigma0 dB inside :data:`SIGMA0_DB_RANGE` (NaN and inf: False)."""
    lo, hi = SIGMA0_DB_RANGE
    return (db >= lo) & (db <= hi)


def dn_to_db(dn: np.ndarray, cf: float = CALIBRATION_FACTOR_DB) -> np.ndarray:
    """Digital numbers (any shape, integer) to sigma0 in dB (float32); DN <= 0 gives NaN."""
    dn = np.asarray(dn, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(dn * dn) + cf
    db[~(dn > 0)] = np.nan
    return db.astype(np.float32)


def db_to_linear(db: np.ndarray) -> np.ndarray:
    """sigma0 in dB to linear power (float32); NaN stays NaN."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0).astype(np.float32)


def linear_to_db(linear: np.ndarray) -> np.ndarray:
    """Linear power to dB (float32); non-positive power gives NaN."""
    linear = np.asarray(linear, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(linear)
    db[~(linear > 0)] = np.nan
    return db.astype(np.float32)


def db_to_dn(db: np.ndarray, cf: float = CALIBRATION_FACTOR_DB) -> np.ndarray:
    """Inverse calibration: sigma0 dB to uint16 DN (rounded, clipped to 1..65535; NaN -> 0)."""
    db = np.asarray(db, dtype=np.float64)
    dn = np.power(10.0, (db - cf) / 20.0)
    out = np.clip(np.rint(dn), 1, 65535)
    out[~np.isfinite(db)] = 0
    return out.astype(np.uint16)
