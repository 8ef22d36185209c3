"""What is being validated, as one value every check can read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tileindex.contract import DEFAULT_KEY_COLUMN, DatasetDictionary
from tileindex.grid import Grid


@dataclass(frozen=True)
class Target:
    """A published partition and the sealed inputs' facts it is checked against."""

    out: Path  # the output root
    paths: DatasetDictionary
    phash: str
    grid: Grid  # from the raster header
    iso_codes: tuple[str, ...]  # the ISO list, sorted
    digests: Mapping[str, str]  # "iso", "countries", "raster": SHA-256 of each input
    sizes: Mapping[str, int]  # "raster", "vectors" (ISO list + countries): file sizes
    key_column: str = DEFAULT_KEY_COLUMN  # the datasets' first column (docs/CONTRACT.md §10.1)

    @property
    def key_list(self) -> str:
        """What the key domain is called in messages."""
        return "ISO list" if self.key_column == DEFAULT_KEY_COLUMN else "key list"

    def path(self, key: str) -> Path:
        return self.paths.path(key, self.out, self.phash)
