"""STAC validation without a network: pystac's JSON-schema validator over schemas on disk.

pystac ships the core spec's schemas (and GeoJSON's); the extensions' schemas nationmap declares
are vendored in ``stac_schemas/`` (``scripts/vendor_stac_schemas.py``, their sources and licence
beside them). :class:`OfflineValidator` is pystac's ``JsonSchemaSTACValidator`` with those
schemas loaded and fetching turned into an error, so a catalog that declares an extension
nobody vendored fails with the address it wanted, never a download.

Beyond the schemas, :func:`validate_catalog` checks what a schema cannot: every object the
catalogue links (children, items, and the acquisitions a product was ``derived_from``) is a file
inside the catalogue's directory, each object's ``root`` link leads to the catalogue it was
reached from, and every asset is a file inside the products directory (the catalogue's parent:
the run or the published version; the path rule, links resolved) whose size and SHA-256 are those
its ``file:size`` and ``file:checksum`` (a multihash, ``1220`` + hex digest, as the products write
it) declare. The exception is the assets of the items of the ``nationmap-acquisitions``
collection: those are the run's input files, outside the products by design; their href must be
an absolute path or a URL and their ``file:checksum``, where given, a SHA-256 multihash, but their
bytes are not read (hundreds of GB-sized scenes a month; the run manifest holds their checksums
as the catalog read them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pystac.errors import STACValidationError
from pystac.validation import validate_dict
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

from nationmap.errors import InputError
from nationmap.files import safe_child, sha256_file
from nationmap.products.stac_acquisitions import ACQUISITIONS_COLLECTION

SCHEMA_DIR = Path(__file__).with_name("stac_schemas")


def vendored_schemas() -> dict[str, dict[str, Any]]:
    """{schema address: schema} of the vendored extension schemas."""
    index = json.loads((SCHEMA_DIR / "index.json").read_text())
    return {uri: json.loads((SCHEMA_DIR / rel).read_text()) for uri, rel in index.items()}


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's validator over pystac's core schemas and the vendored extension schemas only."""

    def __init__(self) -> None:
        super().__init__()
        self.schema_cache.update(vendored_schemas())

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise GetSchemaError(schema_uri, LookupError("no local copy (offline validation; see "
                                                         "scripts/vendor_stac_schemas.py)"))
        return self.schema_cache[schema_uri]


def validate_catalog(path: str | Path, products: str | Path | None = None) -> int:
    """Validate the catalog at ``path`` and every collection and item below it, as they are on
    disk, against the core and extension schemas they declare, offline; check their links and
    assets (module docstring) against ``products`` (default: the directory holding the catalogue's
    directory). Returns the number of objects validated. Raises ``STACValidationError`` (the first
    invalid object, with the reason) or ``GetSchemaError`` (a schema with no local copy)."""
    catalog = Path(path).resolve()
    products = Path(products).resolve() if products is not None else catalog.parent.parent
    validator, digests = OfflineValidator(), {}
    queue, seen = [(catalog, False)], set()  # (object, an item of the acquisitions collection)
    while queue:
        obj, is_input = queue.pop(0)
        if obj in seen:
            continue
        seen.add(obj)
        values = _read_object(obj)
        validate_dict(values, validator=validator, href=str(obj))
        links = [link for link in values.get("links", []) if isinstance(link, dict)]
        roots = [_linked(obj, link, catalog.parent) for link in links if link.get("rel") == "root"]
        if catalog not in roots:
            raise STACValidationError(f"{obj}: no root link leads to the catalog {catalog}")
        inputs = values.get("type") == "Collection" and values.get("id") == ACQUISITIONS_COLLECTION
        queue += [(_linked(obj, link, catalog.parent), inputs and link.get("rel") == "item")
                  for link in links if link.get("rel") in ("child", "item")]
        for link in links:
            if link.get("rel") == "derived_from":
                _linked(obj, link, catalog.parent)
        for key, asset in values.get("assets", {}).items():
            if is_input:
                _check_input_asset(obj, key, asset)
            else:
                _check_asset(obj, key, asset, products, digests)
    return len(seen)


def _read_object(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise STACValidationError(f"{path}: not a readable STAC object ({type(exc).__name__})") from None
    if not isinstance(values, dict):
        raise STACValidationError(f"{path}: not a STAC object (a JSON {type(values).__name__})")
    return values


def _inside(base: Path, href: Any, root: Path, what: str) -> Path:
    """``href`` (relative to ``base``) as a path, if it stays inside ``root`` links resolved."""
    if not isinstance(href, str) or "://" in href:
        raise STACValidationError(f"{what}: href {href!r} is not a file of the catalogue")
    try:
        return safe_child(root, os.path.relpath(base / href, root))
    except InputError:
        raise STACValidationError(f"{what}: href {href!r} leads outside {root}") from None


def _linked(obj: Path, link: dict, stac_dir: Path) -> Path:
    """The STAC file a link of ``obj`` leads to: inside the catalogue's directory, existing."""
    what = f"{obj}: {link.get('rel')} link"
    target = _inside(obj.parent, link.get("href"), stac_dir, what)
    if not target.is_file():
        raise STACValidationError(f"{what}: {link.get('href')!r} is not a file")
    return target


def _check_input_asset(obj: Path, key: str, asset: Any) -> None:
    """An acquisition item's asset: an input file named by an absolute path or URL, its
    ``file:checksum`` (where given) a SHA-256 multihash; its bytes are not read."""
    what = f"{obj}: input asset {key!r}"
    href = asset.get("href") if isinstance(asset, dict) else None
    if not isinstance(href, str) or not (os.path.isabs(href) or "://" in href):
        raise STACValidationError(f"{what}: href {href!r} is not an absolute path or URL of the input")
    checksum = asset.get("file:checksum")
    if checksum is not None and not _is_multihash(checksum):
        raise STACValidationError(f"{what}: file:checksum {checksum!r} is not a SHA-256 multihash (1220 + 64 hex)")


def _is_multihash(checksum: Any) -> bool:
    return (isinstance(checksum, str) and checksum.startswith("1220") and len(checksum) == 68
            and all(c in "0123456789abcdefABCDEF" for c in checksum[4:]))


def _check_asset(obj: Path, key: str, asset: Any, products: Path, digests: dict[Path, str]) -> None:
    """The asset is a file inside ``products`` with the size and SHA-256 its file: fields declare."""
    what = f"{obj}: asset {key!r}"
    if not isinstance(asset, dict):
        raise STACValidationError(f"{what} is not an object")
    target = _inside(obj.parent, asset.get("href"), products, what)
    if not target.is_file():
        raise STACValidationError(f"{what}: {asset.get('href')!r} is missing")
    size, checksum = asset.get("file:size"), asset.get("file:checksum")
    if size != target.stat().st_size:
        raise STACValidationError(f"{what}: {target} holds {target.stat().st_size} bytes, file:size says {size!r}")
    if not (isinstance(checksum, str) and checksum.startswith("1220") and len(checksum) == 68):
        raise STACValidationError(f"{what}: file:checksum {checksum!r} is not a SHA-256 multihash (1220 + 64 hex)")
    if target not in digests:
        digests[target] = sha256_file(target)
    if checksum[4:].lower() != digests[target]:
        raise STACValidationError(f"{what}: {target} does not match its file:checksum")
