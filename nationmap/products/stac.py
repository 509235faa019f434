"""STAC metadata with pystac: one collection per product, one item per cell and month.

    STAC_DIR/catalog.json                          the run's root catalog
    STAC_DIR/nationmap-<product>/collection.json   product collection (+ national COG and VRT assets)
    STAC_DIR/nationmap-<product>/<cell>_<month>/<id>.json  item: cell COG asset with proj, raster,
                                                   classification and file (checksum) fields; derived_from
                                                   links to the acquisitions the cell used
    STAC_DIR/nationmap-acquisitions/<id>/<id>.json  item per acquisition of the month: footprint, time,
                                                   sar, sat, view; the input file as asset
                                                   (:mod:`nationmap.products.stac_acquisitions`)

Asset hrefs are relative, so the products directory can be moved or served as is. The tree is
written to a staging directory and swapped into place whole.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pystac
import rasterio
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from shapely.geometry import mapping

from nationmap.data.grid import Cell
from nationmap.data.months import Month
from nationmap.files import replace_dir
from nationmap.products.acquisitions import Acquisition
from nationmap.products.layers import Layer
from nationmap.products.stac_acquisitions import acquisition_collection, link_sources

COG_MEDIA_TYPE = pystac.MediaType.COG
VRT_MEDIA_TYPE = "application/xml"  # GDAL's VRT has no registered media type; it is XML
LICENSE = "proprietary"
TABLE_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet", "json": "application/json",
                     "md": "text/markdown"}
TABLE_TITLES = {"areas": "area of every class, cell and {region} {month}, km^2",
                "change": "class-to-class change from the previous month, {region} {month}, km^2",
                "change_status": "LULC change since the confirmed class, provisional or confirmed this month "
                                 "(the change rule), {region} {month}, km^2",
                "acquisitions": "the acquisitions of {region} {month}: row i is the source layer's index i",
                "lulc_accuracy": "accuracy of the LULC map of {region} {month} from a labelled stratified sample, "
                                 "with 95 % confidence intervals",
                "lulc_areas-estimated": "area of every LULC class of {region} {month} estimated from the labelled "
                                        "sample, with 95 % confidence intervals, km^2"}


@dataclass(frozen=True)
class ProductFile:
    """A COG to describe: where it is and its SHA-256 / size (for the file extension)."""

    path: Path
    sha256: str
    size: int


def _asset(file: ProductFile, layer: Layer, title: str, shape: tuple[int, int], transform, item_dir: Path) -> pystac.Asset:
    href = os.path.relpath(file.path, item_dir)
    asset = pystac.Asset(href=href, media_type=COG_MEDIA_TYPE, title=title, roles=["data"])
    proj = ProjectionExtension.ext(asset, add_if_missing=False)
    proj.apply(code="EPSG:4326", shape=list(shape), transform=list(transform)[:6])
    bands = [RasterBand.create(nodata=layer.nodata, data_type=DataType(layer.dtype), unit=layer.unit, sampling="area")
             for _ in layer.band_names]
    RasterExtension.ext(asset, add_if_missing=False).apply(bands)
    if layer.categorical:
        ClassificationExtension.ext(asset, add_if_missing=False).apply(
            [Classification.create(value=c.code, name=c.name.lower().replace(" ", "-"), description=c.name,
                                   color_hint=c.color.lstrip("#").upper()) for c in layer.classes])
    f = FileExtension.ext(asset, add_if_missing=False)
    f.checksum = "1220" + file.sha256  # multihash: sha2-256
    f.size = file.size
    return asset


def _table_asset(file: ProductFile, key: str, region: str, month: Month, item_dir: Path) -> pystac.Asset:
    """A table (``areas_csv``, ``change_parquet``, ``acquisitions_csv``...) as a metadata asset
    with its checksum."""
    what, kind = key.rsplit("_", 1)
    title = TABLE_TITLES.get(what, what + " table").format(region=region, month=month)
    asset = pystac.Asset(href=os.path.relpath(file.path, item_dir), media_type=TABLE_MEDIA_TYPES[kind],
                         title=f"{title} ({kind})", roles=["metadata"])
    f = FileExtension.ext(asset, add_if_missing=False)
    f.checksum = "1220" + file.sha256
    f.size = file.size
    return asset


def _extensions(obj, layer: Layer) -> None:
    for ext in (ProjectionExtension, RasterExtension, FileExtension) + ((ClassificationExtension,) if layer.categorical else ()):
        ext.add_to(obj)


def _add_national(collection: pystac.Collection, layer: Layer, mosaic: ProductFile | None, vrt: ProductFile | None,
                  when: str, product_dir: Path) -> None:
    """The national COG (``mosaic``, None for a layer declared VRT only) and VRT of a product as
    assets of its collection."""
    with rasterio.open((mosaic or vrt).path) as ds:  # the region's box, not only these cells'
        shape, transform = ds.shape, ds.transform
    product = layer.name
    if mosaic is not None:
        collection.add_asset("mosaic", _asset(mosaic, layer, f"{product} mosaic {when}", shape, transform, product_dir))
    if vrt is not None:
        asset = _asset(vrt, layer, f"{product} national VRT over the cell COGs {when}", shape, transform, product_dir)
        asset.media_type = VRT_MEDIA_TYPE
        collection.add_asset("vrt", asset)


def _add_acquisitions(root: pystac.Catalog, stage: Path, region: str, month: Month, acquisitions: list[Acquisition],
                      tables: dict[str, ProductFile]) -> dict[str, pystac.Item]:
    """The acquisitions collection, with the acquisition table (taken out of ``tables``) as its
    assets, as a child of ``root``; returns its items by acquisition id."""
    collection, items = acquisition_collection(acquisitions, region, month)
    root.add_child(collection)
    for key in [k for k in tables if k.startswith("acquisitions_")]:
        collection.add_asset(key.replace("_", "-"), _table_asset(tables.pop(key), key, region, month,
                                                                 stage / collection.id))
    return items


def write_stac(stac_dir: str | Path, region: str, month: Month, layers: dict[str, Layer],
               cell_files: dict[str, dict[Cell, ProductFile]], mosaics: dict[str, ProductFile],
               pixels_per_degree: int, properties: dict | None = None,
               vrts: dict[str, ProductFile] | None = None, tables: dict[str, ProductFile] | None = None,
               acquisitions: list[Acquisition] | None = None, sources: dict[Cell, list[str]] | None = None,
               table_owners: dict[str, str] | None = None, collection_fields: dict[str, dict] | None = None) -> Path:
    """Write the STAC tree for one region and month; returns the root catalog path. ``mosaics``
    (national COGs) and ``vrts`` (national VRTs) become assets of their product's collection;
    ``tables`` (``areas_csv``, ``change_parquet``...: the area tables) assets of the lulc and
    water collections, the acquisition table's (``acquisitions_csv``...) of the acquisitions
    collection, written when ``acquisitions`` (the month's acquisition table) are given;
    ``sources`` (cell -> acquisition ids it used) become each product item's derived_from links.
    ``table_owners`` (table key -> product) puts a product's own tables (its accuracy assessment)
    in its collection only; ``collection_fields`` (product -> fields) are added to a collection
    (the headline of its accuracy)."""
    stac_dir = Path(stac_dir)
    stage = stac_dir.with_name(f".{stac_dir.name}-part-{os.getpid()}")  # no suffix: pystac reads one as a file name
    shutil.rmtree(stage, ignore_errors=True)
    start, end = month.start, month.end
    root = pystac.Catalog(id=f"nationmap-{region}-{month}", description=f"nationmap products, region {region}, {month}",
                          title=f"nationmap {region} {month}")
    tables = dict(tables or {})
    by_id = _add_acquisitions(root, stage, region, month, acquisitions, tables) if acquisitions else {}
    for product, files in cell_files.items():
        layer = layers[product]
        cells = sorted(files)
        bbox = [min(c.lon for c in cells), min(c.lat for c in cells), max(c.lon for c in cells) + 1, max(c.lat for c in cells) + 1]
        collection = pystac.Collection(
            id=f"nationmap-{product}", title=f"nationmap {product}", description=f"{layer.description} ({product}), monthly, per 1-degree cell",
            extent=pystac.Extent(pystac.SpatialExtent([[float(v) for v in bbox]]), pystac.TemporalExtent([[start, end]])),
            license=LICENSE)
        _extensions(collection, layer)
        root.add_child(collection)
        product_dir = stage / collection.id
        for cell in cells:
            item_id = f"{cell.name}_{month}_{product}"
            item_dir = product_dir / f"{cell.name}_{month}"
            item = pystac.Item(id=item_id, geometry=mapping(cell.polygon), bbox=list(cell.bounds), datetime=None,
                               start_datetime=start, end_datetime=end,
                               properties={"nationmap:cell": cell.name, "nationmap:product": product, **(properties or {})})
            _extensions(item, layer)
            link_sources(item, by_id, (sources or {}).get(cell, ()))
            n = pixels_per_degree
            item.add_asset(product, _asset(files[cell], layer, f"{product} {cell.name} {month}", (n, n),
                                           cell.transform(n), item_dir))
            collection.add_item(item)
        if product in mosaics or product in (vrts or {}):
            _add_national(collection, layer, mosaics.get(product), (vrts or {}).get(product), f"{region} {month}",
                          product_dir)
        if layer.areas == "classes":  # the area tables beside the layers they count; a product's own beside it only
            for key, file in tables.items():
                if (table_owners or {}).get(key, product) == product:
                    collection.add_asset(key.replace("_", "-"), _table_asset(file, key, region, month, product_dir))
        collection.extra_fields.update((collection_fields or {}).get(product, {}))
    root.normalize_hrefs(str(stage))
    root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    replace_dir(stage, stac_dir)
    return stac_dir / "catalog.json"
