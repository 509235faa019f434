"""What GDAL may open for the web map besides a national file: a VRT's sources and the sidecars
beside a raster. Each is checked before the file is indexed (:mod:`nationmap.serve.catalog`).

GDAL opens whatever a VRT names, with any driver, and matches the VRT's tags and attributes in
any case: a source that is itself a VRT (which names more), a warped VRT's ``<SourceDataset>``, a
GDAL syntax name (``GTIFF_DIR:1:/elsewhere.tif``, ``/vsi...``) even under ``relativeToVRT="1"``.
So a national VRT is accepted only in the form nationmap writes it
(:func:`nationmap.products.mosaic.write_vrt`): no ``subClass`` anywhere, no source but
``SimpleSource`` (no ``<SourceDataset>``, no ``<Overview>``), each naming, relative to the VRT, a
plain file name that resolves inside the run directory (:func:`nationmap.files.safe_child`) to a
GeoTIFF, opened as one; no DTD, comment or character reference, so what this parser reads is what
GDAL's reads.

Beside a raster GDAL opens an external overview (``.ovr``) or mask (``.msk``) with any driver, and
the overview file a PAM sidecar (``.aux.xml``) names in its ``OVERVIEWS`` metadata: nationmap
writes none of them, so a raster with one is refused.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

from nationmap.errors import InputError, first_line
from nationmap.files import safe_child
from nationmap.serve.tiles import READ_ERRORS, file_version, open_raster, sidecars

SIMPLE_SOURCE = {"sourcefilename", "sourceband", "sourceproperties", "srcrect", "dstrect"}  # as write_vrt writes it
OPENS_A_FILE = {"sourcedataset", "overview"}  # besides every <...Source>: what GDAL opens a file of
NOT_IN_A_NAME = set("&<>\"':\\")  # a GDAL syntax name (':'), inline XML, an escaped character


class Unsafe(Exception):
    """A file that could make GDAL open one the server may not; the message is the reason."""


def sidecar_problem(path: Path) -> str | None:
    """Why the sidecars beside raster ``path`` could make GDAL open another raster, or None."""
    pam, *others = sidecars(path)
    for sidecar in others:
        if os.path.lexists(sidecar):
            return f"{sidecar.name} beside it: an external overview or mask, which nationmap does not write"
    if os.path.lexists(pam) and _names_overviews(pam, file_version(pam)):
        return f"{pam.name} beside it names an overview file, which nationmap does not write"
    return None


@lru_cache(maxsize=4096)
def _names_overviews(pam: Path, version: tuple[int, ...]) -> bool:
    """Whether a PAM sidecar names an overview file (read once per version of the file)."""
    return b"overview_file" in pam.read_bytes().lower()


@lru_cache(maxsize=512)
def vrt_problem(run: Path, vrt: Path, version: tuple[int, ...]) -> str | None:
    """Why national VRT ``vrt`` (inside ``run``, at ``version``) is not of the form nationmap writes
    or a source is not a GeoTIFF inside the run (the module doc), or None; checked once per version
    of the VRT."""
    try:
        for name in sorted(set(source_names(vrt))):
            _check_source(run, vrt, name)
    except Unsafe as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    return None


def source_names(vrt: Path) -> list[str]:
    """The file names a VRT's sources give, relative to it; Unsafe unless the VRT is of the form
    nationmap writes (the module doc)."""
    text = vrt.read_bytes()
    if b"<!" in text or b"&#" in text:
        raise Unsafe("not a VRT nationmap writes (a DTD, comment, CDATA or character reference)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise Unsafe(f"not a VRT ({exc})") from None
    if root.tag.lower() != "vrtdataset":
        raise Unsafe(f"not a VRT (its root is <{root.tag}>)")
    names = []
    for element in root.iter():
        tag = element.tag.lower()
        if any(key.lower().endswith("subclass") for key in element.attrib):
            raise Unsafe(f"not a VRT nationmap writes (<{element.tag}> has a subClass)")
        if (tag.endswith("source") and tag != "simplesource") or tag in OPENS_A_FILE:
            raise Unsafe(f"not a VRT nationmap writes (a <{element.tag}>)")
        if tag == "simplesource":
            names.append(_source_name(element))
    if sum(e.tag.lower() == "sourcefilename" for e in root.iter()) != len(names):
        raise Unsafe("not a VRT nationmap writes (a <SourceFilename> outside a <SimpleSource>)")
    return names


def _source_name(source: ET.Element) -> str:
    """The file name of a ``<SimpleSource>`` as write_vrt writes it: relative to the VRT, plain."""
    parts = [child.tag.lower() for child in source]
    files = source.findall("SourceFilename")
    if set(parts) - SIMPLE_SOURCE or parts.count("sourcefilename") != 1 or len(files) != 1 or len(files[0]):
        raise Unsafe("not a VRT nationmap writes (a <SimpleSource> of other elements)")
    relative = [v for k, v in files[0].attrib.items() if k.lower() == "relativetovrt"]
    name = files[0].text or ""
    if relative != ["1"]:
        raise Unsafe("not a VRT nationmap writes (a source not relative to the VRT)")
    if not name or name != name.strip() or name.startswith("/") or NOT_IN_A_NAME & set(name) \
            or not name.isprintable():
        raise Unsafe("not a VRT nationmap writes (a source that is not a plain file name)")
    return name


def _check_source(run: Path, vrt: Path, name: str) -> None:
    """Source ``name`` of ``vrt`` is a GeoTIFF inside ``run``, with harmless sidecars."""
    try:
        path = safe_child(run, *vrt.parent.relative_to(run).parts, name)
        for sidecar in sidecars(path):
            if os.path.lexists(sidecar):
                safe_child(run, str(sidecar.relative_to(run)))
    except (InputError, ValueError):
        raise Unsafe(f"a source, {name}, leads outside its run directory") from None
    if path.suffix.lower() != ".tif" or not path.is_file():
        raise Unsafe(f"a source, {name}, is not a GeoTIFF file (.tif)")
    try:
        with open_raster(path):
            pass
    except READ_ERRORS as exc:
        raise Unsafe(f"a source, {first_line(exc)}") from None
    problem = sidecar_problem(path)
    if problem:
        raise Unsafe(f"a source, {name}: {problem}")
