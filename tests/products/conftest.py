"""Fixtures of the product tests."""

from __future__ import annotations

import pystac
import pytest


@pytest.fixture
def no_network(monkeypatch):
    """Any schema read through pystac's I/O fails the test: STAC validation must not fetch.
    (Modules that validate STAC use it for every test: ``pytestmark = pytest.mark.usefixtures``.)"""
    def refuse(self, source, *args, **kwargs):
        if str(source).startswith("http"):
            raise AssertionError(f"validation tried to fetch {source}")
        return original(self, source, *args, **kwargs)
    original = pystac.StacIO.default().__class__.read_text
    monkeypatch.setattr(pystac.StacIO.default().__class__, "read_text", refuse)
