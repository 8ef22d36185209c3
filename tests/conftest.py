"""Shared fixtures: small inputs are built in code (tests/factories.py; see
tests/data/README.md). Every test gets its own mask cache folder, so no test reads
another's cache or writes to the user's home."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import make_small_world


@pytest.fixture(autouse=True)
def _private_mask_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    folder = tmp_path_factory.mktemp("mask-cache")
    monkeypatch.setenv("TILEINDEX_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(iso, countries, raster) of factories' small world, written once; read them only."""
    return make_small_world(tmp_path_factory.mktemp("small-world"))
