"""The deterministic parquet writer for both datasets and the atomic write-once publish."""

from __future__ import annotations

import enum
import errno
import logging
import os
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tileindex.contract import (
    DEFAULT_KEY_COLUMN,
    tile_bounds_schema,
    tile_coverage_schema,
    tile_index_schema,
)
from tileindex.errors import ImmutablePartitionError
from tileindex.fsio import fsync_dir, fsync_file, fsync_tree, iter_tree, make_dirs
from tileindex.layout import (
    COVERAGE_DATASET,
    DATASETS,
    MAX_PARTS,
    ROW_GROUPS_PER_FILE,
    ROWS_PER_ROW_GROUP,
    part_name,
)

log = logging.getLogger(__name__)

STAGING_DIRNAME = ".tileindex-staging"
_SCHEMAS = {
    "tile_index": tile_index_schema,
    "tile_bounds": tile_bounds_schema,
    COVERAGE_DATASET: tile_coverage_schema,
}
_MAX_ROW_GROUP = 64 * 1024 * 1024  # parquet-cpp splits longer row groups on its own

# Every writer option is pinned here, none left to library defaults, so that the bytes
# depend only on the row stream (and the pyarrow version, which names itself in the
# footer's created_by). Measured on 1 M rows of a Russia-like block of the 1 km grid:
# tile_index 4.2 MB with defaults -> 0.47 MB, tile_bounds 5.6 -> 1.3 MB, and writing
# about twice as fast as the defaults.
# - zstd level 1: nearly the ratio of level 3 here (the encodings below do the heavy
#   lifting) at the lowest CPU cost; every reader supports it.
# - dictionary only for columns whose values repeat along a grid row (country code,
#   predicate, latitudes, row area): one small dictionary, tiny indices. Dictionary is
#   off elsewhere (pyarrow forbids column_encoding on dictionary-encoded columns).
# - DELTA_BINARY_PACKED for the sorted integers (tile_id, raster_row, raster_col):
#   consecutive cells differ by 1, which packs to almost nothing.
# - BYTE_STREAM_SPLIT for longitudes: they change every cell (a dictionary would hold
#   up to ncols values) but vary smoothly, so split bytes compress 3-4x better than PLAIN.
# - statistics on (readers prune row groups by tile_id / country_iso), page checksums on
#   (CRC lets readers detect corruption), no page index or bloom filters (not needed for
#   ordered scans, and fewer moving parts in the bytes).
# - format version 2.6 and data page v1 pinned: readable by every current engine.
# - sorting_columns records the (country_iso, tile_id) order in the footer.
_COMMON_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "data_page_version": "1.0",
    "data_page_size": 1 << 20,
    "write_batch_size": 1024,
    "dictionary_pagesize_limit": 1 << 20,
    "store_schema": True,
    "write_page_index": False,
    "write_page_checksum": True,
    "use_content_defined_chunking": False,
    "sorting_columns": (pq.SortingColumn(0), pq.SortingColumn(1)),
}
PARQUET_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "tile_index": {
        **_COMMON_OPTIONS,
        "use_dictionary": ["country_iso", "inclusion_rule", "centroid_lat", "pixel_area_m2"],
        "column_encoding": {
            "tile_id": "DELTA_BINARY_PACKED",
            "raster_row": "DELTA_BINARY_PACKED",
            "raster_col": "DELTA_BINARY_PACKED",
            "centroid_lon": "BYTE_STREAM_SPLIT",
        },
    },
    "tile_bounds": {
        **_COMMON_OPTIONS,
        "use_dictionary": ["country_iso", "min_lat_deg", "max_lat_deg", "centroid_lat_deg"],
        "column_encoding": {
            "tile_id": "DELTA_BINARY_PACKED",
            "min_lon_deg": "BYTE_STREAM_SPLIT",
            "max_lon_deg": "BYTE_STREAM_SPLIT",
            "centroid_lon_deg": "BYTE_STREAM_SPLIT",
        },
    },
    # docs/CONTRACT.md §10.3. Most fractions are exactly 1.0 (interior cells): split
    # bytes make long runs of identical bytes that zstd folds to almost nothing, while
    # a dictionary would overflow on the boundary cells' distinct values.
    COVERAGE_DATASET: {
        **_COMMON_OPTIONS,
        "use_dictionary": ["country_iso"],
        "column_encoding": {
            "tile_id": "DELTA_BINARY_PACKED",
            "coverage_fraction": "BYTE_STREAM_SPLIT",
        },
    },
}


def parquet_options(name: str, key_column: str = DEFAULT_KEY_COLUMN) -> dict[str, Any]:
    """:data:`PARQUET_OPTIONS` of dataset ``name`` with the key column named
    ``key_column`` (docs/CONTRACT.md §10.1): the same settings, whatever its name."""
    options = dict(PARQUET_OPTIONS[name])
    options["use_dictionary"] = [
        key_column if col == DEFAULT_KEY_COLUMN else col for col in options["use_dictionary"]
    ]
    return options


class PublishOutcome(enum.StrEnum):
    PUBLISHED = "published"
    IDENTICAL = "identical"


# -- the writer -----------------------------------------------------------------------


class _PartWriter:
    """One dataset: cuts the row stream into fixed row groups and fixed-size files.

    Holds at most one row group of pending slices (which may keep the caller's latest
    batch alive until the row group is flushed).
    """

    def __init__(
        self,
        folder: Path,
        name: str,
        rows_per_row_group: int,
        per_file: int,
        key_column: str = DEFAULT_KEY_COLUMN,
    ) -> None:
        self.folder = folder
        self.schema = _SCHEMAS[name](key_column)
        self.options = parquet_options(name, key_column)
        self.rpg = rows_per_row_group
        self.per_file = per_file
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.groups_in_file = 0
        self.writer: pq.ParquetWriter | None = None
        self.files: list[Path] = []
        self.rows = 0

    def push(self, batch: pa.RecordBatch) -> None:
        offset = 0
        while offset < batch.num_rows:
            take = min(self.rpg - self.pending_rows, batch.num_rows - offset)
            self.pending.append(batch.slice(offset, take))
            self.pending_rows += take
            offset += take
            if self.pending_rows == self.rpg:
                self._flush()

    def _flush(self) -> None:
        # one contiguous chunk per column: page and dictionary-fallback decisions are
        # taken per write call, so chunk boundaries must not leak into the bytes
        table = pa.Table.from_batches(self.pending, schema=self.schema).combine_chunks()
        self.pending, self.pending_rows = [], 0
        if self.writer is None:
            self._open()
        assert self.writer is not None
        self.writer.write_table(table, row_group_size=self.rpg)
        self.rows += table.num_rows
        self.groups_in_file += 1
        if self.groups_in_file == self.per_file:
            self._close_file()

    def _open(self) -> None:
        if len(self.files) >= MAX_PARTS:
            raise ValueError(
                f"{self.folder}: more than {MAX_PARTS} part files; raise rows_per_row_group "
                "or row_groups_per_file"
            )
        path = self.folder / part_name(len(self.files))
        self.writer = pq.ParquetWriter(path, self.schema, **self.options)
        self.files.append(path)
        self.groups_in_file = 0

    def _close_file(self) -> None:
        assert self.writer is not None
        self.writer.close()
        self.writer = None
        fsync_file(self.files[-1])

    def close(self) -> None:
        if self.pending_rows:
            self._flush()
        if not self.files:
            self._open()  # zero rows: one empty file so readers still see the schema
        if self.writer is not None:
            self._close_file()
        fsync_dir(self.folder)

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            finally:
                self.writer = None
        self.pending, self.pending_rows = [], 0


class DatasetWriter:
    """Writes ``tile_index`` and ``tile_bounds`` side by side into a staging folder.

    Rows arrive as batch pairs in global ``(country_iso, tile_id)`` order, with any
    batch sizes (the order is the caller's: a build checks its runs once, with
    :func:`tileindex.rows.check_runs`, before any row is made). They are re-cut so that
    every row group holds ``rows_per_row_group`` rows and every file
    ``rows_per_row_group * row_groups_per_file`` rows (only the last ones shorter). File
    names, layout and bytes therefore depend on the row stream only.
    Files: ``<staging>/tile_index/part-00000.parquet``, ... and the same under
    ``tile_bounds/``. On a clean exit every file and folder is fsynced; on an error the
    open files are closed and the staging folder is left for the caller to discard.
    The first column of both is named ``key_column`` (docs/CONTRACT.md §10.1).
    """

    def __init__(
        self,
        staging_root: Path,
        rows_per_row_group: int = ROWS_PER_ROW_GROUP,
        row_groups_per_file: int = ROW_GROUPS_PER_FILE,
        key_column: str = DEFAULT_KEY_COLUMN,
        *,
        coverage: bool = False,
    ) -> None:
        if not (1 <= rows_per_row_group <= _MAX_ROW_GROUP and row_groups_per_file >= 1):
            raise ValueError(
                f"rows_per_row_group ({rows_per_row_group}) must be in 1..{_MAX_ROW_GROUP} "
                f"and row_groups_per_file ({row_groups_per_file}) >= 1"
            )
        self.staging_root = Path(staging_root)
        self.rows_per_row_group = rows_per_row_group
        self.row_groups_per_file = row_groups_per_file
        self.key_column = key_column
        self._parts: dict[str, _PartWriter] = {}
        for name in DATASETS:
            folder = self.staging_root / name
            folder.mkdir(parents=True, exist_ok=False)
            self._parts[name] = _PartWriter(
                folder, name, rows_per_row_group, row_groups_per_file, key_column
            )
        self.coverage_schema = tile_coverage_schema(key_column) if coverage else None
        if self.coverage_schema is not None:
            # the third dataset, row for row with tile_index (docs/CONTRACT.md §10.3)
            folder = self.staging_root / COVERAGE_DATASET
            folder.mkdir(parents=True, exist_ok=False)
            self._parts[COVERAGE_DATASET] = _PartWriter(
                folder, COVERAGE_DATASET, rows_per_row_group, row_groups_per_file, key_column
            )
        self._closed = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def folder(self, name: str) -> Path:
        """The staging folder of dataset ``name`` (``tile_index`` or ``tile_bounds``)."""
        return self._parts[name].folder

    def write(
        self,
        index_batch: pa.RecordBatch,
        bounds_batch: pa.RecordBatch,
        coverage_batch: pa.RecordBatch | None = None,
    ) -> None:
        if self._closed:
            raise ValueError("DatasetWriter is closed")
        _check_pair(index_batch, bounds_batch, self.key_column)
        if (coverage_batch is None) != (self.coverage_schema is None):
            raise ValueError(
                "a coverage batch is needed exactly when the writer was opened with coverage"
            )
        if coverage_batch is not None:
            _check_coverage(index_batch, coverage_batch, self.coverage_schema)
        if index_batch.num_rows == 0:
            return
        self._parts["tile_index"].push(index_batch)
        self._parts["tile_bounds"].push(bounds_batch)
        if coverage_batch is not None:
            self._parts[COVERAGE_DATASET].push(coverage_batch)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for part in self._parts.values():
            part.close()
        fsync_dir(self.staging_root)

    def abort(self) -> None:
        """Close open files without finishing them (the staged output is garbage)."""
        self._closed = True
        for part in self._parts.values():
            part.abort()

    @property
    def pending_rows(self) -> int:
        """Rows pushed but not yet flushed into a row group (the most of any dataset)."""
        return max(part.pending_rows for part in self._parts.values())

    @property
    def rows_written(self) -> int:
        """Rows in row groups flushed so far (per dataset; both hold the same rows)."""
        return self._parts["tile_index"].rows

    @property
    def files(self) -> dict[str, tuple[Path, ...]]:
        return {name: tuple(part.files) for name, part in self._parts.items()}

    @property
    def bytes_written(self) -> int:
        """Bytes of every file of both datasets, as they stand on disk now."""
        return sum(p.stat().st_size for paths in self.files.values() for p in paths)


def _check_pair(index: pa.RecordBatch, bounds: pa.RecordBatch, key_column: str) -> None:
    if not index.schema.equals(tile_index_schema(key_column)):
        raise ValueError(f"tile_index batch has schema {index.schema}, not TILE_INDEX_SCHEMA")
    if not bounds.schema.equals(tile_bounds_schema(key_column)):
        raise ValueError(f"tile_bounds batch has schema {bounds.schema}, not TILE_BOUNDS_SCHEMA")
    if index.num_rows != bounds.num_rows or not (
        index.column(0).equals(bounds.column(0)) and index.column(1).equals(bounds.column(1))
    ):
        raise ValueError("tile_index and tile_bounds batches do not hold the same keys")


def _check_coverage(
    index: pa.RecordBatch, coverage: pa.RecordBatch, schema: pa.Schema | None
) -> None:
    if schema is None or not coverage.schema.equals(schema):
        raise ValueError(f"tile_coverage batch has schema {coverage.schema}, not {schema}")
    if index.num_rows != coverage.num_rows or not (
        index.column(0).equals(coverage.column(0)) and index.column(1).equals(coverage.column(1))
    ):
        raise ValueError("tile_index and tile_coverage batches do not hold the same keys")


# -- staging and publishing -----------------------------------------------------------


def staging_dir(root: Path, parameter_hash: str) -> Path:
    """A fresh, unique staging folder under the output root (so rename stays on one
    filesystem): ``<root>/.tileindex-staging/<parameter_hash>.<pid>.<random>/``."""
    base = Path(root) / STAGING_DIRNAME
    base.mkdir(parents=True, exist_ok=True)
    while True:
        path = base / f"{parameter_hash}.{os.getpid()}.{secrets.token_hex(6)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def discard_staging(path: Path) -> None:
    """Remove a staging folder and everything in it (missing is fine)."""
    shutil.rmtree(path, ignore_errors=True)


def cleanup_stale_staging(root: Path, older_than_s: float) -> list[Path]:
    """Remove staging folders left by killed runs; return what was removed.

    A folder is stale when nothing in it changed for ``older_than_s`` seconds and the
    process named in it is not alive on this host (a live pid, perhaps reused or on
    another host, only makes us keep the folder: the safe side).
    """
    base = Path(root) / STAGING_DIRNAME
    if not base.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for entry in sorted(base.iterdir()):
        if not entry.is_dir() or entry.is_symlink():
            continue
        if _pid_alive(entry.name) or _newest_mtime(entry) >= cutoff:
            continue
        log.info("removing stale staging folder %s", entry)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def publish_partition(staged: Path, final: Path) -> PublishOutcome:
    """Move a staged partition to its final path, atomically and write-once (docs/CONTRACT.md §7).

    ``final`` absent: fsync the staged tree, one ``rename``, fsync the parent -> PUBLISHED.
    ``final`` present (or another process renamed first): IDENTICAL if file names and
    bytes match, else ImmutablePartitionError (E010) and the existing partition is left
    untouched. The staged folder is gone afterwards in every case.
    """
    staged, final = Path(staged), Path(final)
    if not staged.is_dir():
        raise FileNotFoundError(errno.ENOENT, "staged partition not found", str(staged))
    try:
        if not os.path.lexists(final):
            fsync_tree(staged)
            make_dirs(final.parent)
            try:
                os.rename(staged, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                log.info("%s appeared while publishing; comparing", final)
            else:
                fsync_dir(final.parent)
                log.info("published %s", final)
                return PublishOutcome.PUBLISHED
        _require_identical(staged, final)
        log.info("%s already published with identical bytes", final)
        return PublishOutcome.IDENTICAL
    finally:
        discard_staging(staged)


def publish_partitions(pairs: Sequence[tuple[Path, Path]]) -> list[PublishOutcome]:
    """Publish several staged partitions; refuse all before renaming any if one final
    path already holds different bytes (a race after the check is still caught, per
    partition, by ``publish_partition``)."""
    try:
        for staged, final in pairs:
            if os.path.lexists(final):
                _require_identical(Path(staged), Path(final))
    except ImmutablePartitionError:
        for staged, _ in pairs:
            discard_staging(Path(staged))
        raise
    return [publish_partition(Path(s), Path(f)) for s, f in pairs]


def _require_identical(staged: Path, final: Path) -> None:
    diff = _first_difference(staged, final)
    if diff is not None:
        raise ImmutablePartitionError(
            f"{final} is already published with different content ({diff}); a partition is "
            "write-once: remove it deliberately or publish under another parameter_hash"
        )


def _first_difference(a: Path, b: Path) -> str | None:
    if not b.is_dir() or b.is_symlink():
        return "the existing path is not a folder"
    ta, tb = _tree(a), _tree(b)
    if ta.keys() != tb.keys():
        only_new = sorted(ta.keys() - tb.keys())
        only_old = sorted(tb.keys() - ta.keys())
        return f"entries only in the new result: {only_new[:3]}, only existing: {only_old[:3]}"
    for rel, kind in ta.items():
        if tb[rel] != kind:
            return f"{rel} differs in kind"
        if kind == "file" and not _same_bytes(a / rel, b / rel):
            return f"{rel} differs"
    return None


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in dirnames:
            out[(rel / d).as_posix()] = "dir"
        for f in filenames:
            out[(rel / f).as_posix()] = "file"
    return out


def _same_bytes(a: Path, b: Path, block: int = 1 << 20) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True


def _pid_alive(name: str) -> bool:
    parts = name.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _newest_mtime(root: Path) -> float:
    newest = root.lstat().st_mtime
    for path, _ in iter_tree(root):
        try:
            newest = max(newest, path.lstat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


__all__ = [
    "PARQUET_OPTIONS",
    "STAGING_DIRNAME",
    "DatasetWriter",
    "PublishOutcome",
    "cleanup_stale_staging",
    "discard_staging",
    "parquet_options",
    "publish_partition",
    "publish_partitions",
    "staging_dir",
]
