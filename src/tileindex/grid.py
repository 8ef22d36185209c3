"""The grid value type: shape, transform, tile ids, centroids, bounds, areas, windows.

Every formula here is the docs/CONTRACT.md §3 formula written once; the kernel, the legacy engine,
the writers and the validator all take cell coordinates from this module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from pyproj import Geod

from tileindex.errors import RasterMismatchError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]

_GEOD = Geod(ellps="WGS84")


def wrap_center(lon: FloatArray) -> FloatArray:
    """Wrap longitudes into [-180, 180] (180 and -180 are both kept as given)."""
    lon = np.asarray(lon, dtype=np.float64)
    lon = np.where(lon > 180.0, lon - 360.0, lon)
    return np.where(lon < -180.0, lon + 360.0, lon)


def wrap_west(lon: FloatArray) -> FloatArray:
    """Wrap a west edge into [-180, 180)."""
    lon = np.asarray(lon, dtype=np.float64)
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    return np.where(lon < -180.0, lon + 360.0, lon)


def wrap_east(lon: FloatArray) -> FloatArray:
    """Wrap an east edge into (-180, 180]."""
    lon = np.asarray(lon, dtype=np.float64)
    lon = np.where(lon > 180.0, lon - 360.0, lon)
    return np.where(lon <= -180.0, lon + 360.0, lon)


def ellipsoidal_band_area(south: FloatArray, north: FloatArray, width_deg: float) -> FloatArray:
    """Exact WGS84 area between two parallels and two meridians ``width_deg`` apart
    (authalic-latitude closed form)."""
    a_axis = _GEOD.a
    e2 = _GEOD.es
    e = math.sqrt(e2)
    b2 = a_axis * a_axis * (1.0 - e2)

    def q(lat: FloatArray) -> FloatArray:
        s = np.sin(np.radians(lat))
        return s / (1.0 - e2 * s * s) + np.log((1.0 + e * s) / (1.0 - e * s)) / (2.0 * e)

    return np.abs(math.radians(width_deg) * b2 / 2.0 * (q(north) - q(south)))


@dataclass(frozen=True)
class Window:
    """A rectangle of grid cells: rows [row_start, row_stop) x cols [col_start, col_stop)."""

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    @property
    def height(self) -> int:
        return self.row_stop - self.row_start

    @property
    def width(self) -> int:
        return self.col_stop - self.col_start

    @property
    def size(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class ColumnSegment:
    """Cells of a column range seen at one longitude shift (-360, 0 or +360).

    A cell that straddles ±180 is split at the antimeridian into two pieces, each
    tested at its wrapped position; each piece lives in the segment of its shift.
    Within a segment all arrays are non-decreasing in x, which the kernel relies on.

    ``cols``: grid column of each piece; ``x0``/``x1``: the piece's wrapped west/east
    edge; ``test_x``: a point strictly inside the piece, the published (wrapped)
    centroid when the centroid falls in this piece; ``has_centroid``: whether it does.
    """

    cols: IntArray
    x0: FloatArray
    x1: FloatArray
    test_x: FloatArray
    has_centroid: npt.NDArray[np.bool_]


# The longitude ranges [lo, hi] a grid column or a polygon may reach, and the shift that
# brings each into [-180, 180]: the cells' pieces and the polygons' pieces use one table.
LON_SHIFTS = ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0))


@dataclass(frozen=True)
class Grid:
    """A north-up EPSG:4326 grid: ``x = c + a*col``, ``y = f + e*row`` (a > 0, e < 0)."""

    ncols: int
    nrows: int
    a: float
    c: float
    e: float
    f: float

    @classmethod
    def from_transform(cls, ncols: int, nrows: int, transform: Sequence[float]) -> Grid:
        """Build a grid from GDAL-order ``(a, b, c, d, e, f)``; reject what §3 rejects."""
        if len(transform) < 6:
            raise RasterMismatchError(f"grid transform needs 6 coefficients, got {transform!r}")
        a, b, c, d, e, f = (float(v) for v in transform[:6])
        if not all(math.isfinite(v) for v in (a, b, c, d, e, f)):
            raise RasterMismatchError(f"grid transform has non-finite coefficients: {transform!r}")
        if b != 0.0 or d != 0.0:
            raise RasterMismatchError(
                f"grid is rotated or sheared (b={b}, d={d}); only north-up grids with b = d = 0 "
                "are supported: warp the raster to a north-up EPSG:4326 grid"
            )
        if e >= 0.0:
            raise RasterMismatchError(
                f"grid rows run south-up (e={e} >= 0); flip the raster so row 0 is the north edge"
            )
        if a <= 0.0:
            raise RasterMismatchError(f"grid columns run east-to-west (a={a} <= 0)")
        if ncols < 1 or nrows < 1:
            raise RasterMismatchError(f"grid has no cells ({ncols} x {nrows})")
        grid = cls(int(ncols), int(nrows), a, c, e, f)
        west, east = c, c + a * ncols
        south, north = f + e * nrows, f
        if east - west > 360.0 + 1e-9 or west < -540.0 or east > 540.0:
            raise RasterMismatchError(
                f"grid spans longitudes {west}..{east}: a global grid covers at most 360 degrees "
                "between -540 and 540"
            )
        if north > 90.0 or south < -90.0:
            raise RasterMismatchError(
                f"grid spans latitudes {south}..{north}, beyond [-90, 90]: check the transform"
            )
        if ncols * nrows >= 2**63:
            raise RasterMismatchError("grid too large for 63-bit tile ids")
        return grid

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        return (self.a, 0.0, self.c, 0.0, self.e, self.f)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nrows, self.ncols)

    def to_json(self) -> dict[str, object]:
        return {"ncols": self.ncols, "nrows": self.nrows, "transform": list(self.transform)}

    # -- identity ---------------------------------------------------------------------

    def tile_id(self, rows: npt.ArrayLike, cols: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        # computed in int64 (no conversion copies; ids < 2**63) and viewed as uint64
        r = np.asarray(rows, dtype=np.int64)
        ids = r * np.int64(self.ncols) + np.asarray(cols, dtype=np.int64)
        return np.asarray(ids).view(np.uint64)

    # -- coordinates (docs/CONTRACT.md §3, exactly this float form) -------------------------------

    def centroid_lon(self, cols: npt.ArrayLike) -> FloatArray:
        col = np.asarray(cols, dtype=np.float64)
        return wrap_center(self.c + self.a * (col + 0.5))

    def centroid_lat(self, rows: npt.ArrayLike) -> FloatArray:
        row = np.asarray(rows, dtype=np.float64)
        return self.f + self.e * (row + 0.5)

    def raw_x_edges(self, cols: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        col = np.asarray(cols, dtype=np.float64)
        return self.c + self.a * col, self.c + self.a * (col + 1.0)

    def lon_bounds(self, cols: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(min_lon, max_lon) wrapped; min > max for a cell straddling ±180."""
        x0, x1 = self.raw_x_edges(cols)
        return wrap_west(x0), wrap_east(x1)

    def lat_bounds(self, rows: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(min_lat, max_lat): the south edge ``f + e*(row+1)`` and north edge ``f + e*row``."""
        row = np.asarray(rows, dtype=np.float64)
        return self.f + self.e * (row + 1.0), self.f + self.e * row

    def row_area_m2(self, rows: npt.ArrayLike) -> FloatArray:
        """WGS84 area of a cell of each row (it depends on the row only)."""
        table = self._area_table
        return table[np.asarray(rows, dtype=np.int64)]

    @cached_property
    def _area_table(self) -> FloatArray:
        """Per-row cell area: pyproj Geod on the cell's corners (the contract's yardstick).

        Geod joins corners by geodesics, which for narrow cells differ from the
        parallels by < 1e-8 relative (3.5e-9 at 83.6 N for 30-arc-second cells); a cell
        a quarter turn wide or wider has no meaningful geodesic quadrilateral, so those
        use the closed-form area between two meridians and two parallels.
        """
        south, north = self.lat_bounds(np.arange(self.nrows))
        if self.a >= 90.0:
            return ellipsoidal_band_area(south, north, self.a)
        out = np.empty(self.nrows, dtype=np.float64)
        lons = [0.0, self.a, self.a, 0.0]
        for i, (s, n) in enumerate(zip(south.tolist(), north.tolist(), strict=True)):
            area, _ = _GEOD.polygon_area_perimeter(lons, [s, s, n, n])
            out[i] = abs(area)
        return out

    # -- windows and chunks ------------------------------------------------------------

    def windows_for_boxes(self, boxes: npt.ArrayLike, merge_gap: int = 32) -> list[Window]:
        """Disjoint windows covering every cell whose (wrapped) extent may meet one of the
        lon/lat boxes (rows ``(minx, miny, maxx, maxy)``), with a one-cell rim so float
        rounding at a box edge can never drop a cell.

        Each box becomes a rectangle of cells (two on either side of ±180 when it wraps);
        rectangles that overlap, or lie within ``merge_gap`` cells of each other, are
        merged into their bounding rectangle until none overlap. So a country's far-flung
        islands get windows of their own instead of one window spanning the ocean, and
        clusters of islets share one. Windows come in (row_start, col_start) order.
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return self.windows_for_box_groups(b, np.zeros(b.shape[0], np.int64), 1, merge_gap)[0]

    def windows_for_box_groups(
        self, boxes: npt.ArrayLike, group: npt.ArrayLike, n_groups: int, merge_gap: int = 32
    ) -> list[list[Window]]:
        """:meth:`windows_for_boxes` of many groups of boxes at once (``group[i]`` is the
        group of box ``i``, in ``0..n_groups-1``): the cell ranges of every box are found in
        one vectorised pass, and only groups with several rectangles pay for merging, so
        planning 10,000 regions costs little more than planning one (docs/CONTRACT.md §10.1).
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        g = np.asarray(group, dtype=np.int64)
        out: list[list[Window]] = [[] for _ in range(n_groups)]
        if b.shape[0] == 0:
            return out
        rim_x, rim_y = self.a, -self.e
        south, north, segments = _whole_grid_axes(self)
        # north and south decrease with the row index: search their negations
        r_lo = np.searchsorted(-south, -(b[:, 3] + rim_y), side="left")  # south <= maxy + rim
        r_hi = np.searchsorted(-north, -(b[:, 1] - rim_y), side="right")  # north >= miny - rim
        rects, owner = [], []
        for seg in segments:
            lo = np.searchsorted(seg.x1, b[:, 0] - rim_x, side="left")  # x1 >= minx - rim
            hi = np.searchsorted(seg.x0, b[:, 2] + rim_x, side="right")  # x0 <= maxx + rim
            ok = (lo < hi) & (r_lo < r_hi)
            rects.append(
                np.stack([r_lo[ok], r_hi[ok], seg.cols[lo[ok]], seg.cols[hi[ok] - 1] + 1], axis=1)
            )
            owner.append(g[ok])
        all_rects = np.concatenate(rects).astype(np.int64)
        all_owner = np.concatenate(owner)
        order = np.argsort(all_owner, kind="stable")
        all_rects, all_owner = all_rects[order], all_owner[order]
        if all_owner.size == 0:  # no box meets the grid
            return out
        starts = np.flatnonzero(np.r_[True, all_owner[1:] != all_owner[:-1]])
        stops = np.r_[starts[1:], all_owner.size]
        for a, z in zip(starts.tolist(), stops.tolist(), strict=True):
            mine = all_rects[a:z]
            merged = mine if z - a == 1 else _merge_rects(mine, merge_gap)
            out[int(all_owner[a])] = [Window(*map(int, r)) for r in merged.tolist()]
        return out

    def column_segments(self, col_start: int, col_stop: int) -> list[ColumnSegment]:
        """The cells of columns [col_start, col_stop) split by longitude shift."""
        cols = np.arange(col_start, col_stop, dtype=np.int64)
        x0, x1 = self.raw_x_edges(cols)
        xc = self.c + self.a * (cols.astype(np.float64) + 0.5)
        xc_wrapped = wrap_center(xc)
        out = []
        for lo, hi, shift in LON_SHIFTS:
            p0 = np.maximum(x0, lo)
            p1 = np.minimum(x1, hi)
            keep = p0 < p1
            if not keep.any():
                continue
            w0 = p0[keep] + shift
            w1 = p1[keep] + shift
            mid = 0.5 * (w0 + w1)
            # the centroid belongs to the piece that its wrapped value falls in
            xcw = xc_wrapped[keep]
            has_c = (xcw >= w0) & (xcw <= w1) & (xc[keep] >= lo) & (xc[keep] <= hi)
            test = np.where(has_c, xcw, mid)
            interior = (test > w0) & (test < w1)
            # a piece narrower than float resolution has no interior point and no area
            keep_idx = np.flatnonzero(interior | has_c)
            out.append(
                ColumnSegment(
                    cols=cols[keep][keep_idx],
                    x0=w0[keep_idx],
                    x1=w1[keep_idx],
                    test_x=test[keep_idx],
                    has_centroid=has_c[keep_idx],
                )
            )
        return out

    def chunks(self, window: Window, rows: int, cols: int | None = None) -> Iterator[Window]:
        """Row-major chunks of ``rows`` x ``cols`` cells (``cols`` defaults to ``rows``)
        covering the window; the last ones in each direction are cut to the window."""
        cols = rows if cols is None else cols
        for r in range(window.row_start, window.row_stop, rows):
            for c in range(window.col_start, window.col_stop, cols):
                yield Window(r, min(r + rows, window.row_stop), c, min(c + cols, window.col_stop))


@functools.lru_cache(maxsize=4)
def _whole_grid_axes(grid: Grid) -> tuple[FloatArray, FloatArray, tuple[ColumnSegment, ...]]:
    """Every row's south and north edge and the whole width's column segments, computed
    once per grid: the planner asks for the windows of each of 10,000+ regions, and
    rebuilding these O(nrows + ncols) arrays for each made planning O(regions x grid
    side) (docs/CONTRACT.md §10.1). Callers must not modify them."""
    south, north = grid.lat_bounds(np.arange(grid.nrows))
    return south, north, tuple(grid.column_segments(0, grid.ncols))


def _merge_rects(rects: IntArray, gap: int) -> IntArray:
    """Merge (row0, row1, col0, col1) rectangles that overlap or lie within ``gap`` cells
    of each other into bounding rectangles, until no two overlap; sorted by (row0, col0)."""
    while rects.shape[0] > 1:
        r0, r1, c0, c1 = (rects[:, i, None] for i in range(4))
        near = (r0 < r1.T + gap) & (r1 + gap > r0.T) & (c0 < c1.T + gap) & (c1 + gap > c0.T)
        label = np.arange(rects.shape[0])
        while True:  # connected components by repeated min-propagation
            nxt = np.where(near, label[None, :], label.size).min(axis=1)
            nxt = np.minimum(nxt, label)
            if (nxt == label).all():
                break
            label = nxt[nxt]
        groups = np.unique(label)
        if groups.size == rects.shape[0]:
            break
        rects = np.stack(
            [
                [
                    rects[label == g, 0].min(),
                    rects[label == g, 1].max(),
                    rects[label == g, 2].min(),
                    rects[label == g, 3].max(),
                ]
                for g in groups
            ]
        )
    order = np.lexsort((rects[:, 2], rects[:, 0]))
    return rects[order]


@dataclass(frozen=True, eq=False)
class Runs:
    """Included cells as row-major runs: run ``i`` covers cells ``(row[i], col0[i]) ..
    (row[i], col1[i] - 1)`` of the country numbered ``country[i]`` in a code table its
    holder keeps (0 for one country's runs). The engines, the units and the build's run
    table keep them sorted by (country, row, col0) and disjoint;
    :func:`tileindex.rows.check_runs` is where a build checks it."""

    row: IntArray
    col0: IntArray
    col1: IntArray
    country: Int32Array

    @classmethod
    def of(
        cls, row: npt.ArrayLike, col0: npt.ArrayLike, col1: npt.ArrayLike, country: int = 0
    ) -> Runs:
        """Runs of one country from three equally long integer sequences."""
        r = np.asarray(row, dtype=np.int64).ravel()
        c0 = np.asarray(col0, dtype=np.int64).ravel()
        c1 = np.asarray(col1, dtype=np.int64).ravel()
        if not (r.shape == c0.shape == c1.shape):
            raise ValueError(f"run arrays differ in length: {r.size}, {c0.size}, {c1.size}")
        return cls(r, c0, c1, np.full(r.size, country, dtype=np.int32))

    @classmethod
    def empty(cls) -> Runs:
        return cls.of([], [], [])

    @classmethod
    def concat(cls, parts: Sequence[Runs]) -> Runs:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.row for p in parts]),
            np.concatenate([p.col0 for p in parts]),
            np.concatenate([p.col1 for p in parts]),
            np.concatenate([p.country for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.row.size)

    @property
    def cells(self) -> int:
        return int((self.col1 - self.col0).sum())

    def with_country(self, country: int) -> Runs:
        return Runs(self.row, self.col0, self.col1, np.full(self.row.size, country, np.int32))

    def take(self, index: slice | npt.NDArray[np.bool_] | IntArray) -> Runs:
        """The runs at ``index`` (a slice, positions or a boolean mask), as a new value."""
        return Runs(self.row[index], self.col0[index], self.col1[index], self.country[index])

    def sorted(self) -> Runs:
        """The runs in (country, row, col0) order."""
        return self.take(np.lexsort((self.col0, self.row, self.country)))

    def slice_cells(self, start: int, stop: int) -> Runs:
        """The runs holding cells [start, stop) of the concatenated cell stream, the first
        and the last run trimmed to that range."""
        ends = np.cumsum(self.col1 - self.col0)
        i0 = int(np.searchsorted(ends, start, side="right"))
        i1 = int(np.searchsorted(ends, stop - 1, side="right")) + 1 if stop > start else i0
        out = self.take(slice(i0, i1))
        col0, col1 = out.col0.copy(), out.col1.copy()
        if col0.size:
            before = int(ends[i0 - 1]) if i0 > 0 else 0
            col0[0] += start - before
            col1[-1] -= int(ends[i1 - 1]) - stop
        return Runs(out.row, col0, col1, out.country)


@dataclass(frozen=True)
class MaskCounts:
    """What masking saw: every visited cell is included, excluded by a hole (its test
    point lies in a hole of the country) or excluded as outside. They add up."""

    cells_visited: int = 0
    cells_included: int = 0
    cells_excluded_hole: int = 0

    @property
    def cells_excluded_outside(self) -> int:
        return self.cells_visited - self.cells_included - self.cells_excluded_hole

    def __add__(self, other: MaskCounts) -> MaskCounts:
        return MaskCounts(
            self.cells_visited + other.cells_visited,
            self.cells_included + other.cells_included,
            self.cells_excluded_hole + other.cells_excluded_hole,
        )


@dataclass(frozen=True, eq=False)
class ChunkMask(Runs):
    """An engine's result for one chunk: the window's included cells as runs (sorted,
    disjoint, inside the window), and the counts that feed the country summary."""

    window: Window
    cells_included: int
    cells_excluded_hole: int

    @property
    def cells_visited(self) -> int:
        return self.window.size

    @property
    def counts(self) -> MaskCounts:
        return MaskCounts(self.cells_visited, self.cells_included, self.cells_excluded_hole)

    @classmethod
    def from_runs(
        cls, window: Window, runs: Runs, cells_included: int, cells_excluded_hole: int
    ) -> ChunkMask:
        return cls(
            row=runs.row,
            col0=runs.col0,
            col1=runs.col1,
            country=runs.country,
            window=window,
            cells_included=cells_included,
            cells_excluded_hole=cells_excluded_hole,
        )

    @classmethod
    def from_mask(
        cls, window: Window, included: npt.NDArray[np.bool_], in_hole: npt.NDArray[np.bool_]
    ) -> ChunkMask:
        """Runs of ``included`` (a (height, width) mask of the window); ``in_hole`` marks
        excluded cells whose test point lies in a hole of the country."""
        h, w = included.shape
        padded = np.zeros((h, w + 2), dtype=np.int8)
        padded[:, 1:-1] = included
        d = np.diff(padded, axis=1)
        sr, sc = np.nonzero(d == 1)
        _er, ec = np.nonzero(d == -1)
        # np.nonzero walks row-major, so starts and ends pair up in order
        runs = Runs.of(
            sr.astype(np.int64) + window.row_start,
            sc.astype(np.int64) + window.col_start,
            ec.astype(np.int64) + window.col_start,
        )
        return cls.from_runs(
            window,
            runs,
            cells_included=int(np.count_nonzero(included)),
            cells_excluded_hole=int(np.count_nonzero(in_hole & ~included)),
        )

    def to_mask(self) -> npt.NDArray[np.bool_]:
        """The dense (height, width) inclusion mask of the window (for tests and tools)."""
        out = np.zeros((self.window.height, self.window.width), dtype=bool)
        for r, a, b in zip(self.row.tolist(), self.col0.tolist(), self.col1.tolist(), strict=True):
            out[
                r - self.window.row_start, a - self.window.col_start : b - self.window.col_start
            ] = True
        return out
