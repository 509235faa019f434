"""Quicklooks a person reads: map colours, legend names, graticule labels, scale bar, title."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib_scalebar.scalebar import ScaleBar
from PIL import Image

from nationmap.data.grid import parse_cell
from nationmap.data.lulc import load_class_table
from nationmap.products import cog
from nationmap.products.layers import product_layers
from nationmap.products.quicklook import NO_DATA_LABEL, metres_per_degree_east, quicklook_figure, write_quicklook

PPD = 120


@pytest.fixture(scope="module")
def layers():
    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)


def stripes() -> np.ndarray:
    """(PPD, 2 PPD) lulc: classes 1..4 in vertical stripes over two cells, a no-data corner."""
    data = np.repeat(np.arange(1, 5, dtype=np.uint8), PPD // 2)[None, :].repeat(PPD, 0)
    data[:20, :20] = 0
    return data


def test_the_figure_names_classes_places_and_scale(layers):
    lulc = layers["lulc"]
    fig = quicklook_figure(stripes(), (137.0, 35.0, 139.0, 36.0), lulc, "lulc, demo, 2022-09", "models abc")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [c.name for c in lulc.classes] + [NO_DATA_LABEL]
    fig.canvas.draw()
    assert {"137°E", "138°E", "139°E"} <= {t.get_text() for t in ax.get_xticklabels()}
    assert {"35°N", "36°N"} <= {t.get_text() for t in ax.get_yticklabels()}
    bars = [a for a in ax.artists if isinstance(a, ScaleBar)]
    assert len(bars) == 1 and bars[0].dx == pytest.approx(metres_per_degree_east(35.5))
    assert fig._suptitle.get_text() == "lulc, demo, 2022-09"
    assert ax.get_aspect() == pytest.approx(1 / np.cos(np.radians(35.5)))


def test_a_degree_east_is_shorter_northwards():
    assert metres_per_degree_east(0.0) == pytest.approx(111_319.5, rel=1e-5)  # a / 180 * pi on the equator
    assert metres_per_degree_east(35.5) == pytest.approx(90_870, rel=2e-3)


def test_the_png_shows_the_class_colours_and_a_colour_bar_for_confidence(tmp_path, layers):
    path = tmp_path / "lulc.tif"
    staging = cog.open_staging(cog.part_path(path), layers["lulc"], 2 * PPD, PPD, "EPSG:4326",
                               parse_cell("N35E137").transform(PPD))
    staging.write(stripes(), 1)
    cog.translate_to_cog(staging, path, layers["lulc"])
    png = np.asarray(Image.open(write_quicklook(path, tmp_path / "lulc.png", layers["lulc"], "t")).convert("RGB"))
    assert png.shape == (900, 1200, 3)
    colours = {tuple(c) for c in png.reshape(-1, 3)}
    assert all(c.rgb in colours for c in layers["lulc"].classes)  # stripes 1-4 and legend patches 5-9
    conf = layers["confidence"]
    fig = quicklook_figure(np.full((PPD, PPD), 80, np.uint8), (137.0, 35.0, 138.0, 36.0), conf)
    assert fig.axes[-1].get_ylabel() == "confidence (percent)"  # the colour bar's axis
