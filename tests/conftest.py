"""Shared fixtures: the built-in catalog, loaded once."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tokenfactory.catalog import Catalog, load_catalog

# Property tests check invariants, not speed: on a busy machine (CI shares its two cores)
# a per-example deadline only produces flaky failures.
settings.register_profile("tokenfactory", deadline=None)
settings.load_profile("tokenfactory")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()
