"""The product layers and how each is encoded (``DESIGN.md``, National grid and products).

    lulc        uint8 class code 1..K (0 = no data); colour table and class names embedded
    water       uint8 0 = land, 1 = water (255 = no data); colour table embedded
    confidence  uint8 percent: probability of the chosen LULC class (255 = no data)
    count       uint8 number of valid acquisitions used for the pixel (0 = none: a gap)
"""

from __future__ import annotations

from dataclasses import dataclass

from nationmap.data.lulc import ClassInfo

PRODUCTS = ("lulc", "water", "confidence", "count")


@dataclass(frozen=True)
class Layer:
    """One product layer.

    Attributes:
        name: ``lulc``, ``water``, ``confidence`` or ``count``.
        nodata: the no-data value written in the COG (``None``: every value is data).
        overview_resampling: GDAL resampling of the COG overviews (mode for categories).
        classes: (code, name, colour) of a categorical layer; empty otherwise.
        unit: unit of a continuous layer.
    """

    name: str
    nodata: int | None
    overview_resampling: str
    description: str
    classes: tuple[ClassInfo, ...] = ()
    unit: str | None = None
    dtype: str = "uint8"

    @property
    def categorical(self) -> bool:
        return bool(self.classes)

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


def product_layers(lulc_classes: tuple[ClassInfo, ...], water_classes: tuple[ClassInfo, ...]) -> dict[str, Layer]:
    """The four layers, with class tables from the models' label schemes."""
    return {
        "lulc": Layer("lulc", 0, "mode", "land-use/land-cover class", classes=tuple(lulc_classes)),
        "water": Layer("water", 255, "mode", "water (1) or land (0)", classes=tuple(water_classes)),
        "confidence": Layer("confidence", 255, "average", "probability of the LULC class", unit="percent"),
        "count": Layer("count", None, "nearest", "valid acquisitions used", unit="acquisitions"),
    }
