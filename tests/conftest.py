"""Shared fixtures: the built-in catalog, loaded once."""

from __future__ import annotations

import pytest

from tokenfactory.catalog import Catalog, load_catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()
