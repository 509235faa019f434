"""Stratified estimators of accuracy and area (Stehman 2014; Olofsson et al. 2014).

A sample is a stratified random sample of map pixels: in stratum ``h`` (``N_h`` pixels covering
``A_h`` km^2), ``n_h`` pixels drawn with equal probability without replacement. Each sample
pixel ``u`` has its map class, its reference class and its ellipsoidal area ``a_u`` (km^2; map
pixels in degrees shrink towards the pole, so counts are not areas).

Every figure is a ratio of two estimated totals, ``R = Y / X`` with ``Y = sum_h N_h * mean_h(y)``
(Stehman 2014, eq. 27), and its variance the ratio estimator's (eq. 28, with the finite
population correction ``1 - n_h / N_h``)::

    V(R) = 1 / X^2 * sum_h N_h^2 (1 - n_h/N_h) (s2_yh + R^2 s2_xh - 2 R s_xyh) / n_h

with area-weighted indicators (``I`` is 1 or 0):

    error-matrix cell (i, j)   y = a * I(map = i and reference = j)   x = a
    overall accuracy           y = a * I(map = reference)             x = a
    user's accuracy of i       y = a * I(map = i and reference = i)   x = a * I(map = i)
    producer's accuracy of j   y = a * I(map = j and reference = j)   x = a * I(reference = j)
    area share of class j      y = a * I(reference = j)               x = a

and a class's area is its share times the strata's known area ``sum_h A_h``.

A reference may hold no class at a point (``OUTSIDE``: open sea beyond a land-cover map's coast):
accuracy is then of the reference's domain (``x`` above times ``I(reference is a class)`` for the
error matrix, overall and user's accuracy), areas stay of the whole map, and the area outside
the reference's domain is estimated too. Strata need not
be the map's classes (a sample designed on an older map, a change stratum): these are the general
estimators, which reduce to Olofsson et al.'s when they are, and the pixel area ``a`` drops out
where all pixels have one area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTSIDE = -1  # a reference value: the reference has no class at the point (outside its domain)
Z95 = 1.96  # the 95 % normal quantile as the good-practice paper rounds it (its printed intervals use it)


@dataclass(frozen=True)
class Estimate:
    """An estimate and its standard error (NaN where undefined: a class never mapped or never
    in the reference of the sample)."""

    value: float
    se: float

    @property
    def ci95(self) -> float:
        """Half-width of the 95 % confidence interval (normal approximation)."""
        return Z95 * self.se

    def scaled(self, factor: float) -> "Estimate":
        return Estimate(self.value * factor, self.se * abs(factor))


@dataclass(frozen=True)
class Strata:
    """The design's strata: codes, population pixels ``N_h`` and area ``A_h`` (km^2)."""

    codes: tuple[int, ...]
    pixels: tuple[int, ...]
    area_km2: tuple[float, ...]

    def __post_init__(self):
        if not (len(self.codes) == len(self.pixels) == len(self.area_km2)):
            raise ValueError("strata: codes, pixels and areas differ in length")
        if len(set(self.codes)) != len(self.codes):
            raise ValueError("strata: a stratum code appears twice")

    @property
    def total_km2(self) -> float:
        return float(sum(self.area_km2))


@dataclass(frozen=True)
class LabelledSample:
    """(n,) arrays of a labelled sample: stratum code, map class, reference class (or
    ``OUTSIDE``) and pixel area (km^2) of each sample pixel."""

    stratum: np.ndarray
    map_class: np.ndarray
    reference: np.ndarray
    pixel_km2: np.ndarray


@dataclass(frozen=True)
class Assessment:
    """Accuracy and area of a map from a labelled sample; per-class tuples follow ``classes``.

    ``matrix[i][j]``: estimated share of the area mapped ``classes[i]`` whose reference is
    ``classes[j]`` (the error matrix in area proportions; rows map, columns reference)."""

    classes: tuple[int, ...]
    matrix: tuple[tuple[Estimate, ...], ...]
    overall: Estimate
    users: tuple[Estimate, ...]
    producers: tuple[Estimate, ...]
    area_share: tuple[Estimate, ...]
    area_km2: tuple[Estimate, ...]
    mapped_km2: tuple[float, ...]
    sample_counts: tuple[tuple[int, ...], ...]
    total_km2: float
    outside_km2: Estimate  # the map's area where the reference has no class
    points_outside: int


def ratio_estimate(y: np.ndarray, x: np.ndarray, stratum: np.ndarray, strata: Strata,
                   finite_population: bool = True) -> Estimate:
    """``R = Y / X`` of two (n,) per-sample-pixel values over a stratified random sample, and its
    standard error (Stehman 2014, eqs. 27-29). Every stratum needs at least 2 sample pixels."""
    total_y = total_x = 0.0
    parts = []
    for code, big_n in zip(strata.codes, strata.pixels):
        mine = stratum == code
        n = int(mine.sum())
        yh, xh = y[mine].astype(float), x[mine].astype(float)
        total_y += big_n * yh.mean()
        total_x += big_n * xh.mean()
        fpc = 1.0 - n / big_n if finite_population else 1.0
        if n < 2 and n != big_n:
            raise ValueError(f"stratum {code}: {n} sample pixel(s); a stratum's variance needs 2")
        # s2_yh, s_xyh / s_xyh, s2_xh; a stratum sampled whole (a census) adds no variance
        cov = np.cov(np.vstack([yh, xh]), ddof=1) if n >= 2 else np.zeros((2, 2))
        parts.append((big_n, n, fpc, cov[0, 0], cov[1, 1], cov[0, 1]))
    if total_x == 0:
        return Estimate(float("nan"), float("nan"))
    r = total_y / total_x
    var = sum(big_n ** 2 * fpc * (syy + r * r * sxx - 2 * r * sxy) / n for big_n, n, fpc, syy, sxx, sxy in parts)
    return Estimate(r, float(np.sqrt(max(var, 0.0)) / total_x))


def assess(sample: LabelledSample, strata: Strata, classes: tuple[int, ...],
           mapped_km2: tuple[float, ...] | None = None, finite_population: bool = True) -> Assessment:
    """Error matrix, overall / user's / producer's accuracy and area per class of ``classes``
    (the map's legend, in order), each with its standard error. Sample strata must be
    ``strata.codes`` with at least 2 sample pixels each (checked by the caller's reader).
    ``mapped_km2``: the map's area of each class (default: the strata's where every sample pixel's
    map class is its stratum, else NaN: unknown here)."""
    a, m, ref = sample.pixel_km2.astype(float), sample.map_class, sample.reference

    def ratio(y, x):
        return ratio_estimate(y, x, sample.stratum, strata, finite_population)

    inside = a * (ref != OUTSIDE)  # the reference's domain, each pixel with its area
    matrix = tuple(tuple(ratio(a * ((m == i) & (ref == j)), inside) for j in classes) for i in classes)
    users = tuple(ratio(a * ((m == c) & (ref == c)), inside * (m == c)) for c in classes)
    producers = tuple(ratio(a * ((m == c) & (ref == c)), a * (ref == c)) for c in classes)
    shares = tuple(ratio(a * (ref == c), a) for c in classes)
    total = strata.total_km2
    by_code = dict(zip(strata.codes, strata.area_km2))
    if mapped_km2 is not None:
        mapped = tuple(mapped_km2)
    elif (sample.stratum == m).all():  # strata are the map's classes: their areas are the map's
        mapped = tuple(float(by_code.get(c, 0.0)) for c in classes)
    else:
        mapped = tuple(float("nan") for _ in classes)
    counts = tuple(tuple(int(((m == i) & (ref == j)).sum()) for j in classes) for i in classes)
    return Assessment(classes=tuple(classes), matrix=matrix, overall=ratio(a * (m == ref), inside), users=users,
                      producers=producers, area_share=shares, area_km2=tuple(s.scaled(total) for s in shares),
                      mapped_km2=mapped, sample_counts=counts, total_km2=total,
                      outside_km2=ratio(a * (ref == OUTSIDE), a).scaled(total), points_outside=int((ref == OUTSIDE).sum()))
