"""Shared fixtures: small inputs are built in code (tests/factories.py; see
tests/data/README.md). Every test gets its own mask cache folder, so no test reads
another's cache or writes to the user's home."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_mask_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    folder = tmp_path_factory.mktemp("mask-cache")
    monkeypatch.setenv("TILEINDEX_CACHE_DIR", str(folder))
    return folder
