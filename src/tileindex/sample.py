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
row-group layout or the worker count. Only ``n`` in total (``per_region=False``) ties
regions together: the counts per region are one multinomial draw over the regions'
total weights, from a stream of the seed alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely

from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.geometry import CountryGeometry
from tileindex.grid import FloatArray, Grid, IntArray, Window, wrap_center
from tileindex.index import Index
from tileindex.kernel import exact_points, mask_chunk
from tileindex.layout import COVERAGE_DATASET
from tileindex.rowgroups import read_row_groups, row_groups, select_row_groups

__all__ = ["VALUES_DATASET", "WEIGHTS", "sample", "sample_schema"]

log = logging.getLogger(__name__)

WEIGHTS = ("area", "values", "coverage")
VALUES_DATASET = "tile_values"
# candidate points per slot per rejection round grow from 1 to this; past _MAX_TRIES
# per slot the cell's part of the region is triangulated (a sliver, module doc)
_MAX_BATCH = 256
_MAX_TRIES = 4096
_SLIVER_TRIES = 4096
# rows of a band of the kernel's within windows (a fixed grid of bands, so windows
# do not depend on what else was drawn)
_WITHIN_BAND = 256
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

    Returns a table ``<key>``, ``tile_id``, ``lon``, ``lat`` ordered by key (the
    index's order), then tile id, then draw.

    Examples
    --------
    >>> index = tileindex.open("out/")                               # doctest: +SKIP
    >>> tileindex.sample(index, 100, per_region=True, seed=1)        # doctest: +SKIP
    """
    n = _check_count(n)
    seed = _check_seed(seed)
    if weights not in WEIGHTS:
        raise ConfigError(f"weights {weights!r} is unknown; valid weights are {', '.join(WEIGHTS)}")
    wanted = _check_keys(index, keys)
    source = _WeightSource.of(index, weights)
    groups = row_groups(index.path(source.dataset), index.key_column)

    totals = np.array([source.total(groups, k) for k in wanted], dtype=np.float64)
    counts = _allocate(n, per_region, wanted, totals, seed, index, weights)

    geometry = index.geometry() if counts.any() else {}
    grid = index.grid
    tables = []
    for key, m, total in zip(wanted, counts.tolist(), totals.tolist(), strict=True):
        if m == 0:
            continue
        rng = np.random.Generator(np.random.PCG64(_region_seed(seed, key)))
        draw = rng.random(m) * total
        # the product may round up to total itself; no cell has a range ending above it
        draw = np.minimum(draw, np.nextafter(total, 0.0))
        draw.sort()
        tile, within = source.cells(groups, key, draw)
        lon, lat = _points(
            grid,
            CountryGeometry.from_geometry(key, geometry[key]),
            tile,
            within,
            index.predicate,
            rng,
        )
        tables.append(
            pa.table(
                {
                    index.key_column: pa.array([key] * m, pa.string()),
                    "tile_id": pa.array(tile, pa.uint64()),
                    "lon": pa.array(lon, pa.float64()),
                    "lat": pa.array(lat, pa.float64()),
                },
                schema=sample_schema(index.key_column),
            )
        )
        log.debug("sampled %d points of %s", m, key)
    if not tables:
        return sample_schema(index.key_column).empty_table()
    return pa.concat_tables(tables)


# -- arguments -------------------------------------------------------------------------------


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) <= 0:
        raise ConfigError(f"n {n!r} is not a positive integer; ask for at least one point")
    return int(n)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise ConfigError(f"seed {seed!r} is not a non-negative integer; pass e.g. seed=0")
    return int(seed)


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

    def _rows(
        self, groups: Sequence, key: str
    ) -> Iterator[tuple[IntArray, FloatArray, FloatArray]]:
        """(tile id, weight, the raw column) of ``key``'s rows, in published order."""
        mine = select_row_groups(groups, keys=[key])
        for table in read_row_groups(
            mine, ["tile_id", self.column, self.key_column], self.key_column, keys=[key]
        ):
            tile = table["tile_id"].to_numpy().astype(np.int64)
            raw = table[self.column].to_numpy(zero_copy_only=False).astype(np.float64)
            if self.weights == "values":
                raw = np.where(np.isnan(raw) & _null_mask(table[self.column]), 0.0, raw)
                bad = ~np.isfinite(raw) | (raw < 0)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise InputError(
                        f"tile_values of {key!r} has value {raw[i]!r} at tile_id {int(tile[i])}; "
                        "weights must be finite and >= 0 (nodata is null): fix the raster's "
                        "nodata and run 'tileindex values' again"
                    )
                weight = raw
            elif self.weights == "coverage":
                weight = raw * self.grid.row_area_m2(tile // self.grid.ncols)
            else:
                weight = raw
            yield tile, weight, raw

    def _running(
        self, groups: Sequence, key: str
    ) -> Iterator[tuple[IntArray, FloatArray, FloatArray]]:
        """(tile id, running sum after each row, raw column), the sum strictly sequential
        over the key's rows (prepending the previous end makes it independent of how the
        rows are cut into tables)."""
        end = 0.0
        for tile, weight, raw in self._rows(groups, key):
            cum = np.cumsum(np.concatenate(([end], weight)))[1:]
            if cum.size:
                end = float(cum[-1])
            yield tile, cum, raw

    def total(self, groups: Sequence, key: str) -> float:
        end = 0.0
        for _tile, cum, _raw in self._running(groups, key):
            if cum.size:
                end = float(cum[-1])
        return end

    def cells(
        self, groups: Sequence, key: str, draw: FloatArray
    ) -> tuple[IntArray, npt.NDArray[np.bool_] | None]:
        """The cell of each sorted draw u (the row whose running-sum range [prev, cum)
        holds u), and under coverage weights whether it is within (fraction 1.0)."""
        tile = np.empty(draw.size, dtype=np.int64)
        within = np.zeros(draw.size, dtype=bool) if self.weights == "coverage" else None
        start = 0.0
        for t, cum, raw in self._running(groups, key):
            if not cum.size:
                continue
            lo = int(np.searchsorted(draw, start, side="left"))
            hi = int(np.searchsorted(draw, cum[-1], side="left"))
            if hi > lo:
                j = np.searchsorted(cum, draw[lo:hi], side="right")
                tile[lo:hi] = t[j]
                if within is not None:
                    within[lo:hi] = raw[j] == 1.0
            start = float(cum[-1])
        return tile, within


def _null_mask(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)


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
        "region (its overlap is below float resolution); draw from other weights or keys"
    )
