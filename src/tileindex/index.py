"""The read side's entry point: a published index, opened (docs/CONTRACT.md §10.4-§10.5).

``tileindex.open(root)`` finds the partition under ``root`` (the only one, or the one
named by ``parameter_hash``), reads its run report and summaries, and hands out pyarrow
datasets of every published dataset. Nothing here writes: a partition is never changed.
Reading some keys prunes row groups by the key column's footer statistics, since the
rows are sorted by key (§6.4), reads the row groups left on two threads, and in each
decodes the other columns only up to its last wanted row: most countries of the 30″
world in well under 50 ms (benchmarks/open.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tileindex.arrays import key_runs, repeat
from tileindex.contract import DEFAULT_KEY_COLUMN, DatasetDictionary
from tileindex.errors import ConfigError, InputError, InputFileError, RasterMismatchError
from tileindex.geostore import read_region_geometry
from tileindex.grid import Grid
from tileindex.layout import COVERAGE_DATASET, DATASETS, part_files, pick_parameter_hash

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds
    from shapely.geometry.base import BaseGeometry

__all__ = ["Index", "open_index"]

_READABLE = (*DATASETS, COVERAGE_DATASET, "tile_values")


class Index:
    """A published tile index: its run report, key list and datasets.

    Make one with :func:`tileindex.open`. ``dataset(name)`` is a pyarrow dataset over
    the partition's part files in key order; ``to_table(keys=...)`` reads the rows of
    some keys, touching only the row groups that can hold them.
    """

    def __init__(self, root: Path, parameter_hash: str, dictionary: DatasetDictionary) -> None:
        self.root = root
        self.parameter_hash = parameter_hash
        self.dictionary = dictionary
        self.report: dict[str, Any] = _read_json(self.path("run_report"), "run report")
        self.key_column: str = str(self.report.get("key_column", DEFAULT_KEY_COLUMN))
        if not self.path("tile_index").is_dir():
            raise InputFileError(
                f"tile_index partition {self.path('tile_index')} is missing although its run "
                "report exists; the output root is damaged: rebuild it with 'tileindex build'"
            )

    def __repr__(self) -> str:
        return (
            f"Index(root={str(self.root)!r}, parameter_hash={self.parameter_hash[:12]}..., "
            f"key_column={self.key_column!r}, rows={self.report.get('rows_emitted')})"
        )

    # -- what was published ---------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the artefact ``key`` of the dataset dictionary lives under the root."""
        if key not in self.dictionary.templates:
            raise ConfigError(
                f"{self.dictionary.source} has no path for {key!r}; known: "
                f"{', '.join(self.dictionary.templates)}"
            )
        return self.dictionary.path(key, self.root, self.parameter_hash)

    @property
    def predicate(self) -> str:
        return str(self.report["predicate"])

    @cached_property
    def grid(self) -> Grid:
        """The grid the index was built on, from the run report."""
        try:
            dims = self.report["grid_dims"]
            return Grid.from_transform(
                int(dims["ncols"]), int(dims["nrows"]), self.report["grid_transform"]
            )
        except (KeyError, TypeError, ValueError, RasterMismatchError) as exc:
            raise InputError(
                f"run report {self.path('run_report')} lacks a usable grid_dims / "
                f"grid_transform ({exc}); rebuild the index with this version of tileindex"
            ) from exc

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """Every key the build visited (the key list), in the published (UTF-8 byte) order."""
        path = self.path("country_summaries")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputFileError(f"summaries {path}: cannot read ({exc.strerror})") from exc
        try:  # one parse for every line
            rows = json.loads("[" + ",".join(line for line in lines if line.strip()) + "]")
            return tuple(str(row[self.key_column]) for row in rows)
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(
                f"summaries {path} are not JSON lines with a {self.key_column!r} each "
                f"({exc!r}); the output root is damaged: rebuild it with 'tileindex build'"
            ) from exc

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets this index holds (``tile_index``, ``tile_bounds``, and
        ``tile_coverage`` / ``tile_values`` when they were published)."""
        return tuple(
            n for n in _READABLE if n in self.dictionary.templates and self.path(n).is_dir()
        )

    # -- reading --------------------------------------------------------------------------

    def dataset(self, name: str = "tile_index") -> ds.Dataset:
        """A pyarrow dataset over the part files of ``name``, in key order."""
        if name not in self.datasets:
            raise InputFileError(
                f"{self.root} holds no {name} for parameter hash {self.parameter_hash[:12]}...; "
                f"it holds {', '.join(self.datasets)}"
                + (" (rebuild with --coverage)" if name == COVERAGE_DATASET else "")
            )
        import pyarrow.dataset as ds  # imports pandas (half a second): to_table needs neither

        files = part_files(self.path(name))
        return ds.dataset([str(p) for p in files], format="parquet")

    def to_table(
        self,
        keys: str | Iterable[str] | None = None,
        dataset: str = "tile_index",
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The rows of ``keys`` (one key, several, or all when None), in key order."""
        if keys is None:
            return self.dataset(dataset).to_table(columns=list(columns) if columns else None)
        wanted = self._wanted(keys)
        if dataset not in self.datasets:
            self.dataset(dataset)  # refuses it, naming what the index holds
        files = part_files(self.path(dataset))
        return _read_keys(files, self.key_column, wanted, list(columns) if columns else None)

    def to_pandas(self, keys: str | Iterable[str] | None = None, **kw: Any) -> pd.DataFrame:
        try:
            import pandas  # noqa: F401  (pyarrow's to_pandas needs it)
        except ImportError:
            raise ConfigError(
                "to_pandas needs pandas: pip install pandas (or use to_table)"
            ) from None
        return self.to_table(keys, **kw).to_pandas()

    def to_polars(self, keys: str | Iterable[str] | None = None, **kw: Any) -> pl.DataFrame:
        try:
            import polars as pl
        except ImportError:
            raise ConfigError(
                "to_polars needs polars: pip install polars (or use to_table / to_pandas)"
            ) from None
        frame = pl.from_arrow(self.to_table(keys, **kw))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def geometry(self) -> dict[str, BaseGeometry]:
        """The region geometry the build used (after docs/CONTRACT.md §4), per key."""
        kept = self.report.get("region_geometry")
        if not isinstance(kept, Mapping) or "region_geometry" not in self.dictionary.templates:
            raise InputFileError(
                f"the index under {self.root} keeps no region geometry (built by an older "
                "tileindex or with a dictionary without region_geometry); rebuild it"
            )
        return read_region_geometry(
            self.path("region_geometry"), self.key_column, str(kept.get("sha256_hex"))
        )

    def _wanted(self, keys: str | Iterable[str]) -> list[str]:
        """``keys`` as a list, refused if one is not in the index."""
        wanted = [keys] if isinstance(keys, str) else list(keys)
        unknown = sorted(set(wanted) - set(self.keys))
        if unknown:
            raise InputError(
                f"{self.key_column} {', '.join(map(repr, unknown[:5]))} not in this index "
                f"({len(self.keys)} keys, e.g. {', '.join(self.keys[:5])})"
            )
        return wanted

    def _keys_filter(self, keys: str | Iterable[str] | None) -> ds.Expression | None:
        """A dataset filter for ``keys`` (None for all), for ``dataset(...)`` scans."""
        if keys is None:
            return None
        import pyarrow.dataset as ds

        wanted = self._wanted(keys)
        field = ds.field(self.key_column)
        return field == wanted[0] if len(wanted) == 1 else field.isin(wanted)


class _Parts:
    """The part files of a partition, each opened (its footer read) on first use."""

    def __init__(self, files: Sequence[Path], key_index: int) -> None:
        self.files, self.at = files, key_index
        self._open: dict[int, pq.ParquetFile] = {}

    def __len__(self) -> int:
        return len(self.files)

    def part(self, i: int) -> pq.ParquetFile:
        if i not in self._open:
            self._open[i] = pq.ParquetFile(self.files[i])
        return self._open[i]

    def stats(self, i: int, group: int) -> tuple[str, str] | None:
        """The key's (min, max) in a row group, None without statistics."""
        st = self.part(i).metadata.row_group(group).column(self.at).statistics
        return (st.min, st.max) if st is not None and st.has_min_max else None

    def span(self, i: int) -> tuple[str, str] | None:
        """The key's (min, max) over a part, None if a row group has no statistics."""
        groups = [self.stats(i, g) for g in range(self.part(i).metadata.num_row_groups)]
        if not groups or any(g is None for g in groups):
            return None
        return min(g[0] for g in groups if g), max(g[1] for g in groups if g)

    def candidates(self, wanted: set[str]) -> list[int]:
        """The parts that can hold a wanted key, found by bisection over the parts (they
        are in key order, §6.4), so one key opens a few footers, not every part's; every
        part when some lack statistics."""
        found: set[int] = set()
        for k in wanted:
            lo, hi = 0, len(self)
            while lo < hi:  # the first part whose largest key is >= k
                mid = (lo + hi) // 2
                span = self.span(mid)
                if span is None:
                    return list(range(len(self)))
                if span[1] < k:
                    lo = mid + 1
                else:
                    hi = mid
            while lo < len(self):
                span = self.span(lo)
                if span is None:
                    return list(range(len(self)))
                if span[0] > k:
                    break
                found.add(lo)
                lo += 1
        return sorted(found)


def _read_keys(
    files: Sequence[Path], key: str, wanted: Sequence[str], columns: list[str] | None
) -> pa.Table:
    """The rows of ``wanted`` in ``files`` (a partition, rows sorted by key), in order.

    Only the parts and row groups whose key statistics can hold a wanted key are read (a
    row group without statistics is read), two at a time on two threads. In a row group,
    the key column is read first (as a dictionary: a millisecond) to find the runs of
    wanted rows; the other columns are decoded only up to the last of them, and a string
    column that holds one value (by its statistics, or over a run) is made, not decoded.
    """
    schema = pq.read_schema(files[0]) if files else pa.schema([pa.field(key, pa.string())])
    names = columns if columns is not None else schema.names
    target = pa.schema([schema.field(n) for n in names], metadata=schema.metadata)
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    wanted_set = set(wanted)
    parts = _Parts(files, schema.get_field_index(key))
    jobs = []
    for i in parts.candidates(wanted_set):
        metadata = parts.part(i).metadata
        for group in range(metadata.num_row_groups):
            span = parts.stats(i, group)
            if span is None or any(span[0] <= k <= span[1] for k in wanted_set):
                jobs.append(_Group(files[i], metadata, group))
    if len(jobs) <= 1:  # one row group: pyarrow's threads decode its columns side by side
        pieces = jobs[0].read(key, wanted_set, target, strings, True) if jobs else []
    else:  # several: one per thread (the decoding releases the GIL)
        with ThreadPoolExecutor(min(len(jobs), _THREADS)) as pool:
            done = pool.map(lambda g: g.read(key, wanted_set, target, strings, False), jobs)
            pieces = [t for tables in done for t in tables]
    if not pieces:
        return pa.Table.from_batches([], schema=target)  # Schema.empty_table imports pandas
    return pa.concat_tables(pieces)


_THREADS = max(1, min(2, os.cpu_count() or 1))
_BATCH_ROWS = 1 << 16  # a row group is decoded in batches of these, up to its last wanted row


class _Group:
    """One row group of a part, read for some keys."""

    def __init__(self, path: Path, metadata: pq.FileMetaData, group: int) -> None:
        self.path, self.metadata, self.group = path, metadata, group
        self.rows = metadata.row_group(group).num_rows

    def constant(self, schema: pa.Schema, name: str) -> str | None:
        """The one value of string column ``name`` in this row group by its statistics
        (min == max, no nulls), else None."""
        st = self.metadata.row_group(self.group).column(schema.get_field_index(name)).statistics
        if st is None or not st.has_min_max or not st.has_null_count or st.null_count:
            return None
        return str(st.min) if st.min == st.max else None

    def read(
        self, key: str, wanted: set[str], target: pa.Schema, strings: list[str], threads: bool
    ) -> list[pa.Table]:
        """The runs of wanted rows in this row group, a table each, in row order."""
        # a file of its own: one ParquetFile is not safe to read from two threads
        part = pq.ParquetFile(self.path, metadata=self.metadata, read_dictionary=strings)
        schema = part.schema_arrow
        fixed = {n: v for n in strings if (v := self.constant(schema, n)) is not None}
        if key in fixed:
            runs = [(fixed[key], 0, self.rows)] if fixed[key] in wanted else []
        else:
            codes = part.read_row_group(self.group, columns=[key], use_threads=threads)
            found = key_runs(codes.column(0).combine_chunks())
            runs = [(k, a, b) for k, a, b in found if k is not None and k in wanted]
        if not runs:
            return []
        decode = [n for n in target.names if n not in fixed and n != key]
        table = self._decode(part, decode, runs[-1][2], threads)
        pieces = []
        for value, start, stop in runs:
            n, columns = stop - start, []
            for field in target:
                if field.name == key or field.name in fixed:
                    made = value if field.name == key else fixed[field.name]
                    columns.append(repeat(made, n))
                else:
                    column = table.column(field.name).slice(start, n)
                    if 2 * n < table.num_rows:  # copied, not holding the decoded row group
                        column = pa.chunked_array([pa.concat_arrays(column.chunks)])
                    columns.append(_plain(column, field.type))
            pieces.append(pa.Table.from_arrays(columns, schema=target))
        return pieces

    def _decode(self, part: pq.ParquetFile, names: list[str], stop: int, threads: bool) -> pa.Table:
        """Columns ``names`` of this row group, decoded from its first row to at least
        ``stop`` (pages cannot be skipped: pyarrow reads no page index)."""
        if stop >= self.rows or not names:
            return part.read_row_group(self.group, columns=names, use_threads=threads)
        batches, seen = [], 0
        for batch in part.iter_batches(
            _BATCH_ROWS, row_groups=[self.group], columns=names, use_threads=threads
        ):
            batches.append(batch)
            seen += batch.num_rows
            if seen >= stop:
                break
        return pa.Table.from_batches(batches)


def _plain(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """A column as ``type_``: a dictionary-decoded string column made plain (made, not
    gathered, when these rows hold one value)."""
    if not pa.types.is_dictionary(column.type):
        return column
    array = column.combine_chunks()
    low, high = pc.min_max(array.indices).values()
    if not array.null_count and low == high:
        return repeat(array.dictionary[low.as_py()].as_py(), len(array))
    return array.cast(type_)


def open_index(
    root: str | Path,
    parameter_hash: str | None = None,
    dictionary: str | Path | None = None,
) -> Index:
    """Open the index published under ``root``.

    Parameters
    ----------
    root : the output root a build wrote (``tileindex build --out ROOT``).
    parameter_hash : which partition, when the root holds several; None takes the only one
        (an error lists them when there are several).
    dictionary : the dataset dictionary the build used (default: the built-in one).

    Examples
    --------
    >>> index = tileindex.open("out/")                          # doctest: +SKIP
    >>> index.to_table(keys="CH").num_rows                      # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"output root {root} does not exist; pass the --out of a build")
    paths = DatasetDictionary.load(dictionary)
    phash = pick_parameter_hash(root, paths, parameter_hash)
    return Index(root, phash, paths)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(
            f"{what} {path} is missing: the partition was not published completely; "
            "rerun the build to finish publishing it"
        ) from None
    except OSError as exc:
        raise InputFileError(f"{what} {path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc}); rebuild the index") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{what} {path} is not a JSON object; rebuild the index")
    return doc
