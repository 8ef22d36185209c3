"""Runs of included cells -> Arrow record batches of ``tile_index`` and ``tile_bounds``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tileindex.contract import DEFAULT_KEY_COLUMN, tile_bounds_schema, tile_index_schema
from tileindex.coverage import BoundaryFractions
from tileindex.errors import (
    AreaNonPositiveError,
    BoundsError,
    DuplicateTileError,
    RasterMismatchError,
)
from tileindex.grid import Grid, Runs
from tileindex.predicates import check_predicate

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
    (docs/CONTRACT.md §10.1).

    The runs must lie on the grid, in tile_id order and disjoint (what
    :func:`check_runs` checks; a build checks its whole run table once). Each pair holds
    the same at most ``max_rows`` cells, in tile_id order; a run longer than the room
    left in a batch is split across batches, so the concatenated output does not depend
    on ``max_rows``. Nothing is yielded when the runs hold no cell.
    """
    check_predicate(predicate)
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    runs = runs.take(runs.col1 > runs.col0)  # an empty run holds no cell
    ends = np.cumsum(runs.col1 - runs.col0)  # cell position (in the whole stream) after each run
    total = int(ends[-1]) if ends.size else 0
    schemas = (tile_index_schema(key_column), tile_bounds_schema(key_column))
    for start in range(0, total, max_rows):
        stop = min(start + max_rows, total)
        yield _build(grid, iso, predicate, runs.row, runs.col0, ends, start, stop, schemas)


def check_runs(grid: Grid, runs: Runs, codes: Sequence[str]) -> None:
    """Require runs that can be published: each on the grid, and all in (country,
    tile_id) order without overlap (``runs.country`` indexes ``codes``).

    This is the build's one duplicate check (E003, docs/CONTRACT.md §8), made on the whole
    run table, O(runs): every published row is a cell of exactly one of these runs, in
    this order, so rows cannot repeat a key or leave key order when the runs do not.
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


def _check_values(
    iso: str,
    run_rows: npt.NDArray[np.int64],
    run_area: npt.NDArray[np.float64],
    south: npt.NDArray[np.float64],
    north: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
) -> None:
    """docs/CONTRACT.md §8 E004 (coordinates in range; first, since an area off the globe means
    nothing) and E006 (area > 0), checked per run and batch."""
    bad = ~((south >= -90.0) & (north <= 90.0) & (south < north))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BoundsError(
            f"country {iso}: row {run_rows[i]} spans latitudes {south[i]}..{north[i]}, "
            "outside [-90, 90]",
            country_iso=iso,
            raster_row=int(run_rows[i]),
        )
    bad = ~(run_area > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AreaNonPositiveError(
            f"country {iso}: cell area {run_area[i]} m2 in row {run_rows[i]} is not positive",
            country_iso=iso,
            raster_row=int(run_rows[i]),
        )
    if lon.size and not (lon.min() >= -180.0 and lon.max() <= 180.0):
        raise BoundsError(f"country {iso}: a centroid longitude lies outside [-180, 180]")


def _build(
    grid: Grid,
    iso: str,
    predicate: str,
    r: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    start: int,
    stop: int,
    schemas: tuple[pa.Schema, pa.Schema],
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """The cells at stream positions [start, stop) as one batch pair."""
    n = stop - start
    # runs touching [start, stop): the first whose end is past start .. the one holding stop-1
    i0 = int(np.searchsorted(ends, start, side="right"))
    i1 = int(np.searchsorted(ends, stop - 1, side="right")) + 1
    run_end = np.minimum(ends[i0:i1], stop) - start  # run ends, relative to the batch
    run_start = np.empty_like(run_end)
    run_start[0] = 0
    run_start[1:] = run_end[:-1]
    counts = run_end - run_start
    # the first run may begin before this batch: skip the cells already emitted
    first_col = c0[i0:i1].copy()
    first_col[0] += start - (int(ends[i0 - 1]) if i0 > 0 else 0)
    run_rows = r[i0:i1]

    # col of cell k = first_col of its run + (k - run_start of its run)
    cols = np.arange(n, dtype=np.int64) + np.repeat(first_col - run_start, counts)
    rows = np.repeat(run_rows, counts)

    # per-row quantities are computed once per run and repeated (same float ops per value)
    lat = np.repeat(grid.centroid_lat(run_rows), counts)
    area = np.repeat(grid.row_area_m2(run_rows), counts)
    south, north = grid.lat_bounds(run_rows)
    # per-column quantities: computed once over the batch's column span, then gathered
    lo = int(first_col.min())
    span = np.arange(lo, int((first_col + counts).max()), dtype=np.int64)
    pos = cols - lo
    lon = grid.centroid_lon(span)[pos]
    west, east = (edge[pos] for edge in grid.lon_bounds(span))
    _check_values(iso, run_rows, grid.row_area_m2(run_rows), south, north, lon)

    iso_arr = pa.repeat(pa.scalar(iso, pa.string()), n)
    tile_id = pa.array(grid.tile_id(rows, cols), pa.uint64())
    lon_arr = pa.array(lon, pa.float64())
    lat_arr = pa.array(lat, pa.float64())
    index = pa.RecordBatch.from_arrays(
        [
            iso_arr,
            tile_id,
            pa.array(rows.astype(np.uint32), pa.uint32()),
            pa.array(cols.astype(np.uint32), pa.uint32()),
            lon_arr,
            lat_arr,
            pa.array(area, pa.float64()),
            pa.repeat(pa.scalar(predicate, pa.string()), n),
        ],
        schema=schemas[0],
    )
    bounds = pa.RecordBatch.from_arrays(
        [
            iso_arr,
            tile_id,
            pa.array(west, pa.float64()),
            pa.array(east, pa.float64()),
            pa.array(np.repeat(south, counts), pa.float64()),
            pa.array(np.repeat(north, counts), pa.float64()),
            lon_arr,
            lat_arr,
        ],
        schema=schemas[1],
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


__all__ = ["DEFAULT_MAX_ROWS", "check_runs", "coverage_batch", "iter_batches"]
