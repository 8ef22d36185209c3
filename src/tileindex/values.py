"""Values from a raster on the index's own grid: ``tile_values`` and ``region_values``
(docs/CONTRACT.md §10.4).

For every row of ``tile_index`` the raster's value at that cell (null where the raster
says nodata), published row for row in the same part files and row groups, and per
region count, sum, mean, min and max (and the same weighted by ``coverage_fraction``
when the index has ``tile_coverage``). One task per part file: it reads the part a row
group at a time and the raster a window at a time (a block of rows, at most
``WINDOW_BYTES``, cut to the columns the rows need), so memory is bounded by a row group
and a window, never by the grid. Sums are exact (integers in units of 2^-1200, rounded
once at the end), so every statistic is the same to the last bit for any worker count,
part order or grouping. Nothing here changes a published partition: ``tile_values`` is a
partition of its own, write-once like the others (§7.4).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import rasterio
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

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
from tileindex.executors import ExecutorSpec, Job, TaskRunner
from tileindex.fsio import fsync_dir, make_dirs, write_atomic
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

__all__ = [
    "REGION_VALUES",
    "VALUES_DATASET",
    "WINDOW_BYTES",
    "ValuesResult",
    "values",
]

log = logging.getLogger(__name__)

VALUES_DATASET = "tile_values"
REGION_VALUES = "region_values"
RASTER_ROLE = "values raster"
# the memory bound of one raster read: a block of whole rows, or fewer when the cells
# asked for leave long gaps (64 MiB = 388 rows of the 30" world in float32)
WINDOW_BYTES = 64 << 20
_SCALE = 1200  # sums are integers in units of 2^-1200: every float64 is one exactly
_BINCOUNT_SLICE = 1 << 24  # float64 bin sums of 27-bit halves stay exact below 2^26 terms

# tile_values is written with the pinned settings of every dataset (tileindex.shards,
# docs/CONTRACT.md §6.5): the key column as a dictionary, sorted tile ids delta-packed,
# values byte-split (smooth floats such as population counts compress 3-4x better split
# than plain; a dictionary would overflow on continuous values). Nulls are not stored.
_TILE_VALUES_ENCODING = {"tile_id": "DELTA_BINARY_PACKED", VALUE_COLUMN: "BYTE_STREAM_SPLIT"}


def _tile_values_options(key_column: str) -> dict[str, Any]:
    options = parquet_options(COVERAGE_DATASET, key_column)
    options["column_encoding"] = dict(_TILE_VALUES_ENCODING)
    return options


def _region_values_options(key_column: str) -> dict[str, Any]:
    options = parquet_options(COVERAGE_DATASET, key_column)
    del options["column_encoding"]  # few rows: plain pages, the library's default encodings
    options["sorting_columns"] = (pq.SortingColumn(0),)
    return options


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


# -- exact sums -----------------------------------------------------------------------------


def scaled_sum(values: npt.ArrayLike) -> int:
    """The exact sum of finite float64 ``values`` times 2^1200, as an integer.

    Every float64 is an integer multiple of 2^-1074, so scaled by 2^1200 every value and
    every sum is an integer; adding these integers is exact and order-free, and one
    division rounds the total (``scaled_sum(v) / 2**1200``, correctly rounded as Python
    divides integers) -- the same number as ``tileindex.report.exact_sum``. The 53-bit
    mantissas are split into 27- and 26-bit halves and summed per binary exponent with
    ``np.bincount`` (float64 sums of fewer than 2^26 such halves are exact), so the cost
    is linear in the values.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    total = 0
    for start in range(0, v.size, _BINCOUNT_SLICE):
        chunk = v[start : start + _BINCOUNT_SLICE]
        mant, exp = np.frexp(chunk)
        m = (mant * 9007199254740992.0).astype(np.int64)  # times 2^53, exact: |m| < 2^53
        lo_exp = int(exp.min())
        bins = exp - lo_exp
        hi = np.bincount(bins, weights=(m >> 26).astype(np.float64))
        lo = np.bincount(bins, weights=(m & ((1 << 26) - 1)).astype(np.float64))
        for i in np.flatnonzero((hi != 0) | (lo != 0)).tolist():
            # value = m * 2^(e - 53), scaled by 2^1200 (e - 53 + 1200 >= 74 for subnormals)
            total += ((int(hi[i]) << 26) + int(lo[i])) << (lo_exp + i - 53 + _SCALE)
    return total


def _unscale(total: int, divisor: int = 1) -> float:
    """``total / (divisor * 2^1200)``, correctly rounded."""
    return total / (divisor << _SCALE)


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

    def add(self, other: _Stats) -> None:
        self.count += other.count
        self.total += other.total
        self.weight += other.weight
        self.weighted += other.weighted
        if other.low is not None:
            self.low = other.low if self.low is None else min(self.low, other.low)
        if other.high is not None:
            self.high = other.high if self.high is None else max(self.high, other.high)

    @classmethod
    def of(cls, v: npt.NDArray[np.float64], f: npt.NDArray[np.float64] | None) -> _Stats:
        if v.size == 0:
            return cls()
        # + 0.0 turns -0.0 into 0.0: which zero min/max returns would depend on the order
        low, high = float(v.min()) + 0.0, float(v.max()) + 0.0
        stats = cls(v.size, scaled_sum(v), low, high)
        if f is not None:
            stats.weight = scaled_sum(f)
            stats.weighted = scaled_sum(v * f)
        return stats

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


class _Windows:
    """Raster values at cells, read a window at a time; keeps the last window, so the
    rows a row group shares with the next are read once."""

    def __init__(self, ds: Any, info: _RasterInfo, grid: Grid, band: int) -> None:
        self.ds, self.info, self.grid, self.band = ds, info, grid, band
        self.cached: tuple[tuple[int, int, int, int], np.ndarray, np.ndarray | None] | None = None
        self.cells_read = 0
        # a gap wider than this between the columns asked for starts another window
        self.gap = max(256, ds.block_shapes[0][1] if ds.block_shapes else 1)

    def values_at(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """The value at every (row, col) and whether it is valid (not nodata, not NaN);
        ``rows`` ascending, as in one key's rows of a part."""
        out = np.empty(rows.size, dtype=np.float64)
        valid = np.ones(rows.size, dtype=np.bool_)
        step = self.info.window_rows
        block = rows // step
        edges = np.flatnonzero(np.diff(block)) + 1
        for lo, hi in zip(np.r_[0, edges].tolist(), np.r_[edges, rows.size].tolist(), strict=True):
            # the block's rows this key has (rows ascend): never more than the block
            r0, r1 = int(rows[lo]), int(rows[hi - 1]) + 1
            self._fill(rows[lo:hi], cols[lo:hi], r0, r1, out[lo:hi], valid[lo:hi])
        if self.info.nodata is not None:
            valid &= out != self.info.nodata
        valid &= ~np.isnan(out)
        if np.isinf(out[valid]).any():
            at = int(np.flatnonzero(valid & np.isinf(out))[0])
            raise InputError(
                f"{RASTER_ROLE} {self.info.path}: infinite value at row {int(rows[at])}, column "
                f"{int(cols[at])}; set it to nodata (or a finite number) and run again",
                raster_row=int(rows[at]),
                raster_col=int(cols[at]),
            )
        return out, valid

    def _fill(
        self,
        rows: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
        r0: int,
        r1: int,
        out: npt.NDArray[np.float64],
        valid: npt.NDArray[np.bool_],
    ) -> None:
        low, high = int(cols.min()), int(cols.max())
        if high - low <= 4 * self.gap:  # too narrow for a gap worth skipping
            starts, stops = np.array([low]), np.array([high + 1])
        else:
            used = np.unique(cols)
            cuts = np.flatnonzero(np.diff(used) > self.gap) + 1
            starts, stops = used[np.r_[0, cuts]], used[np.r_[cuts - 1, used.size - 1]] + 1
        which = np.searchsorted(starts, cols, side="right") - 1
        for k, (c0, c1) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
            sel = np.flatnonzero(which == k) if starts.size > 1 else slice(None)
            data, mask = self._window(r0, r1, c0, c1)
            rr, cc = rows[sel] - r0, cols[sel] - c0
            out[sel] = data[rr, cc]
            if mask is not None:
                valid[sel] = mask[rr, cc] != 0

    def _window(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.cached is not None:
            (q0, q1, d0, d1), data, mask = self.cached
            if q0 <= r0 and r1 <= q1 and d0 <= c0 and c1 <= d1:
                rs, cs = slice(r0 - q0, r1 - q0), slice(c0 - d0, c1 - d0)
                return data[rs, cs], None if mask is None else mask[rs, cs]
        window = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.ds.read(self.band, window=window)
        mask = self.ds.read_masks(self.band, window=window) if self.info.mask_band else None
        self.cells_read += data.size
        self.cached = ((r0, r1, c0, c1), data, mask)
        return data, mask


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
    and return the statistics of its keys, in key order."""
    key = task.key_column
    schema = tile_values_schema(key)
    # the key as a dictionary: decoded without making a string per row (cast back for
    # the output, which is cheaper than decoding the strings)
    index = pq.ParquetFile(task.index_part, read_dictionary=[key])
    coverage = pq.ParquetFile(task.coverage_part) if task.coverage_part is not None else None
    stats: dict[str, _Stats] = {}
    rows = nulls = 0
    with (
        rasterio.open(task.raster.path) as ds,
        pq.ParquetWriter(task.staged, schema, **_tile_values_options(key)) as writer,
    ):
        windows = _Windows(ds, task.raster, task.grid, task.band)
        for group in range(index.metadata.num_row_groups):
            table = index.read_row_group(group, columns=[key, "tile_id"]).combine_chunks()
            ids = table.column("tile_id").to_numpy().astype(np.int64)
            fractions = None
            if coverage is not None:
                fractions = _fractions(coverage, group, table, task)
            r, c = np.divmod(ids, np.int64(task.grid.ncols))
            value = np.empty(ids.size, dtype=np.float64)
            valid = np.empty(ids.size, dtype=np.bool_)
            keys = table.column(key)
            for lo, hi in _runs(keys.combine_chunks().indices):
                v, ok = windows.values_at(r[lo:hi], c[lo:hi])
                value[lo:hi], valid[lo:hi] = v, ok
                f = None if fractions is None else fractions[lo:hi][ok]
                part = _Stats.of(v[ok], f)
                stats.setdefault(keys[lo].as_py(), _Stats()).add(part)
            out = pa.table(
                [pc.cast(keys, pa.string()), table.column("tile_id"), pa.array(value, mask=~valid)],
                schema=schema,
            )
            writer.write_table(out, row_group_size=max(1, out.num_rows))
            rows += out.num_rows
            nulls += int(ids.size - np.count_nonzero(valid))
    return _PartResult(task.number, rows, nulls, windows.cells_read, tuple(stats.items()))


def _runs(codes: pa.Array) -> Iterator[tuple[int, int]]:
    """(start, stop) of each run of equal dictionary codes. The rows are sorted by key
    (§6.4), so a key is one run, or several if its value sits in the dictionary twice:
    the statistics of a key's runs are added, so that changes nothing."""
    c = codes.to_numpy(zero_copy_only=False)
    if c.size == 0:
        return
    edges = (np.flatnonzero(c[1:] != c[:-1]) + 1).tolist()
    yield from zip([0, *edges], [*edges, c.size], strict=True)


def _fractions(
    coverage: pq.ParquetFile, group: int, table: pa.Table, task: _PartTask
) -> npt.NDArray[np.float64]:
    cov = coverage.read_row_group(group, columns=["tile_id", "coverage_fraction"])
    if not cov.column("tile_id").equals(table.column("tile_id")):
        raise InputError(
            f"{task.coverage_part} does not hold the rows of {task.index_part} (row group "
            f"{group}); the index is damaged: rebuild it with 'tileindex build --coverage'"
        )
    return cov.column("coverage_fraction").to_numpy().astype(np.float64)


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
    workers : worker processes, one part file per task; the bytes do not depend on it.
    band : the raster band to read (1-based).
    executor, parameter_hash : as for :func:`tileindex.build` / :func:`tileindex.open`.

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
        with TaskRunner(executor, workers) as runner:
            results = runner.run(jobs, on_result=lambda *_: None)
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
    return pa.Table.from_pylist(rows, schema=region_values_schema(key, weighted))


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
