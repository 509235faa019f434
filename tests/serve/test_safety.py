"""The national VRTs the web map accepts are those of the form nationmap writes: every way found to
make GDAL open another file through a VRT is refused (:mod:`nationmap.serve.safety`), whatever
the case of its tags and attributes (GDAL matches them in any case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from nationmap.serve.safety import vrt_problem
from nationmap.serve.tiles import file_version

SOURCE = '<SourceFilename relativeToVRT="1">../cells/a.tif</SourceFilename>'
GOOD = ('<?xml version="1.0" encoding="utf-8"?>\n<VRTDataset rasterXSize="4" rasterYSize="4"><SRS>EPSG:4326</SRS>'
        '<VRTRasterBand dataType="Byte" band="1"><Description>p_forest</Description>'
        f'<SimpleSource>{SOURCE}<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="4" ySize="4"/>'
        '<DstRect xOff="0" yOff="0" xSize="4" ySize="4"/></SimpleSource></VRTRasterBand></VRTDataset>\n')
PLAIN = '<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Byte" band="1"/></VRTDataset>'


@pytest.fixture()
def run(tmp_path) -> Path:
    """A run directory with a GeoTIFF source (``cells/a.tif``), a VRT (``cells/inner.vrt``) and a VRT
    saved as ``cells/fake.tif``; a GeoTIFF outside it."""
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "mosaic").mkdir()
    for path in (run / "cells" / "a.tif", tmp_path / "outside.tif"):
        with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:4326",
                           transform=from_origin(138, 36, 0.25, 0.25)) as ds:
            ds.write(np.ones((1, 4, 4), dtype=np.uint8))
    (run / "cells" / "inner.vrt").write_text(PLAIN)
    (run / "cells" / "fake.tif").write_text(PLAIN)
    return run


def _problem(run: Path, text: str) -> str | None:
    vrt = run / "mosaic" / "probabilities.vrt"
    vrt.write_text(text)
    return vrt_problem(run, vrt, file_version(vrt))


def _source(name: str) -> str:
    return GOOD.replace(SOURCE, f'<SourceFilename relativeToVRT="1">{name}</SourceFilename>')


def test_the_form_nationmap_writes_is_accepted(run):
    assert _problem(run, GOOD) is None


@pytest.mark.parametrize("text, words", [
    (GOOD.replace("SimpleSource", "complexsource"), "complexsource"),
    (GOOD.replace('band="1">', 'band="1" subclass="VRTDerivedRasterBand">'), "subClass"),
    (GOOD.replace("</VRTRasterBand>", f"<Overview>{SOURCE}<SourceBand>1</SourceBand></Overview></VRTRasterBand>"),
     "<Overview>"),
    (GOOD.replace("<Description>", f"<MaskBand>{SOURCE}</MaskBand><Description>"), "outside a <SimpleSource>"),
    (GOOD.replace('relativeToVRT="1"', 'relativeToVRT="0"'), "not relative"),
    (GOOD.replace('relativeToVRT="1"', 'relativeToVRT="1" RELATIVETOVRT="0"'), "not relative"),
    (GOOD.replace("<SourceBand>", "<OpenOptions><OOI key='X'>1</OOI></OpenOptions><SourceBand>"), "other elements"),
    (_source("/etc/hosts"), "not a plain file name"),
    (_source("/vsicurl/http://example.com/a.tif"), "not a plain file name"),
    (_source("GTIFF_DIR:1:../cells/a.tif"), "not a plain file name"),
    (_source("vrt://../cells/a.tif"), "not a plain file name"),
    (_source("../cells/a.tif "), "not a plain file name"),
    (_source("..&#47;cells&#47;a.tif"), "character reference"),
    ('<!DOCTYPE d [<!ENTITY e "../cells/a.tif">]>' + _source("&e;").split("\n", 1)[1], "DTD"),
    (_source("../../outside.tif"), "leads outside its run"),
    (_source("../cells/inner.vrt"), "is not a GeoTIFF file"),
    (_source("../cells/fake.tif"), "is not a GeoTIFF GDAL can read"),
    (_source("../cells/missing.tif"), "is not a GeoTIFF file"),
    ("<VRTDataset", "not a VRT"),
], ids=["complex-source-lowercase", "subclass-lowercase", "overview", "source-outside-simplesource", "not-relative",
        "relative-twice", "open-options", "absolute", "vsi", "gdal-syntax", "vrt-protocol", "blank-ended",
        "character-reference", "dtd-entity", "climbing", "nested-vrt", "vrt-named-tif", "missing", "not-xml"])
def test_any_other_form_is_refused_with_the_reason(run, text, words):
    problem = _problem(run, text)
    assert problem is not None and words in problem, problem


def test_a_source_with_an_external_overview_is_refused(run):
    (run / "cells" / "a.tif.ovr").write_text(PLAIN)
    assert "external overview" in _problem(run, GOOD)
