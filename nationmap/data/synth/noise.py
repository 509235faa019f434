"""Coordinate-hashed value noise: seamless, deterministic fields evaluated at any points.

Every field is a pure function of (x, y) in kilometres and a seed, so a LULC tile, a UTM
scene and a test can evaluate the same world at their own pixel centres without sharing
arrays, and neighbouring tiles join without seams.
"""

from __future__ import annotations

import numpy as np

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQ = 111.320


REFERENCE_LAT = 36.0
"""Latitude (degrees) whose east-west scale the world uses everywhere (a plate carree in km:
no shear, about +-12 % anisotropy between 24 N and 45 N)."""


def lonlat_to_km(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (km) of lon/lat degrees: x = lon * 111.32 cos(36 deg), y = lat * 110.57."""
    x = np.asarray(lon, dtype=np.float64) * (KM_PER_DEG_LON_EQ * np.cos(np.radians(REFERENCE_LAT)))
    return x, np.asarray(lat, dtype=np.float64) * KM_PER_DEG_LAT


def _mix(h: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser (in place)."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates and a seed."""
    h = np.asarray(ix, dtype=np.int64).astype(np.uint32) * np.uint32(0x9E3779B1)
    h ^= np.uint32((seed * 0x27D4EB2F) & 0xFFFFFFFF)
    h = _mix(h)
    h ^= np.asarray(iy, dtype=np.int64).astype(np.uint32) * np.uint32(0x85EBCA77)
    h = _mix(h)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(x: np.ndarray, y: np.ndarray, scale_km: float, seed: int, grad: bool = False):
    """One octave of value noise in [-1, 1] with lattice spacing ``scale_km`` (float32).

    With ``grad=True`` also returns the analytic gradient (d/dx, d/dy) per km.
    """
    gx = np.asarray(x, dtype=np.float64) * (1.0 / scale_km)
    gy = np.asarray(y, dtype=np.float64) * (1.0 / scale_km)
    ix = np.floor(gx)
    iy = np.floor(gy)
    tx = (gx - ix).astype(np.float32)
    ty = (gy - iy).astype(np.float32)
    ix = ix.astype(np.int64)
    iy = iy.astype(np.int64)
    fx = tx * tx * tx * (tx * (tx * 6 - 15) + 10)
    fy = ty * ty * ty * (ty * (ty * 6 - 15) + 10)
    v00 = hash_uniform(ix, iy, seed)
    v10 = hash_uniform(ix + 1, iy, seed)
    v01 = hash_uniform(ix, iy + 1, seed)
    v11 = hash_uniform(ix + 1, iy + 1, seed)
    a = v10 - v00
    b = v01 - v00
    c = v00 - v10 - v01 + v11
    value = (v00 + a * fx + b * fy + c * fx * fy) * 2 - 1
    if not grad:
        return value
    dfx = 30 * tx * tx * (tx * (tx - 2) + 1)
    dfy = 30 * ty * ty * (ty * (ty - 2) + 1)
    scale = np.float32(2.0 / scale_km)
    return value, (a + c * fy) * dfx * scale, (b + c * fx) * dfy * scale


def fbm(x, y, scale_km: float, octaves: int, seed: int, persistence: float = 0.5, grad: bool = False):
    """Fractal sum of value-noise octaves, normalised to about [-1, 1] (float32).

    With ``grad=True`` returns (value, d/dx, d/dy).
    """
    total = np.zeros(np.shape(x), dtype=np.float32)
    gx = np.zeros_like(total) if grad else None
    gy = np.zeros_like(total) if grad else None
    amplitude, norm, scale = 1.0, 0.0, scale_km
    for octave in range(octaves):
        octave_seed = seed * 131 + octave * 7919 + 17
        amp = np.float32(amplitude)
        if grad:
            v, dx, dy = value_noise(x, y, scale, octave_seed, grad=True)
            gx += amp * dx
            gy += amp * dy
        else:
            v = value_noise(x, y, scale, octave_seed)
        total += amp * v
        norm += amplitude
        amplitude *= persistence
        scale /= 2.0
    inv = np.float32(1.0 / norm)
    if grad:
        return total * inv, gx * inv, gy * inv
    return total * inv
