"""The fast exact engine: (grid window, country geometry, predicate) -> included cells.

Arrays in, arrays out: no files, no logging set-up, no executors.

Why the result is exact
-----------------------
Every cell has a *test point* (its published centroid, or for the piece of a cell
split at ±180 that does not hold the centroid, a point strictly inside that piece)
and a *box* (the cell, or the piece, in wrapped coordinates). Both predicates reduce to
questions about where the test point and the box lie relative to the boundary of G:

* Scanline parity. For each row, every ring segment whose closed y-range contains the
  row's test latitude ``y`` is intersected with the line ``y``: ``xc = x1 + (y - y1) *
  (x2 - x1) / (y2 - y1)``. Four IEEE operations with ``t = (y-y1)/(y2-y1)`` in [0, 1]
  put the computed ``xc`` within ``6u(|x1| + |x2 - x1|) + O(u^2)`` of the true crossing
  (u = 2^-53). We widen that by more than three orders of magnitude into a band
  ``xc ± EPS(x1, x2)`` (a horizontal segment on the line gets its whole x-range plus
  the margin). A test point outside every band is farther from every crossing than the
  rounding error, so it is not on the boundary and the computed crossings on its left
  are exactly the true ones. Their signed count (shells are oriented CCW, holes CW, the
  half-open rule ``(y1 > y) != (y2 > y)`` counts a vertex on the line once) is the
  winding number, which for a valid (multi)polygon is 1 inside G and 0 outside.
  Test points inside a band (in practice only points that sit on, or within 1e-10
  degrees of, the boundary: grid-aligned input) are decided by GEOS exactly.

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
  widened by EPS); among those, a crossing of the row's centre line that lies strictly
  inside the box by more than EPS is proof of a boundary point in B; the rest are
  decided by GEOS: ``relate(box, segment) = 'T********'`` against the original
  segments (never clipped copies, whose cut vertices would be rounded).

No step depends on ring orientation (rings are re-oriented), chunk size or worker
count: every decision is made per cell from the same float64 inputs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely

from tileindex.contract import check_predicate
from tileindex.geometry import CountryGeometry, Edges
from tileindex.grid import CellRuns, ColumnSegment, FloatArray, Grid, IntArray, Window

BoolArray = npt.NDArray[np.bool_]

# The rounding bound of a crossing is ~6u(|x1| + |x2 - x1|) ~ 7e-16 (|x1| + |x2 - x1|);
# 2^-40 (~9e-13) times a larger sum keeps a margin of > 1000x.
_EPS_SCALE = 2.0**-40


def _eps(x1: FloatArray, x2: FloatArray) -> FloatArray:
    return _EPS_SCALE * (np.abs(x1) + np.abs(x2) + np.abs(x2 - x1) + 1.0)


def mask_chunk(grid: Grid, window: Window, country: CountryGeometry, predicate: str) -> CellRuns:
    """Included cells of ``window`` for ``country`` under ``predicate`` (see module doc)."""
    check_predicate(predicate)
    h, w = window.height, window.width
    included = np.zeros((h, w), dtype=bool)
    in_hole = np.zeros((h, w), dtype=bool)
    if country.is_empty or h == 0 or w == 0:
        return CellRuns.from_mask(window, included, in_hole)

    rows = np.arange(window.row_start, window.row_stop, dtype=np.int64)
    rowset = _Rows(grid, rows)
    edges = _edges_in_rows(country.edges, rowset)
    for seg in grid.column_segments(window.col_start, window.col_stop):
        local = seg.cols - window.col_start
        inc, hole = _segment(country, edges, rowset, seg, predicate)
        c = seg.has_centroid
        # center looks at the centroid only; any_overlap at every piece of the cell
        if predicate == "center":
            included[:, local[c]] |= inc[:, c]
        else:
            included[:, local] |= inc
        in_hole[:, local[c]] |= hole[:, c]
    return CellRuns.from_mask(window, included, in_hole)


class _Rows:
    """Per-row test latitude and strip bounds, plus negated copies sorted ascending
    (rows run north to south, so y decreases with the row index)."""

    def __init__(self, grid: Grid, rows: IntArray) -> None:
        self.ty = grid.centroid_lat(rows)
        self.south, self.north = grid.lat_bounds(rows)
        self.n = rows.size
        # a centre line strictly inside its strip (always, unless e is near float resolution)
        self.strict = (self.south < self.ty) & (self.ty < self.north)


def _edges_in_rows(edges: Edges, rows: _Rows) -> Edges:
    ylo, yhi = float(rows.south.min()), float(rows.north.max())
    keep = (edges.ymax >= ylo) & (edges.ymin <= yhi)
    return edges.select(keep)


def _expand(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """All pairs (i, j) with lo[i] <= j < hi[i], vectorised."""
    counts = np.maximum(hi - lo, 0)
    idx = np.repeat(np.arange(lo.size), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    j = np.arange(idx.size) - starts + lo[idx]
    return idx, j


def _mark_ranges(shape: tuple[int, int], r: IntArray, k0: IntArray, k1: IntArray) -> BoolArray:
    """Boolean (h, n) mask with columns [k0, k1) of row r set, for each triple."""
    h, n = shape
    ok = k0 < k1
    diff = np.zeros((h, n + 1), dtype=np.int32)
    np.add.at(diff, (r[ok], k0[ok]), 1)
    np.add.at(diff, (r[ok], k1[ok]), -1)
    return np.cumsum(diff[:, :n], axis=1) > 0


def _segment(
    country: CountryGeometry, edges: Edges, rows: _Rows, seg: ColumnSegment, predicate: str
) -> tuple[BoolArray, BoolArray]:
    h, n = rows.n, seg.cols.size
    xs, bx0, bx1 = seg.test_x, seg.x0, seg.x1
    # segments wholly east of the segment can neither cross left of a test point nor meet a box
    east = np.minimum(edges.x1, edges.x2) > max(float(xs[-1]), float(bx1[-1])) + 1e-6
    e = edges.select(~east)

    # -- the centre line of every row: winding numbers and uncertainty bands ------------
    neg_ty = -rows.ty  # ascending
    r_lo = np.searchsorted(neg_ty, -e.ymax, side="left")
    r_hi = np.searchsorted(neg_ty, -e.ymin, side="right")
    ei, r = _expand(r_lo, r_hi)
    x1, y1, x2, y2 = e.x1[ei], e.y1[ei], e.x2[ei], e.y2[ei]
    y = rows.ty[r]
    horizontal = y1 == y2
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = np.where(horizontal, x1, x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    eps = _eps(x1, x2)
    band_lo = np.where(horizontal, np.minimum(x1, x2), xc) - eps
    band_hi = np.where(horizontal, np.maximum(x1, x2), xc) + eps
    band = _mark_ranges(
        (h, n),
        r,
        np.searchsorted(xs, band_lo, side="left"),
        np.searchsorted(xs, band_hi, side="right"),
    )

    crossing = (y1 > y) != (y2 > y)
    sign = np.where(y2 < y1, 1, -1).astype(np.int32)  # CCW shells cross a left ray downward
    k = np.searchsorted(xs, xc, side="right")  # first test point east of the crossing
    winding = np.zeros((h, n + 1), dtype=np.int32)
    shells = np.zeros((h, n + 1), dtype=np.int32)
    np.add.at(winding, (r[crossing], k[crossing]), sign[crossing])
    is_shell = e.is_shell[ei] & crossing
    np.add.at(shells, (r[is_shell], k[is_shell]), sign[is_shell])
    inside = np.cumsum(winding[:, :n], axis=1) > 0
    in_shell = np.cumsum(shells[:, :n], axis=1) > 0

    # exact decisions for test points in a band
    br, bc = np.nonzero(band)
    if br.size:
        px, py = xs[bc], rows.ty[br]
        exact_shell, exact_center = _exact_points(country, px, py)
        in_shell[br, bc] = exact_shell
        if predicate == "center":
            inside[br, bc] = exact_center
        else:
            inside[br, bc] = shapely.contains_xy(country.exact.geom, px, py)

    if predicate == "center":
        return inside, in_shell & ~inside

    # -- any_overlap: boxes the boundary may meet ---------------------------------------
    neg_south, neg_north = -rows.south, -rows.north  # ascending
    s_lo = np.searchsorted(neg_south, -e.ymax, side="left")  # strips with south <= ymax
    s_hi = np.searchsorted(neg_north, -e.ymin, side="right")  # strips with north >= ymin
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
    seps = _eps(sx1, sx2)
    lo = np.minimum(xa, xb) - seps
    hi = np.maximum(xa, xb) + seps
    candidate = _mark_ranges(
        (h, n),
        sr,
        np.searchsorted(bx1, lo, side="left"),  # first box with x1 >= lo
        np.searchsorted(bx0, hi, side="right"),  # boxes with x0 <= hi
    )

    # proof of a boundary point inside the open box: a centre-line crossing strictly
    # inside it by more than the rounding band, or a horizontal segment on the centre line
    proof = np.zeros((h, n), dtype=bool)
    sloped = ~horizontal & rows.strict[r]
    j = np.searchsorted(bx0, (xc - eps)[sloped], side="left") - 1
    rr = r[sloped]
    ok = (j >= 0) & (j < n)
    rr, j, xcs, es = rr[ok], j[ok], xc[sloped][ok], eps[sloped][ok]
    strictly = (bx0[j] < xcs - es) & (xcs + es < bx1[j])
    proof[rr[strictly], j[strictly]] = True
    flat_line = horizontal & rows.strict[r]
    proof |= _mark_ranges(
        (h, n),
        r[flat_line],
        np.searchsorted(bx1, np.minimum(x1, x2)[flat_line], side="right"),  # x1 > min
        np.searchsorted(bx0, np.maximum(x1, x2)[flat_line], side="left"),  # x0 < max
    )

    included = inside | (candidate & proof)
    todo_r, todo_c = np.nonzero(candidate & ~included)
    if todo_r.size:
        boxes = shapely.box(bx0[todo_c], rows.south[todo_r], bx1[todo_c], rows.north[todo_r])
        included[todo_r, todo_c] = _boundary_meets_open_box(country, boxes)
    return included, in_shell & ~included


def _exact_points(
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
    """Whether some boundary segment meets the interior of each box (GEOS relate)."""
    idx = country.exact
    b, s = idx.segment_tree.query(boxes, predicate="intersects")
    hit = shapely.relate_pattern(boxes[b], idx.segments[s], "T********")
    out = np.zeros(boxes.size, dtype=bool)
    out[b[hit]] = True
    return out
