"""The national layer: a GDAL VRT over the cell COGs and a sparse national COG copied from it.

Cells share the national grid, so a cell is an exact block of the national raster at integer
pixel offsets and nothing is resampled. The VRT lists one source per cell with data, by a path
relative to the VRT (a published version can move as a whole); GDAL and QGIS open it as one
layer at once. Its ``OverviewList`` declares virtual overviews, which GDAL reads from the cell
COGs' own overviews, so the VRT has overviews without computing any.

The national COG is GDAL's COG driver's copy of the VRT with ``SPARSE_OK`` (tiles that are all
no data are not written) and the VRT's overviews as its own (``OVERVIEWS=FORCE_USE_EXISTING``):
GDAL reads the full resolution once, from the cells, and every overview from the cells'
overviews. Time and disk then follow the cells with data, not the bounding box of the region:
at 12,000 px/degree the box of Japan is about 100 Gpx and its 123 cells about 18 Gpx.
Memory is bounded by GDAL's block cache, never by the region.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import rasterio.shutil
from affine import Affine
from rasterio.errors import RasterBlockError

from nationmap.data.grid import Cell
from nationmap.files import atomic_file, atomic_path
from nationmap.products.cog import COG_OPTIONS
from nationmap.products.layers import Layer
from nationmap.products.pam import band_elements, sidecar_path, write_sidecar

NATIONAL_COG_OPTIONS = {**COG_OPTIONS, "SPARSE_OK": "TRUE", "OVERVIEWS": "FORCE_USE_EXISTING", "BIGTIFF": "IF_SAFER"}
"""The national COG: the cells' options, empty tiles left out, the VRT's overviews copied, BigTIFF
when the box could pass 4 GB (the box of Japan at full resolution is about 100 GB uncompressed)."""
_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}


@dataclass(frozen=True)
class NationalLayer:
    """The files of one product's national layer and its grid (pixels of the region's box)."""

    vrt: Path
    cog: Path | None  # None: the layer declares no national COG
    width: int
    height: int
    cells_with_data: int


def mosaic_grid(cells: list[Cell], pixels_per_degree: int) -> tuple[Affine, int, int, int, int]:
    """(transform, width, height, lon0, lat1) of the smallest cell-aligned grid over ``cells``."""
    lon0, lon1 = min(c.lon for c in cells), max(c.lon for c in cells) + 1
    lat0, lat1 = min(c.lat for c in cells), max(c.lat for c in cells) + 1
    n = pixels_per_degree
    transform = Affine(1.0 / n, 0.0, float(lon0), 0.0, -1.0 / n, float(lat1))
    return transform, (lon1 - lon0) * n, (lat1 - lat0) * n, lon0, lat1


def overview_factors(width: int, height: int, block: int = COG_OPTIONS["BLOCKSIZE"]) -> list[int]:
    """2, 4, 8, ... until the overview fits one ``block`` x ``block`` tile, as GDAL's COG driver
    counts them (GDAL sizes each level floor(size / factor))."""
    factors, f = [], 1
    while math.ceil(max(width, height) / f) > block:
        f *= 2
        factors.append(f)
    return factors


def build_mosaic(cell_files: dict[Cell, Path | None], layer: Layer, pixels_per_degree: int, dst: str | Path,
                 tags: dict | None = None, vrt: str | Path | None = None) -> NationalLayer:
    """The national layer of ``cell_files`` (a COG per cell of the region, ``None`` for a cell
    without data): VRT ``vrt`` (default: ``dst`` with suffix ``.vrt``) and COG ``dst``.

    Both are written under temporary names and renamed; the COG is read from the VRT at its
    final place, so the VRT's relative source paths are the ones that are published."""
    dst = Path(dst)
    vrt = Path(vrt) if vrt is not None else dst.with_suffix(".vrt")
    _, width, height, _, _ = mosaic_grid(sorted(cell_files), pixels_per_degree)
    write_vrt(cell_files, layer, pixels_per_degree, vrt, tags)
    with_data = sum(path is not None for path in cell_files.values())
    if not layer.national_cog:  # declared VRT only (a multi-band layer: the cells are its COGs)
        return NationalLayer(vrt, None, width, height, with_data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    options = {**NATIONAL_COG_OPTIONS, "OVERVIEW_RESAMPLING": layer.overview_resampling.upper()}
    with atomic_path(dst) as tmp:
        rasterio.shutil.copy(str(vrt), str(tmp), **options)
        sidecar_path(tmp).unlink(missing_ok=True)  # GDAL's copy of the VRT's class names, under the temporary name
    write_sidecar(dst, layer)
    return NationalLayer(vrt, dst, width, height, with_data)


def write_vrt(cell_files: dict[Cell, Path | None], layer: Layer, pixels_per_degree: int, dst: str | Path,
              tags: dict | None = None) -> Path:
    """A GDAL VRT of ``layer`` on the grid of every cell in ``cell_files`` with one source per cell
    that has a file (relative to ``dst``), the layer's band metadata and colour table, and
    virtual overviews down to one tile (atomic write)."""
    dst = Path(dst)
    n = pixels_per_degree
    transform, width, height, lon0, lat1 = mosaic_grid(sorted(cell_files), n)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="2,1").text = "EPSG:4326"
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in transform.to_gdal())
    if tags:
        _metadata(root, tags)
    block, gdal_type = str(COG_OPTIONS["BLOCKSIZE"]), _GDAL_TYPES[layer.dtype]
    sources = {cell: path for cell, path in sorted(cell_files.items()) if path is not None}
    _check_cells(sources, n, layer.count)
    for i, name in enumerate(layer.band_names, start=1):
        band = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(i), blockXSize=block,
                             blockYSize=block)
        _describe_band(band, layer, name)
        for cell, path in sources.items():
            source = ET.SubElement(band, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = os.path.relpath(path, dst.parent)
            ET.SubElement(source, "SourceBand").text = str(i)
            # declared, so GDAL opens a cell only when a read touches it
            ET.SubElement(source, "SourceProperties", RasterXSize=str(n), RasterYSize=str(n), DataType=gdal_type,
                          BlockXSize=block, BlockYSize=block)
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(n), ySize=str(n))
            ET.SubElement(source, "DstRect", xOff=str((cell.lon - lon0) * n), yOff=str((lat1 - 1 - cell.lat) * n),
                          xSize=str(n), ySize=str(n))
    factors = overview_factors(width, height)
    if factors:
        ET.SubElement(root, "OverviewList", resampling=layer.overview_resampling).text = " ".join(map(str, factors))
    ET.indent(root)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dst, "wb") as f:
        f.write(ET.tostring(root, encoding="utf-8") + b"\n")
    return dst


def _check_cells(sources: dict[Cell, Path], n: int, bands: int) -> None:
    """Every cell COG has the layer's ``bands`` of ``n`` x ``n`` pixels: the VRT declares them so,
    and GDAL would otherwise read past a smaller cell or crop a larger one without a word."""
    for cell, path in sources.items():
        with rasterio.open(path) as ds:
            if ds.count != bands or ds.shape != (n, n):
                raise ValueError(f"{path}: {ds.count} band(s) of {ds.shape[0]} x {ds.shape[1]} px, expected {bands} "
                                 f"of {n} x {n} for cell {cell.name}")


def _describe_band(band: ET.Element, layer: Layer, name: str) -> None:
    """No data, description, metadata and colour table of band ``name`` of ``layer`` (as
    cog.describe_band)."""
    if layer.nodata is not None:
        ET.SubElement(band, "NoDataValue").text = str(layer.nodata)
    ET.SubElement(band, "Description").text = name
    _metadata(band, layer.band_tags())
    band.extend(band_elements(layer))  # class names and attribute table
    if layer.categorical:
        ET.SubElement(band, "ColorInterp").text = "Palette"
        table = ET.SubElement(band, "ColorTable")
        colours = layer.colormap()
        for value in range(max(colours) + 1):
            r, g, b, a = colours.get(value, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))


def _metadata(parent: ET.Element, tags: dict) -> None:
    md = ET.SubElement(parent, "Metadata")
    for key, value in tags.items():
        ET.SubElement(md, "MDI", key=str(key)).text = str(value)


def sparse_fraction(path: str | Path) -> float:
    """Share of the full-resolution tiles of a tiled GeoTIFF that are absent from the file (sparse)."""
    with rasterio.open(path) as ds:
        rows, cols = (math.ceil(n / b) for n, b in zip(ds.shape, ds.block_shapes[0]))
        absent = 0
        for i in range(rows):
            for j in range(cols):
                try:
                    absent += ds.block_size(1, i, j) == 0
                except RasterBlockError:  # GDAL knows no offset for a block never written
                    absent += 1
    return absent / (rows * cols)
