"""Class names that every GIS reads: GDAL category names and a raster attribute table.

GeoTIFF has no tag for category names or attribute tables; GDAL keeps both in its Persistent
Auxiliary Metadata (PAM), an ``<file>.aux.xml`` sidecar next to the raster, which GDAL (and so
QGIS, rasterio, TiTiler) reads with the file, also over HTTP. GDAL's own COG driver writes that
sidecar when its source has category names (a VRT copied into a COG, as the national layer is),
but rasterio has no call to set them on the in-memory staging raster a cell COG is copied from,
so :func:`write_sidecar` writes the same XML GDAL writes. The elements are also embedded in the
national VRT (:func:`band_elements`), where GDAL reads them inline.

For a categorical layer:

    CategoryNames               one name per code 0..max (the no-data code: "no data")
    GDALRasterAttributeTable    thematic: Value (MinMax), Class (Name), Red, Green, Blue, Alpha
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from nationmap.files import atomic_file
from nationmap.products.layers import Layer

NO_DATA_NAME = "no data"
# GDALRATFieldType and GDALRATFieldUsage (gdal.h)
_INTEGER, _STRING = 0, 2
_USAGE = {"Value": 5, "Class": 2, "Red": 6, "Green": 7, "Blue": 8, "Alpha": 9}  # GFU_MinMax, Name, colours


def sidecar_path(path: str | Path) -> Path:
    """The PAM sidecar GDAL reads with ``path``: ``<path>.aux.xml``."""
    path = Path(path)
    return path.with_name(path.name + ".aux.xml")


def category_names(layer: Layer) -> list[str]:
    """Names of codes 0..max(code, nodata) of a categorical layer ("" for a code with no class)."""
    names = {c.code: c.name for c in layer.classes}
    if layer.nodata is not None:
        names[layer.nodata] = NO_DATA_NAME
    return [names.get(code, "") for code in range(max(names) + 1)]


def band_elements(layer: Layer) -> list[ET.Element]:
    """``CategoryNames`` and ``GDALRasterAttributeTable`` of a categorical layer as GDAL
    serialises them in a PAM band or a VRT band; none for a continuous layer."""
    if not layer.categorical:
        return []
    names = ET.Element("CategoryNames")
    for name in category_names(layer):
        ET.SubElement(names, "Category").text = name
    rat = ET.Element("GDALRasterAttributeTable", tableType="thematic")
    for i, column in enumerate(_USAGE):
        field = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(field, "Name").text = column
        ET.SubElement(field, "Type").text = str(_STRING if column == "Class" else _INTEGER)
        ET.SubElement(field, "Usage").text = str(_USAGE[column])
    for i, c in enumerate(sorted(layer.classes, key=lambda c: c.code)):
        row = ET.SubElement(rat, "Row", index=str(i))
        for value in (c.code, c.name, *c.rgb, 255):
            ET.SubElement(row, "F").text = str(value)
    return [names, rat]


def write_sidecar(path: str | Path, layer: Layer) -> Path | None:
    """Write the PAM sidecar of raster ``path`` (band 1 is ``layer``) naming its classes
    (atomic); returns its path, or None for a continuous layer (no sidecar)."""
    elements = band_elements(layer)
    if not elements:
        return None
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    band.extend(elements)
    ET.indent(root)
    dst = sidecar_path(path)
    with atomic_file(dst, "wb") as f:
        f.write(ET.tostring(root, encoding="utf-8") + b"\n")
    return dst
