"""STAC validation of a damaged or hostile catalogue: an asset missing, pointing at a file outside
the products (absolute, climbing, or a planted link), of the wrong size or content, a link out of
the catalogue, an object without its root link: each is invalid with its reason, never "valid".

The products here are small files of known bytes (validation reads their size and SHA-256, not
their pixels), so the catalogue is written in milliseconds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pystac.errors import STACValidationError

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.data.months import parse_month
from nationmap.files import sha256_file
from nationmap.products.layers import product_layers
from nationmap.products.stac import ProductFile, write_stac
from nationmap.products.stac_validate import validate_catalog

CELLS = ("N35E137", "N35E138")
ITEM = "stac/nationmap-lulc/N35E137_2022-09_lulc/N35E137_2022-09_lulc.json"
ASSET = "cells/N35E137_lulc.tif"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """A run directory: cells/ with two products of two cells, stac/ describing them."""
    root = tmp_path_factory.mktemp("run")
    table = load_class_table()
    layers = product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)
    files = {}
    for product in ("lulc", "water"):
        files[product] = {}
        for name in CELLS:
            path = root / "cells" / f"{name}_{product}.tif"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(f"{name} {product} ".encode() * 100)
            files[product][parse_cell(name)] = ProductFile(path, sha256_file(path), path.stat().st_size)
    write_stac(root / "stac", "demo", parse_month("2022-09"), layers, files, {}, 600)
    return root


@pytest.fixture()
def run(written, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(written, copy, symlinks=True)
    return copy


def _edit(path: Path, change) -> None:
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


def _asset(values: dict) -> dict:
    return values["assets"]["lulc"]


def test_an_intact_catalogue_is_valid(run):
    assert validate_catalog(run / "stac" / "catalog.json") == 1 + 2 + 2 * len(CELLS)


def _missing(run: Path) -> None:
    (run / ASSET).unlink()


def _absolute(run: Path) -> None:
    _edit(run / ITEM, lambda v: _asset(v).update(href="/etc/passwd"))


def _climbing(run: Path) -> None:
    shutil.copy(run / ASSET, run.parent / "outside.tif")  # the same bytes: only the place is wrong
    _edit(run / ITEM, lambda v: _asset(v).update(href="../../../../outside.tif"))


def _planted_link(run: Path) -> None:
    shutil.copy(run / ASSET, run.parent / "outside.tif")
    (run / ASSET).unlink()
    os.symlink(run.parent / "outside.tif", run / ASSET)


def _flipped_byte(run: Path) -> None:
    data = bytearray((run / ASSET).read_bytes())
    data[10] ^= 0xFF
    (run / ASSET).write_bytes(bytes(data))


def _grown(run: Path) -> None:
    with open(run / ASSET, "ab") as f:
        f.write(b"x")


def _wrong_checksum(run: Path) -> None:
    _edit(run / ITEM, lambda v: _asset(v).update({"file:checksum": "1220" + "0" * 64}))


def _no_root_link(run: Path) -> None:
    _edit(run / ITEM, lambda v: v.update(links=[link for link in v["links"] if link["rel"] != "root"]))


def _child_out(run: Path) -> None:
    def change(values):
        next(link for link in values["links"] if link["rel"] == "child")["href"] = "/etc/passwd"
    _edit(run / "stac" / "catalog.json", change)


@pytest.mark.parametrize("damage, reason", [
    (_missing, "is missing"),
    (_absolute, "leads outside"),
    (_climbing, "leads outside"),
    (_planted_link, "leads outside"),
    (_flipped_byte, "does not match its file:checksum"),
    (_grown, "file:size"),
    (_wrong_checksum, "does not match its file:checksum"),
    (_no_root_link, "no root link"),
    (_child_out, "leads outside"),
])
def test_a_damaged_catalogue_is_invalid_with_its_reason(run, damage, reason):
    damage(run)
    with pytest.raises(STACValidationError, match=reason):
        validate_catalog(run / "stac" / "catalog.json")
