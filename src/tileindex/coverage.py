"""Coverage fractions of boundary cells and the exact ``within`` test for cells
(docs/CONTRACT.md §10.2, §10.3). Arrays in, arrays out: no files, no logging set-up.

A cell's *pieces* are its box, or for a cell split at ±180 both of its pieces, at their
wrapped positions (``Grid.column_segments``). Its coverage fraction is
``area(cell ∩ G) / area(cell)`` in the plane of lon/lat degrees, summed over its pieces.
The work follows the boundary: it is proportional to the (segment x row) and (segment
piece x column) crossings of the rows asked about. Cells wholly inside G are meant to be
taken from the kernel's runs (they read exactly 1.0 here too, with a little more work).

How a fraction is computed
--------------------------
For a box ``B = [x0, x1] x [s, n]`` and a valid polygonal G whose shells run CCW and
holes CW (``Edges``), Green's theorem with the ray cast east gives, exactly::

    area(G ∩ B) = sum over ring segments of  ∫_segment (clamp(x, x0, x1) - x0) dy

(the winding number at (x, y) counts the signed crossings east of x; integrating it over
x in [x0, x1] gives ``clamp(xc, x0, x1) - x0`` per crossing). Each segment is handled on
its own, so there are no special cases: a segment on a cell edge, a vertex on a corner,
a horizontal segment (``dy = 0``: nothing) all fall out of the clamp. Per row strip a
segment is cut to its *strip piece*; in cell-local units ``U = (x - x0) / A`` (A the cell
width) and ``V = (y - s) / (n - s)`` the piece contributes

* to every cell piece wholly west of it (``x1 <= min x``): ``W * ΔV`` (W the piece's
  width / A, 1 for an unsplit cell) -- summed per strip as an exact integer prefix sum of
  ``ΔV`` rounded to a multiple of ``2^-52`` (int64 arithmetic mod 2^64 gives every
  difference of prefix sums exactly, as that sum, ``|Σ ΔV| <= 1 + the pieces crossing the
  cell's east meridian``, is far below 2^11), so the result does not depend on the
  summation order;
* to the cells it passes over: ``∫ clamp(U, 0, W) dV`` along the piece, split where U
  crosses 0 and W (a trapezoid plus an eastern rectangle);
* to cells east of it: nothing.

Why the result is within 1e-9 of the exact value
------------------------------------------------
V is computed from the strip-clipped y (a strip edge gives exactly 0 or 1) as
``(y - s) / (n - s)``: error ≤ 3u (u = 2^-53). U is computed from the nearer-anchored
segment endpoint, ``((x_anchor - x0) + (y - y_anchor) * slope) / A``, so its error is
≤ ~8u (1 + L), L the segment's extent in cell widths (not the magnitude of x, which is
what absolute coordinates would cost). The clamped integral is 1-Lipschitz in its
endpoints (in local units), so a local term errs by ≤ ~20u (1 + L) and a prefix term by
≤ 2^-53 + 6u per piece. With P pieces through a cell and N pieces in its strip the
error is ≤ ~20u P (1 + L) + 7u N -- below 1e-12 for Natural Earth borders on the 30"
grid, and below ``_EDGE = 1e-10`` while P (1 + L) ≤ 2e4 and N ≤ 5e4. (A cell split at
±180 adds the rounding of its wrapped edge, ≤ ulp(180) / A ≈ 3.4e-12 on the 30" grid.)

The two exact ends
------------------
A computed value within ``_EDGE`` of 0 or 1 is decided exactly, so that the published
value keeps the contract's two promises:

* ``> 0`` iff the cell is ``any_overlap`` (the interiors meet, decided like the kernel:
  a segment provably through the open box, else GEOS ``relate 'T********'``). An overlap
  whose computed value is ≤ 0 reads ``_TINY`` (the smallest *normal* float64: the exact
  value may be smaller -- a sub-ulp corner overlap has area ~1e-33 -- but a subnormal
  would read 0 in a reader that flushes denormals); a computed value ≤ ``_EDGE`` on a
  cell that does not overlap reads 0 (the exact value is then ≤ 2 * _EDGE).
* ``== 1.0`` iff the cell is ``within`` (below); any other value is at most
  ``nextafter(1, 0)``. A value below ``1 - _EDGE`` cannot be within (its exact value is
  below 1), so only values near 1 are tested.

``within`` (docs/CONTRACT.md §10.2): the closed cell lies in G iff, for every piece, no
boundary point of G lies in the open piece and some point of the piece is interior
(G is a regular closed set: every boundary point has exterior points arbitrarily near).
Segments that can meet a closed piece are found per strip with a rounding margin (as in
the kernel); a segment with points inside the open strip whose x-span overlaps the open
piece by more than the margin proves "not within"; the pieces no segment can meet are
decided by their test point (``contains_xy``, exact); the rest by GEOS ``covers`` of the
piece box on the prepared geometry -- GEOS semantics, the predicate's definition.

Every value depends only on the grid, the geometry and the cell, not on which other
cells are asked about in the same call (short of the float fallback of the prefix sums
past ``_FIXED_LIMIT``, which no valid border at a sane resolution reaches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from tileindex.geometry import CountryGeometry, Edges
from tileindex.grid import ColumnSegment, FloatArray, Grid, IntArray, Runs
from tileindex.kernel import crossing_margin

__all__ = [
    "BoundaryFractions",
    "boundary_candidates",
    "cell_fractions",
    "cells_within",
    "run_fractions",
]

BoolArray = npt.NDArray[np.bool_]

# A computed fraction this close to 0 or 1 is decided by an exact test (module doc).
_EDGE = 1e-10
# The smallest positive value of an overlapping cell (module doc).
_TINY = float(np.finfo(np.float64).tiny)
_BELOW_ONE = float(np.nextafter(1.0, 0.0))
_INTERIORS_MEET = "T********"
# Prefix sums of ΔV are exact integers in units of 2^-52, mod 2^64: exact for sums below
# 2^11 in magnitude (module doc); past _FIXED_LIMIT the float sum is used.
_FIXED = 2.0**52
_FIXED_LIMIT = 2.0**10


def cell_fractions(
    grid: Grid, geometry: CountryGeometry, rows: npt.ArrayLike, cols: npt.ArrayLike
) -> FloatArray:
    """Coverage fraction ``area(cell ∩ G) / area(cell)`` of each cell (rows[i], cols[i]).

    Within 1e-9 of the exact value, ``> 0`` iff the cell is ``any_overlap``, ``== 1.0``
    iff it is ``within`` (module doc). Cells may come in any order and repeat.
    """
    q = _Query.build(grid, rows, cols)
    out = np.zeros(q.n, dtype=np.float64)
    if geometry.is_empty or q.n == 0:
        return out[q.inverse]
    pieces = _pieces(grid, q)
    sp = _strip_pieces(geometry.edges, q)
    for p in pieces:
        out += np.bincount(p.cell, weights=_piece_fractions(sp, q, p), minlength=q.n)
    out = np.clip(out, 0.0, 1.0)

    low = np.flatnonzero(out <= _EDGE)
    if low.size:
        meets = _decide(geometry, q, pieces, low, within=False)
        out[low] = np.where(meets, np.maximum(out[low], _TINY), 0.0)
    high = np.flatnonzero(out >= 1.0 - _EDGE)
    if high.size:
        within = _decide(geometry, q, pieces, high, within=True)
        out[high] = np.where(within, 1.0, np.minimum(out[high], _BELOW_ONE))
    return out[q.inverse]


def cells_within(
    grid: Grid, geometry: CountryGeometry, rows: npt.ArrayLike, cols: npt.ArrayLike
) -> BoolArray:
    """Whether each closed cell (rows[i], cols[i]) -- every piece of it -- lies in G
    (interior or boundary), decided exactly with GEOS semantics (module doc)."""
    q = _Query.build(grid, rows, cols)
    if geometry.is_empty or q.n == 0:
        return np.zeros(q.inverse.size, dtype=bool)
    pieces = _pieces(grid, q)
    return _decide(geometry, q, pieces, np.arange(q.n), within=True)[q.inverse]


# -- the cells asked about ------------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    """The distinct cells asked about, with their rows' strips.

    ``row``/``col``: the distinct cells (sorted by tile id); ``inverse`` maps the caller's
    order onto them; ``urows`` are the distinct rows (ascending, so y descends) and
    ``ridx`` each cell's index in them.
    """

    row: IntArray
    col: IntArray
    inverse: IntArray
    urows: IntArray
    ridx: IntArray
    south: FloatArray
    north: FloatArray
    test_y: FloatArray

    @property
    def n(self) -> int:
        return int(self.row.size)

    @classmethod
    def build(cls, grid: Grid, rows: npt.ArrayLike, cols: npt.ArrayLike) -> _Query:
        r = np.asarray(rows, dtype=np.int64).ravel()
        c = np.asarray(cols, dtype=np.int64).ravel()
        if r.shape != c.shape:
            raise ValueError(f"rows and cols differ in length ({r.size} != {c.size})")
        bad = (r < 0) | (r >= grid.nrows) | (c < 0) | (c >= grid.ncols)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"cell (row {int(r[i])}, col {int(c[i])}) is outside the grid "
                f"({grid.nrows} rows x {grid.ncols} cols)"
            )
        key, inverse = np.unique(r * grid.ncols + c, return_inverse=True)
        row, col = np.divmod(key, grid.ncols)
        urows, ridx = np.unique(row, return_inverse=True)
        south, north = grid.lat_bounds(urows)
        return cls(
            row, col, inverse.ravel(), urows, ridx.ravel(), south, north, grid.centroid_lat(urows)
        )


@dataclass(frozen=True)
class _Pieces:
    """The pieces of the asked cells that lie in one column segment (one longitude shift).

    ``cell``: index of the cell in the query; ``k``: the piece's index in ``seg``.
    """

    seg: ColumnSegment
    width: FloatArray  # the full cell width A of each column of ``seg``
    cell: IntArray
    k: IntArray


def _pieces(grid: Grid, q: _Query) -> list[_Pieces]:
    # the whole grid's columns, so that which pieces are "west of" a strip piece (the
    # prefix sums) does not depend on which cells are asked about
    out = []
    for seg in grid.column_segments(0, grid.ncols):
        pos = np.searchsorted(seg.cols, q.col)
        pos = np.minimum(pos, seg.cols.size - 1)
        here = seg.cols[pos] == q.col
        x0, x1 = grid.raw_x_edges(seg.cols)
        out.append(_Pieces(seg, x1 - x0, np.flatnonzero(here), pos[here]))
    return out


def _pairs(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """All (i, j) with lo[i] <= j < hi[i], in order of i then j."""
    counts = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(lo.size), counts)
    j = np.arange(i.size) - np.repeat(np.cumsum(counts) - counts, counts) + lo[i]
    return i, j


# -- fractions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StripPieces:
    """Each non-horizontal segment cut to each strip whose interior it crosses.

    An endpoint's x is ``anchor + dx`` (the anchor a segment vertex, ``dx`` the
    interpolated offset from it, 0 at a vertex); ``v0``/``v1`` are the local V of the
    piece's start and end (in the segment's direction).
    """

    strip: IntArray
    ax0: FloatArray
    dx0: FloatArray
    ax1: FloatArray
    dx1: FloatArray
    v0: FloatArray
    v1: FloatArray

    @property
    def xmin(self) -> FloatArray:
        return np.minimum(self.ax0 + self.dx0, self.ax1 + self.dx1)

    @property
    def xmax(self) -> FloatArray:
        return np.maximum(self.ax0 + self.dx0, self.ax1 + self.dx1)


def _strip_pieces(edges: Edges, q: _Query) -> _StripPieces:
    e = edges.select(edges.y1 != edges.y2)  # dy = 0: no contribution
    s_desc, n_desc = -q.south, -q.north  # ascend with the row index
    lo = np.searchsorted(s_desc, -e.ymax, side="right")  # strips with south < ymax
    hi = np.searchsorted(n_desc, -e.ymin, side="left")  # strips with north > ymin
    ei, ri = _pairs(lo, hi)
    x1, y1, x2, y2 = e.x1[ei], e.y1[ei], e.x2[ei], e.y2[ei]
    s, n = q.south[ri], q.north[ri]
    ya, yb = np.clip(y1, s, n), np.clip(y2, s, n)
    slope = (x2 - x1) / (y2 - y1)
    # anchor each end at the nearer vertex of the segment
    a_start = np.abs(ya - y1) <= np.abs(ya - y2)
    a_end = np.abs(yb - y1) < np.abs(yb - y2)
    ax0 = np.where(a_start, x1, x2)
    dx0 = np.where(a_start, (ya - y1) * slope, (ya - y2) * slope)
    ax1 = np.where(a_end, x1, x2)
    dx1 = np.where(a_end, (yb - y1) * slope, (yb - y2) * slope)
    h = n - s
    return _StripPieces(ri, ax0, dx0, ax1, dx1, (ya - s) / h, (yb - s) / h)


def _piece_fractions(sp: _StripPieces, q: _Query, p: _Pieces) -> FloatArray:
    """area(piece ∩ G) / area(cell) of each piece in ``p`` (module doc)."""
    seg = p.seg
    n = seg.cols.size
    if p.cell.size == 0 or sp.strip.size == 0:
        return np.zeros(p.cell.size)
    width = (seg.x1 - seg.x0) / p.width  # W per column piece
    prow = q.ridx[p.cell]  # strip of each asked piece
    # -- pieces wholly west of a strip piece: exact integer prefix sums of ΔV per strip --
    first = np.searchsorted(seg.x1, sp.xmin, side="right")  # columns with x1 <= xmin
    dv_float = sp.v1 - sp.v0
    dv = np.rint(dv_float * _FIXED).astype(np.int64)
    key = sp.strip * (n + 1) + first
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    below = np.searchsorted(key_sorted, prow * (n + 1) + p.k, side="right")
    upto = np.searchsorted(key_sorted, prow * (n + 1) + n, side="right")
    cum = np.concatenate([[0], np.cumsum(dv[order])])  # wraps mod 2^64; differences exact
    west = (cum[upto] - cum[below]).astype(np.float64) / _FIXED
    # exact while |sum| < 2^11; beyond (over ~1000 pieces across one meridian of one
    # strip) the float sum, which is then still within ~1e-12
    cum_f = np.concatenate([[0.0], np.cumsum(dv_float[order])])
    west_f = cum_f[upto] - cum_f[below]
    west = np.where(np.abs(west_f) < _FIXED_LIMIT, west, west_f)
    frac = width[p.k] * west

    # -- the cells a strip piece passes over --------------------------------------------
    last = np.searchsorted(seg.x0, sp.xmax, side="left")  # columns with x0 < xmax
    pi, k = _pairs(first, last)
    asked_key = prow * n + p.k
    order_q = np.argsort(asked_key)
    sorted_q = asked_key[order_q]
    pair_key = sp.strip[pi] * n + k
    at = np.minimum(np.searchsorted(sorted_q, pair_key), sorted_q.size - 1)
    hit = sorted_q[at] == pair_key
    pi, k, target = pi[hit], k[hit], order_q[at[hit]]
    a, x0 = p.width[k], seg.x0[k]
    u0 = ((sp.ax0[pi] - x0) + sp.dx0[pi]) / a
    u1 = ((sp.ax1[pi] - x0) + sp.dx1[pi]) / a
    local = _clamped_integral(u0, sp.v0[pi], u1, sp.v1[pi], width[k])
    return frac + np.bincount(target, weights=local, minlength=p.cell.size)


def _clamped_integral(
    u0: FloatArray, v0: FloatArray, u1: FloatArray, v1: FloatArray, w: FloatArray
) -> FloatArray:
    """∫ clamp(U, 0, w) dV along each straight piece (u0, v0) -> (u1, v1)."""
    du, dv = u1 - u0, v1 - v0
    flat = du == 0.0
    safe = np.where(flat, 1.0, du)
    t0 = np.clip(-u0 / safe, 0.0, 1.0)  # where U = 0
    tw = np.clip((w - u0) / safe, 0.0, 1.0)  # where U = w
    lo, hi = np.minimum(t0, tw), np.maximum(t0, tw)
    u_lo = np.clip(u0 + lo * du, 0.0, w)
    u_hi = np.clip(u0 + hi * du, 0.0, w)
    inside = 0.5 * (u_lo + u_hi) * ((hi - lo) * dv)
    east = w * (np.where(du > 0.0, 1.0 - tw, tw) * dv)  # the part with U >= w
    return np.where(flat, np.clip(u0, 0.0, w) * dv, inside + east)


# -- exact decisions at the two ends ------------------------------------------------------


@dataclass(frozen=True)
class _Contacts:
    """Per asked piece: whether a segment may meet the closed piece (``near``) and
    whether one provably has a point in the open piece (``through``)."""

    near: BoolArray
    through: BoolArray


def _contacts(edges: Edges, q: _Query, p: _Pieces, cells: IntArray) -> _Contacts:
    """Contacts of the pieces of ``p`` whose cell is in ``cells`` (sorted), in ``p`` order
    restricted to those pieces."""
    sel = np.isin(p.cell, cells)
    k_asked, strip_asked = p.k[sel], q.ridx[p.cell[sel]]
    near = np.zeros(k_asked.size, dtype=bool)
    through = np.zeros(k_asked.size, dtype=bool)
    if k_asked.size == 0 or len(edges) == 0:
        return _Contacts(near, through)
    seg, n = p.seg, p.seg.cols.size
    lo = np.searchsorted(-q.south, -edges.ymax, side="left")  # strips with south <= ymax
    hi = np.searchsorted(-q.north, -edges.ymin, side="right")  # strips with north >= ymin
    ei, ri = _pairs(lo, hi)
    x1, y1, x2, y2 = edges.x1[ei], edges.y1[ei], edges.x2[ei], edges.y2[ei]
    s, nn = q.south[ri], q.north[ri]
    ymin, ymax = np.minimum(y1, y2), np.maximum(y1, y2)
    ya, yb = np.clip(s, ymin, ymax), np.clip(nn, ymin, ymax)
    flat = y1 == y2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (x2 - x1) / (y2 - y1)
        xa = np.where(flat, x1, x1 + (ya - y1) * slope)
        xb = np.where(flat, x2, x1 + (yb - y1) * slope)
    xlo, xhi = np.minimum(xa, xb), np.maximum(xa, xb)
    m = crossing_margin(x1, x2)  # the kernel's rounding margin
    pi, k = _pairs(
        np.searchsorted(seg.x1, xlo - m, side="left"),  # pieces with x1 >= xlo - m
        np.searchsorted(seg.x0, xhi + m, side="right"),  # pieces with x0 <= xhi + m
    )
    asked_key = strip_asked * n + k_asked
    order_q = np.argsort(asked_key)
    sorted_q = asked_key[order_q]
    pair_key = ri[pi] * n + k
    at = np.minimum(np.searchsorted(sorted_q, pair_key), sorted_q.size - 1)
    hit = sorted_q[at] == pair_key
    pi, k, target = pi[hit], k[hit], order_q[at[hit]]
    near[target] = True

    # a point of the segment in the open piece: it has points inside the open strip and
    # its x-span there overlaps the open piece by more than the rounding (vertical and
    # horizontal segments need no arithmetic and are compared exactly)
    b0, b1 = seg.x0[k], seg.x1[k]
    lo_x, hi_x, mm = xlo[pi], xhi[pi], m[pi]
    in_strip = np.where(flat, (s < y1) & (y1 < nn), ya < yb)[pi]
    overlap = np.where(
        (x1 == x2)[pi],
        (b0 < lo_x) & (lo_x < b1),
        np.where(
            flat[pi],
            np.maximum(lo_x, b0) < np.minimum(hi_x, b1),
            np.maximum(lo_x, b0) + mm < np.minimum(hi_x, b1) - mm,
        ),
    )
    through[target[in_strip & overlap]] = True
    return _Contacts(near, through)


def _meets_open(geometry: CountryGeometry, boxes: npt.NDArray[np.object_]) -> BoolArray:
    return np.asarray(
        shapely.relate_pattern(geometry.exact.geom, boxes, _INTERIORS_MEET), dtype=bool
    )


def _covered(geometry: CountryGeometry, boxes: npt.NDArray[np.object_]) -> BoolArray:
    return np.asarray(shapely.covers(geometry.exact.geom, boxes), dtype=bool)


def _decide(
    geometry: CountryGeometry, q: _Query, pieces: list[_Pieces], cells: IntArray, within: bool
) -> BoolArray:
    """For the query cells ``cells`` (sorted): ``within`` (every closed piece lies in G)
    if ``within``, else ``any_overlap`` (some open piece meets the interior of G), decided
    exactly per piece."""
    out = np.full(cells.size, within, dtype=bool)
    decided_any = np.zeros(cells.size, dtype=bool)
    for p in pieces:
        sel = np.isin(p.cell, cells)
        cell, k = p.cell[sel], p.k[sel]
        if cell.size == 0:
            continue
        c = _contacts(geometry.edges, q, p, cells)
        ridx = q.ridx[cell]
        verdict = np.zeros(cell.size, dtype=bool)
        # no segment can meet the closed piece: it is wholly interior or exterior
        far = ~c.near
        if far.any():
            verdict[far] = shapely.contains_xy(
                geometry.exact.geom, p.seg.test_x[k[far]], q.test_y[ridx[far]]
            )
        verdict[c.through] = not within  # a boundary point in the open piece
        todo = c.near & ~c.through
        if todo.any():
            boxes = shapely.box(
                p.seg.x0[k[todo]], q.south[ridx[todo]], p.seg.x1[k[todo]], q.north[ridx[todo]]
            )
            test = _covered if within else _meets_open
            verdict[todo] = test(geometry, boxes)
        idx = np.searchsorted(cells, cell)
        if within:
            np.logical_and.at(out, idx, verdict)
        else:
            np.logical_or.at(out, idx, verdict)
        decided_any[idx] = True
    # a cell with no piece (narrower than float resolution) has no area and no interior
    out[~decided_any] = False
    return out


# -- the cells of runs that need an area (docs/CONTRACT.md §10.3) ---------------------------


def boundary_candidates(grid: Grid, geometry: CountryGeometry, rows: IntArray) -> IntArray:
    """Sorted unique tile ids of every cell of ``rows`` whose closed box -- any piece of
    it -- a boundary segment of G might touch, plus every cell that is not one whole
    piece (split at ±180, or cut narrower by float resolution).

    Conservative by construction: per closed row strip ``[s, n]`` a segment's x-range
    there is computed from its clipped y-range and widened by the rounding margin
    (``kernel.crossing_margin``, > 1000x the interpolation error), and every piece whose
    closed x-range meets that widened range is a candidate. So a cell that is *not* a
    candidate has no boundary point of G in its closed box: the box is wholly interior or
    wholly exterior to G, and an included cell is wholly interior, i.e. ``within``, whose
    fraction is
    exactly 1.0 with no arithmetic. The work is proportional to the (segment x strip)
    pairs and the candidates, i.e. it follows the boundary.
    """
    r = np.unique(np.asarray(rows, dtype=np.int64))
    if r.size == 0 or geometry.is_empty:
        return np.empty(0, dtype=np.int64)
    south, north = grid.lat_bounds(r)
    e = geometry.edges
    e = e.select((e.ymax >= south.min()) & (e.ymin <= north.max()))
    # strips with south <= ymax and north >= ymin (both ascend when negated)
    lo = np.searchsorted(-south, -e.ymax, side="left")
    hi = np.searchsorted(-north, -e.ymin, side="right")
    ei, ri = _pairs(lo, hi)
    x1, y1, x2, y2 = e.x1[ei], e.y1[ei], e.x2[ei], e.y2[ei]
    ymin, ymax = np.minimum(y1, y2), np.maximum(y1, y2)
    ya = np.clip(south[ri], ymin, ymax)
    yb = np.clip(north[ri], ymin, ymax)
    flat = y1 == y2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (x2 - x1) / (y2 - y1)
        xa = np.where(flat, x1, x1 + (ya - y1) * slope)
        xb = np.where(flat, x2, x1 + (yb - y1) * slope)
    m = crossing_margin(x1, x2)
    xlo, xhi = np.minimum(xa, xb) - m, np.maximum(xa, xb) + m
    keys = []
    pieces = np.zeros(grid.ncols, dtype=np.int64)  # pieces per column
    cut = np.zeros(grid.ncols, dtype=bool)  # a piece narrower than its cell
    for seg in grid.column_segments(0, grid.ncols):
        k0 = np.searchsorted(seg.x1, xlo, side="left")  # first piece with x1 >= xlo
        k1 = np.searchsorted(seg.x0, xhi, side="right")  # pieces with x0 <= xhi
        pi, k = _pairs(k0, k1)
        keys.append(r[ri[pi]] * grid.ncols + seg.cols[k])
        rx0, rx1 = grid.raw_x_edges(seg.cols)
        pieces[seg.cols] += 1
        cut[seg.cols] |= (seg.x1 - seg.x0) != (rx1 - rx0)
    # a column with no piece, several, or a cut one: always computed
    odd = np.flatnonzero((pieces != 1) | cut)
    if odd.size:
        keys.append((r[:, None] * grid.ncols + odd[None, :]).ravel())
    return np.unique(np.concatenate(keys))


@dataclass(frozen=True, eq=False)
class BoundaryFractions:
    """The fractions of a stream of cells that are not 1.0 by proof: ``value[i]`` is the
    fraction of the cell at position ``pos[i]`` of the stream (ascending); every other
    cell's fraction is exactly 1.0 (docs/CONTRACT.md §10.3). 16 bytes per boundary cell,
    nothing per interior cell."""

    pos: IntArray
    value: FloatArray

    @classmethod
    def empty(cls) -> BoundaryFractions:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.pos.size)

    @classmethod
    def concat(cls, parts: list[tuple[int, BoundaryFractions]]) -> BoundaryFractions:
        """One stream from (offset of the part's first cell, part) in stream order."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.pos + off for off, p in parts]).astype(np.int64),
            np.concatenate([p.value for _, p in parts]).astype(np.float64),
        )

    def slice(self, start: int, stop: int) -> BoundaryFractions:
        """The cells at positions [start, stop), renumbered from ``start``."""
        i0, i1 = np.searchsorted(self.pos, [start, stop], side="left")
        return BoundaryFractions(self.pos[i0:i1] - start, self.value[i0:i1])

    def dense(self, n: int) -> FloatArray:
        """The fractions of the first ``n`` cells of the stream."""
        out = np.ones(n, dtype=np.float64)
        sel = self.pos < n
        out[self.pos[sel]] = self.value[sel]
        return out


def run_fractions(grid: Grid, geometry: CountryGeometry, runs: Runs) -> BoundaryFractions:
    """The cells of one country's ``runs`` (sorted by tile id, disjoint) that are not
    provably ``within`` G (:func:`boundary_candidates`), with their fractions, numbered by
    position in the runs' cell stream. Every other cell of the runs reads exactly 1.0
    (docs/CONTRACT.md §10.3)."""
    keep = runs.col1 > runs.col0
    row, c0, c1 = runs.row[keep], runs.col0[keep], runs.col1[keep]
    if row.size == 0:
        return BoundaryFractions.empty()
    cand = boundary_candidates(grid, geometry, row)
    start = row * grid.ncols + c0
    stop = row * grid.ncols + c1
    i = np.searchsorted(start, cand, side="right") - 1
    ok = i >= 0
    ok[ok] = cand[ok] < stop[i[ok]]
    cand, i = cand[ok], i[ok]
    before = np.concatenate([[0], np.cumsum(c1 - c0)[:-1]])
    pos = before[i] + (cand - start[i])
    r, c = np.divmod(cand, grid.ncols)
    return BoundaryFractions(pos.astype(np.int64), cell_fractions(grid, geometry, r, c))
