"""Vendor the JSON schemas of the STAC extensions nationmap's catalogs use, for offline validation.

The STAC core schemas ship with pystac (``pystac/validation/jsonschemas``); the extensions' do not
(or only some, and which ones depends on pystac's version), and validators fetch them at run time.
The pystac-ext-* source distributions on PyPI carry them, as the HTTP responses their tests
recorded (VCR cassettes) or as the schema files they ship (``pystac/extensions/json-schema/``,
sar, sat and view): this script downloads those sdists with pip, takes the schema of each
extension nationmap declares plus every schema it references (a recorded response first, else a
shipped file whose ``$id`` is the address),
checks each one's ``$id`` against its address, and writes them under
``nationmap/products/stac_schemas/`` with ``index.json`` (address -> file), ``SOURCES.md`` and the
Apache-2.0 licence. Run it again when pystac's extension versions change:

    python scripts/vendor_stac_schemas.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "nationmap" / "products" / "stac_schemas"
SDISTS = ("pystac-ext-projection==2.0.1", "pystac-ext-raster==1.1.1", "pystac-ext-file==2.1.1",
          "pystac-ext-classification==2.0.1", "pystac-ext-sar==1.0.2", "pystac-ext-sat==1.0.2",
          "pystac-ext-view==1.0.2")
SHIPPED_DIR = "/pystac/extensions/json-schema/"  # where an ext sdist keeps the schema files it ships
LICENSE_SDIST = "pystac==1.15.2"  # the ext sdists ship no licence file; pystac's is the same Apache-2.0


def extension_uris() -> list[str]:
    """The schema addresses of the extensions nationmap's STAC writer declares."""
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension
    from pystac.extensions.sar import SarExtension
    from pystac.extensions.sat import SatExtension
    from pystac.extensions.view import ViewExtension

    return [e.get_schema_uri() for e in (ProjectionExtension, RasterExtension, FileExtension, ClassificationExtension,
                                         SarExtension, SatExtension, ViewExtension)]


def download(specs, dest: Path) -> list[Path]:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d",
                    str(dest), *specs], check=True)
    return sorted(dest.glob("*.tar.gz"))


def recorded_responses(sdist: Path) -> dict[str, tuple[str, str]]:
    """{address: (JSON body, where it was recorded)} of every cassette response in ``sdist``."""
    found, moved = {}, {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if "/cassettes/" not in member.name or not member.name.endswith(".yaml"):
                continue
            for interaction in yaml.safe_load(tar.extractfile(member)).get("interactions", []):
                uri, response = interaction["request"]["uri"], interaction["response"]
                body, code = response["body"].get("string", ""), response["status"]["code"]
                if code == 200 and body.lstrip().startswith("{"):
                    found.setdefault(uri, (body, f"{sdist.name}:{member.name}"))
                elif code in (301, 302, 307, 308):  # proj.org answers its schema address with a redirect
                    moved[uri] = response["headers"]["Location"][0]
    return found | {uri: found[target] for uri, target in moved.items() if target in found}


def shipped_schemas(sdist: Path) -> dict[str, tuple[str, str]]:
    """{address: (JSON text, where it is in the sdist)} of every schema file ``sdist`` ships under
    ``pystac/extensions/json-schema/``, by the ``$id`` it declares (fragment dropped)."""
    found = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if SHIPPED_DIR not in member.name or not member.name.endswith(".json"):
                continue
            body = tar.extractfile(member).read().decode()
            declared = json.loads(body).get("$id")
            if isinstance(declared, str) and declared.startswith("https://"):
                found.setdefault(urldefrag(declared).url, (body, f"{sdist.name}:{member.name}"))
    return found


def references(schema, base: str) -> set[str]:
    """Absolute addresses of the other documents ``schema`` refers to (``$ref``)."""
    out = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                target = urldefrag(urljoin(base, value)).url
                if target and target != base:
                    out.add(target)
            else:
                out |= references(value, base)
    elif isinstance(schema, list):
        for value in schema:
            out |= references(value, base)
    return out


def main() -> None:
    from pystac.validation.local_validator import get_local_schema_cache

    shipped = set(get_local_schema_cache())  # pystac's own: the core spec and GeoJSON
    with tempfile.TemporaryDirectory() as tmp:
        responses, files = {}, {}
        for sdist in download(SDISTS, Path(tmp)):
            responses.update(recorded_responses(sdist))
            files.update(shipped_schemas(sdist))
        responses = files | responses  # a recorded response where there is one
        licence_dir = Path(tmp) / "licence"
        [pystac_sdist] = download([LICENSE_SDIST], licence_dir)
        with tarfile.open(pystac_sdist) as tar:
            licence = tar.extractfile(f"{pystac_sdist.name.removesuffix('.tar.gz')}/LICENSE").read()
    index, sources, todo = {}, {}, list(extension_uris())
    while todo:
        uri = todo.pop()
        if uri in index or uri in shipped:
            continue
        if uri not in responses:
            raise SystemExit(f"no recorded response or shipped schema for {uri} in {', '.join(SDISTS)}")
        body, source = responses[uri]
        schema = json.loads(body)
        declared = urldefrag(schema.get("$id", uri)).url
        if declared != uri:
            print(f"note: {uri} declares $id {declared}", file=sys.stderr)
        rel = Path(urlparse(uri).netloc) / urlparse(uri).path.lstrip("/")
        (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
        (OUT / rel).write_text(json.dumps(schema, indent=2) + "\n")
        index[uri], sources[uri] = rel.as_posix(), source
        todo += sorted(references(schema, uri))
    (OUT / "index.json").write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")
    (OUT / "LICENSE").write_bytes(licence)
    lines = ["# Vendored STAC extension schemas", "",
             "JSON schemas of the STAC extensions nationmap declares, for offline validation",
             "(`nationmap.products.stac_validate`). Written by `scripts/vendor_stac_schemas.py` from the HTTP",
             "responses recorded in the test cassettes of these PyPI source distributions, or from the schema",
             "files they ship (`pystac/extensions/json-schema/`; the table says which, for each):",
             f"{', '.join(SDISTS)}. The schemas are the stac-extensions project's, under the Apache",
             f"License 2.0 (`LICENSE`, from {LICENSE_SDIST}'s sdist), but for PROJ's PROJJSON schema, which",
             "is PROJ's under the MIT licence (its `$comment` says so). The STAC core schemas ship with pystac.", "",
             "| schema | taken from |", "|---|---|"]
    lines += [f"| {uri} | `{sources[uri]}` |" for uri in sorted(index)]
    (OUT / "SOURCES.md").write_text("\n".join(lines) + "\n")
    print(f"{len(index)} schemas in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
