"""L-band HH backscatter of the synthetic world: class means by month, texture, terrain, speckle.

All values are sigma0 in dB. The class means are set from published L-band HH ranges
(forest volume scattering about -7 dB, urban double bounce brighter, smooth water and bare
soil dark, paddy following the rice calendar) and deliberately overlap: texture, per-object
offsets and speckle make a pixel's class ambiguous from its value alone.
"""

from __future__ import annotations

import numpy as np

from nationmap.data.synth import world as W

# Month-of-year means (Jan..Dec) for classes that change with the season; constant otherwise.
_PADDY = [-15, -15, -15, -15, -18, -16, -9, -8, -10, -14, -15, -15]  # flooding, growth, harvest
_CROP = [-13, -13, -12, -11, -11, -10, -10, -10, -11, -12, -13, -13]
_DECIDUOUS = [-9, -9, -9, -8.5, -8, -7.5, -7.5, -7.5, -7.5, -8, -8.8, -9]
_GRASS = [-14, -14, -14, -13.5, -13, -12.5, -12.5, -12.5, -13, -13.5, -14, -14]

# class code -> (monthly mean dB or constant, per-object std dB, texture std dB)
CLASS_BACKSCATTER: dict[int, tuple] = {
    W.WATER: (-23.0, 1.0, 1.0),  # inland water; open sea uses the scene's wind
    W.BUILT: (-4.0, 4.5, 2.5),  # double bounce, strongly orientation dependent
    W.PADDY: (_PADDY, 1.5, 1.5),
    W.CROP: (_CROP, 2.0, 1.5),
    W.GRASS: (_GRASS, 1.5, 1.5),
    W.DBF: (_DECIDUOUS, 0.8, 1.0),
    W.DNF: (-8.0, 0.8, 1.0),
    W.EBF: (-7.0, 0.8, 1.0),
    W.ENF: (-7.2, 0.8, 1.0),
    W.BARE: (-16.0, 2.5, 2.0),
    W.BAMBOO: (-8.0, 0.8, 1.0),
    W.SOLAR: (-14.0, 6.0, 3.0),  # specular panels: dark or bright with orientation
    W.WETLAND: (-14.0, 3.0, 2.5),
    W.GREENHOUSE: (-6.0, 4.0, 2.5),
}
NESZ_DB = -28.0
"""Noise-equivalent sigma0 (dB) added in linear power before speckle."""


def class_means(codes: np.ndarray, month: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel (mean dB, object std dB, texture std dB) for month ``1..12`` (float32)."""
    lut = np.zeros((3, 256), dtype=np.float32)
    for code, (mean, obj, tex) in CLASS_BACKSCATTER.items():
        lut[0, code] = mean[month - 1] if isinstance(mean, list) else mean
        lut[1, code] = obj
        lut[2, code] = tex
    return lut[0][codes], lut[1][codes], lut[2][codes]


def sea_db(wind: float, variation: np.ndarray) -> np.ndarray:
    """Open-sea sigma0 (dB): calm (-26) to rough (-16) with ``wind`` in [0, 1], +-2 dB variation."""
    return (-26.0 + 10.0 * wind + 2.0 * variation).astype(np.float32)


def terrain_offset_db(tilt_rad: np.ndarray, incidence_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brightness change (dB) of slopes tilted ``tilt_rad`` towards the sensor, and shadow mask.

    Local incidence is ``incidence - tilt``; the area-projection factor
    ``sin(incidence) / sin(local)`` brightens fore-slopes (layover-like at local <= 0) and darkens
    back-slopes; beyond 85 degrees local incidence the slope lies in radar shadow.
    """
    local = incidence_rad - tilt_rad
    shadow = local > np.radians(85.0)
    ratio = np.sin(incidence_rad) / np.sin(np.clip(local, np.radians(3.0), np.radians(89.0)))
    return np.clip(10.0 * np.log10(ratio), -10.0, 10.0).astype(np.float32), shadow


def speckle(linear: np.ndarray, looks: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative speckle: intensity times Gamma(L, 1/L) (unit mean, variance 1/L)."""
    return (linear * rng.gamma(looks, 1.0 / looks, size=linear.shape)).astype(np.float32)
