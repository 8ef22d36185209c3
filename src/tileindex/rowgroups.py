"""Row groups of a published dataset and their statistics: the read side's pruning.

Rows are sorted by (key, tile_id) (docs/CONTRACT.md §6.4), so each row group's footer
statistics bound the keys and tile ids it can hold. Sampling reads the row groups of a
few consecutive keys, once, in batches cut at key changes; masks read the row groups
whose tile ids meet a chunk's rows. Only footers are read up front; nothing here writes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tileindex.arrays import key_runs
from tileindex.errors import InputFileError
from tileindex.layout import part_files

__all__ = ["RowGroup", "read_key_runs", "read_row_groups", "row_groups", "select_row_groups"]


@dataclass(frozen=True)
class RowGroup:
    """One row group of a part file and the bounds its statistics give."""

    path: Path
    index: int
    num_rows: int
    key_min: str
    key_max: str
    tile_min: int
    tile_max: int


def row_groups(folder: Path, key_column: str) -> tuple[RowGroup, ...]:
    """Every non-empty row group of the partition ``folder``, in row order."""
    out = []
    for path in part_files(folder):
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputFileError(f"{path}: cannot read the parquet footer ({exc})") from exc
        names = meta.schema.to_arrow_schema().names
        k, t = names.index(key_column), names.index("tile_id")
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            if rg.num_rows == 0:
                continue
            ks, ts = rg.column(k).statistics, rg.column(t).statistics
            if ks is None or ts is None or not ks.has_min_max or not ts.has_min_max:
                raise InputFileError(
                    f"{path}: row group {i} has no statistics for {key_column}/tile_id; "
                    "the partition was not written by tileindex: rebuild it"
                )
            out.append(RowGroup(path, i, rg.num_rows, ks.min, ks.max, int(ts.min), int(ts.max)))
    return tuple(out)


def select_row_groups(
    groups: Sequence[RowGroup],
    keys: Sequence[str] | None = None,
    tile_range: tuple[int, int] | None = None,
) -> list[RowGroup]:
    """The row groups that can hold a row of one of ``keys`` (sorted by code point, which
    is UTF-8 byte order) with a tile id in the closed ``tile_range``."""
    out = []
    for g in groups:
        if tile_range is not None and (g.tile_max < tile_range[0] or g.tile_min > tile_range[1]):
            continue
        if keys is not None:
            i = bisect.bisect_left(keys, g.key_min)
            if i == len(keys) or keys[i] > g.key_max:
                continue
        out.append(g)
    return out


def read_row_groups(
    groups: Sequence[RowGroup],
    columns: Sequence[str],
    key_column: str,
    keys: Sequence[str] | None = None,
    tile_range: tuple[int, int] | None = None,
) -> Iterator[pa.Table]:
    """The rows of ``groups`` (those of ``keys`` with a tile id in ``tile_range``), one
    table per row group, in row order; the key column is read as a dictionary."""
    for g in groups:
        table = pq.ParquetFile(g.path, read_dictionary=[key_column]).read_row_group(
            g.index, columns=list(columns)
        )
        mask = None
        if keys is not None:
            mask = pc.is_in(table[key_column], value_set=pa.array(list(keys), pa.string()))
        if tile_range is not None:
            ids = table["tile_id"]
            inside = pc.and_(
                pc.greater_equal(ids, pa.scalar(tile_range[0], pa.uint64())),
                pc.less_equal(ids, pa.scalar(tile_range[1], pa.uint64())),
            )
            mask = inside if mask is None else pc.and_(mask, inside)
        yield table if mask is None else table.filter(mask)


def read_key_runs(
    groups: Sequence[RowGroup],
    columns: Sequence[str],
    key_column: str,
    keys: Sequence[str],
    batch_rows: int,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """The rows of ``keys`` in ``groups``, in row order, as ``(key, rows)`` pieces of at
    most ``batch_rows`` rows, each piece consecutive rows of one key.

    Rows are sorted by key (docs/CONTRACT.md §6.4), so a key's rows in a batch are one
    run: found from the dictionary codes, never by comparing strings per row. Memory is
    one batch, whatever the size of a row group; a row group is read once however many
    of ``keys`` it holds.
    """
    wanted = set(keys)
    names = list(dict.fromkeys([key_column, *columns]))
    for path, same_file in itertools.groupby(groups, key=lambda g: g.path):
        with pq.ParquetFile(path, read_dictionary=[key_column]) as parquet:
            batches = parquet.iter_batches(
                batch_size=batch_rows, row_groups=[g.index for g in same_file], columns=names
            )
            for batch in batches:
                for key, start, stop in key_runs(batch.column(key_column)):
                    if key is not None and key in wanted:
                        yield key, batch.slice(start, stop - start)
