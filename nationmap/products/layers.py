"""The products, each declared once: what every consumer of a product reads.

A :class:`Layer` says everything about one product: its name, bands, data type, no-data value,
unit or legend (codes, names, colours), how a cell computes it (``compute``: a function of
:mod:`nationmap.products.pixels`), whether area tables count it, whether it is tiled on the
web map and how it is styled. Cells, national layers, PAM sidecars, area tables, STAC assets,
quicklooks and the web map all read these declarations (what still names a product: the
month-to-month change reads the previous month's ``reason`` or ``count`` for the area both
months mapped, and the run record's per-class pixel counts are of ``lulc`` and ``water``).

    lulc           uint8 class code 1..K (0 = no data); colour table and class names
    water          uint8 0 = land, 1 = water (255 = no data); colour table
    confidence     uint8 percent: mean probability of the chosen LULC class (255 = no data)
    probabilities  K x uint8: probability of each LULC class x 255 (``--probabilities``)
    reason         uint8 why a pixel has no class (0 = mapped; codes in pixels.REASONS; 255 = no
                   data: outside every cell with products, in the national layers)
    source         uint16 index of the acquisition that decided the pixel in the month's
                   acquisition table (65535 = none)
    date           uint8 that acquisition's day: days since the month's first day (255 = none)
    count          uint8 number of acquisitions used for the pixel (0 = none)
    change         uint8 status of the pixel's change since its confirmed class (0 no change, 1
                   provisional, 2 confirmed this month; 255 = never mapped): the change rule of
                   :mod:`nationmap.change.rule`, written when the run has a previous month
    change_classes 4 x uint16: the class confirmed before this month, the new class of a
                   provisional or confirmed change (0 = none), the month it was first seen ((year -
                   2000) x 100 + month, 0 = none) and the mapped months it has been seen

Adding a product: declare it in :func:`product_layers` and write the function that computes
it in :mod:`nationmap.products.pixels`; ``tests/products/test_declared.py`` checks that every
consumer writes or shows it. The change layers have no such function (``compute`` None): they are
made from the month's cell COGs and the previous month's by the change stage
(:mod:`nationmap.change.cells`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


from nationmap.data.lulc import ClassInfo
from nationmap.products import pixels

AREA_KINDS = ("classes", "reasons")
STYLES = ("classes", "continuous", "none")
READINGS = ("value", "day", "acquisition")


@dataclass(frozen=True)
class Layer:
    """One product.

    Attributes:
        name: the product's name (file names, STAC collection ``nationmap-<name>``, web map).
        nodata: the no-data value written in the COG (``None``: every value is data).
        overview_resampling: GDAL resampling of the COG overviews (mode for categories).
        description: one line for band metadata, STAC and legends.
        compute: ``(CellBlock, nodata) -> (h, w)`` or ``(bands, h, w)`` array of ``dtype``; None:
            made by a later stage from the month's cell COGs (the change layers).
        classes: (code, name, colour) of a categorical layer; empty otherwise.
        unit: unit of a continuous layer.
        dtype: ``uint8`` or ``uint16``.
        bands: names of the bands of a multi-band product (empty: one band named ``name``).
        areas: ``classes``: area tables give km^2 per class of the mapped area; ``reasons``:
            km^2 per code of the whole area; None: no areas.
        change: the month-to-month change table compares it.
        national_cog: a national sparse COG is built beside the national VRT (else VRT only).
        style: ``classes`` (colour table), ``continuous`` (``palette_range``), ``none``: not
            drawn as tiles (shown on a pixel click only).
        palette_range: (low, high) of a continuous style.
        requires: the models (``lulc``, ``water``) and options (``probabilities``) it needs.
        reading: how one value reads to a person: ``value`` (a class name, or the number and
            unit), ``day`` (a date: days since the month's first day), ``acquisition`` (a row of
            the month's acquisition table: its id and date).
    """

    name: str
    nodata: int | None
    overview_resampling: str
    description: str
    compute: Callable | None
    classes: tuple[ClassInfo, ...] = ()
    unit: str | None = None
    dtype: str = "uint8"
    bands: tuple[str, ...] = ()
    areas: str | None = None
    change: bool = False
    national_cog: bool = True
    style: str = "continuous"
    palette_range: tuple[float, float] | None = None
    requires: tuple[str, ...] = ()
    reading: str = "value"

    def __post_init__(self):
        if self.dtype not in ("uint8", "uint16"):
            raise ValueError(f"{self.name}: dtype must be uint8 or uint16, not {self.dtype}")
        if self.areas not in (None, *AREA_KINDS) or self.style not in STYLES:
            raise ValueError(f"{self.name}: areas must be one of {AREA_KINDS} or None, style one of {STYLES}")
        if self.reading not in READINGS:
            raise ValueError(f"{self.name}: reading must be one of {READINGS}, not {self.reading!r}")

    @property
    def categorical(self) -> bool:
        return bool(self.classes)

    @property
    def band_names(self) -> tuple[str, ...]:
        return self.bands or (self.name,)

    @property
    def count(self) -> int:
        return len(self.band_names)

    def colormap(self) -> dict[int, tuple[int, int, int, int]] | None:
        """GDAL colour table: class colours, transparent no data."""
        if not self.classes:
            return None
        cmap = {c.code: (*c.rgb, 255) for c in self.classes}
        if self.nodata is not None:
            cmap[self.nodata] = (0, 0, 0, 0)
        return cmap

    def class_tags(self) -> dict[str, str]:
        """Band metadata naming the classes (``CLASS_1=Water``), as shown by gdalinfo."""
        return {f"CLASS_{c.code}": c.name for c in self.classes}

    def band_tags(self) -> dict[str, str]:
        """All band metadata of the layer: description, unit, class names."""
        tags = {"DESCRIPTION": self.description, **self.class_tags()}
        if self.unit:
            tags["UNIT"] = self.unit
        return tags


def reason_classes() -> tuple[ClassInfo, ...]:
    return tuple(ClassInfo(code, name, colour) for code, (name, colour) in pixels.REASONS.items())


def change_classes() -> tuple[ClassInfo, ...]:
    from nationmap.change.rule import CONFIRMED, NONE, PROVISIONAL, STATUS_NAMES

    colours = {NONE: "#f0f0f0", PROVISIONAL: "#fdae61", CONFIRMED: "#d7191c"}
    return tuple(ClassInfo(code, STATUS_NAMES[code], colours[code]) for code in (NONE, PROVISIONAL, CONFIRMED))


CHANGE_BANDS = ("from_class", "to_class", "first_seen", "months_seen")


def product_layers(lulc_classes: tuple[ClassInfo, ...], water_classes: tuple[ClassInfo, ...],
                   probabilities: bool = False, change: bool = False) -> dict[str, Layer]:
    """The run's products, in declaration order: those whose models are given (``lulc_classes``
    and ``water_classes``, from the models' label schemes; empty: no such model), the class
    probabilities when ``probabilities``, and the change layers when ``change`` (a previous month)."""
    lulc = tuple(lulc_classes)
    declared = [
        Layer("lulc", 0, "mode", "land-use/land-cover class", pixels.lulc_class, classes=lulc,
              areas="classes", change=True, style="classes", requires=("lulc",)),
        Layer("water", 255, "mode", "water (1) or land (0)", pixels.water_class, classes=tuple(water_classes),
              areas="classes", change=True, style="classes", requires=("water",)),
        Layer("confidence", 255, "average", "probability of the LULC class", pixels.confidence_percent,
              unit="percent", palette_range=(0.0, 100.0), requires=("lulc",)),
        Layer("probabilities", None, "average", "probability of each LULC class x 255 (all 0: no data)",
              pixels.class_probabilities, unit="probability x 255", bands=tuple(f"p_{c.name}" for c in lulc),
              national_cog=False, style="none", requires=("lulc", "probabilities")),
        Layer("reason", 255, "mode", "why the pixel has no class (0: it has one)", pixels.no_data_reason,
              classes=reason_classes(), areas="reasons", style="classes"),
        Layer("source", 65535, "nearest", "index of the deciding acquisition in the month's acquisition table",
              pixels.source_index, dtype="uint16", style="none", reading="acquisition"),
        Layer("date", 255, "nearest", "day of the deciding acquisition (days since the month's first day)",
              pixels.source_day, unit="days", palette_range=(0.0, 30.0), reading="day"),
        Layer("count", None, "nearest", "valid acquisitions used", pixels.acquisition_count,
              unit="acquisitions", palette_range=(0.0, 10.0)),
        Layer("change", 255, "mode", "change since the confirmed LULC class (provisional, or confirmed this month)",
              None, classes=change_classes(), style="classes", requires=("lulc", "change")),
        Layer("change_classes", None, "nearest", "LULC class confirmed before, new class, month first seen "
              "((year - 2000) x 100 + month), months seen (0: none)", None, dtype="uint16", bands=CHANGE_BANDS,
              national_cog=False, style="none", requires=("lulc", "change")),
    ]
    given = {"lulc"} if lulc else set()
    given |= {"water"} if water_classes else set()
    given |= {"probabilities"} if probabilities else set()
    given |= {"change"} if change else set()
    return {layer.name: layer for layer in declared if set(layer.requires) <= given}


def declared_layers() -> dict[str, Layer]:
    """Every declared product, in order, with the classes of the default class table: for the
    consumers that meet products as files (the web map: order, style, unit; their legends come
    from the files themselves)."""
    from nationmap.data.lulc import load_class_table

    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes, probabilities=True,
                          change=True)
