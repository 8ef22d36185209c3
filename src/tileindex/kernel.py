"""The fast exact engine: (grid window, country geometry, predicate) -> included cells.

Arrays in, arrays out: no files, no logging set-up, no executors. The work is
proportional to the boundary (segment x row crossings), not to the window's area:
cells are handled as row runs ("intervals") and only boundary cells one by one.

Why the result is exact
-----------------------
Every cell has a *test point* (its published centroid, or for the piece of a cell
split at ±180 that does not hold the centroid, a point strictly inside that piece)
and a *box* (the cell, or the piece, in wrapped coordinates). Every predicate reduces to
questions about where the test point and the box lie relative to the boundary of G:

* Scanline winding. For each row, every ring segment whose closed y-range contains the
  row's test latitude ``y`` is intersected with the line ``y``: ``xc = x1 + (y - y1) *
  (x2 - x1) / (y2 - y1)``. Four IEEE operations with ``t = (y-y1)/(y2-y1)`` in [0, 1]
  put the computed ``xc`` within ``6u(|x1| + |x2 - x1|) + O(u^2)`` of the true crossing
  (u = 2^-53). We widen that by more than three orders of magnitude into a band
  ``xc ± EPS(x1, x2)`` (a horizontal segment on the line gets its whole x-range plus
  the margin). A test point outside every band is farther from every crossing than the
  rounding error, so it is not on the boundary and the computed crossings on its left
  are exactly the true ones. Their signed count (shells are oriented CCW, holes CW, the
  half-open rule ``(y1 > y) != (y2 > y)`` counts a vertex on the line once) is the
  winding number, which for a valid (multi)polygon is 1 inside G and 0 outside. Along a
  row the winding number only changes at crossings, so inside cells come out as runs
  between consecutive crossings. Test points inside a band (in practice only points on,
  or within ~1e-10 degrees of, the boundary: grid-aligned input) are decided by GEOS.

* ``center`` is then: winding 1 off the bands; on the bands, GEOS per part: covered by
  the shell and not covered by any hole of that part (outer boundary closed, hole
  boundary open).

* ``any_overlap``: for a valid polygon, the open box B meets the interior of G iff the
  test point (inside B) is interior to G, or the boundary of G meets B (a boundary
  point in an open set has interior points of G arbitrarily close). Off the boundary,
  B lies wholly inside or wholly outside G, and the test point decides. So a cell is
  included iff its test point is interior (as above, with ``contains`` for band points),
  or a boundary segment meets the open box. Which boxes the boundary can meet at all
  is bounded conservatively per row strip (each segment's x-range inside the strip,
  widened by EPS); among those, a segment that has points inside the open strip and
  whose x-span there overlaps the open box by more than EPS is proof of a boundary
  point in B (vertical and horizontal segments are compared exactly); the rest are
  decided by GEOS itself: ``relate(G, box) = 'T********'`` on the prepared, unclipped
  country geometry, the predicate's own definition (and the legacy engine's test).

* ``within`` (docs/CONTRACT.md §10.2): the closed box B lies in G. G is a regular closed
  set (the closure of its interior), so B ⊆ G iff no boundary point of G lies in the
  open box and some point of the open box is in G: the open box is connected, so without
  a boundary point it lies wholly in the interior or wholly in the exterior of G. The
  boxes the boundary may meet at all -- the closed box, with the margin -- are the
  ``any_overlap`` candidates above; every other box is decided by its test point
  (interior, as above: the point is off the boundary there, so winding number or
  ``contains_xy`` is exact). Among the candidates, a segment proven to pass through the
  open box refutes (as for ``any_overlap``), and so does a test point strictly inside
  the box that is not interior (if B ⊆ G its open box is interior). The rest -- boxes the
  boundary touches without provably crossing: edges on cell edges, vertices on corners,
  contacts at float resolution -- are decided by GEOS ``covers(G, box)`` on the
  prepared country geometry, the predicate's definition (and the legacy engine's
  test). A cell split at ±180 is within iff every piece is. So the work follows the
  boundary as for ``any_overlap``, and GEOS sees only the touching boxes.

No step depends on ring orientation (rings are re-oriented), chunk size or worker
count: every decision is made per cell from the same float64 inputs.

Interval representation: within a window of width ``w``, cell (r, c) has the linear
position ``r * (w + 1) + c``; a run of cells is a half-open interval of positions
(the ``+ 1`` keeps runs of different rows apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from tileindex.geometry import CountryGeometry, Edges
from tileindex.grid import ChunkMask, ColumnSegment, FloatArray, Grid, IntArray, Runs, Window
from tileindex.predicates import check_predicate

BoolArray = npt.NDArray[np.bool_]

# The rounding bound of a crossing is ~6u(|x1| + |x2 - x1|) ~ 7e-16 (|x1| + |x2 - x1|);
# 2^-40 (~9e-13) times a larger sum keeps a margin of > 1000x.
_EPS_SCALE = 2.0**-40


def crossing_margin(x1: FloatArray, x2: FloatArray) -> FloatArray:
    """The widening of an x interpolated on the segment x1 -> x2 (a crossing, or the
    segment's x-span in a strip): more than 1000x its float64 rounding error (module
    doc). The one home of the margin: tileindex.coverage uses it too."""
    return _EPS_SCALE * (np.abs(x1) + np.abs(x2) + np.abs(x2 - x1) + 1.0)


@dataclass(frozen=True)
class _Intervals:
    """Sorted, disjoint, non-adjacent half-open intervals of linear cell positions."""

    start: IntArray
    stop: IntArray

    @classmethod
    def empty(cls) -> _Intervals:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64))

    @classmethod
    def cells(cls, keys: IntArray) -> _Intervals:
        """Single cells (keys sorted and unique) merged into runs."""
        return _Intervals(keys, keys + 1).union(_Intervals.empty())

    def __len__(self) -> int:
        return int((self.stop - self.start).sum())

    def contains(self, keys: IntArray) -> BoolArray:
        i = np.searchsorted(self.start, keys, side="right") - 1
        ok = i >= 0
        out = np.zeros(keys.size, dtype=bool)
        out[ok] = keys[ok] < self.stop[i[ok]]
        return out

    def union(self, other: _Intervals) -> _Intervals:
        return _sweep(self, other, np.logical_or)

    def intersection(self, other: _Intervals) -> _Intervals:
        return _sweep(self, other, np.logical_and)

    def difference(self, other: _Intervals) -> _Intervals:
        return _sweep(self, other, lambda a, b: a & ~b)

    def patch(self, keys: IntArray, values: BoolArray) -> _Intervals:
        """These cells set to ``values`` (keys sorted and unique), the rest unchanged."""
        if keys.size == 0:
            return self
        return self.difference(_Intervals.cells(keys)).union(_Intervals.cells(keys[values]))


def _sweep(a: _Intervals, b: _Intervals, op: np.ufunc | object) -> _Intervals:
    """Combine two interval sets (each may overlap itself) with a boolean ``op``."""
    pos = np.concatenate([a.start, a.stop, b.start, b.stop])
    if pos.size == 0:
        return _Intervals.empty()
    na, nb = a.start.size, b.start.size
    da = np.concatenate([np.ones(na), -np.ones(na), np.zeros(2 * nb)]).astype(np.int64)
    db = np.concatenate([np.zeros(2 * na), np.ones(nb), -np.ones(nb)]).astype(np.int64)
    order = np.argsort(pos, kind="stable")
    pos, ca, cb = pos[order], np.cumsum(da[order]), np.cumsum(db[order])
    last = np.r_[pos[1:] != pos[:-1], True]  # state after all events at a position
    p, member = pos[last], op(ca[last] > 0, cb[last] > 0)  # type: ignore[operator]
    # member[i] holds on [p[i], p[i+1]); the last position closes everything
    rising = member & ~np.r_[False, member[:-1]]
    falling = ~member & np.r_[False, member[:-1]]
    return _Intervals(p[rising], p[falling])


def mask_chunk(grid: Grid, window: Window, country: CountryGeometry, predicate: str) -> ChunkMask:
    """Included cells of ``window`` for ``country`` under ``predicate`` (see module doc)."""
    check_predicate(predicate)
    h, w = window.height, window.width
    if country.is_empty or h == 0 or w == 0:
        return _chunk_mask(window, _Intervals.empty(), 0)

    rows = _Rows(grid, np.arange(window.row_start, window.row_stop, dtype=np.int64))
    edges = _edges_in_rows(country.edges, rows)
    included = _Intervals.empty()
    shells = _Intervals.empty()  # test point of the centroid piece in some closed shell
    failing = _Intervals.empty()  # within: cells with a piece not within
    for seg in grid.column_segments(window.col_start, window.col_stop):
        lay = _Layout(seg, window)
        inc, in_shell = _segment(country, edges, rows, seg, lay, predicate)
        if not seg.has_centroid.all():
            other = lay.columns(np.flatnonzero(~seg.has_centroid), h)
            in_shell = in_shell.difference(other)
            if predicate == "center":  # center looks at the centroid only
                inc = inc.difference(other)
        if predicate == "within":  # every piece of the cell must be within
            r = np.arange(h, dtype=np.int64)
            here = lay.ranges(r, np.zeros(h, np.int64), np.full(h, seg.cols.size, np.int64))
            failing = failing.union(here.difference(inc))
        included = included.union(inc)
        shells = shells.union(in_shell)
    if predicate == "within":
        included = included.difference(failing)
    hole = len(shells) - len(shells.intersection(included))
    return _chunk_mask(window, included, hole)


def _chunk_mask(window: Window, included: _Intervals, hole: int) -> ChunkMask:
    """The included positions of the window (see ``_Layout``) as grid runs."""
    stride = window.width + 1
    row, col = np.divmod(included.start, stride)
    runs = Runs.of(
        row + window.row_start,
        col + window.col_start,
        col + window.col_start + (included.stop - included.start),
    )
    return ChunkMask.from_runs(window, runs, cells_included=len(included), cells_excluded_hole=hole)


class _Rows:
    """Per-row test latitude and strip bounds (rows run north to south, so y decreases
    with the row index; searches use the negations, which ascend)."""

    def __init__(self, grid: Grid, rows: IntArray) -> None:
        self.ty = grid.centroid_lat(rows)
        self.south, self.north = grid.lat_bounds(rows)
        self.n = rows.size
        # a centre line strictly inside its strip (always, unless e is near float resolution)
        self.strict = (self.south < self.ty) & (self.ty < self.north)


class _Layout:
    """Maps a segment's (row, piece index) to linear positions in the window."""

    def __init__(self, seg: ColumnSegment, window: Window) -> None:
        self.stride = window.width + 1
        self.offset = int(seg.cols[0]) - window.col_start
        # pieces of a segment are consecutive grid columns
        assert int(seg.cols[-1]) - int(seg.cols[0]) + 1 == seg.cols.size

    def key(self, r: IntArray, k: IntArray) -> IntArray:
        return r * self.stride + self.offset + k

    def ranges(self, r: IntArray, k0: IntArray, k1: IntArray) -> _Intervals:
        ok = k0 < k1
        runs = _Intervals(self.key(r[ok], k0[ok]), self.key(r[ok], k1[ok]))
        return runs.union(_Intervals.empty())  # sorts and merges

    def columns(self, ks: IntArray, h: int) -> _Intervals:
        r = np.repeat(np.arange(h, dtype=np.int64), ks.size)
        k = np.tile(ks.astype(np.int64), h)
        return self.ranges(r, k, k + 1)


def _edges_in_rows(edges: Edges, rows: _Rows) -> Edges:
    ylo, yhi = float(rows.south.min()), float(rows.north.max())
    return edges.select((edges.ymax >= ylo) & (edges.ymin <= yhi))


def _expand(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """All pairs (i, j) with lo[i] <= j < hi[i], vectorised."""
    counts = np.maximum(hi - lo, 0)
    idx = np.repeat(np.arange(lo.size), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    j = np.arange(idx.size) - starts + lo[idx]
    return idx, j


def _winding_runs(lay: _Layout, n: int, r: IntArray, k: IntArray, sign: IntArray) -> _Intervals:
    """Runs of pieces whose winding number is positive, from signed crossings that take
    effect at piece index ``k`` (the first test point east of the crossing) of row ``r``."""
    keep = k < n  # crossings east of every test point change nothing
    r, k, sign = r[keep], k[keep], sign[keep]
    if r.size == 0:
        return _Intervals.empty()
    key = r * (n + 1) + k
    order = np.argsort(key, kind="stable")
    key, sign = key[order], sign[order]
    first = np.r_[True, key[1:] != key[:-1]]
    at = np.flatnonzero(first)
    delta = np.add.reduceat(sign, at)
    row, kk = np.divmod(key[at], n + 1)
    new_row = np.r_[True, row[1:] != row[:-1]]
    total = np.cumsum(delta)
    base_idx = np.maximum.accumulate(np.where(new_row, np.arange(row.size), 0))
    winding = total - (total - delta)[base_idx]  # running sum within the row
    stop = np.r_[kk[1:], n]
    stop[np.r_[new_row[1:], True]] = n  # the last event of a row runs to the east edge
    inside = winding > 0
    return lay.ranges(row[inside], kk[inside], stop[inside])


def _segment(
    country: CountryGeometry,
    edges: Edges,
    rows: _Rows,
    seg: ColumnSegment,
    lay: _Layout,
    predicate: str,
) -> tuple[_Intervals, _Intervals]:
    """(included pieces, pieces whose test point is in some closed shell) of a segment."""
    n = seg.cols.size
    xs, bx0, bx1 = seg.test_x, seg.x0, seg.x1
    # segments wholly east of the segment can neither cross left of a test point nor meet a box
    e = edges.select(~(np.minimum(edges.x1, edges.x2) > max(float(xs[-1]), float(bx1[-1])) + 1e-6))

    # -- the centre line of every row: winding runs and uncertainty bands ---------------
    r_lo = np.searchsorted(-rows.ty, -e.ymax, side="left")
    r_hi = np.searchsorted(-rows.ty, -e.ymin, side="right")
    ei, r = _expand(r_lo, r_hi)
    x1, y1, x2, y2 = e.x1[ei], e.y1[ei], e.x2[ei], e.y2[ei]
    y = rows.ty[r]
    horizontal = y1 == y2
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = np.where(horizontal, x1, x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    eps = crossing_margin(x1, x2)
    band_lo = np.where(horizontal, np.minimum(x1, x2), xc) - eps
    band_hi = np.where(horizontal, np.maximum(x1, x2), xc) + eps
    bi, bk = _expand(
        np.searchsorted(xs, band_lo, side="left"), np.searchsorted(xs, band_hi, side="right")
    )
    band_keys = np.unique(lay.key(r[bi], bk))

    crossing = (y1 > y) != (y2 > y)
    sign = np.where(y2 < y1, 1, -1).astype(np.int64)  # CCW shells cross a left ray downward
    k = np.searchsorted(xs, xc, side="right")  # first test point east of the crossing
    cr = crossing
    inside = _winding_runs(lay, n, r[cr], k[cr], sign[cr])
    sh = crossing & e.is_shell[ei]
    in_shell = _winding_runs(lay, n, r[sh], k[sh], sign[sh])

    if band_keys.size:
        br, bc = np.divmod(band_keys - lay.offset, lay.stride)
        px, py = xs[bc], rows.ty[br]
        exact_shell, exact_center = exact_points(country, px, py)
        in_shell = in_shell.patch(band_keys, exact_shell)
        if predicate == "center":
            inside = inside.patch(band_keys, exact_center)
        else:
            inside = inside.patch(band_keys, shapely.contains_xy(country.exact.geom, px, py))

    if predicate == "center":
        return inside, in_shell

    # -- any_overlap and within: boxes the boundary may meet ----------------------------
    s_lo = np.searchsorted(-rows.south, -e.ymax, side="left")  # strips with south <= ymax
    s_hi = np.searchsorted(-rows.north, -e.ymin, side="right")  # strips with north >= ymin
    si, sr = _expand(s_lo, s_hi)
    sx1, sy1, sx2, sy2 = e.x1[si], e.y1[si], e.x2[si], e.y2[si]
    ymin, ymax = np.minimum(sy1, sy2), np.maximum(sy1, sy2)
    ya = np.clip(rows.south[sr], ymin, ymax)
    yb = np.clip(rows.north[sr], ymin, ymax)
    flat = sy1 == sy2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sx2 - sx1) / (sy2 - sy1)
        xa = np.where(flat, sx1, sx1 + (ya - sy1) * slope)
        xb = np.where(flat, sx2, sx1 + (yb - sy1) * slope)
    seps = crossing_margin(sx1, sx2)
    ci, ck = _expand(
        np.searchsorted(bx1, np.minimum(xa, xb) - seps, side="left"),  # first box with x1 >= lo
        np.searchsorted(bx0, np.maximum(xa, xb) + seps, side="right"),  # boxes with x0 <= hi
    )
    keys = lay.key(sr[ci], ck)

    # proof that segment si passes through the open box of piece ck: it has points
    # inside the open strip, over the y-interval (ya, yb), where its x covers the
    # interval (lo, hi) -- computed within seps -- and that interval overlaps the open
    # box by more than the rounding. Vertical and horizontal segments need no
    # arithmetic and are compared exactly.
    lo, hi = np.minimum(xa, xb)[ci], np.maximum(xa, xb)[ci]
    b0, b1, m = bx0[ck], bx1[ck], seps[ci]
    in_strip = np.where(flat, (rows.south[sr] < sy1) & (sy1 < rows.north[sr]), ya < yb)[ci]
    overlap = np.where(
        (sx1 == sx2)[ci],
        (b0 < lo) & (lo < b1),
        np.where(
            flat[ci],
            np.maximum(lo, b0) < np.minimum(hi, b1),
            np.maximum(lo, b0) + m < np.minimum(hi, b1) - m,
        ),
    )
    through = in_strip & overlap
    if predicate == "within":
        return _within(country, inside, keys, through, rows, seg, lay), in_shell
    cand = np.unique(keys)
    cand = cand[~inside.contains(cand)]
    proven = np.isin(cand, keys[through])
    todo = cand[~proven]
    decided = np.zeros(todo.size, dtype=bool)
    if todo.size:
        tr, tc = np.divmod(todo - lay.offset, lay.stride)
        boxes = shapely.box(bx0[tc], rows.south[tr], bx1[tc], rows.north[tr])
        decided = _boundary_meets_open_box(country, boxes)
    extra = np.union1d(cand[proven], todo[decided])
    return inside.union(_Intervals.cells(extra)), in_shell


def _within(
    country: CountryGeometry,
    inside: _Intervals,
    keys: IntArray,
    through: BoolArray,
    rows: _Rows,
    seg: ColumnSegment,
    lay: _Layout,
) -> _Intervals:
    """Pieces wholly in G (closed): ``inside`` (exact test points) off the boxes the
    boundary may meet; among those ``near`` boxes, a segment through the open box
    refutes, a test point strictly inside the box and not interior refutes, and GEOS
    ``covers`` on the prepared geometry decides the rest (module doc)."""
    near = np.unique(keys)
    if near.size == 0:
        return inside
    refuted = np.isin(near, keys[through])
    r, k = np.divmod(near - lay.offset, lay.stride)
    strict = (seg.x0[k] < seg.test_x[k]) & (seg.test_x[k] < seg.x1[k]) & rows.strict[r]
    refuted |= strict & ~inside.contains(near)
    todo = np.flatnonzero(~refuted)
    covered = np.zeros(todo.size, dtype=bool)
    if todo.size:
        tr, tk = r[todo], k[todo]
        boxes = shapely.box(seg.x0[tk], rows.south[tr], seg.x1[tk], rows.north[tr])
        covered = _covers_box(country, boxes)
    return inside.difference(_Intervals.cells(near)).union(_Intervals.cells(near[todo[covered]]))


def exact_points(
    country: CountryGeometry, x: FloatArray, y: FloatArray
) -> tuple[BoolArray, BoolArray]:
    """(in some closed shell, centre-included) for each point, decided by GEOS per part."""
    idx = country.exact
    points = shapely.points(x, y)
    pt, part = idx.shell_tree.query(points, predicate="intersects")
    in_shell = np.zeros(x.size, dtype=bool)
    in_shell[pt] = True
    in_hole = shapely.intersects(idx.holes[part], points[pt])
    center = np.zeros(x.size, dtype=bool)
    center[pt[~in_hole]] = True
    return in_shell, center


def _boundary_meets_open_box(country: CountryGeometry, boxes: npt.NDArray[np.object_]) -> BoolArray:
    """Whether the interior of each box meets the interior of G, decided by GEOS relate
    (``T********``) on the prepared country geometry: the predicate's definition, asked
    only for the few boxes no cheaper argument settles."""
    return np.asarray(shapely.relate_pattern(country.exact.geom, boxes, "T********"), dtype=bool)


def _covers_box(country: CountryGeometry, boxes: npt.NDArray[np.object_]) -> BoolArray:
    """Whether G covers each closed box (every point of it in G's interior or boundary),
    decided by GEOS ``covers`` on the prepared country geometry: the definition of
    ``within``, asked only for boxes the boundary touches without crossing."""
    return np.asarray(shapely.covers(country.exact.geom, boxes), dtype=bool)
