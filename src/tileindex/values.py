"""Values from a raster on the index's own grid: ``tile_values`` and ``region_values``
(docs/CONTRACT.md §10.4).

For every row of ``tile_index`` the raster's value at that cell (null where the raster
says nodata), published row for row in the same part files and row groups, and per
region count, sum, mean, min and max (and the same weighted by ``coverage_fraction``
when the index has ``tile_coverage``). One task per part file: it reads the part a row
group at a time and the raster a strip at a time (a block of whole rows, at most
``WINDOW_BYTES``, of which only the column chunks the rows need are read), so memory is
bounded by two row groups and a strip, never by the grid. Sums are exact (integers in
units of 2^-1200, :mod:`tileindex.exactsum`, rounded once at the end), so every
statistic is the same to the last bit for any worker count, part order or grouping.
Nothing here changes a published partition: ``tile_values`` is a partition of its own,
write-once like the others (§7.4).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from tileindex import arrays
from tileindex.arrays import from_numpy, key_runs, to_numpy
from tileindex.contract import (
    REGION_VALUE_COLUMNS,
    VALUE_COLUMN,
    WEIGHTED_VALUE_COLUMNS,
    region_values_schema,
    tile_values_schema,
)
from tileindex.errors import (
    ConfigError,
    CrsMismatchError,
    ImmutablePartitionError,
    InputError,
    InputFileError,
    RasterMismatchError,
)
from tileindex.executors import ExecutorSpec, Job, TaskRunner, default_workers
from tileindex.fsio import fsync_dir, fsync_file, make_dirs, write_atomic
from tileindex.grid import Grid
from tileindex.index import Index, open_index

# one home for "is this CRS EPSG:4326 lon/lat" and how a CRS is named in a message
from tileindex.inputs import crs_name, is_wgs84_lonlat
from tileindex.layout import COVERAGE_DATASET, part_files, part_name
from tileindex.shards import (
    discard_staging,
    parquet_options,
    publish_partitions,
    staging_dir,
)

if TYPE_CHECKING:
    from tileindex.exactsum import Accumulator

__all__ = [
    "REGION_VALUES",
    "VALUES_DATASET",
    "WINDOW_BYTES",
    "ValuesResult",
    "scaled_sum",
    "values",
]

log = logging.getLogger(__name__)

VALUES_DATASET = "tile_values"
REGION_VALUES = "region_values"
RASTER_ROLE = "values raster"
# the memory bound of one strip of the raster: a block of whole rows (64 MiB = 388 rows
# of the 30" world in float32, cut to 256: whole blocks), of which only the column chunks
# the cells need are read
WINDOW_BYTES = 64 << 20

# tile_values is written with the pinned settings of every dataset (tileindex.shards,
# docs/CONTRACT.md §6.5): the key column as a dictionary, sorted tile ids delta-packed,
# values byte-split (smooth floats such as population counts compress 3-4x better split
# than plain; a dictionary would overflow on continuous values). Nulls are not stored.
_TILE_VALUES_ENCODING = {"tile_id": "DELTA_BINARY_PACKED", VALUE_COLUMN: "BYTE_STREAM_SPLIT"}


def _tile_values_options(key_column: str) -> dict[str, Any]:
    options = parquet_options(COVERAGE_DATASET, key_column)
    options["column_encoding"] = dict(_TILE_VALUES_ENCODING)
    return options


@cache
def _arrow_schema_entry(key_column: str) -> bytes:
    """The ``ARROW:schema`` footer entry pyarrow writes for ``tile_values``.

    The key column is written as the dictionary array read from ``tile_index`` (so no
    string is made or hashed per row: writing strings costs about twice as much), which
    pyarrow would record as a dictionary column. So a part is written without the
    stored schema and given this entry, the one of the string column, so it reads back
    as strings, with the same pages, statistics and footer as written from strings, but
    for one thing: the dictionary is given whole, so every page of indices has the bit
    width of the whole row group's dictionary (written from strings, the dictionary grows
    page by page). The bytes still depend only on the ``tile_index`` part.
    """
    sink = io.BytesIO()
    options = _tile_values_options(key_column)
    empty = pa.Table.from_batches([], schema=tile_values_schema(key_column))  # no pandas
    pq.write_table(empty, sink, **options)
    return bytes(pq.read_metadata(io.BytesIO(sink.getvalue())).metadata[b"ARROW:schema"])


def _dictionary_schema(key_column: str) -> pa.Schema:
    schema = tile_values_schema(key_column)
    keys = pa.field(key_column, pa.dictionary(pa.int32(), pa.string()), nullable=False)
    return schema.set(0, keys)


def _region_values_options(key_column: str) -> dict[str, Any]:
    options = parquet_options(COVERAGE_DATASET, key_column)
    del options["column_encoding"]  # few rows: plain pages, the library's default encodings
    options["sorting_columns"] = (pq.SortingColumn(0),)
    return options


_SCALE = 1200  # sums are integers in units of 2^-1200 (tileindex.exactsum.SCALE)


def scaled_sum(values: npt.ArrayLike) -> int:
    """The exact sum of finite float64 ``values`` times 2^1200, as an integer; see
    :func:`tileindex.exactsum.scaled_sum` (imported here on first use: it brings numba)."""
    from tileindex.exactsum import scaled_sum as exact

    return exact(values)


def _unscale(total: int, divisor: int = 1) -> float:
    """``total / (divisor * 2^1200)``, correctly rounded."""
    return total / (divisor << _SCALE)


@dataclass(frozen=True)
class ValuesResult:
    """What :func:`values` published (or found already published, ``identical``)."""

    parameter_hash: str
    outcome: str  # "published" or "identical"
    rows: int  # rows of tile_values (= rows of tile_index)
    null_rows: int  # rows whose value is null (nodata)
    weighted: bool  # region_values has the weighted_* columns (the index has tile_coverage)
    region_values: pa.Table
    paths: Mapping[str, Path]
    seconds: float
    workers: int
    cells_read: int  # raster cells read, summed over every window


# -- per-region accumulators ----------------------------------------------------------------


@dataclass
class _Stats:
    """One region's running statistics; adding two is exact and order-free."""

    count: int = 0
    total: int = 0  # scaled_sum of the values
    low: float | None = None
    high: float | None = None
    weight: int = 0  # scaled_sum of the coverage fractions of the non-null cells
    weighted: int = 0  # scaled_sum of fl(value * coverage_fraction)

    @classmethod
    def of(
        cls,
        acc: Accumulator,
        v: npt.NDArray[np.float64],
        valid: npt.NDArray[np.bool_],
        f: npt.NDArray[np.float64] | None,
    ) -> _Stats:
        """The statistics of the valid ``v`` (weighted by ``f`` when given)."""
        count, low, high, (total, weight, weighted) = acc.add(v, valid, f)
        if count == 0:
            return cls()
        # + 0.0 turns -0.0 into 0.0: which zero min/max returns would depend on the order
        return cls(count, total, low + 0.0, high + 0.0, weight, weighted)

    def add(self, other: _Stats) -> None:
        self.count += other.count
        self.total += other.total
        self.weight += other.weight
        self.weighted += other.weighted
        if other.low is not None:
            self.low = other.low if self.low is None else min(self.low, other.low)
        if other.high is not None:
            self.high = other.high if self.high is None else max(self.high, other.high)

    def row(self, weighted: bool) -> dict[str, Any]:
        row: dict[str, Any] = {
            "count": self.count,
            "sum": _unscale(self.total),
            "mean": _unscale(self.total, self.count) if self.count else None,
            "min": self.low,
            "max": self.high,
        }
        if weighted:
            row["weighted_count"] = _unscale(self.weight)
            row["weighted_sum"] = _unscale(self.weighted)
            row["weighted_mean"] = self.weighted / self.weight if self.weight else None
        return row


# -- the raster -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _RasterInfo:
    path: Path
    dtype: str
    nodata: float | None
    mask_band: bool  # validity comes from a mask or alpha band (GDAL's mask flags)
    window_rows: int


def _check_raster(path: Path, grid: Grid, band: int) -> _RasterInfo:
    """The raster's header, refused unless it is on ``grid`` in EPSG:4326 (docs/CONTRACT.md
    §10.4): another CRS is E007, another size or transform E002 naming both grids."""
    where = f"{RASTER_ROLE} {path}"
    if not path.is_file():
        raise InputFileError(f"{where}: no such file; pass the raster whose values to attach")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with rasterio.open(path) as ds:
                width, height, count, crs = ds.width, ds.height, ds.count, ds.crs
                t = ds.transform
                dtypes, nodatavals = ds.dtypes, ds.nodatavals
                flags = ds.mask_flag_enums
                block_rows = ds.block_shapes[0][0] if ds.block_shapes else 1
    except (RasterioError, OSError) as exc:
        raise InputError(
            f"{where}: not a readable raster ({' '.join(str(exc).split())}); pass a GeoTIFF "
            "or another raster GDAL opens"
        ) from exc
    if not 1 <= band <= count:
        raise InputError(f"{where}: has {count} band(s), no band {band}; pass band 1..{count}")
    if crs is None:
        raise CrsMismatchError(
            f"{where}: raster has no CRS; the index's grid is EPSG:4326 lon/lat: assign it "
            "(gdal_translate -a_srs EPSG:4326) if the raster is on that grid"
        )
    try:
        pcrs = CRS.from_user_input(crs.to_wkt())
    except CRSError as exc:
        raise CrsMismatchError(
            f"{where}: raster CRS cannot be interpreted ({' '.join(str(exc).split())}); warp "
            "it onto the index's EPSG:4326 grid"
        ) from exc
    if not is_wgs84_lonlat(pcrs):
        raise CrsMismatchError(
            f"{where}: raster CRS is {crs_name(pcrs)}, not EPSG:4326 lon/lat like the "
            f"index's grid; warp it onto that grid ({_warp_hint(grid)})"
        )
    if any(issubclass(w.category, NotGeoreferencedWarning) for w in caught):
        raise RasterMismatchError(
            f"{where}: raster has no geotransform, so it is not on the index's grid "
            f"{_describe(grid.ncols, grid.nrows, grid.transform)}; {_warp_hint(grid)}"
        )
    transform = (t.a, t.b, t.c, t.d, t.e, t.f)
    if (width, height, transform) != (grid.ncols, grid.nrows, grid.transform):
        raise RasterMismatchError(
            f"{where} is on another grid than the index: raster "
            f"{_describe(width, height, transform)}, index "
            f"{_describe(grid.ncols, grid.nrows, grid.transform)}; resample the raster onto "
            f"the index's grid ({_warp_hint(grid)})"
        )
    dtype = np.dtype(dtypes[band - 1])
    if dtype.kind not in "iuf":
        raise InputError(
            f"{where}: band {band} holds {dtype} values; values must be integers or floats"
        )
    band_flags = flags[band - 1]
    mask_band = MaskFlags.per_dataset in band_flags or MaskFlags.alpha in band_flags
    nodata = nodatavals[band - 1]
    rows = max(1, WINDOW_BYTES // (grid.ncols * dtype.itemsize))
    if rows >= block_rows:
        rows -= rows % block_rows  # whole blocks: GDAL decompresses each block once
    return _RasterInfo(path, dtype.str, None if mask_band else nodata, mask_band, rows)


def _describe(ncols: int, nrows: int, transform: Sequence[float]) -> str:
    return f"{ncols} x {nrows} cells, transform {tuple(float(v) for v in transform)!r}"


def _warp_hint(grid: Grid) -> str:
    west, north = grid.c, grid.f
    east, south = grid.c + grid.a * grid.ncols, grid.f + grid.e * grid.nrows
    return (
        f"e.g. gdalwarp -t_srs EPSG:4326 -te {west!r} {south!r} {east!r} {north!r} "
        f"-ts {grid.ncols} {grid.nrows} IN.tif OUT.tif"
    )


class _Strips:
    """Raster values at cells, read a strip at a time: ``window_rows`` whole rows (whole
    blocks where they fit), of which only the column chunks (``max(256, block width)``
    columns, block-aligned) that the cells ask for are read. The last strip is kept, with
    the chunks it holds, so the rows two row groups share are read once."""

    def __init__(self, ds: Any, info: _RasterInfo, grid: Grid, band: int) -> None:
        self.ds, self.info, self.grid, self.band = ds, info, grid, band
        self.chunk = max(256, ds.block_shapes[0][1] if ds.block_shapes else 1)
        self.nchunks = -(-grid.ncols // self.chunk)
        # (strip number, values, mask or None, which chunks are read)
        self.cached: tuple[int, np.ndarray, np.ndarray | None, np.ndarray] | None = None
        self.cells_read = 0

    def values_at(
        self, ids: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """The value at every cell ``ids`` and whether it is valid (not nodata, not NaN)."""
        grid = self.grid
        from tileindex import gather  # numba, on first use

        cells = gather.plan(ids, grid.nrows, grid.ncols, self.info.window_rows, self.chunk)
        out = np.empty(ids.size, dtype=np.float64)
        ok = np.empty(ids.size, dtype=np.uint8) if self.info.mask_band else None
        for k, s in enumerate(cells.strips.tolist()):
            number = cells.first + s
            data, mask = self._strip(number, cells.need[s])
            r0 = number * self.info.window_rows
            gather.take(cells, k, r0, data, out)
            if mask is not None and ok is not None:
                gather.take(cells, k, r0, mask, ok)
        valid = ~np.isnan(out)
        if ok is not None:
            valid &= ok != 0
        if self.info.nodata is not None:
            valid &= out != self.info.nodata
        infinite = np.isinf(out)
        if infinite.any() and (infinite & valid).any():
            at = int(np.flatnonzero(infinite & valid)[0])
            row, col = divmod(int(ids[at]), grid.ncols)
            raise InputError(
                f"{RASTER_ROLE} {self.info.path}: infinite value at row {row}, column "
                f"{col}; set it to nodata (or a finite number) and run again",
                raster_row=row,
                raster_col=col,
            )
        return out, valid

    def _strip(
        self, number: int, need: npt.NDArray[np.bool_]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Strip ``number`` with at least the column chunks ``need`` read."""
        if self.cached is None or self.cached[0] != number:
            r0 = number * self.info.window_rows
            shape = (min(self.info.window_rows, self.grid.nrows - r0), self.grid.ncols)
            if self.cached is not None and self.cached[1].shape == shape:
                _, data, mask, have = self.cached  # the buffers are reused: no page faults
                have[:] = False
            else:
                data = np.empty(shape, dtype=self.info.dtype)
                mask = np.empty(shape, dtype=np.uint8) if self.info.mask_band else None
                have = np.zeros(self.nchunks, dtype=np.bool_)
            self.cached = (number, data, mask, have)
        _, data, mask, have = self.cached
        missing = np.zeros(self.nchunks + 2, dtype=np.int8)
        missing[1:-1] = need & ~have
        edges = np.flatnonzero(np.diff(missing)).tolist()
        r0 = number * self.info.window_rows
        for k0, k1 in zip(edges[::2], edges[1::2], strict=True):
            c0, c1 = k0 * self.chunk, min(k1 * self.chunk, self.grid.ncols)
            self._read(data, mask, Window(c0, r0, c1 - c0, data.shape[0]))
            have[k0:k1] = True
        return data, mask

    def _read(self, data: np.ndarray, mask: np.ndarray | None, window: Window) -> None:
        """Read ``window`` of the raster into its columns of the strip ``data``."""
        cols = slice(window.col_off, window.col_off + window.width)
        data[:, cols] = self.ds.read(self.band, window=window)
        if mask is not None:
            mask[:, cols] = self.ds.read_masks(self.band, window=window)
        self.cells_read += window.width * window.height


_held = threading.local()

# GDAL's block cache per process, unless the user sets GDAL_CACHEMAX: GDAL's default (5% of
# RAM, 1.2 GiB on a 24 GiB machine) would be taken by every worker; 256 MiB holds the
# decoded blocks of about six strips of the 30" world, more than two neighbouring parts
# share
CACHE_BYTES = 256 << 20


def _raster_env() -> contextlib.AbstractContextManager[Any]:
    """Where the raster is read: GDAL's block cache bounded by :data:`CACHE_BYTES` unless
    GDAL_CACHEMAX is set in the environment. GDAL reads the option whenever it caches a
    block, so the bound holds while a part is read and the caller's setting is back
    afterwards."""
    if "GDAL_CACHEMAX" in os.environ:
        return contextlib.nullcontext()
    return rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES)


def _open_raster(path: Path) -> Any:
    """The raster at ``path``, opened once per thread and kept open for the next part.

    GDAL's block cache belongs to the open dataset: kept open, a block that several parts
    need (the border of regions that sit in different parts) is decoded once and copied
    from the cache after that (bounded by :data:`CACHE_BYTES`, see :func:`_raster_env`).
    A changed file (size or mtime) is opened again.
    """
    stat = path.stat()
    identity = (str(path), stat.st_size, stat.st_mtime_ns)
    held = getattr(_held, "raster", None)
    if held is not None and held[0] == identity:
        return held[1]
    _close_raster()
    ds = rasterio.open(path)
    _held.raster = (identity, ds)
    return ds


def _close_raster() -> None:
    held = getattr(_held, "raster", None)
    if held is not None:
        _held.raster = None
        held[1].close()


# -- one part -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PartTask:
    number: int
    index_part: Path
    coverage_part: Path | None
    staged: Path  # the tile_values part to write
    raster: _RasterInfo
    band: int
    grid: Grid
    key_column: str


@dataclass(frozen=True)
class _PartResult:
    number: int
    rows: int
    null_rows: int
    cells_read: int
    stats: tuple[tuple[str, _Stats], ...] = field(default=())


def _values_part(task: _PartTask, attempt: int = 1) -> _PartResult:
    """Write the ``tile_values`` part of one ``tile_index`` part, row group by row group,
    and return the statistics of its keys, in key order. A row group is written by a
    second thread while the next is computed (pyarrow writes without the GIL); at most
    one write is pending, so memory stays at two row groups and a strip."""
    key = task.key_column
    schema = _dictionary_schema(key)
    # the key as a dictionary: decoded without making a string per row, and written so
    index = pq.ParquetFile(task.index_part, read_dictionary=[key])
    coverage = pq.ParquetFile(task.coverage_part) if task.coverage_part is not None else None
    stats: dict[str, _Stats] = {}
    from tileindex.exactsum import Accumulator  # numba, on first use

    acc = Accumulator()
    rows = nulls = 0
    options = {**_tile_values_options(key), "store_schema": False}
    with (
        _raster_env(),
        pq.ParquetWriter(task.staged, schema, **options) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="tile_values") as pool,
    ):
        strips = _Strips(_open_raster(task.raster.path), task.raster, task.grid, task.band)
        pending: Future[None] | None = None
        for group in range(index.metadata.num_row_groups):
            table = index.read_row_group(group, columns=[key, "tile_id"]).combine_chunks()
            ids = to_numpy(table.column("tile_id"))
            fractions = None
            if coverage is not None:
                fractions = _fractions(coverage, group, table, task)
            value, valid = strips.values_at(ids)
            keys = table.column(key).combine_chunks()
            for name, lo, hi in key_runs(keys):  # one run per key: rows sorted by key (§6.4)
                f = None if fractions is None else fractions[lo:hi]
                part = _Stats.of(acc, value[lo:hi], valid[lo:hi], f)
                stats.setdefault(str(name), _Stats()).add(part)
            out = pa.table([keys, table.column("tile_id"), from_numpy(value, valid)], schema=schema)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write_table, out, row_group_size=max(1, out.num_rows))
            rows += out.num_rows
            nulls += int(ids.size - np.count_nonzero(valid))
        if pending is not None:
            pending.result()
        writer.add_key_value_metadata({b"ARROW:schema": _arrow_schema_entry(key)})
    # on disk before the task ends, as the build's parts are: the parts are synced side by
    # side while others are computed, and the publish's fsync of the tree finds them clean
    # instead of syncing every part one after another
    fsync_file(task.staged)
    return _PartResult(task.number, rows, nulls, strips.cells_read, tuple(stats.items()))


def _fractions(
    coverage: pq.ParquetFile, group: int, table: pa.Table, task: _PartTask
) -> npt.NDArray[np.float64]:
    cov = coverage.read_row_group(group, columns=["tile_id", "coverage_fraction"])
    if not cov.column("tile_id").equals(table.column("tile_id")):
        raise InputError(
            f"{task.coverage_part} does not hold the rows of {task.index_part} (row group "
            f"{group}); the index is damaged: rebuild it with 'tileindex build --coverage'"
        )
    return to_numpy(cov.column("coverage_fraction"))


# -- the whole index ------------------------------------------------------------------------


def values(
    index: Index | str | os.PathLike[str],
    raster: str | os.PathLike[str],
    workers: int | None = 1,
    *,
    band: int = 1,
    executor: ExecutorSpec = None,
    parameter_hash: str | None = None,
) -> ValuesResult:
    """Attach the values of ``raster`` (on the index's grid) to a published index.

    Publishes ``tile_values`` (the key, ``tile_id`` and ``value`` of every row of
    ``tile_index``, in its order and part layout; null where the raster holds nodata or
    NaN) and ``region_values.parquet`` (per key: count of non-null cells, sum, mean, min,
    max, plus ``weighted_count``, ``weighted_sum``, ``weighted_mean`` by
    ``coverage_fraction`` when the index has ``tile_coverage``), both write-once: a rerun
    with the same raster is a no-op, another raster is ``E010``. See docs/CONTRACT.md
    §10.4.

    Parameters
    ----------
    index : an :class:`Index` (``tileindex.open``) or the output root of a build.
    raster : a raster with exactly the index's grid (size and transform) in EPSG:4326,
        else ``E002_RASTER_MISMATCH`` (``E007_CRS_MISMATCH`` for another CRS).
    workers : parts run at once, one part file per task (None: every core); the bytes do
        not depend on it. Without ``executor``, more than one runs on threads of this
        process (every step releases the GIL), one in the calling thread.
    band : the raster band to read (1-based).
    executor : ``"process"`` or ``"dask"`` (or a ready executor or dask client, as for
        :func:`tileindex.build`) to run the parts elsewhere than on threads.
    parameter_hash : as for :func:`tileindex.open`.

    Examples
    --------
    >>> result = tileindex.values("out/", "population.tif")     # doctest: +SKIP
    >>> result.region_values.to_pandas().set_index("country_iso")["sum"]  # doctest: +SKIP
    """
    started = time.perf_counter()
    if not isinstance(index, Index):
        index = open_index(Path(index), parameter_hash)
    key = index.key_column
    clash = {VALUE_COLUMN, *REGION_VALUE_COLUMNS, *WEIGHTED_VALUE_COLUMNS} & {key}
    if clash:
        raise ConfigError(
            f"the index's key column {key!r} is also the name of a values column "
            f"({', '.join(sorted(clash))}); rebuild the index with another --key-column name"
        )
    for name in (VALUES_DATASET, REGION_VALUES):
        index.dictionary.require(name, "tileindex values")
    grid = index.grid
    info = _check_raster(Path(raster), grid, band)
    weighted = COVERAGE_DATASET in index.datasets
    index_parts = part_files(index.path("tile_index"))
    coverage_parts = part_files(index.path(COVERAGE_DATASET)) if weighted else []
    if weighted and [p.name for p in coverage_parts] != [p.name for p in index_parts]:
        raise InputError(
            f"{index.path(COVERAGE_DATASET)} does not have the part files of tile_index; "
            "the index is damaged: rebuild it with 'tileindex build --coverage'"
        )
    final = {name: index.path(name) for name in (VALUES_DATASET, REGION_VALUES)}
    stage = staging_dir(index.root, index.parameter_hash)
    try:
        (stage / VALUES_DATASET).mkdir()
        tasks = [
            _PartTask(
                n,
                part,
                coverage_parts[n] if weighted else None,
                stage / VALUES_DATASET / part_name(n),
                info,
                band,
                grid,
                key,
            )
            for n, part in enumerate(index_parts)
        ]
        jobs = [Job(t.number, _values_part, (t,), f"values of {t.index_part.name}") for t in tasks]
        with _threads(executor, workers) as pool, TaskRunner(pool or executor, workers) as runner:
            try:
                results = runner.run(jobs, on_result=lambda *_: None)
            finally:
                _close_raster()  # the serial executor's parts ran in this thread
            used = runner.workers
        fsync_dir(stage / VALUES_DATASET)
        per_key: dict[str, _Stats] = {k: _Stats() for k in index.keys}
        for n in range(len(tasks)):  # in part order; the sums are exact, so any order would do
            for k, s in results[n].stats:
                per_key.setdefault(k, _Stats()).add(s)
        table = _region_table(per_key, key, index.keys, weighted)
        staged_regions = stage / "region_values.parquet"
        options = _region_values_options(key)
        write_atomic(staged_regions, lambda tmp: pq.write_table(table, tmp, **options))
        outcome = _publish(stage / VALUES_DATASET, staged_regions, final)
    finally:
        discard_staging(stage)
    rows = sum(r.rows for r in results.values())
    nulls = sum(r.null_rows for r in results.values())
    seconds = time.perf_counter() - started
    log.info(
        "values of %s: %d rows (%d null) in %d parts, %s, %.1f s",
        raster,
        rows,
        nulls,
        len(tasks),
        outcome,
        seconds,
    )
    return ValuesResult(
        parameter_hash=index.parameter_hash,
        outcome=outcome,
        rows=rows,
        null_rows=nulls,
        weighted=weighted,
        region_values=table,
        paths=final,
        seconds=seconds,
        workers=used,
        cells_read=sum(r.cells_read for r in results.values()),
    )


@contextlib.contextmanager
def _threads(executor: ExecutorSpec, workers: int | None) -> Iterator[ThreadPoolExecutor | None]:
    """The default executor of :func:`values` for more than one worker: threads of this
    process. Every step of a part runs without the GIL (Arrow's reads and writes, GDAL's
    decoding, the compiled loops), so threads use the cores as processes would, without
    each process's start-up (its imports and numba's loading of its compiled loops);
    ``benchmarks/values.py --processes`` times both. ``None`` for one worker or a named
    or given executor. Each thread's raster is closed with the thread."""
    n = default_workers() if workers is None else workers
    if executor is not None or not isinstance(n, int) or n <= 1:
        yield None
        return
    with ThreadPoolExecutor(n, thread_name_prefix="tileindex-values") as pool:
        yield pool


def _region_table(
    per_key: Mapping[str, _Stats], key: str, keys: Sequence[str], weighted: bool
) -> pa.Table:
    unknown = sorted(set(per_key) - set(keys))
    if unknown:
        raise InputError(
            f"tile_index holds keys its summaries do not list ({', '.join(unknown[:5])}); "
            "the index is damaged: rebuild it"
        )
    rows = [{key: k, **per_key[k].row(weighted)} for k in keys]
    return arrays.table(rows, region_values_schema(key, weighted))


def _publish(staged_values: Path, staged_regions: Path, final: Mapping[str, Path]) -> str:
    """Publish both, write-once (docs/CONTRACT.md §7.4): both are checked for E010 before
    either moves; ``tile_values`` lands first, so a kill in between leaves the statistics
    missing, and the rerun writes them."""
    regions = final[REGION_VALUES]
    if regions.exists() and regions.read_bytes() != staged_regions.read_bytes():
        raise ImmutablePartitionError(
            f"{regions} is already published with other statistics (values of another "
            "raster?); a partition is write-once: remove tile_values and region_values "
            "deliberately, or attach the other raster to an index under another parameter hash"
        )
    (outcome,) = publish_partitions([(staged_values, final[VALUES_DATASET])])
    if not regions.exists():
        make_dirs(regions.parent)
        os.replace(staged_regions, regions)
        fsync_dir(regions.parent)
        return "published"
    return str(outcome)
