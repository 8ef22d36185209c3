"""Runs of included cells -> Arrow record batches of ``tile_index`` and ``tile_bounds``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tileindex.arrays import repeat
from tileindex.contract import DEFAULT_KEY_COLUMN, tile_bounds_schema, tile_index_schema
from tileindex.coverage import BoundaryFractions
from tileindex.errors import (
    AreaNonPositiveError,
    BoundsError,
    DuplicateTileError,
    RasterMismatchError,
)
from tileindex.grid import FloatArray, Grid, IntArray, Runs
from tileindex.predicates import check_predicate

if TYPE_CHECKING:
    from tileindex.plan import WorkUnit


class UnitCells(Protocol):
    """What :func:`check_unit_order` reads of a unit's result: the (lowest, highest)
    tile id of its cells, None without cells."""

    @property
    def tile_ids(self) -> tuple[int, int] | None: ...


DEFAULT_MAX_ROWS = 1 << 20


def iter_batches(
    grid: Grid,
    iso: str,
    predicate: str,
    runs: Runs,
    max_rows: int = DEFAULT_MAX_ROWS,
    *,
    key_column: str = DEFAULT_KEY_COLUMN,
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Expand one country's runs into cells and yield ``(tile_index, tile_bounds)`` batch
    pairs; their first column, holding ``iso``, is named ``key_column``
    (docs/CONTRACT.md §10.1). :func:`iter_groups` with one key; every pair owns its
    memory."""
    return iter_groups(
        grid, (iso,), predicate, runs.with_country(0), max_rows, key_column=key_column
    )


def iter_groups(
    grid: Grid,
    codes: Sequence[str],
    predicate: str,
    runs: Runs,
    max_rows: int = DEFAULT_MAX_ROWS,
    *,
    key_column: str = DEFAULT_KEY_COLUMN,
    reuse: bool = False,
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Expand runs of several keys (``runs.country`` indexes ``codes``) into cells and
    yield ``(tile_index, tile_bounds)`` batch pairs, whose first column, holding each
    cell's key, is named ``key_column`` (docs/CONTRACT.md §10.1).

    The runs must lie on the grid, in (key, tile_id) order and disjoint (what
    :func:`check_runs` checks; a build checks its runs before any row is made). Each
    pair holds the same ``max_rows`` cells (the last fewer), in order, whatever key or
    run they come from; runs are split across pairs where the room ends, so the
    concatenated output does not depend on ``max_rows``. Nothing is yielded when the
    runs hold no cell.

    With ``reuse`` every pair is written into the same buffers, so a pair is valid only
    until the next one is drawn: for a consumer that writes each pair out at once (the
    encoder's row groups), it saves allocating and faulting in ~80 bytes a row.
    """
    check_predicate(predicate)
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    runs = runs.take(runs.col1 > runs.col0)  # an empty run holds no cell
    ends = np.cumsum(runs.col1 - runs.col0)  # cell position (in the whole stream) after each run
    total = int(ends[-1]) if ends.size else 0
    schemas = (tile_index_schema(key_column), tile_bounds_schema(key_column))
    buffers = _Buffers(min(max_rows, total)) if reuse else None
    for start in range(0, total, max_rows):
        stop = min(start + max_rows, total)
        out = buffers or _Buffers(stop - start)
        yield _build(grid, codes, predicate, runs, ends, start, stop, schemas, max_rows, out)


def check_runs(grid: Grid, runs: Runs, codes: Sequence[str]) -> None:
    """Require runs that can be published: each on the grid, and all in (country,
    tile_id) order without overlap (``runs.country`` indexes ``codes``).

    With :func:`check_unit_order` this is the build's duplicate check (E003,
    docs/CONTRACT.md §8): a worker checks each unit's runs as it makes them, O(runs),
    and the coordinator the order of the units. Every published row is a cell of
    exactly one of these runs, in this order, so rows cannot repeat a key or leave key
    order when the runs do not.
    """
    r, c0, c1, k = runs.row, runs.col0, runs.col1, runs.country
    backwards = c1 < c0
    if backwards.any():
        i = int(np.flatnonzero(backwards)[0])
        raise ValueError(f"run {i} ends before it starts: col0={c0[i]}, col1={c1[i]}")
    keep = c1 > c0  # an empty run holds no cell
    if not keep.all():
        r, c0, c1, k = r[keep], c0[keep], c1[keep], k[keep]
    if r.size == 0:
        return
    off = (r < 0) | (r >= grid.nrows) | (c0 < 0) | (c1 > grid.ncols)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise RasterMismatchError(
            f"run ({r[i]}, {c0[i]}..{c1[i] - 1}) of {codes[int(k[i])]} lies off the "
            f"{grid.nrows} x {grid.ncols} grid",
            country_iso=codes[int(k[i])],
            raster_row=int(r[i]),
            raster_col=int(c0[i]),
        )
    # a run must start at or after the previous one's end (row-major cell positions),
    # unless it opens a later country
    first = grid.tile_id(r, c0).view(np.int64)
    end = grid.tile_id(r, c1).view(np.int64)
    same = k[1:] == k[:-1]
    bad = (k[1:] < k[:-1]) | (same & (first[1:] < end[:-1]))
    if bad.any():
        i = int(np.flatnonzero(bad)[0]) + 1
        code = codes[int(k[i])]
        raise DuplicateTileError(
            f"country {code}: run ({r[i]}, {c0[i]}..{c1[i] - 1}) overlaps or precedes the "
            "run before it; runs must be in (country_iso, tile_id) order and disjoint",
            country_iso=code,
            raster_row=int(r[i]),
            raster_col=int(c0[i]),
        )


def check_unit_order(
    codes: Sequence[str], units: Sequence[WorkUnit], results: Sequence[UnitCells]
) -> None:
    """Require the units' cells, in unit order, to be in (key, tile_id) order without
    overlap (E003, docs/CONTRACT.md §8): each unit's own runs were checked by
    :func:`check_runs` where they were made, so it is enough that every unit with cells
    starts after the previous one of its key ends, and that keys come in ``codes``
    order. O(units): the parent never needs the runs themselves."""
    index = {code: i for i, code in enumerate(codes)}
    prev: tuple[int, int] | None = None  # (key index, last tile id) of the last unit with cells
    for unit, res in zip(units, results, strict=True):
        if res.tile_ids is None:
            continue
        key = index[unit.country_iso]
        first, last = res.tile_ids
        if prev is not None and (key < prev[0] or (key == prev[0] and first <= prev[1])):
            raise DuplicateTileError(
                f"country {unit.country_iso}: unit {unit.unit_id} (rows {unit.row_start}-"
                f"{unit.row_stop}) starts at tile {first}, not after the unit before it; units "
                "must be in (country_iso, tile_id) order and disjoint",
                country_iso=unit.country_iso,
            )
        prev = (key, last)


@dataclass(frozen=True, eq=False)
class _Tables:
    """Every per-row and per-column quantity of a grid, computed once per process with
    the grid's own formulas (docs/CONTRACT.md §3): a cell's values are then copies, the
    same float64 bits the formulas give for it."""

    lon: FloatArray
    west: FloatArray
    east: FloatArray
    lat: FloatArray
    area: FloatArray
    south: FloatArray
    north: FloatArray
    bad_lon_before: IntArray  # bad_lon_before[c]: columns < c whose centroid lies off ±180


@functools.lru_cache(maxsize=4)
def _tables(grid: Grid) -> _Tables:
    cols = np.arange(grid.ncols, dtype=np.int64)
    rows = np.arange(grid.nrows, dtype=np.int64)
    lon = grid.centroid_lon(cols)
    west, east = grid.lon_bounds(cols)
    south, north = grid.lat_bounds(rows)
    bad = ~((lon >= -180.0) & (lon <= 180.0))
    return _Tables(
        lon=lon,
        west=west,
        east=east,
        lat=grid.centroid_lat(rows),
        area=grid.row_area_m2(rows),
        south=south,
        north=north,
        bad_lon_before=np.concatenate([[0], np.cumsum(bad, dtype=np.int64)]),
    )


def _check_values(
    keys: Sequence[str],
    t: _Tables,
    run_rows: IntArray,
    first_col: IntArray,
    counts: IntArray,
) -> None:
    """docs/CONTRACT.md §8 E004 (coordinates in range; first, since an area off the globe
    means nothing) and E006 (area > 0) for the cells of these runs (``keys``: each run's
    key), per run: the values depend on the row, or on the column through the grid's
    tables."""
    south, north = t.south[run_rows], t.north[run_rows]
    bad = ~((south >= -90.0) & (north <= 90.0) & (south < north))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        iso = keys[i]
        raise BoundsError(
            f"country {iso}: row {run_rows[i]} spans latitudes {south[i]}..{north[i]}, "
            "outside [-90, 90]",
            country_iso=iso,
            raster_row=int(run_rows[i]),
        )
    area = t.area[run_rows]
    bad = ~(area > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        iso = keys[i]
        raise AreaNonPositiveError(
            f"country {iso}: cell area {area[i]} m2 in row {run_rows[i]} is not positive",
            country_iso=iso,
            raster_row=int(run_rows[i]),
        )
    if (
        t.bad_lon_before[-1]
        and (t.bad_lon_before[first_col + counts] > t.bad_lon_before[first_col]).any()
    ):
        raise BoundsError(f"country {iso}: a centroid longitude lies outside [-180, 180]")


def _expand_cells(
    run_rows: IntArray,
    first_col: IntArray,
    counts: IntArray,
    ncols: int,
    t_lon: FloatArray,
    t_west: FloatArray,
    t_east: FloatArray,
    t_lat: FloatArray,
    t_area: FloatArray,
    t_south: FloatArray,
    t_north: FloatArray,
    tile_id: npt.NDArray[np.uint64],
    row: npt.NDArray[np.uint32],
    col: npt.NDArray[np.uint32],
    lon: FloatArray,
    lat: FloatArray,
    area: FloatArray,
    west: FloatArray,
    east: FloatArray,
    south: FloatArray,
    north: FloatArray,
) -> None:
    """Write the cells of the runs, in order, into the columns (copies of the tables'
    values; tile id = row * ncols + col, §3)."""
    p = 0
    for i in range(run_rows.size):
        r = run_rows[i]
        c = first_col[i]
        n = counts[i]
        base = r * ncols + c
        la, ar, so, no = t_lat[r], t_area[r], t_south[r], t_north[r]
        for k in range(n):
            tile_id[p + k] = base + k
            row[p + k] = r
            col[p + k] = c + k
            lon[p + k] = t_lon[c + k]
            lat[p + k] = la
            area[p + k] = ar
            west[p + k] = t_west[c + k]
            east[p + k] = t_east[c + k]
            south[p + k] = so
            north[p + k] = no
        p += n


@functools.cache
def _expand() -> Callable[..., None]:
    """:func:`_expand_cells` compiled by numba (cached on disk by numba, so a process
    pays only the load). Imported on first use: numba and its compiler cost a process
    ~130 MB, which a coordinator that only hands parts to workers never needs."""
    import numba

    return numba.njit(nogil=True, cache=True)(_expand_cells)


@functools.lru_cache(maxsize=4)
def _repeated(value: str, n: int) -> pa.Array:
    return repeat(value, n)


def _repeat(value: str, n: int, max_rows: int) -> pa.Array:
    """``n`` copies of a string; full batches share one cached array (a country's key
    and the predicate repeat over millions of rows), short ones build their own."""
    if n == max_rows:
        return _repeated(value, n)
    return repeat(value, n)


class _Buffers:
    """The columns of up to ``n`` cells: tile_id; raster_row, raster_col; lon, lat,
    area, west, east, south, north."""

    def __init__(self, n: int) -> None:
        self.columns: tuple[npt.NDArray[Any], ...] = (
            np.empty(n, dtype=np.uint64),
            np.empty(n, dtype=np.uint32),
            np.empty(n, dtype=np.uint32),
            *(np.empty(n, dtype=np.float64) for _ in range(7)),
        )


def _key_column(
    codes: Sequence[str], run_key: npt.NDArray[np.int32], counts: IntArray, max_rows: int
) -> pa.Array:
    """The key of every cell: one cached repeat when the runs share a key, else the
    keys' dictionary decoded per cell (a batch where one key ends and the next begins)."""
    n = int(counts.sum())
    if run_key[0] == run_key[-1]:  # runs are in key order: first == last means one key
        return _repeat(codes[int(run_key[0])], n, max_rows)
    used, local = np.unique(run_key, return_inverse=True)
    indices = pa.array(np.repeat(local.astype(np.int32), counts), pa.int32())
    dictionary = pa.array([codes[int(k)] for k in used], pa.string())
    return pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()


def _build(
    grid: Grid,
    codes: Sequence[str],
    predicate: str,
    runs: Runs,
    ends: IntArray,
    start: int,
    stop: int,
    schemas: tuple[pa.Schema, pa.Schema],
    max_rows: int,
    out: _Buffers,
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """The cells at stream positions [start, stop) as one batch pair, in ``out``."""
    n = stop - start
    # runs touching [start, stop): the first whose end is past start .. the one holding stop-1
    i0 = int(np.searchsorted(ends, start, side="right"))
    i1 = int(np.searchsorted(ends, stop - 1, side="right")) + 1
    run_end = np.minimum(ends[i0:i1], stop) - start  # run ends, relative to the batch
    counts = np.diff(run_end, prepend=0)
    # the first run may begin before this batch: skip the cells already emitted
    first_col = runs.col0[i0:i1].copy()
    first_col[0] += start - (int(ends[i0 - 1]) if i0 > 0 else 0)
    run_rows = runs.row[i0:i1]
    run_key = runs.country[i0:i1]
    t = _tables(grid)
    _check_values([codes[int(k)] for k in run_key], t, run_rows, first_col, counts)

    columns = [c[:n] for c in out.columns]
    _expand()(
        run_rows, first_col, counts, grid.ncols,
        t.lon, t.west, t.east, t.lat, t.area, t.south, t.north,
        *columns,
    )  # fmt: skip
    tile_id, row, col, lon, lat, area, west, east, south, north = (
        pa.array(v, pa.from_numpy_dtype(v.dtype)) for v in columns
    )
    key = _key_column(codes, run_key, counts, max_rows)
    index = pa.RecordBatch.from_arrays(
        [
            key,
            tile_id,
            row,
            col,
            lon,
            lat,
            area,
            _repeat(predicate, n, max_rows),
        ],
        schema=schemas[0],
    )
    bounds = pa.RecordBatch.from_arrays(
        [key, tile_id, west, east, south, north, lon, lat], schema=schemas[1]
    )
    return index, bounds


def coverage_batch(
    index: pa.RecordBatch, fractions: BoundaryFractions, schema: pa.Schema
) -> pa.RecordBatch:
    """The ``tile_coverage`` batch of a ``tile_index`` batch: its key columns, and 1.0
    for every cell but the boundary cells of ``fractions`` (numbered from the batch's
    first row), docs/CONTRACT.md §10.3."""
    values = fractions.dense(index.num_rows)
    return pa.RecordBatch.from_arrays(
        [index.column(0), index.column(1), pa.array(values, pa.float64())], schema=schema
    )


__all__ = [
    "DEFAULT_MAX_ROWS",
    "check_runs",
    "check_unit_order",
    "coverage_batch",
    "iter_batches",
    "iter_groups",
]
