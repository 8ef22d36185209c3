"""The read side's entry point: a published index, opened (docs/CONTRACT.md §10.4-§10.5).

``tileindex.open(root)`` finds the partition under ``root`` (the only one, or the one
named by ``parameter_hash``), reads its run report and summaries, and hands out pyarrow
datasets of every published dataset. Nothing here writes: a partition is never changed.
Reading some keys prunes row groups by the key column's footer statistics, since the
rows are sorted by key (§6.4), and decodes the string columns of the row groups it
reads as dictionaries (strings only for the rows kept): one country of the 30″ world in
a few tens of milliseconds (benchmarks/open.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
        return tuple(str(json.loads(line)[self.key_column]) for line in lines if line)

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

    def __init__(self, files: Sequence[Path], strings: list[str], key_index: int) -> None:
        self.files, self.strings, self.at = files, strings, key_index
        self._open: dict[int, pq.ParquetFile] = {}

    def __len__(self) -> int:
        return len(self.files)

    def part(self, i: int) -> pq.ParquetFile:
        if i not in self._open:
            self._open[i] = pq.ParquetFile(self.files[i], read_dictionary=self.strings)
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
    row group without statistics is read). String columns are decoded as dictionaries,
    the rows are kept by their dictionary codes, and only the kept rows become strings:
    decoding the strings of a million-row row group costs several times reading it.
    """
    schema = pq.read_schema(files[0]) if files else pa.schema([pa.field(key, pa.string())])
    names = columns if columns is not None else schema.names
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    target = pa.schema([schema.field(n) for n in names], metadata=schema.metadata)
    wanted_set = set(wanted)
    parts = _Parts(files, strings, schema.get_field_index(key))
    tables = []
    for i in parts.candidates(wanted_set):
        part = parts.part(i)
        for group in range(part.metadata.num_row_groups):
            span = parts.stats(i, group)
            if span is not None and not any(span[0] <= k <= span[1] for k in wanted_set):
                continue
            # the key first (a dictionary: a millisecond), the other columns only on a hit
            codes = part.read_row_group(group, columns=[key]).column(0).combine_chunks()
            keep = _rows_of(codes, wanted_set)
            if keep is False:
                continue
            table = part.read_row_group(group, columns=[n for n in names if n != key])
            if key in names:
                table = table.add_column(names.index(key), key, pa.chunked_array([codes]))
            tables.append((table if keep is True else table.filter(keep)).select(names))
    if not tables:
        return pa.Table.from_batches([], schema=target)  # Schema.empty_table imports pandas
    return pa.concat_tables(tables).cast(target)


def _rows_of(codes: pa.DictionaryArray, wanted: set[str]) -> pa.BooleanArray | bool:
    """Which rows of a dictionary-encoded key column hold a wanted key: False if none,
    True if all (every key of the dictionary is wanted: most row groups of a large
    country are that country alone, kept without a filter), else a mask.

    In Arrow alone: pyarrow imports pandas on its first conversion to or from NumPy
    (half a second), which a process that only reads a country should not pay.
    """
    dictionary = codes.dictionary
    at = [i for i, k in enumerate(dictionary.to_pylist()) if k in wanted]
    if len(at) == len(dictionary) and not codes.null_count:
        return True
    if not at:
        return False
    value_set = pa.concat_arrays([dictionary.slice(i, 1) for i in at])
    return pc.take(pc.is_in(dictionary, value_set=value_set), codes.indices)


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
