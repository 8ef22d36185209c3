"""Point lookup on a published index: which regions hold each lon/lat point
(docs/CONTRACT.md §10.4-§10.5).

The rule is ``center`` applied to the point (§5): a point belongs to region G iff, for
some polygon part P of G, it lies in or on P's exterior ring and neither in nor on any
hole of P -- closed shell, open holes, no epsilon. On a shared border both regions get
the point, on an enclave's outline only the enclave.

Why the fast path is exact
--------------------------
G is a regular closed set (the closure of its interior), and the kernel decides per cell
``within`` (the closed cell lies in G) and ``any_overlap`` (the open cell meets the
interior of G) exactly (§5, §10.2). For a point strictly inside a cell (not on any of its
edges, at the cell's own float64 edges ``c + a*col``, ``f + e*row``, §3):

* the cell is ``within`` G: the open cell lies in the interior of G, and every interior
  point of G is in some part's closed shell and in no hole of that part -> in G;
* the cell is not ``any_overlap`` for G: the open cell misses G altogether (a boundary
  point of G in the open cell would have interior points of G next to it) -> not in G;
* otherwise the cell meets G's boundary, and the point gets the exact test.

So :class:`PointLookup` keeps, once per index, the tile-id line cut into intervals with
one code each: no region (no region's ``any_overlap``), exactly one region that holds
the whole cell and no other region's ``any_overlap`` (the answer), or "test exactly".
A coarse table of ``BLOCK`` x ``BLOCK`` cell blocks whose cells all share a code answers
most points with one array read; for the other blocks it keeps, per row, the interval
holding the row's first cell in the block, and a point steps from there to its own cell
(a few steps at most, no search over the whole line). Everything else -- points in
boundary cells, points exactly on a cell edge (shared by two or four cells, or the ±180
cut), in the band no cell covers, off the grid -- gets the exact test on candidates from
an STRtree of the kept geometry's part shells: GEOS ``intersects`` with the prepared
shell (closed) and not ``intersects`` with the part's holes (so hole boundaries are
excluded), the same per-part test as the kernel's ``center`` on its uncertainty bands.

Locating a point's cell is arithmetic (the row) and a bucket table (the column piece),
both only guesses: a point counts as strictly inside a cell only after comparing it with
that cell's float64 edges, so a wrong guess can only send a point to the exact test.

Memory is the intervals (they follow the regions' boundaries: runs, not cells) and the
block tables; points are answered in batches of ``batch_size`` (in passes of ``_PASS``
points inside a batch), so a stream of any length (``lookup_batches``, the CLI's
``lookup_points_file``) runs in bounded memory.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex import kernel
from tileindex.contract import sort_keys
from tileindex.errors import ConfigError, InputError, InputFileError, OutputError
from tileindex.fsio import write_atomic
from tileindex.geometry import CountryGeometry
from tileindex.grid import FloatArray, Grid, IntArray, wrap_center
from tileindex.index import Index, open_index
from tileindex.plan import adaptive_chunk, country_windows

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LookupFileResult",
    "PointLookup",
    "lookup",
    "lookup_batches",
    "lookup_points_file",
]

DEFAULT_BATCH_SIZE = 1 << 20
BLOCK = 32  # cells per side of a block of the coarse table
_PASS = 1 << 14  # points per vectorised pass: its temporaries stay in the core's cache

# interval / block codes (a code >= 0 is a region id: the one region holding the cell)
_NONE = -1  # no region meets the open cell
_EXACT = -2  # a region's boundary meets the cell (or several regions hold it): test exactly
_MIXED = -3  # block table only: _MIXED - m is the m-th block whose cells differ

Int32Array = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

# one PointLookup per opened Index, built on first use
_CACHE: weakref.WeakKeyDictionary[Index, PointLookup] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class PointLookup:
    """The lookup structure of one index, built once (:meth:`from_index`).

    ``keys``: the regions with geometry, in UTF-8 byte order (a region id is a position);
    ``starts``/``codes``: the tile-id line cut into intervals ``[starts[i], starts[i+1])``
    with one code each (module doc; ``starts`` ends with a sentinel past every tile id);
    ``blocks``: the code of every ``BLOCK`` x ``BLOCK`` block whose cells share one, else
    ``_MIXED - m``, and ``block_rows[m * BLOCK + k]`` the interval holding the first cell
    of row k of the m-th such block; ``row_edges``: ``f + e*k`` for k = 0..nrows;
    ``piece_x0``/``piece_x1``/``piece_col``: the cells' pieces at their wrapped positions
    (§3), sorted by west edge, found by ``cols``; ``row_block``/``piece_block``: a row's
    and a piece's part of the position in ``blocks``; the part shells, holes, their
    region, and an STRtree of the shells.
    """

    key_column: str
    keys: tuple[str, ...]
    grid: Grid
    starts: IntArray
    codes: Int32Array
    blocks: Int32Array
    block_rows: Int32Array
    row_edges: FloatArray
    row_block: IntArray
    piece_x0: FloatArray
    piece_x1: FloatArray
    piece_col: IntArray
    piece_block: IntArray
    shells: npt.NDArray[np.object_]
    holes: npt.NDArray[np.object_]
    part_region: Int32Array
    tree: shapely.STRtree
    cols: _Locator

    @classmethod
    def from_index(cls, index: Index) -> PointLookup:
        """The structure for ``index`` (cached per Index object)."""
        cached = _CACHE.get(index)
        if cached is None:
            geoms = index.geometry()
            cached = cls.build(index.grid, index.key_column, geoms)
            _CACHE[index] = cached
        return cached

    @classmethod
    def build(
        cls, grid: Grid, key_column: str, geometries: Mapping[str, BaseGeometry | None]
    ) -> PointLookup:
        """The structure for region geometries already normalised as the build kept them
        (docs/CONTRACT.md §4: unioned, cut at ±180), on ``grid``."""
        keys = tuple(sort_keys(k for k, g in geometries.items() if g is not None))
        regions = [CountryGeometry.from_geometry(k, geometries[k]) for k in keys]
        starts, codes = _intervals(grid, regions)
        blocks, block_rows = _block_table(grid, starts, codes)
        pieces = grid.column_segments(0, grid.ncols)
        x0 = np.concatenate([s.x0 for s in pieces])
        x1 = np.concatenate([s.x1 for s in pieces])
        col = np.concatenate([s.cols for s in pieces])
        order = np.argsort(x0, kind="stable")
        x0, x1, col = x0[order], x1[order], col[order]
        # the grid spans at most 360 degrees, so its wrapped pieces do not overlap
        assert (x1[:-1] <= x0[1:]).all()
        shells, holes, part_region = [], [], []
        for rid, region in enumerate(regions):
            for part in region.parts:
                shells.append(shapely.Polygon(part.exterior))
                holes.append(shapely.MultiPolygon([shapely.Polygon(h) for h in part.interiors]))
                part_region.append(rid)
        row_edges = grid.f + grid.e * np.arange(grid.nrows + 1, dtype=np.float64)
        shell_arr = np.array(shells, dtype=object)
        hole_arr = np.array(holes, dtype=object)
        shapely.prepare(shell_arr)
        shapely.prepare(hole_arr)
        nbc = blocks.shape[1]
        return cls(
            key_column=key_column,
            keys=keys,
            grid=grid,
            starts=np.r_[starts, np.iinfo(np.int64).max],
            codes=codes,
            blocks=blocks,
            block_rows=block_rows,
            row_edges=row_edges,
            row_block=(np.arange(grid.nrows, dtype=np.intp) // BLOCK) * nbc,
            piece_x0=x0,
            piece_x1=x1,
            piece_col=col,
            piece_block=(col // BLOCK).astype(np.intp),
            shells=shell_arr,
            holes=hole_arr,
            part_region=np.asarray(part_region, dtype=np.int32),
            tree=shapely.STRtree(shell_arr),
            cols=_Locator.of(x0),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (not the geometry)."""
        arrays = (
            self.starts,
            self.codes,
            self.blocks,
            self.block_rows,
            self.row_edges,
            self.row_block,
            self.piece_x0,
            self.piece_x1,
            self.piece_col,
            self.piece_block,
        )
        return sum(a.nbytes for a in arrays) + self.cols.nbytes

    # -- answering -------------------------------------------------------------------------

    def pairs(self, lon: FloatArray, lat: FloatArray) -> tuple[IntArray, Int32Array]:
        """(point, region id) of every point (lon wrapped, checked) and region holding
        it, sorted by point then region; a point in no region appears once with -1."""
        x, y = lon, lat
        code = np.empty(x.size, dtype=np.int32)
        for s in range(0, x.size, _PASS):
            self._codes(x[s : s + _PASS], y[s : s + _PASS], code[s : s + _PASS])
        pt = np.arange(x.size, dtype=np.int64)
        exact = np.flatnonzero(code == _EXACT)
        if exact.size == 0:
            return pt, code
        ept, ereg = self.exact_pairs(x[exact], y[exact])
        code[exact] = _NONE
        # ept is sorted by point then region: a point's first region takes its row, the
        # others (a shared border) get rows inserted after it, in region order
        first = np.r_[True, ept[1:] != ept[:-1]] if ept.size else np.zeros(0, dtype=bool)
        code[exact[ept[first]]] = ereg[first]
        more = exact[ept[~first]]
        if more.size:
            pt = np.insert(pt, more + 1, more)
            code = np.insert(code, more + 1, ereg[~first])
        return pt, code

    def _codes(self, x: FloatArray, y: FloatArray, out: Int32Array) -> None:
        """``out[k]``: the code of the cell strictly holding point k (a region id, or
        ``_NONE``), or ``_EXACT`` where the point needs the exact test (module doc)."""
        g = self.grid
        # the row by arithmetic and the column piece by the locator are guesses (module
        # doc): a wrong one (a point within rounding of an edge, next to a narrow piece)
        # fails the strict comparisons with the edges and goes to the exact test
        t = y - g.f
        t *= 1.0 / g.e
        np.clip(t, 0.0, g.nrows - 1, out=t)
        r = t.astype(np.intp)
        inside = self.row_edges.take(r) > y
        inside &= y > self.row_edges[1:].take(r)
        i = self.cols.guess(x)
        inside &= self.piece_x0.take(i) < x
        inside &= x < self.piece_x1.take(i)
        b = self.row_block.take(r)
        b += self.piece_block.take(i)
        self.blocks.take(b, out=out, mode="clip")
        np.copyto(out, _EXACT, where=~inside)
        mixed = np.flatnonzero(out <= _MIXED)
        if mixed.size:
            rm = r[mixed]
            # the interval holding the first cell of the point's row in the block, then
            # forward to the point's cell: at most BLOCK - 1 steps, most points none
            j = self.block_rows.take((_MIXED - out[mixed]).astype(np.intp) * BLOCK + rm % BLOCK)
            tile = rm * g.ncols + self.piece_col.take(i[mixed])
            on = np.flatnonzero(self.starts.take(j + 1) <= tile)
            while on.size:
                j[on] += 1
                on = on[self.starts.take(j[on] + 1) <= tile[on]]
            out[mixed] = self.codes.take(j)

    def exact_pairs(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, Int32Array]:
        """(point, region id) pairs by the exact per-part test (module doc), unique."""
        pt, part = self.tree.query(shapely.points(x, y))  # bounding boxes only: candidates
        # prepared shells and holes; intersects_xy tests coordinates without point objects
        keep = shapely.intersects_xy(self.shells[part], x[pt], y[pt])
        pt, part = pt[keep], part[keep]
        keep = ~shapely.intersects_xy(self.holes[part], x[pt], y[pt])
        key = np.unique(pt[keep].astype(np.int64) * len(self.keys) + self.part_region[part[keep]])
        out_pt, out_reg = np.divmod(key, max(len(self.keys), 1))
        return out_pt, out_reg.astype(np.int32)

    def table(self, lon: npt.ArrayLike, lat: npt.ArrayLike, offset: int = 0) -> pa.Table:
        """The ``point`` / key table of one batch (points numbered from ``offset``)."""
        x, y = check_points(lon, lat, offset=offset)
        return self._answer(x, y, offset)

    def _answer(self, x: FloatArray, y: FloatArray, offset: int) -> pa.Table:
        """:meth:`table` of points already checked and wrapped (:func:`check_points`)."""
        pt, reg = self.pairs(x, y)
        names = pa.array(self.keys, pa.string())
        key = names.take(pa.array(reg, pa.int32(), mask=reg < 0))
        return pa.table(
            [pa.array(pt + offset, pa.int64()), key],
            schema=lookup_schema(self.key_column),
        )


@dataclass(frozen=True, eq=False)
class _Locator:
    """``np.searchsorted(edges, v, side="right") - 1`` for many ``v``, by arithmetic.

    A random binary search costs ~250 ns a value (branch misses). Here a table of buckets
    half the median edge gap wide gives the edge at or before each bucket's start, and
    one step forward corrects it: :meth:`guess`, exact wherever a bucket holds at most one
    edge (on evenly spaced edges everywhere: they sit mid-bucket, away from the rounding
    at bucket boundaries; only next to gaps narrower than a bucket may it fall short).
    :meth:`find` checks each guess against the edges and searches where it fails."""

    edges: FloatArray
    following: FloatArray  # edges[i + 1], +inf after the last
    lo: float
    scale: float  # buckets per unit
    first: IntArray

    @classmethod
    def of(cls, edges: FloatArray) -> _Locator:
        edges = np.asarray(edges, dtype=np.float64)
        gaps = np.diff(edges)
        width = float(np.median(gaps)) / 2.0 if gaps.size else 0.0
        width = max(width, float(edges[-1] - edges[0]) / (1 << 24))  # at most 2^24 buckets
        width = width if width > 0.0 else 1.0
        lo = float(edges[0]) - width / 2.0
        nb = int(np.ceil((float(edges[-1]) - lo) / width)) + 1
        starts = lo + width * np.arange(nb, dtype=np.float64)
        first = np.searchsorted(edges, starts, side="right") - 1
        return cls(
            edges,
            np.r_[edges[1:], np.inf],
            lo,
            1.0 / width,
            np.clip(first, 0, edges.size - 1).astype(np.intp),
        )

    @property
    def nbytes(self) -> int:
        return self.edges.nbytes + self.following.nbytes + self.first.nbytes

    def guess(self, v: FloatArray) -> IntArray:
        """An index in [0, edges.size) for finite values: the answer of :meth:`find`
        wherever the value's bucket holds at most one edge."""
        t = v - self.lo
        t *= self.scale
        np.clip(t, 0.0, self.first.size - 1, out=t)
        i = self.first.take(t.astype(np.intp))
        i += v >= self.following.take(i)
        return i

    def find(self, v: FloatArray) -> IntArray:
        """``np.searchsorted(edges, v, side="right") - 1`` for finite values."""
        i = self.guess(v)
        bad = np.flatnonzero(~((self.edges[i] <= v) & (v < self.following[i])))
        if bad.size:
            i[bad] = np.searchsorted(self.edges, v[bad], side="right") - 1
        return i


def lookup_schema(key_column: str) -> pa.Schema:
    """The schema of :func:`lookup`'s table (docs/CONTRACT.md §10.5)."""
    return pa.schema(
        [pa.field("point", pa.int64(), nullable=False), pa.field(key_column, pa.string())]
    )


def check_points(
    lon: npt.ArrayLike, lat: npt.ArrayLike, offset: int = 0, what: str = "point"
) -> tuple[FloatArray, FloatArray]:
    """(wrapped lon, lat) as float64; bad input names the first bad point and the fix.

    Longitudes beyond ±180 (up to ±540, the range docs/CONTRACT.md §4 accepts for
    geometry) are shifted by 360 degrees; the shift is exact in float64 (Sterbenz), so
    the point is the same point. NaN, infinite, |lat| > 90 or |lon| > 540 is refused.
    """
    x, y = _as_coordinates(lon, lat)
    _refuse_bad(x, y, offset, what)
    return _wrapped(x), y


def _as_coordinates(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(lon, dtype=np.float64).ravel()
    y = np.asarray(lat, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InputError(f"lon and lat differ in length ({x.size} and {y.size}); pass one each")
    return x, y


def _refuse_bad(x: FloatArray, y: FloatArray, offset: int, what: str) -> None:
    """Raise on the first point that is not a lon/lat position (:func:`check_points`),
    a pass at a time: no temporaries the size of the input."""
    for s in range(0, x.size, _PASS):
        ok = _is_position(x[s : s + _PASS], y[s : s + _PASS])
        if ok.all():
            continue
        i = s + int(np.argmin(ok))
        bad = sum(
            int(np.count_nonzero(~_is_position(x[k : k + _PASS], y[k : k + _PASS])))
            for k in range(s, x.size, _PASS)
        )
        raise InputError(
            f"{what} {offset + i} (lon={float(x[i])!r}, lat={float(y[i])!r}) is not a lon/lat "
            f"position: coordinates must be finite with |lat| <= 90 and |lon| <= 540 "
            f"({bad} bad point(s)); drop or fix them"
        )


def _is_position(x: FloatArray, y: FloatArray) -> BoolArray:
    ok = np.abs(y) <= 90.0  # NaN and infinities fail the comparisons too
    ok &= np.abs(x) <= 540.0
    return ok


def _wrapped(x: FloatArray) -> FloatArray:
    """``wrap_center`` of checked longitudes, without a copy when none is beyond ±180."""
    if x.size and (float(x.min()) < -180.0 or float(x.max()) > 180.0):
        return wrap_center(x)
    return x


def _as_lookup(index: Index | PointLookup) -> PointLookup:
    if isinstance(index, PointLookup):
        return index
    if isinstance(index, Index):
        return PointLookup.from_index(index)
    raise ConfigError(
        f"lookup needs an index from tileindex.open(root) (or a PointLookup), "
        f"not {type(index).__name__}"
    )


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    return int(batch_size)


def lookup(
    index: Index | PointLookup,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pa.Table:
    """Every region holding each point, by the ``center`` rule (closed shell, open holes).

    Returns a pyarrow Table: ``point`` (int64, the position in ``lon``/``lat``) and the
    index's key column (string, null where the point is in no region); one row per
    (point, region), every point at least once, ordered by point then key (UTF-8 bytes).
    Longitudes beyond ±180 are wrapped; NaN or out-of-range coordinates raise
    :class:`~tileindex.InputError` naming the first bad point.

    >>> index = tileindex.open("out/")                               # doctest: +SKIP
    >>> tileindex.lookup(index, [6.6, -30.0], [46.5, 0.0])           # doctest: +SKIP
    """
    table = _as_lookup(index)
    size = _check_batch_size(batch_size)
    x, y = _as_coordinates(lon, lat)
    _refuse_bad(x, y, 0, "point")  # the whole input first: nothing is answered for bad input
    parts = [
        table._answer(_wrapped(x[s : s + size]), y[s : s + size], s) for s in range(0, x.size, size)
    ]
    if not parts:
        return lookup_schema(table.key_column).empty_table()
    return pa.concat_tables(parts)


def lookup_batches(
    index: Index | PointLookup,
    batches: Iterable[tuple[npt.ArrayLike, npt.ArrayLike]],
) -> Iterator[pa.Table]:
    """:func:`lookup` over a stream of (lon, lat) batches, one table per batch, points
    numbered across the stream: memory follows the batch, not the stream."""
    table = _as_lookup(index)
    offset = 0
    for lon, lat in batches:
        x = np.asarray(lon, dtype=np.float64).ravel()
        yield table.table(x, lat, offset)
        offset += x.size


# -- building the structure ---------------------------------------------------------------------


def _intervals(grid: Grid, regions: list[CountryGeometry]) -> tuple[IntArray, Int32Array]:
    """The tile-id line cut into intervals with one code each (module doc), from every
    region's ``within`` and ``any_overlap`` runs (the kernel, chunk by chunk)."""
    pos, d_any, d_in, d_id = [], [], [], []
    for rid, region in enumerate(regions):
        for predicate, (lo, hi) in _runs(grid, region).items():
            pos += [lo, hi]
            one = np.ones(lo.size, dtype=np.int64)
            if predicate == "any_overlap":
                d_any += [one, -one]
                d_in += [0 * one, 0 * one]
                d_id += [0 * one, 0 * one]
            else:
                d_any += [0 * one, 0 * one]
                d_in += [one, -one]
                d_id += [rid * one, -rid * one]
    cells = grid.nrows * grid.ncols
    if not pos:
        return np.zeros(1, dtype=np.int64), np.full(1, _NONE, dtype=np.int32)
    p = np.concatenate([np.zeros(1, np.int64), *pos, np.full(1, cells, np.int64)])
    zero = np.zeros(1, np.int64)
    a = np.concatenate([zero, *d_any, zero])
    w = np.concatenate([zero, *d_in, zero])
    ids = np.concatenate([zero, *d_id, zero])
    order = np.argsort(p, kind="stable")
    p, a, w, ids = p[order], np.cumsum(a[order]), np.cumsum(w[order]), np.cumsum(ids[order])
    last = np.r_[p[1:] != p[:-1], True]  # the state after every event at a position
    p, a, w, ids = p[last], a[last], w[last], ids[last]
    # a region's within runs lie inside its any_overlap runs: one active of each, and
    # no other region's any_overlap, means the cell is wholly that region's
    code = np.where(a == 0, _NONE, np.where((a == 1) & (w == 1), ids, _EXACT)).astype(np.int32)
    code[p >= cells] = _NONE
    keep = np.r_[True, code[1:] != code[:-1]]
    return p[keep], code[keep]


def _runs(grid: Grid, region: CountryGeometry) -> dict[str, tuple[IntArray, IntArray]]:
    """The region's ``any_overlap`` and ``within`` cells as tile-id intervals [lo, hi),
    both from one plan of windows and chunks."""
    predicates = ("any_overlap", "within")
    lo: dict[str, list[IntArray]] = {p: [np.empty(0, np.int64)] for p in predicates}
    hi: dict[str, list[IntArray]] = {p: [np.empty(0, np.int64)] for p in predicates}
    windows = country_windows(grid, region)
    if windows:
        shape = adaptive_chunk(windows, region.edges.ymin, region.edges.ymax, grid.e)
        for window in windows:
            for chunk in grid.chunks(window, shape.rows, shape.cols):
                for predicate in predicates:
                    mask = kernel.mask_chunk(grid, chunk, region, predicate)
                    base = mask.row * grid.ncols
                    lo[predicate].append(base + mask.col0)
                    hi[predicate].append(base + mask.col1)
    return {p: (np.concatenate(lo[p]), np.concatenate(hi[p])) for p in predicates}


def _block_table(grid: Grid, starts: IntArray, codes: Int32Array) -> tuple[Int32Array, Int32Array]:
    """Per ``BLOCK`` x ``BLOCK`` block: the code all its cells share (no region, or one
    region holding each whole cell), else ``_MIXED - m`` for the m-th mixed block; and per
    mixed block and row in it, the interval holding the row's first cell in the block
    (``block_rows[m * BLOCK + row % BLOCK]``). Built a block row at a time, from the
    intervals that start in it (not cell by cell)."""
    nrows, ncols = grid.nrows, grid.ncols
    nbr, nbc = math.ceil(nrows / BLOCK), math.ceil(ncols / BLOCK)
    out = np.empty((nbr, nbc), dtype=np.int32)
    firsts: list[Int32Array] = []
    mixed = 0
    for br in range(nbr):
        h = min(BLOCK, nrows - br * BLOCK)
        lo = br * BLOCK * ncols  # the block row's cells are the tile ids [lo, hi)
        hi = lo + h * ncols
        j0 = int(np.searchsorted(starts, lo, side="right")) - 1  # the interval holding lo
        j1 = int(np.searchsorted(starts, hi, side="left"))
        k = np.arange(j0 + 1, j1, dtype=np.int64)  # the intervals starting after lo
        row, col = np.divmod(starts[k] - lo, ncols)
        seg = row * nbc + col // BLOCK  # the row segment (one row of one block) holding it
        inner = col % BLOCK != 0
        # a start after a segment's first cell splits the segment, and its interval holds
        # the first cell of the next segment on
        split = np.zeros(h * nbc, dtype=bool)
        split[seg[inner]] = True
        eff = seg + inner
        last = eff[1:] != eff[:-1]
        gov = np.full(h * nbc + 1, j0, dtype=np.int64)
        gov[eff[:-1][last]] = k[:-1][last]
        gov[eff[-1:]] = k[-1:]
        gov = np.maximum.accumulate(gov)[:-1]  # the interval holding each segment's first cell
        code = codes[gov].reshape(h, nbc)
        same = ~split.reshape(h, nbc).any(axis=0) & (code == code[0]).all(axis=0)
        same &= code[0] != _EXACT
        ids = np.flatnonzero(~same)
        out[br] = np.where(same, code[0], _MIXED)
        out[br, ids] = _MIXED - mixed - np.arange(ids.size, dtype=np.int32)
        rows = np.zeros((ids.size, BLOCK), dtype=np.int32)
        rows[:, :h] = gov.reshape(h, nbc)[:, ids].T
        firsts.append(rows.ravel())
        mixed += ids.size
    return out, np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int32)


# -- files (the CLI's tool) ---------------------------------------------------------------------


@dataclass(frozen=True)
class LookupFileResult:
    """What :func:`lookup_points_file` wrote: ``points`` read, ``rows`` written (one per
    (point, region), unmatched ones included unless dropped), ``unmatched`` points."""

    out: Path
    parameter_hash: str
    key_column: str
    points: int
    rows: int
    unmatched: int
    seconds: float


def _open_points(
    path: Path, batch_size: int, lon_column: str, lat_column: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The points file's schema and its rows in batches (parquet, or CSV with a header
    row, told apart by content)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise InputFileError(
            f"points file {path} does not exist; pass a parquet or CSV file"
        ) from None
    except OSError as exc:
        raise InputFileError(f"points file {path}: cannot read ({exc.strerror})") from None
    try:
        if magic == b"PAR1":
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            batches: Iterator[pa.RecordBatch] = pf.iter_batches(batch_size=batch_size)
        else:
            options = pacsv.ReadOptions(block_size=max(1 << 20, min(batch_size * 64, 1 << 28)))
            reader = pacsv.open_csv(path, read_options=options)
            schema = reader.schema
            batches = (
                b.slice(s, batch_size) for b in reader for s in range(0, b.num_rows, batch_size)
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise _unreadable(path, exc) from None
    _check_columns(path, schema.names, lon_column, lat_column)

    def guarded() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise _unreadable(path, exc) from None

    return schema, guarded()


def _unreadable(path: Path, exc: Exception) -> InputError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return InputError(
        f"points file {path} is not a readable parquet or CSV file ({first}); "
        "pass parquet, or CSV with a header row"
    )


def _check_columns(path: Path, names: list[str], lon_column: str, lat_column: str) -> None:
    missing = [c for c in (lon_column, lat_column) if c not in names]
    if missing:
        raise InputError(
            f"points file {path} has no column {', '.join(map(repr, missing))} "
            f"(its columns: {', '.join(names) or 'none'}); pass --lon-column/--lat-column"
        )


def _coordinates(batch: pa.RecordBatch, path: Path, column: str) -> FloatArray:
    values = batch.column(batch.schema.get_field_index(column))
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InputError(
            f"points file {path}: column {column!r} is {values.type}, not numeric; "
            "pass decimal degrees"
        )
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def lookup_points_file(
    root: str | Path | Index,
    points: str | Path,
    out: str | Path,
    *,
    lon_column: str = "lon",
    lat_column: str = "lat",
    drop_unmatched: bool = False,
    parameter_hash: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
) -> LookupFileResult:
    """Write ``out`` (parquet): the rows of ``points`` (parquet or CSV) plus the index's
    key column, one row per (point, region), in input order then key order; a point in
    no region keeps one row with a null key unless ``drop_unmatched``. The file is
    streamed batch by batch and ``out`` appears atomically, only when every point was
    answered (nothing is written on bad input)."""
    t0 = time.perf_counter()
    index = root if isinstance(root, Index) else open_index(root, parameter_hash)
    points, out = Path(points), Path(out)
    size = _check_batch_size(batch_size)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise OutputError(f"{out} is a folder; pass a file name for the parquet output")
    finder = _as_lookup(index)
    key = index.key_column
    counts = {"points": 0, "rows": 0, "unmatched": 0}

    schema, batches = _open_points(points, size, lon_column, lat_column)
    if key in schema.names:
        raise InputError(
            f"points file {points} already has a column {key!r}, the index's key column; "
            "rename or drop it"
        )
    out_schema = schema.append(pa.field(key, pa.string()))

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, out_schema, compression="zstd") as writer:
            for batch in batches:
                x = _coordinates(batch, points, lon_column)
                y = _coordinates(batch, points, lat_column)
                base = counts["points"]
                # rows are numbered 1-based after the header, as the build's inputs are
                x, y = check_points(x, y, base + 1, f"points file {points}: row")
                found = finder._answer(x, y, 0)
                local, keys = found.column("point"), found.column(key)
                counts["unmatched"] += keys.null_count
                if drop_unmatched:
                    valid = keys.is_valid()
                    local, keys = local.filter(valid), keys.filter(valid)
                rows = pa.Table.from_batches([batch], schema).take(local)
                writer.write_table(rows.append_column(out_schema.field(key), keys))
                counts["points"] += batch.num_rows
                counts["rows"] += len(local)

    try:
        write_atomic(out, write)
    except PermissionError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror}); pick a writable path") from None
    return LookupFileResult(
        out=out,
        parameter_hash=index.parameter_hash,
        key_column=key,
        points=counts["points"],
        rows=counts["rows"],
        unmatched=counts["unmatched"],
        seconds=time.perf_counter() - t0,
    )
