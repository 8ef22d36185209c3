"""Weighted sampling of locations from a published index (docs/CONTRACT.md §10.4).

``sample(index, n)`` draws cells with weights (cell area, the ``tile_values`` value, or
area x coverage fraction), then a point uniform (in the plane of lon/lat degrees, as
``coverage_fraction`` measures, §10.3) inside the drawn cell's part of the region: a
uniform point of the cell, kept when it satisfies the ``center`` rule applied to the
point (closed shell, open holes, §5) on the kept region geometry, and drawn again
otherwise. Cells wholly inside the region (``within``: coverage 1.0, or the kernel's
``within`` on the kept geometry) skip the test and keep any point strictly inside the
cell, which is interior to the region.

Reproducible by construction: every region has its own random stream, derived from
``(seed, key)`` with ``SeedSequence``/``PCG64``, and consumes it in the order of its own
rows; the cells are found by one running sum over the region's rows in published order
(a sequential sum, so it does not depend on how the rows are read). So the points of a
region do not depend on the other regions, the order regions are processed in, the
row-group layout, the batches the rows are read in or the worker count. Only ``n`` in
total (``per_region=False``) ties regions together: the counts per region are one
multinomial draw over the regions' total weights, from a stream of the seed alone.

Two passes over the weights, each a set of jobs on the project's executors: the totals
of every region asked for, then (after the split of ``n``) the cells and points of the
regions that draw any. A job is a run of consecutive keys (they share row groups), cut
at about ``_JOB_ROWS`` rows, a large region alone; jobs start largest first. A job reads
its row groups once, ``batch_rows`` rows at a time, so memory is a batch plus the
points, never a region or the dataset.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.executors import ExecutorSpec, Job, TaskRunner, default_workers
from tileindex.geometry import CountryGeometry
from tileindex.grid import FloatArray, Grid, IntArray, Window, wrap_center
from tileindex.index import Index
from tileindex.kernel import exact_points, mask_chunk
from tileindex.layout import COVERAGE_DATASET
from tileindex.rowgroups import RowGroup, read_key_runs, row_groups, select_row_groups

__all__ = ["BATCH_ROWS", "VALUES_DATASET", "WEIGHTS", "sample", "sample_schema"]

log = logging.getLogger(__name__)

WEIGHTS = ("area", "values", "coverage")
VALUES_DATASET = "tile_values"
# rows of weights read at a time (the memory of a job's reading, a few MiB)
BATCH_ROWS = 1 << 18
# candidate points per slot per rejection round grow from 1 to this; past _MAX_TRIES
# per slot the cell's part of the region is triangulated (a sliver, module doc)
_MAX_BATCH = 256
_MAX_TRIES = 4096
_SLIVER_TRIES = 4096
# rows of a band of the kernel's within windows (a fixed grid of bands, so windows
# do not depend on what else was drawn)
_WITHIN_BAND = 256
# a job's size: consecutive keys up to about this many rows; a drawn point counts as
# _POINT_ROWS rows (its rejection and exact tests cost about that much reading). Only
# the schedule depends on them, never a point.
_JOB_ROWS = 1 << 22
_POINT_ROWS = 256
_ALLOCATION_STREAM = 0
_REGION_STREAM = 1


def sample_schema(key_column: str) -> pa.Schema:
    """The sample table: ``<key>``, ``tile_id``, ``lon``, ``lat`` (docs/CONTRACT.md §10.5)."""
    return pa.schema(
        [
            pa.field(key_column, pa.string(), nullable=False),
            pa.field("tile_id", pa.uint64(), nullable=False),
            pa.field("lon", pa.float64(), nullable=False),
            pa.field("lat", pa.float64(), nullable=False),
        ]
    )


def sample(
    index: Index,
    n: int,
    per_region: bool = False,
    weights: str = "area",
    seed: int = 0,
    keys: str | Iterable[str] | None = None,
    workers: int | None = 1,
    *,
    executor: ExecutorSpec = None,
    batch_rows: int = BATCH_ROWS,
) -> pa.Table:
    """Draw ``n`` points in total (or ``n`` per region with ``per_region=True``).

    Parameters
    ----------
    index : an opened index (:func:`tileindex.open`).
    n : points in total, the regions' shares drawn in proportion to their total weight;
        or per region with ``per_region``.
    weights : ``area`` (``pixel_area_m2``), ``values`` (the ``tile_values`` value; null
        weighs 0) or ``coverage`` (area x ``coverage_fraction``).
    seed : a non-negative integer; the same seed gives the same table.
    keys : the regions to draw from (default: every key of the index).
    workers : worker processes that draw regions in parallel (None: every core); 1, the
        default, runs in this process, as :func:`tileindex.build` does (whose note on
        ``spawn`` and ``__main__`` applies). The table does not depend on it.
    executor : as for :func:`tileindex.build`.
    batch_rows : rows of weights read at a time, the reading memory of a job. The table
        does not depend on it.

    Returns a table ``<key>``, ``tile_id``, ``lon``, ``lat`` ordered by key (the
    index's order), then tile id, then draw.

    Examples
    --------
    >>> index = tileindex.open("out/")                               # doctest: +SKIP
    >>> tileindex.sample(index, 100, per_region=True, seed=1)        # doctest: +SKIP
    """
    n = _check_count(n)
    seed = _check_seed(seed)
    batch_rows = _check_batch_rows(batch_rows)
    if weights not in WEIGHTS:
        raise ConfigError(f"weights {weights!r} is unknown; valid weights are {', '.join(WEIGHTS)}")
    wanted = _check_keys(index, keys)
    source = _WeightSource.of(index, weights)
    groups = row_groups(index.path(source.dataset), index.key_column)
    rows = _rows_per_key(groups, wanted)

    ranges = _job_ranges(rows)
    with TaskRunner(executor, _pool_size(workers, executor, len(ranges))) as runner:
        totals = _totals(runner, source, groups, wanted, ranges, batch_rows)
        counts = _allocate(n, per_region, wanted, totals, seed, index, weights)
        points = _draws(
            runner, index, source, groups, wanted, rows, totals, counts, seed, batch_rows
        )
        log.debug("sampled %d points in %d regions, %d workers", n, len(points), runner.workers)
    return _table(index.key_column, points)


def _totals(
    runner: TaskRunner,
    source: _WeightSource,
    groups: Sequence[RowGroup],
    keys: Sequence[str],
    ranges: Sequence[tuple[int, int]],
    batch_rows: int,
) -> FloatArray:
    """The total weight of each key (the end of its running sum)."""
    tasks = [
        _TotalsTask(source, lo, tuple(keys[lo:hi]), _groups_of(groups, keys[lo:hi]), batch_rows)
        for lo, hi in ranges
    ]
    totals = np.zeros(len(keys), dtype=np.float64)
    for task, got in _run(runner, tasks, _totals_job, "the weights"):
        totals[task.first : task.first + len(task.keys)] = got
    return totals


def _draws(
    runner: TaskRunner,
    index: Index,
    source: _WeightSource,
    groups: Sequence[RowGroup],
    keys: Sequence[str],
    rows: Sequence[float],
    totals: FloatArray,
    counts: IntArray,
    seed: int,
    batch_rows: int,
) -> list[tuple[str, _Points]]:
    """The points of every key that draws any, in key order."""
    drawn = [i for i, m in enumerate(counts.tolist()) if m]
    geometry = index.geometry() if drawn else {}
    tasks = []
    for lo, hi in _job_ranges([rows[i] + _POINT_ROWS * float(counts[i]) for i in drawn]):
        mine = drawn[lo:hi]
        names = tuple(keys[i] for i in mine)
        task = _DrawTask(
            source,
            lo,
            names,
            tuple(int(counts[i]) for i in mine),
            tuple(float(totals[i]) for i in mine),
            tuple(geometry[k] for k in names),
            _groups_of(groups, names),
            seed,
            index.predicate,
            batch_rows,
        )
        tasks.append(task)
    points: list[tuple[str, _Points]] = [("", _NO_POINTS)] * len(drawn)
    for task, got in _run(runner, tasks, _draw_job, "the points"):
        points[task.first : task.first + len(task.keys)] = zip(task.keys, got, strict=True)
    return points


# -- arguments -------------------------------------------------------------------------------


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) <= 0:
        raise ConfigError(f"n {n!r} is not a positive integer; ask for at least one point")
    return int(n)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise ConfigError(f"seed {seed!r} is not a non-negative integer; pass e.g. seed=0")
    return int(seed)


def _check_batch_rows(rows: object) -> int:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or int(rows) <= 0:
        raise ConfigError(f"batch_rows {rows!r} is not a positive integer; pass e.g. {BATCH_ROWS}")
    return int(rows)


def _check_keys(index: Index, keys: str | Iterable[str] | None) -> list[str]:
    if keys is None:
        return list(index.keys)
    asked = {keys} if isinstance(keys, str) else set(keys)
    unknown = sorted(asked - set(index.keys))
    if unknown:
        raise InputError(
            f"{index.key_column} {', '.join(map(repr, unknown[:5]))} not in this index "
            f"({len(index.keys)} keys, e.g. {', '.join(index.keys[:5])})"
        )
    if not asked:
        raise ConfigError("keys is empty; pass at least one key, or None for every key")
    return [k for k in index.keys if k in asked]


def _region_seed(seed: int, key: str) -> np.random.SeedSequence:
    """The stream of one region: (seed, key) only, never the processing order."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    words = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.SeedSequence(seed, spawn_key=(_REGION_STREAM, *words))


def _allocate(
    n: int,
    per_region: bool,
    keys: Sequence[str],
    totals: FloatArray,
    seed: int,
    index: Index,
    weights: str,
) -> IntArray:
    """Points per region: n each, or a multinomial split of n by total weight."""
    if per_region:
        empty = [k for k, t in zip(keys, totals.tolist(), strict=True) if not t > 0]
        if empty:
            raise InputError(
                f"{index.key_column} {', '.join(map(repr, empty[:5]))} has total weight 0 "
                f"under weights={weights} (no cells, or no values), so no point can be drawn "
                "in it; pass keys= without it (--region KEY for the others), or draw "
                "n in total instead of per region"
            )
        return np.full(len(keys), n, dtype=np.int64)
    grand = float(totals.sum())
    if not grand > 0:
        raise InputError(
            f"the regions asked for have total weight 0 under weights={weights}; "
            "no point can be drawn: pick regions with cells (keys=) or other weights"
        )
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_ALLOCATION_STREAM,)))
    )
    return rng.multinomial(n, totals / grand).astype(np.int64)


# -- jobs ------------------------------------------------------------------------------------


def _rows_per_key(groups: Sequence[RowGroup], keys: Sequence[str]) -> list[float]:
    """About how many rows each key has, from the footers: a row group's rows shared
    evenly among the keys its statistics span (for the schedule only)."""
    out = [0.0] * len(keys)
    for g in groups:
        lo, hi = bisect.bisect_left(keys, g.key_min), bisect.bisect_right(keys, g.key_max)
        for i in range(lo, hi):
            out[i] += g.num_rows / (hi - lo)
    return out


def _job_ranges(cost: Sequence[float]) -> list[tuple[int, int]]:
    """``[lo, hi)`` runs of consecutive keys (which share row groups) of about
    ``_JOB_ROWS`` cost at most (a costlier key alone), the costliest first."""
    ranges = []
    lo, acc = 0, 0.0
    for i, c in enumerate(cost):
        if i > lo and acc + c > _JOB_ROWS:
            ranges.append((lo, i))
            lo, acc = i, 0.0
        acc += c
    if cost:
        ranges.append((lo, len(cost)))
    return sorted(ranges, key=lambda r: (-sum(cost[r[0] : r[1]]), r[0]))


def _pool_size(workers: int | None, executor: ExecutorSpec, jobs: int) -> int | None:
    """No more worker processes than jobs: a pool for one job only costs its start."""
    if executor is not None or not (workers is None or (isinstance(workers, int) and workers > 1)):
        return workers  # a ready executor, or a value get_executor checks
    return min(default_workers() if workers is None else workers, max(jobs, 1))


def _groups_of(groups: Sequence[RowGroup], keys: Sequence[str]) -> tuple[RowGroup, ...]:
    return tuple(select_row_groups(groups, keys=keys))


@dataclass(frozen=True)
class _Refusal:
    """Bad input a job found, returned rather than raised so that the run refuses with
    the first in key order, whichever job finishes first."""

    position: int
    key: str
    message: str


def _refusal(task: _TotalsTask | _DrawTask, exc: InputError) -> _Refusal:
    """The refusal of ``exc``, which names one of the task's keys (else it is raised)."""
    key = str(exc.context["country_iso"])
    return _Refusal(task.first + task.keys.index(key), key, exc.message)


_Task = TypeVar("_Task", bound="_TotalsTask | _DrawTask")


def _run(
    runner: TaskRunner, tasks: Sequence[_Task], fn: Callable[[_Task, int], Any], what: str
) -> list[tuple[_Task, Any]]:
    """Each task with its result, in the tasks' order; the first refusal in key order
    is raised."""
    jobs = [Job(i, fn, (t,), f"{what} of {_label(t.keys)}") for i, t in enumerate(tasks)]
    results = runner.run(jobs, on_result=lambda *_: None)
    refused = [r for r in results.values() if isinstance(r, _Refusal)]
    if refused:
        first = min(refused, key=lambda r: r.position)
        raise InputError(first.message, country_iso=first.key)
    return [(t, results[i]) for i, t in enumerate(tasks)]


def _label(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]} ({len(keys)} keys)"


# -- weights ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WeightSource:
    """Where a weight comes from: a dataset, its column, and how a row's weight is made."""

    weights: str
    dataset: str
    column: str
    key_column: str
    grid: Grid

    @classmethod
    def of(cls, index: Index, weights: str) -> _WeightSource:
        if weights == "values" and VALUES_DATASET not in index.datasets:
            raise InputFileError(
                f"weights=values needs tile_values, and {index.root} holds none for parameter "
                f"hash {index.parameter_hash[:12]}...: publish it with 'tileindex values "
                f"--out {index.root} --raster VALUES.tif' first"
            )
        if weights == "coverage" and COVERAGE_DATASET not in index.datasets:
            raise InputFileError(
                f"weights=coverage needs tile_coverage, and {index.root} holds none for "
                f"parameter hash {index.parameter_hash[:12]}...: rebuild with --coverage, or "
                "use weights=area"
            )
        dataset, column = {
            "area": ("tile_index", "pixel_area_m2"),
            "values": (VALUES_DATASET, "value"),
            "coverage": (COVERAGE_DATASET, "coverage_fraction"),
        }[weights]
        return cls(weights, dataset, column, index.key_column, index.grid)

    def running(
        self, groups: Sequence[RowGroup], keys: Sequence[str], batch_rows: int, tiles: bool
    ) -> Iterator[tuple[str, IntArray, FloatArray, FloatArray]]:
        """(key, tile id, running sum after each row, raw column) of pieces of the rows of
        ``keys``, in published order; tile ids only if ``tiles`` (or needed), else empty.

        A key's sum is strictly sequential over its rows: each piece's ``cumsum`` starts
        from the previous end, so it does not depend on how the rows are cut into pieces
        (row groups, files, batches)."""
        tiles = tiles or self.weights != "area"
        columns = ["tile_id", self.column] if tiles else [self.column]
        ends = dict.fromkeys(keys, 0.0)
        for key, batch in read_key_runs(groups, columns, self.key_column, keys, batch_rows):
            tile = (
                batch.column("tile_id").to_numpy().astype(np.int64)
                if tiles
                else np.empty(0, dtype=np.int64)
            )
            column = batch.column(self.column)
            raw = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
            if self.weights == "values":
                raw = np.where(np.isnan(raw) & _null_mask(column), 0.0, raw)
                bad = ~np.isfinite(raw) | (raw < 0)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise InputError(
                        f"tile_values of {key!r} has value {float(raw[i])!r} at tile_id "
                        f"{int(tile[i])}; weights must be finite and >= 0 (nodata is null): "
                        "fix the raster's nodata and run 'tileindex values' again",
                        country_iso=key,
                    )
                weight = raw
            elif self.weights == "coverage":
                weight = raw * self.grid.row_area_m2(tile // self.grid.ncols)
            else:
                weight = raw
            cum = np.cumsum(np.concatenate(([ends[key]], weight)))[1:]
            if cum.size:
                ends[key] = float(cum[-1])
            yield key, tile, cum, raw


def _null_mask(column: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)


@dataclass(frozen=True)
class _TotalsTask:
    """The total weight of consecutive keys (positions ``first``... of the keys asked for)."""

    source: _WeightSource
    first: int
    keys: tuple[str, ...]
    groups: tuple[RowGroup, ...]
    batch_rows: int


def _totals_job(task: _TotalsTask, attempt: int = 1) -> tuple[float, ...] | _Refusal:
    ends = dict.fromkeys(task.keys, 0.0)
    try:
        for key, _tile, cum, _raw in task.source.running(
            task.groups, task.keys, task.batch_rows, tiles=False
        ):
            if cum.size:
                ends[key] = float(cum[-1])
    except InputError as exc:  # rows come in key order: the job's first bad key
        if exc.context.get("country_iso") not in task.keys:
            raise
        return _refusal(task, exc)
    return tuple(ends[k] for k in task.keys)


_Points = tuple[IntArray, FloatArray, FloatArray]
_NO_POINTS: _Points = (np.empty(0, np.int64), np.empty(0), np.empty(0))


@dataclass(frozen=True)
class _DrawTask:
    """The points of consecutive drawn keys (positions ``first``... of the drawn keys):
    their counts, total weights and kept geometry."""

    source: _WeightSource
    first: int
    keys: tuple[str, ...]
    counts: tuple[int, ...]
    totals: tuple[float, ...]
    geometry: tuple[BaseGeometry, ...]
    groups: tuple[RowGroup, ...]
    seed: int
    predicate: str
    batch_rows: int


def _draw_job(task: _DrawTask, attempt: int = 1) -> tuple[_Points, ...] | _Refusal:
    """Each key's sorted draws of [0, total), the cell of each (one pass over the job's
    rows), then a point in each cell, every key from its own stream."""
    rngs, draws = {}, {}
    for key, m, total in zip(task.keys, task.counts, task.totals, strict=True):
        rng = np.random.Generator(np.random.PCG64(_region_seed(task.seed, key)))
        draw = rng.random(m) * total
        # the product may round up to total itself; no cell has a range ending above it
        draw = np.minimum(draw, np.nextafter(total, 0.0))
        draw.sort()
        rngs[key], draws[key] = rng, draw
    weights = task.source.weights
    tiles = {k: np.empty(m, dtype=np.int64) for k, m in zip(task.keys, task.counts, strict=True)}
    within = (
        {k: np.zeros(m, dtype=bool) for k, m in zip(task.keys, task.counts, strict=True)}
        if weights == "coverage"
        else None
    )
    start = dict.fromkeys(task.keys, 0.0)
    out = []
    try:
        for key, t, cum, raw in task.source.running(
            task.groups, task.keys, task.batch_rows, tiles=True
        ):
            if not cum.size:
                continue
            # the draws in this piece's range [start, end): the row whose [prev, cum) holds u
            draw = draws[key]
            lo = int(np.searchsorted(draw, start[key], side="left"))
            hi = int(np.searchsorted(draw, cum[-1], side="left"))
            if hi > lo:
                j = np.searchsorted(cum, draw[lo:hi], side="right")
                tiles[key][lo:hi] = t[j]
                if within is not None:
                    within[key][lo:hi] = raw[j] == 1.0
            start[key] = float(cum[-1])
        grid = task.source.grid
        for key, geom in zip(task.keys, task.geometry, strict=True):
            region = CountryGeometry.from_geometry(key, geom)
            mine = None if within is None else within[key]
            lon, lat = _points(grid, region, tiles[key], mine, task.predicate, rngs[key])
            out.append((tiles[key], lon, lat))
    except InputError as exc:
        if exc.context.get("country_iso") not in task.keys:
            raise
        return _refusal(task, exc)
    return tuple(out)


def _table(key_column: str, points: Sequence[tuple[str, _Points]]) -> pa.Table:
    """The sample table, one chunk per region, in key order."""
    schema = sample_schema(key_column)
    tables = [
        pa.table(
            [
                pa.repeat(pa.scalar(key, pa.string()), tile.size),
                pa.array(tile, pa.uint64()),
                pa.array(lon, pa.float64()),
                pa.array(lat, pa.float64()),
            ],
            schema=schema,
        )
        for key, (tile, lon, lat) in points
    ]
    return pa.concat_tables(tables) if tables else schema.empty_table()


# -- points ----------------------------------------------------------------------------------


def _points(
    grid: Grid,
    region: CountryGeometry,
    tile: IntArray,
    within: npt.NDArray[np.bool_] | None,
    predicate: str,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """A uniform point of each drawn cell's part of the region (module doc)."""
    row, col = np.divmod(tile, grid.ncols)
    if within is None:
        within = (
            np.ones(tile.size, dtype=bool)
            if predicate == "within"
            else _cells_within(grid, region, row, col)
        )
    x0, x1 = grid.raw_x_edges(col)
    y0, y1 = grid.lat_bounds(row)
    lon = np.full(tile.size, np.nan)
    lat = np.full(tile.size, np.nan)
    todo = np.arange(tile.size)
    tries = 0
    batch = 1
    while todo.size and tries < _MAX_TRIES:
        u = rng.random((todo.size, batch, 2))
        x = x0[todo, None] + u[..., 0] * (x1 - x0)[todo, None]
        y = y0[todo, None] + u[..., 1] * (y1 - y0)[todo, None]
        lx = wrap_center(x)
        ok = _accept(
            region,
            within[todo, None],
            x,
            y,
            lx,
            x0[todo, None],
            x1[todo, None],
            y0[todo, None],
            y1[todo, None],
        )
        hit = ok.any(axis=1)
        first = ok.argmax(axis=1)
        slots = todo[hit]
        lon[slots] = lx[hit, first[hit]]
        lat[slots] = y[hit, first[hit]]
        todo = todo[~hit]
        tries += batch
        batch = min(2 * batch, _MAX_BATCH)
    for slot in todo.tolist():  # slivers: a uniform point of the triangulated part
        lon[slot], lat[slot] = _sliver_point(grid, region, int(row[slot]), int(col[slot]), rng)
    return lon, lat


def _accept(
    region: CountryGeometry,
    within: npt.NDArray[np.bool_],
    x: FloatArray,
    y: FloatArray,
    lon: FloatArray,
    x0: FloatArray,
    x1: FloatArray,
    y0: FloatArray,
    y1: FloatArray,
) -> npt.NDArray[np.bool_]:
    """Whether each candidate is a point of the region under the centre rule: inside a
    within cell, any point strictly inside the cell (the open cell lies in the region's
    interior, so off every hole's boundary; ±180 is a piece edge); elsewhere the
    kernel's exact test, GEOS per part (closed shell, open holes, §5)."""
    within = np.broadcast_to(within, x.shape)
    strict = (x > x0) & (x < x1) & (y > y0) & (y < y1) & (np.abs(lon) != 180.0)
    ok = within & strict
    test = ~within
    if test.any():
        _, center = exact_points(region, lon[test], y[test])
        ok[test] = center
    return ok


def _cells_within(
    grid: Grid, region: CountryGeometry, row: IntArray, col: IntArray
) -> npt.NDArray[np.bool_]:
    """Whether each cell lies wholly in the region: the kernel's ``within`` on windows of
    fixed row bands spanning the band's drawn columns (work along the boundary)."""
    out = np.zeros(row.size, dtype=bool)
    band = row // _WITHIN_BAND
    for b in np.unique(band).tolist():
        here = np.flatnonzero(band == b)
        r, c = row[here], col[here]
        window = Window(int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1)
        runs = mask_chunk(grid, window, region, "within")
        if len(runs) == 0:
            continue
        # runs are sorted by (row, col0) and disjoint: the run at or before each cell
        order = runs.row * grid.ncols + runs.col0
        key = r * grid.ncols + c
        i = np.searchsorted(order, key, side="right") - 1
        ok = i >= 0
        ii = np.where(ok, i, 0)
        out[here] = ok & (runs.row[ii] == r) & (runs.col1[ii] > c)
    return out


def _sliver_point(
    grid: Grid, region: CountryGeometry, row: int, col: int, rng: np.random.Generator
) -> tuple[float, float]:
    """A point of a cell's part of the region too thin for rejection in the cell: uniform
    in a triangulation of that part (pieces at their wrapped positions), kept when the
    exact test agrees."""
    x0, x1 = (float(v[0]) for v in grid.raw_x_edges([col]))
    s, nth = (float(v[0]) for v in grid.lat_bounds([row]))
    pieces = [
        shapely.box(max(x0, lo) + shift, s, min(x1, hi) + shift, nth)
        for lo, hi, shift in ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0))
        if max(x0, lo) < min(x1, hi)
    ]
    part = shapely.intersection(region.geom, shapely.union_all(pieces))
    tris = [
        t for t in shapely.get_parts(shapely.constrained_delaunay_triangles(part)) if t.area > 0
    ]
    if tris:
        area = np.array([t.area for t in tris])
        coords = np.array([np.asarray(t.exterior.coords)[:3] for t in tris])
        for _ in range(_SLIVER_TRIES):
            k = int(np.searchsorted(np.cumsum(area), rng.random() * area.sum(), side="right"))
            k = min(k, len(tris) - 1)
            a, b = rng.random(2)
            if a + b > 1.0:
                a, b = 1.0 - a, 1.0 - b
            p = coords[k, 0] + a * (coords[k, 1] - coords[k, 0]) + b * (coords[k, 2] - coords[k, 0])
            _, center = exact_points(region, np.array([p[0]]), np.array([p[1]]))
            if center[0] and s <= p[1] <= nth:
                return float(p[0]), float(p[1])
    raise InputError(
        f"cell {row * grid.ncols + col} of {region.iso!r} holds no samplable part of the "
        "region (its overlap is below float resolution); draw from other weights or keys",
        country_iso=region.iso,
    )
