"""Offline STAC validation: the vendored extension schemas, a catalog nationmap writes, and the
refusals (a wrong field, an extension with no local schema) without any download."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pystac.errors import STACValidationError
from pystac.validation import validate_dict
from pystac.validation.stac_validator import GetSchemaError

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.data.months import parse_month
from nationmap.files import sha256_file
from nationmap.products import cog
from nationmap.products.layers import product_layers
from nationmap.products.stac import ProductFile, write_stac
from nationmap.products.stac_validate import SCHEMA_DIR, OfflineValidator, validate_catalog, vendored_schemas

PPD = 600
CELLS = ("N35E137", "N35E138")


pytestmark = pytest.mark.usefixtures("no_network")  # validation never fetches (tests/products/conftest.py)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("stac")
    table = load_class_table()
    layers = product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)
    files = {}
    for product in ("lulc", "water", "confidence"):
        files[product] = {}
        for name in CELLS:
            cell = parse_cell(name)
            path = root / "cells" / f"{name}_{product}.tif"
            path.parent.mkdir(exist_ok=True)
            staging = cog.open_staging(cog.part_path(path), layers[product], PPD, PPD, "EPSG:4326", cell.transform(PPD))
            staging.write(np.ones((PPD, PPD), np.uint8), 1)
            cog.translate_to_cog(staging, path, layers[product])
            files[product][cell] = ProductFile(path, sha256_file(path), path.stat().st_size)
    return write_stac(root / "stac", "demo", parse_month("2022-09"), layers, files, {}, PPD)


def test_every_vendored_schema_is_at_the_address_it_declares():
    schemas = vendored_schemas()
    assert {"https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/file/v2.1.0/schema.json",
            "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
            "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json"} <= set(schemas)
    for uri, schema in schemas.items():
        assert schema["$id"].rstrip("#") == uri
    assert "Apache License" in (SCHEMA_DIR / "LICENSE").read_text()


def test_a_written_catalog_validates_offline(catalog):
    assert validate_catalog(catalog) == 1 + 3 + 3 * len(CELLS)  # root, collections, items


def test_a_wrong_field_is_refused_with_its_schema(catalog):
    item_path = next(catalog.parent.rglob("N35E137_2022-09_lulc.json"))
    item = json.loads(item_path.read_text())
    item["assets"]["lulc"]["proj:shape"] = "600x600"  # an array of two integers in the projection schema
    with pytest.raises(STACValidationError, match="projection/v2.0.0"):
        validate_dict(item, validator=OfflineValidator())
    item["assets"]["lulc"]["proj:shape"] = [600, 600]
    validate_dict(item, validator=OfflineValidator())
    item["assets"]["lulc"]["classification:classes"][0]["color_hint"] = "blue"  # six hex digits
    with pytest.raises(STACValidationError, match="classification/v2.0.0"):
        validate_dict(item, validator=OfflineValidator())


def test_an_extension_with_no_local_schema_is_an_error_not_a_download(catalog):
    item_path = next(catalog.parent.rglob("N35E137_2022-09_lulc.json"))
    item = json.loads(item_path.read_text())
    # an address neither nationmap vendors nor pystac ships (pystac ships some extensions' schemas,
    # sar among them, in pystac/extensions/json-schema, and reads those before any fetch)
    item["stac_extensions"].append("https://stac-extensions.example.org/unvendored/v1.0.0/schema.json")
    with pytest.raises(GetSchemaError, match="unvendored/v1.0.0.*no local copy"):
        validate_dict(item, validator=OfflineValidator())
