"""The month's acquisitions in STAC: items with sar, sat and view validated offline against the
vendored schemas, product items derived_from the acquisitions their cell used, the refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from pystac.errors import STACValidationError
from pystac.validation import validate_dict
from shapely.geometry import box

from nationmap.data.catalog import index_file
from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.data.months import parse_month
from nationmap.errors import InputError
from nationmap.files import sha256_file
from nationmap.products.acquisitions import Acquisition, acquisition_rows, write_acquisition_table
from nationmap.products.layers import product_layers
from nationmap.products.stac import ProductFile, write_stac
from nationmap.products.stac_acquisitions import ACQUISITIONS_COLLECTION, acquisition_item
from nationmap.products.stac_validate import OfflineValidator, validate_catalog

MONTH = parse_month("2022-09")
CELLS = ("N35E137", "N35E138")
PRODUCTS = ("lulc", "water")
SAR = "https://stac-extensions.github.io/sar/v1.0.0/schema.json"
SAT = "https://stac-extensions.github.io/sat/v1.0.0/schema.json"
VIEW = "https://stac-extensions.github.io/view/v1.0.0/schema.json"


pytestmark = pytest.mark.usefixtures("no_network")  # validation never fetches (tests/products/conftest.py)


def acquisition(index: int, sid: str, day: int, lon: float, **kw) -> Acquisition:
    values = dict(index=index, id=sid, datetime=dt.datetime(2022, 9, day + 1, 1, 30, tzinfo=dt.timezone.utc), day=day,
                  kind="scene", polarisation="HH", mode="UBS", level="2.1", look_side="right",
                  pass_direction="descending", orbit=44100 + index, frame=2900, footprint=box(lon, 35.1, lon + 0.8, 35.9),
                  path=f"/raw/alos2/IMG-HH-{sid}.tif", sha256=f"{index:02d}" * 32, size_bytes=1000 + index)
    values.update(kw)
    return Acquisition(**values)


ACQUISITIONS = [
    acquisition(0, "ALOS2441002900-220903-UBSR2.1GUD", 2, 137.2),
    acquisition(1, "ALOS2441012900-220910-FBDR2.1GUA", 9, 137.6, mode="FBD", pass_direction="ascending"),
    acquisition(2, "N35E138_22_F02DAR", 20, 138.1, kind="mosaic", mode="FBD", level="CARD4L-NRB", orbit=None,
                frame=None, look_side="left", incidence_near_deg=33.687, incidence_far_deg=38.623),
]
SOURCES = {"N35E137": [ACQUISITIONS[0].id, ACQUISITIONS[1].id], "N35E138": [ACQUISITIONS[1].id, ACQUISITIONS[2].id]}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run directory: cell files of known bytes, the acquisition table, stac/ describing them."""
    root = tmp_path_factory.mktemp("run")
    table = load_class_table()
    layers = product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)
    layers = {p: layers[p] for p in PRODUCTS}
    files = {}
    for product in PRODUCTS:
        files[product] = {}
        for name in CELLS:
            path = root / "cells" / f"{name}_{product}.tif"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(f"{name} {product} ".encode() * 100)
            files[product][parse_cell(name)] = ProductFile(path, sha256_file(path), path.stat().st_size)
    csv, parquet = write_acquisition_table(ACQUISITIONS, root / "tables" / "demo_2022-09_acquisitions")
    tables = {k: ProductFile(p, sha256_file(p), p.stat().st_size)
              for k, p in (("acquisitions_csv", csv), ("acquisitions_parquet", parquet))}
    write_stac(root / "stac", "demo", MONTH, layers, files, {}, 600, tables=tables, acquisitions=ACQUISITIONS,
               sources={parse_cell(c): ids for c, ids in SOURCES.items()})
    return root


def _item(run: Path, sid: str) -> dict:
    return json.loads((run / "stac" / ACQUISITIONS_COLLECTION / sid / f"{sid}.json").read_text())


def test_the_catalogue_with_acquisitions_validates_offline(run):
    products = 1 + len(PRODUCTS) + len(PRODUCTS) * len(CELLS)  # root, product collections and items
    assert validate_catalog(run / "stac" / "catalog.json") == products + 1 + len(ACQUISITIONS)


def test_acquisition_items_carry_sar_sat_and_view(run):
    scene = _item(run, ACQUISITIONS[0].id)
    p = scene["properties"]
    assert {SAR, SAT} <= set(scene["stac_extensions"]) and VIEW not in scene["stac_extensions"]
    assert (p["sar:frequency_band"], p["sar:center_frequency"], p["sar:polarizations"]) == ("L", 1.2575, ["HH"])
    assert (p["sar:instrument_mode"], p["sar:product_type"], p["sar:observation_direction"]) == ("UBS", "L2.1", "right")
    assert (p["sat:orbit_state"], p["sat:absolute_orbit"]) == ("descending", 44100) and "sat:relative_orbit" not in p
    assert p["sat:platform_international_designator"] == "2014-029A" and p["nationmap:index"] == 0
    assert p["datetime"] == "2022-09-03T01:30:00Z" and scene["bbox"] == [137.2, 35.1, 138.0, 35.9]
    assert scene["geometry"]["type"] == "Polygon"
    asset = scene["assets"]["hh"]
    assert asset["href"] == ACQUISITIONS[0].path and asset["roles"] == ["data"]
    assert asset["file:checksum"] == "1220" + "00" * 32 and asset["file:size"] == 1000
    ascending = _item(run, ACQUISITIONS[1].id)["properties"]
    assert ascending["sat:orbit_state"] == "ascending" and ascending["sar:instrument_mode"] == "FBD"
    mosaic = _item(run, ACQUISITIONS[2].id)
    p = mosaic["properties"]
    assert VIEW in mosaic["stac_extensions"] and p["view:incidence_angle"] == pytest.approx((33.687 + 38.623) / 2)
    assert p["sar:product_type"] == "gamma0 mosaic" and p["sar:observation_direction"] == "left"
    assert "sat:absolute_orbit" not in p


def test_product_items_are_derived_from_the_acquisitions_their_cell_used(run):
    for product in PRODUCTS:
        for cell in CELLS:
            path = run / "stac" / f"nationmap-{product}" / f"{cell}_2022-09_{product}" / f"{cell}_2022-09_{product}.json"
            links = [link for link in json.loads(path.read_text())["links"] if link["rel"] == "derived_from"]
            targets = [json.loads((path.parent / link["href"]).resolve().read_text()) for link in links]
            assert [t["id"] for t in targets] == SOURCES[cell]
            assert all(t["collection"] == ACQUISITIONS_COLLECTION for t in targets)


def test_the_acquisition_table_is_an_asset_of_the_acquisitions_collection(run):
    collection = json.loads((run / "stac" / ACQUISITIONS_COLLECTION / "collection.json").read_text())
    assert {"acquisitions-csv", "acquisitions-parquet"} == set(collection["assets"])
    href = collection["assets"]["acquisitions-csv"]["href"]
    assert (run / "stac" / ACQUISITIONS_COLLECTION / href).resolve() == run / "tables" / "demo_2022-09_acquisitions.csv"
    lulc = json.loads((run / "stac" / "nationmap-lulc" / "collection.json").read_text())
    assert not any(k.startswith("acquisitions") for k in lulc.get("assets", {}))


@pytest.mark.parametrize("field, value, schema", [
    ("sar:frequency_band", "L-band", "sar/v1.0.0"),
    ("sar:polarizations", ["HX"], "sar/v1.0.0"),
    ("sar:center_frequency", "1.2575 GHz", "sar/v1.0.0"),
    ("sat:orbit_state", "upwards", "sat/v1.0.0"),
    ("sat:absolute_orbit", 0, "sat/v1.0.0"),
    ("view:incidence_angle", 95.0, "view/v1.0.0"),
])
def test_a_wrong_field_is_refused_by_the_vendored_schema(run, field, value, schema):
    item = _item(run, ACQUISITIONS[2].id)
    validate_dict(item, validator=OfflineValidator())
    item["properties"][field] = value
    with pytest.raises(STACValidationError, match=schema):
        validate_dict(item, validator=OfflineValidator())


def test_a_required_sar_field_missing_is_refused(run):
    item = _item(run, ACQUISITIONS[0].id)
    del item["properties"]["sar:instrument_mode"]
    with pytest.raises(STACValidationError, match="sar/v1.0.0"):
        validate_dict(item, validator=OfflineValidator())


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_a_derived_from_link_to_no_file_is_invalid(run, tmp_path):
    copy = _copy(run, tmp_path)
    path = copy / "stac" / "nationmap-lulc" / "N35E137_2022-09_lulc" / "N35E137_2022-09_lulc.json"
    values = json.loads(path.read_text())
    next(link for link in values["links"] if link["rel"] == "derived_from")["href"] = "../../nowhere/x.json"
    path.write_text(json.dumps(values))
    with pytest.raises(STACValidationError, match="derived_from link.*not a file"):
        validate_catalog(copy / "stac" / "catalog.json")


@pytest.mark.parametrize("change, reason", [
    (lambda a: a.update(href="raw/IMG-HH-x.tif"), "not an absolute path or URL"),
    (lambda a: a.update({"file:checksum": "1220" + "ab" * 16}), "not a SHA-256 multihash"),  # MD5-long
])
def test_an_input_asset_is_checked_for_what_can_be_checked(run, tmp_path, change, reason):
    copy = _copy(run, tmp_path)
    sid = ACQUISITIONS[0].id
    path = copy / "stac" / ACQUISITIONS_COLLECTION / sid / f"{sid}.json"
    values = json.loads(path.read_text())
    change(values["assets"]["hh"])
    path.write_text(json.dumps(values))
    with pytest.raises(STACValidationError, match=reason):
        validate_catalog(copy / "stac" / "catalog.json")


def test_a_product_asset_outside_the_products_stays_invalid(run, tmp_path):
    """Only the acquisitions collection's items name files outside the products."""
    copy = _copy(run, tmp_path)
    path = copy / "stac" / "nationmap-lulc" / "N35E137_2022-09_lulc" / "N35E137_2022-09_lulc.json"
    values = json.loads(path.read_text())
    values["assets"]["lulc"]["href"] = ACQUISITIONS[0].path
    path.write_text(json.dumps(values))
    with pytest.raises(STACValidationError, match="not a file of the catalogue|leads outside"):
        validate_catalog(copy / "stac" / "catalog.json")


def test_a_cell_source_missing_from_the_table_is_an_input_error(tmp_path):
    table = load_class_table()
    layers = {"lulc": product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)["lulc"]}
    path = tmp_path / "cells" / "N35E137_lulc.tif"
    path.parent.mkdir()
    path.write_bytes(b"x" * 10)
    files = {"lulc": {parse_cell("N35E137"): ProductFile(path, sha256_file(path), 10)}}
    with pytest.raises(InputError, match="ALOS2449999999-220930-UBSR2.1GUD is not in the month's acquisition table"):
        write_stac(tmp_path / "stac", "demo", MONTH, layers, files, {}, 600, acquisitions=ACQUISITIONS[:1],
                   sources={parse_cell("N35E137"): ["ALOS2449999999-220930-UBSR2.1GUD"]})


def test_the_real_mosaic_tile_as_an_item(real_dir):
    row = index_file(real_dir / "palsar2-mosaic-N23W161-2020" / "N23W161_20_sl_HH_F02DAR.tif")
    [a] = acquisition_rows(pd.DataFrame([row]).itertuples(), parse_month("2020-09"))
    item = acquisition_item(a).to_dict()
    validate_dict(item, validator=OfflineValidator())
    p = item["properties"]
    # the tile's XML: FBD, HH+HV (this item is the HH file), ascending, right-looking, 33.687-38.623 degrees
    assert (p["sar:instrument_mode"], p["sar:polarizations"], p["sar:frequency_band"]) == ("FBD", ["HH"], "L")
    assert (p["sat:orbit_state"], p["sar:observation_direction"]) == ("ascending", "right")
    assert p["view:incidence_angle"] == pytest.approx(36.155)
    assert p["datetime"] == "2020-09-09T10:44:12.406000Z"
    assert item["assets"]["hh"]["file:checksum"] == "1220" + row["sha256"]


def test_a_wide_swath_gets_no_incidence_angle():
    wide = dataclasses.replace(ACQUISITIONS[2], incidence_near_deg=25.0, incidence_far_deg=48.0)
    assert "view:incidence_angle" not in acquisition_item(wide).properties
