"""The published layout: part-file names and settings, and finding what is published.

A partition is a flat folder of part files ``part-00000.parquet``, ``part-00001.parquet``,
... (docs/CONTRACT.md §6): reading them in ASCII order of their names reads the rows in
key order, so the name has a fixed number of digits. Part files hold
``row_groups_per_file(total rows)`` row groups of ``ROWS_PER_ROW_GROUP`` rows (the last
file fewer), so the bytes depend only on the rows.
"""

from __future__ import annotations

import re
from pathlib import Path

from tileindex.contract import DatasetDictionary, check_parameter_hash
from tileindex.errors import ConfigError, InputFileError

__all__ = [
    "COVERAGE_DATASET",
    "DATASETS",
    "MAX_PARTS",
    "MAX_ROW_GROUPS_PER_FILE",
    "ROWS_PER_ROW_GROUP",
    "ROW_GROUPS_PER_FILE",
    "TARGET_PARTS",
    "find_parameter_hashes",
    "is_part_name",
    "part_files",
    "part_name",
    "pick_parameter_hash",
    "row_groups_per_file",
]

DATASETS = ("tile_index", "tile_bounds")
# published beside DATASETS by a build with coverage (docs/CONTRACT.md §10.3)
COVERAGE_DATASET = "tile_coverage"
ROWS_PER_ROW_GROUP = 1 << 20
ROW_GROUPS_PER_FILE = 8  # the fewest row groups a part file holds (but the last)
MAX_ROW_GROUPS_PER_FILE = 256
TARGET_PARTS = 256  # beyond this many files at ROW_GROUPS_PER_FILE, files grow instead
_PART_DIGITS = 5
MAX_PARTS = 10**_PART_DIGITS  # a sixth digit would break "ASCII order = row order"
_PART_RE = re.compile(rf"part-\d{{{_PART_DIGITS}}}\.parquet")
_HASH = "[0-9a-f]{64}"


def row_groups_per_file(total_rows: int, rows_per_row_group: int = ROWS_PER_ROW_GROUP) -> int:
    """Row groups per part file for a partition of ``total_rows`` rows: 8 while that
    makes at most ``TARGET_PARTS`` files, then as many as keep the count near
    ``TARGET_PARTS`` (at most ``MAX_ROW_GROUPS_PER_FILE``), so a partition of billions of
    rows is hundreds of large files, not thousands of small ones (docs/CONTRACT.md §6.5).
    A pure function of the row count: the layout still depends on the rows only."""
    groups = -(-max(int(total_rows), 0) // rows_per_row_group)
    wanted = -(-groups // TARGET_PARTS)
    return max(ROW_GROUPS_PER_FILE, min(MAX_ROW_GROUPS_PER_FILE, wanted))


def part_name(index: int) -> str:
    """The file name of part ``index`` (zero-based)."""
    if not 0 <= index < MAX_PARTS:
        raise ValueError(f"part index {index} out of range 0..{MAX_PARTS - 1}")
    return f"part-{index:0{_PART_DIGITS}d}.parquet"


def is_part_name(name: str) -> bool:
    return _PART_RE.fullmatch(name) is not None


def part_files(folder: Path) -> list[Path]:
    """The part files of a partition folder, in ASCII order of their names (= key order).
    Other entries are ignored here; the validator reports them."""
    return sorted(
        (p for p in Path(folder).iterdir() if is_part_name(p.name) and p.is_file()),
        key=lambda p: p.name.encode("ascii"),
    )


def find_parameter_hashes(
    root: str | Path, dictionary: DatasetDictionary | None = None, dataset: str = "tile_index"
) -> list[str]:
    """The parameter hashes of the ``dataset`` partitions published under ``root``, sorted.

    A partition counts when its folder is where the dataset dictionary puts it and the
    hash is 64 lowercase hex digits; staging folders and anything else are not partitions.
    """
    paths = dictionary or DatasetDictionary.load()
    template = paths.path(dataset, Path(root), "{parameter_hash}")
    head, _, tail = template.name.partition("{parameter_hash}")
    pattern = re.compile(re.escape(head) + f"({_HASH})" + re.escape(tail))
    if not template.parent.is_dir():
        return []
    return sorted(
        m.group(1)
        for entry in template.parent.iterdir()
        if entry.is_dir() and (m := pattern.fullmatch(entry.name))
    )


def pick_parameter_hash(
    root: str | Path, dictionary: DatasetDictionary | None = None, parameter_hash: str | None = None
) -> str:
    """``parameter_hash`` when given (checked), else the only one published under ``root``;
    an error listing them when there are several, or saying how to build when there is none."""
    if parameter_hash is not None:
        return check_parameter_hash(parameter_hash)
    found = find_parameter_hashes(root, dictionary)
    if not found:
        raise InputFileError(
            f"no tile_index partition under {root}; run 'tileindex build ... --out {root}' first"
        )
    if len(found) > 1:
        raise ConfigError(
            f"{root} holds {len(found)} tile_index partitions ({', '.join(found)}); "
            "pass --parameter-hash to pick one"
        )
    return found[0]
