"""A click's class probabilities are named by the raster's own bands (their descriptions,
``p_<class>``): a run with another class scheme shows its own names, never the default table's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from benchmarks.serve import write_products_root
from nationmap.serve.app import create_app
from tests.serve.helpers import PROBABILITIES, add_probabilities

NINE = ("paddy", "orchard", "urban", "bare", "snow", "wetland", "grass", "shrub", "sea")  # lulc9 has nine, other names


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return write_products_root(tmp_path_factory.mktemp("labels") / "products", months=("2022-10",))


@pytest.fixture()
def run(template, tmp_path) -> Path:
    root = tmp_path / "products"
    shutil.copytree(template, root, symlinks=True)
    return next(root.glob("*/2022-10/v1"))


@pytest.mark.parametrize("names", [("paddy", "orchard", "urban", "sea"), NINE], ids=["four-classes", "nine-classes"])
def test_probabilities_are_named_by_the_rasters_own_bands(run, names):
    add_probabilities(run, names)
    root = run.parent.parent.parent
    client = TestClient(create_app(root), raise_server_exceptions=False)
    map_id = run.relative_to(root).as_posix()
    answer = client.get(f"/api/point?map={map_id}&lon=138.5&lat=35.5")
    assert answer.status_code == 200, answer.text
    shown = answer.json()["values"]["probabilities"]
    expected = ", ".join(f"{n} {v / 255:.2f}" for n, v in zip(names, PROBABILITIES))
    assert shown == {"value": [*PROBABILITIES, *[0] * (len(names) - 3)], "label": expected}


def test_bands_without_a_description_are_numbered(run):
    """A VRT whose bands carry no description: 'band N', not a guess from the default table."""
    vrt = add_probabilities(run, NINE)
    text = vrt.read_text()
    for name in NINE:
        text = text.replace(f"<Description>p_{name}</Description>", "")
    vrt.write_text(text)
    root = run.parent.parent.parent
    client = TestClient(create_app(root), raise_server_exceptions=False)
    answer = client.get(f"/api/point?map={run.relative_to(root).as_posix()}&lon=138.5&lat=35.5")
    assert answer.json()["values"]["probabilities"]["label"] == "band 1 0.78, band 2 0.16, band 3 0.06"
