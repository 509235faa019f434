"""STAC validation without a network: pystac's JSON-schema validator over schemas on disk.

pystac ships the core spec's schemas (and GeoJSON's); the extensions' schemas nationmap declares
are vendored in ``stac_schemas/`` (``scripts/vendor_stac_schemas.py``, their sources and licence
beside them). :class:`OfflineValidator` is pystac's ``JsonSchemaSTACValidator`` with those
schemas loaded and fetching turned into an error, so a catalog that declares an extension
nobody vendored fails with the address it wanted, never a download.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pystac
import pystac.validation
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

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


@contextmanager
def _offline():
    previous = pystac.validation.RegisteredValidator.get_validator()
    pystac.validation.RegisteredValidator.set_validator(OfflineValidator())
    try:
        yield
    finally:
        pystac.validation.RegisteredValidator.set_validator(previous)


def validate_catalog(path: str | Path) -> int:
    """Validate the catalog at ``path`` and every collection and item below it against the core
    and extension schemas they declare, offline; returns the number of objects validated.
    Raises ``pystac.errors.STACValidationError`` (the first invalid object, with the reason)
    or ``GetSchemaError`` (a schema with no local copy)."""
    catalog = pystac.read_file(str(path))
    with _offline():
        catalog.validate()
        count = 1
        for child in catalog.get_all_collections():
            child.validate()
            count += 1
        for item in catalog.get_items(recursive=True):
            item.validate()
            count += 1
    return count
