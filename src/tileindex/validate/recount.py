"""The independent recount: the cells a predicate includes for a country, by a method of its
own (never the build's kernel), streamed in row blocks so memory is O(block).

How inclusion is re-decided (the recount)
-----------------------------------------
Every predicate changes value only across the boundary of the country (any ring of any
part), so along a row the decision is constant on every stretch the boundary does not
meet. For each row and each ring segment, the x-range where the segment can meet the
row (its crossing of the centre line for ``center``, its extent inside the row's strip
for ``any_overlap``) is computed and widened by a margin (``_margin``) more than a
thousand times the float64 rounding error of that interpolation. Cells touched by such
a range are *dirty* and decided one by one, exactly; each clean stretch is decided by
one exact test of one of its points. GEOS point-in-polygon (``intersects_xy``,
``contains_xy``) is exact: it decides with robust orientation signs.

* ``center``: a dirty range also dirties the neighbour centroid on each side, so the
  gap between the last dirty centroid and a clean one never holds a boundary point and
  a clean centroid takes the value of its dirty left neighbour (which is off the
  boundary, see ``_center_block``). Test per centroid: ``intersects_xy(G)`` (closed),
  then, for a centroid on the ring of a hole, the per-part rule (closed shell, open
  holes).
* ``any_overlap``: for a valid polygon the open cell meets the interior of G iff a
  boundary point lies in the open cell or the cell lies inside G. A dirty cell (or
  piece of a cell split at ±180) is included when a ring vertex lies strictly inside
  it, else when its midpoint is interior to G (``contains_xy``), else when one of the
  segments that made it dirty passes through the open cell
  (``_segment_meets_open_box``; a contact below float resolution is decided by GEOS
  ``relate`` on the country, docs/CONTRACT.md §5's "GEOS-exact" reference). A clean stretch lies
  wholly inside or wholly outside G; its midpoint decides.
* ``within`` (docs/CONTRACT.md §10.2): the dirty and clean cells of ``any_overlap``. G is
  the closure of its interior, so a closed cell (piece) lies in G iff no boundary point
  lies in the open cell and its midpoint is interior. A dirty piece is refuted by a
  ring vertex strictly inside it, a midpoint not interior (``contains_xy``) or a segment
  through the open cell (``_segment_meets_open_box``); a contact below float resolution
  is decided by GEOS ``covers`` on the prepared country (the engines' reference); the
  rest are within. A clean stretch: its midpoint decides, as above. A cell split at
  ±180 is within iff each of its pieces is (``_whole_cells``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import shapely

from tileindex.geometry import CountryGeometry
from tileindex.grid import Grid
from tileindex.validate.axes import Axes, BoolArray, FloatArray, IntArray, U64Array
from tileindex.validate.shape import Shape

_BLOCK_CELLS = 1 << 21  # cells of one recount block (bounds its memory)


def _margin(x1: FloatArray, x2: FloatArray) -> FloatArray:
    """Widening of an interpolated x: ``x1 + t (x2 - x1)`` with ``t`` from two float
    operations is within ~6u(|x1| + |x2 - x1|) of the truth (u = 2^-53, ~1.1e-16);
    1e-12 times a larger sum keeps a margin of over a thousand."""
    return 1e-12 * (1.0 + np.abs(x1) + np.abs(x2) + np.abs(x2 - x1))


def _expand(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """Pairs (k, j) for every k and lo[k] <= j < hi[k]."""
    n = np.maximum(hi - lo, 0)
    k = np.repeat(np.arange(lo.size), n)
    j = np.arange(k.size) - np.repeat(np.cumsum(n) - n, n) + lo[k]
    return k, j


def center_ids(axes: Axes, shape: Shape) -> Iterator[U64Array]:
    """Tile ids the ``center`` rule includes, ascending, in row blocks."""
    if shape.empty:
        return
    neg = -axes.lat  # ascending
    r0 = int(np.searchsorted(neg, -shape.yhi, side="left"))
    r1 = int(np.searchsorted(neg, -shape.ylo, side="right"))
    lon = axes.lon_sorted
    spans = [
        np.arange(np.searchsorted(lon, lo, "left"), np.searchsorted(lon, hi, "right"))
        for lo, hi in shape.intervals
    ]
    pos = np.unique(np.concatenate(spans)) if spans else np.empty(0, dtype=np.int64)
    w = pos.size
    if w == 0 or r0 >= r1:
        return
    xs, cols = lon[pos], axes.lon_cols[pos]
    starts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1] + 1)))
    step = max(1, _BLOCK_CELLS // w)
    for b0 in range(r0, r1, step):
        yield _center_block(axes, shape, b0, min(b0 + step, r1), xs, cols, starts)


def _center_block(
    axes: Axes,
    shape: Shape,
    b0: int,
    b1: int,
    xs: FloatArray,
    cols: IntArray,
    starts: IntArray,
) -> U64Array:
    """Rows [b0, b1). A centroid is dirty when a segment's crossing of its row (widened by
    ``_margin``) reaches it or the gap next to it; the range is extended by one centroid
    on each side. The first centroid of each stretch of contiguous columns is tested too.
    Every other centroid is clean, and its left neighbour is never within a crossing range
    (the extension would have dirtied the clean one): the neighbour is off the boundary
    and the gap between them holds no crossing, so both have the same value. Hence each
    clean stretch takes the value of the tested centroid before it."""
    h, w = b1 - b0, xs.size
    lat = axes.lat[b0:b1]
    sel = (shape.ymax >= lat[-1]) & (shape.ymin <= lat[0])
    x1, y1, x2, y2 = shape.x1[sel], shape.y1[sel], shape.x2[sel], shape.y2[sel]
    lo = np.searchsorted(-lat, -shape.ymax[sel], side="left")
    hi = np.searchsorted(-lat, -shape.ymin[sel], side="right")
    k, r = _expand(lo, hi)
    y = lat[r]
    x1k, y1k, x2k, y2k = x1[k], y1[k], x2[k], y2[k]
    flat = y1k == y2k
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x1k + (y - y1k) * (x2k - x1k) / (y2k - y1k)
    m = _margin(x1k, x2k)
    xlo = np.where(flat, np.minimum(x1k, x2k), xc) - m
    xhi = np.where(flat, np.maximum(x1k, x2k), xc) + m
    a = np.maximum(np.searchsorted(xs, xlo, side="left") - 1, 0)
    b = np.minimum(np.searchsorted(xs, xhi, side="right") + 1, w)
    sr = np.repeat(np.arange(h), starts.size)
    sa = np.tile(starts, h)
    rr, aa, bb = _merge_ranges(
        np.concatenate((r, sr)), np.concatenate((a, sa)), np.concatenate((b, sa + 1))
    )
    ends = _next_start(rr, aa, w)
    kk, jj = _expand(aa, bb)
    value = shape.center_exact(xs[jj], lat[rr[kk]])
    run_r, run_a, run_b = _true_runs(rr[kk], jj, value)
    last = value[np.cumsum(bb - aa) - 1]
    keep = last & (bb < ends)
    return _ids(
        axes,
        b0,
        cols,
        np.concatenate((run_r, rr[keep])),
        np.concatenate((run_a, bb[keep])),
        np.concatenate((run_b, ends[keep])),
    )


def _segment_meets_open_box(
    px: FloatArray,
    py: FloatArray,
    qx: FloatArray,
    qy: FloatArray,
    x0: FloatArray,
    y0: FloatArray,
    x1: FloatArray,
    y1: FloatArray,
) -> tuple[BoolArray, BoolArray]:
    """Whether segment PQ meets the open box (x0, x1) x (y0, y1), and where that is
    too close to call in float64.

    Liang-Barsky: the parameters t in [0, 1] with P + t (Q - P) inside the open box form
    an interval (lo, hi) (its ends at t = 0 or 1 cannot be attained unless inside), so
    the answer is lo < hi. Each bound ``(a - p) / d`` is computed with two roundings, so
    within 2.3u relative (u = 2^-53) of the truth; when lo and hi are closer than
    1e-15 relative (~9u) the pair is *unsure*: a contact below float resolution, which
    the caller hands to GEOS ``relate`` on the whole country (docs/CONTRACT.md §5's
    reference, "GEOS-exact semantics"; exact rational arithmetic can disagree with it
    there).
    """
    lo = np.zeros(px.size)
    hi = np.ones(px.size)
    ok = np.ones(px.size, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q, a, b in ((px, qx, x0, x1), (py, qy, y0, y1)):
            d = q - p
            still = d == 0
            ok &= ~still | ((a < p) & (p < b))
            ta, tb = (a - p) / d, (b - p) / d
            lo = np.where(still, lo, np.maximum(lo, np.minimum(ta, tb)))
            hi = np.where(still, hi, np.minimum(hi, np.maximum(ta, tb)))
    unsure = ok & (np.abs(hi - lo) <= 1e-15 * (np.abs(lo) + np.abs(hi)))
    return ok & (lo < hi) & ~unsure, unsure


def _member(keys: IntArray, sorted_set: IntArray) -> BoolArray:
    i = np.minimum(np.searchsorted(sorted_set, keys), max(sorted_set.size - 1, 0))
    return sorted_set[i] == keys if sorted_set.size else np.zeros(keys.size, dtype=bool)


def _merge_ranges(r: IntArray, a: IntArray, b: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Union of the ranges [a, b) of each row r, as sorted disjoint ranges."""
    ok = a < b
    r, a, b = r[ok], a[ok], b[ok]
    if r.size == 0:
        return r, a, b
    order = np.lexsort((a, r))
    r, a, b = r[order], a[order], b[order]
    # running end of the ranges so far in the row: a range that starts beyond it opens a
    # new merged range
    key = r * (int(b.max()) + 2)
    reach = np.maximum.accumulate(key + b)
    new = np.ones(r.size, dtype=bool)
    new[1:] = (key[1:] + a[1:]) > reach[:-1]
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:], [r.size])) - 1
    return r[first], a[first], reach[last] - key[last]


def _next_start(r: IntArray, a: IntArray, w: int) -> IntArray:
    """For sorted disjoint ranges: the start of the next range in the same row, else w."""
    nxt = np.full(r.size, w, dtype=np.int64)
    same = r[1:] == r[:-1]
    nxt[:-1][same] = a[1:][same]
    return nxt


def _true_runs(r: IntArray, j: IntArray, value: BoolArray) -> tuple[IntArray, IntArray, IntArray]:
    """Runs [a, b) of True cells, cells given in (row, position) order."""
    adjacent = np.zeros(r.size, dtype=bool)
    adjacent[1:] = (r[1:] == r[:-1]) & (j[1:] == j[:-1] + 1)
    cont = np.zeros(r.size, dtype=bool)
    cont[1:] = adjacent[1:] & value[:-1]
    begin = np.flatnonzero(value & ~cont)
    stop_next = np.zeros(r.size, dtype=bool)
    stop_next[:-1] = adjacent[1:] & value[1:]
    end = np.flatnonzero(value & ~stop_next)
    return r[begin], j[begin], j[end] + 1


def _ids(
    axes: Axes,
    b0: int,
    cols: IntArray,
    r: IntArray,
    a: IntArray,
    b: IntArray,
    unique: bool = True,
) -> U64Array:
    """Tile ids of the cells of runs [a, b) (window positions) of rows b0 + r, ascending
    (with ``unique`` False: one id per piece, in row order)."""
    order = np.lexsort((a, r))
    k, j = _expand(a[order], b[order])
    rows = (r[order][k] + b0).astype(np.uint64)
    ids = rows * np.uint64(axes.grid.ncols) + cols[j].astype(np.uint64)
    return _ascending(ids) if unique else ids


def _ascending(ids: U64Array) -> U64Array:
    """Ascending and unique (only cells split at ±180 come out of order, or twice)."""
    if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        ids = np.sort(ids, kind="stable")  # timsort: linear on nearly sorted input
        ids = ids[np.concatenate(([True], ids[1:] != ids[:-1]))]
    return ids


def overlap_window(axes: Axes, shape: Shape) -> tuple[int, int, IntArray]:
    """Rows whose strip and pieces whose x-range meet some part's bounding box."""
    r0 = int(np.searchsorted(-axes.south, -shape.yhi, side="left"))
    r1 = int(np.searchsorted(-axes.north, -shape.ylo, side="right"))
    n = axes.piece_x0.size
    keep = np.zeros(n, dtype=bool)
    for lo, hi in shape.intervals:
        if axes.pieces_sorted:
            a = int(np.searchsorted(axes.piece_x1, lo, "left"))
            b = int(np.searchsorted(axes.piece_x0, hi, "right"))
            keep[a:b] = True
        else:
            keep |= (axes.piece_x1 >= lo) & (axes.piece_x0 <= hi)
    return r0, r1, np.flatnonzero(keep)


def overlap_ids(axes: Axes, shape: Shape, within: bool = False) -> Iterator[U64Array]:
    """Tile ids the ``any_overlap`` rule includes (with ``within``: the ``within``
    rule), ascending, in row blocks."""
    if shape.empty:
        return
    r0, r1, pk = overlap_window(axes, shape)
    w = pk.size
    if w == 0 or r0 >= r1:
        return
    px0, px1 = axes.piece_x0[pk], axes.piece_x1[pk]
    mid, cols = axes.piece_mid[pk], axes.piece_col[pk]
    # a stretch of clean cells is one closed rectangle only where the pieces abut
    breaks = np.flatnonzero(
        np.concatenate(([True], (pk[1:] != pk[:-1] + 1) | (px0[1:] != px1[:-1])))
    )
    # ring vertices strictly inside a cell: proof that the boundary meets its interior
    vr = np.searchsorted(-axes.north, -shape.vy, side="left") - 1
    vp = np.searchsorted(px0, shape.vx, side="left") - 1
    ok = (vr >= 0) & (vp >= 0)
    vr, vp = vr[ok], vp[ok]
    inside = (axes.south[vr] < shape.vy[ok]) & (shape.vx[ok] < px1[vp])
    proof = np.unique(vr[inside] * w + vp[inside])
    step = max(1, _BLOCK_CELLS // w)
    for b0 in range(r0, r1, step):
        b1 = min(b0 + step, r1)
        sel = proof[(proof >= b0 * w) & (proof < b1 * w)] - b0 * w
        ids = _overlap_block(axes, shape, b0, b1, px0, px1, mid, cols, breaks, sel, within)
        yield _whole_cells(axes, ids) if within else _ascending(ids)


def within_ids(axes: Axes, shape: Shape) -> Iterator[U64Array]:
    """Tile ids the ``within`` rule includes, ascending, in row blocks."""
    return overlap_ids(axes, shape, within=True)


def _whole_cells(axes: Axes, ids: U64Array) -> U64Array:
    """The cells all of whose pieces are among ``ids`` (one id per within piece): a cell
    split at ±180 is within only if both pieces are (a piece outside the window was not
    visited: it lies outside every part's bounding box, so it is not within)."""
    if ids.size == 0:
        return ids
    cells, count = np.unique(ids, return_counts=True)
    pieces = np.bincount(axes.piece_col, minlength=axes.grid.ncols)
    col = (cells % np.uint64(axes.grid.ncols)).astype(np.int64)
    return cells[count == pieces[col]]


def _overlap_block(
    axes: Axes,
    shape: Shape,
    b0: int,
    b1: int,
    px0: FloatArray,
    px1: FloatArray,
    mid: FloatArray,
    cols: IntArray,
    breaks: IntArray,
    proof: IntArray,
    within: bool,
) -> U64Array:
    """Rows [b0, b1), one id per included piece (not yet unique). A cell is dirty when
    some segment's extent inside its row's strip (widened by ``_margin``) reaches its
    closed x-range; dirty cells are decided one by one (``_overlap_dirty`` or
    ``_within_dirty``). The clean cells between them form stretches (split where pieces
    do not abut) whose closed rectangle the boundary does not meet: one midpoint decides
    each, for either predicate (the stretch is wholly inside or wholly outside G)."""
    h, w = b1 - b0, px0.size
    south, north, lat = axes.south[b0:b1], axes.north[b0:b1], axes.lat[b0:b1]
    sel = (shape.ymax >= south[-1]) & (shape.ymin <= north[0])
    x1, y1, x2, y2 = shape.x1[sel], shape.y1[sel], shape.x2[sel], shape.y2[sel]
    ymin, ymax = shape.ymin[sel], shape.ymax[sel]
    xmin, xmax = shape.xmin[sel], shape.xmax[sel]
    lo = np.searchsorted(-south, -ymax, side="left")  # strips with south <= ymax
    hi = np.searchsorted(-north, -ymin, side="right")  # strips with north >= ymin
    k, r = _expand(lo, hi)
    ya = np.maximum(ymin[k], south[r])
    yb = np.minimum(ymax[k], north[r])
    x1k, y1k, x2k, y2k = x1[k], y1[k], x2[k], y2[k]
    flat = y1k == y2k
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (x2k - x1k) / (y2k - y1k)
        xa = x1k + (ya - y1k) * slope
        xb = x1k + (yb - y1k) * slope
    m = _margin(x1k, x2k)
    xlo = np.maximum(np.where(flat, xmin[k], np.minimum(xa, xb)), xmin[k]) - m
    xhi = np.minimum(np.where(flat, xmax[k], np.maximum(xa, xb)), xmax[k]) + m
    a = np.searchsorted(px1, xlo, side="left")  # pieces with x1 >= xlo
    b = np.searchsorted(px0, xhi, side="right")  # pieces with x0 <= xhi
    rr, aa, bb = _merge_ranges(r, a, b)

    kk, jj = _expand(aa, bb)
    dr = rr[kk]
    segs = _Candidates(a, b, r, k, x1, y1, x2, y2, px0, px1, south, north, w)
    decide = _within_dirty if within else _overlap_dirty
    value = decide(shape, dr, jj, _member(dr * w + jj, proof), mid, lat, segs)
    run_r, run_a, run_b = _true_runs(dr, jj, value)

    # clean stretches: the gaps between dirty ranges (and the row ends), split at breaks
    rows = np.arange(h)
    gr, ga, gb = _merge_ranges(
        np.concatenate((rr, rows, rows)),
        np.concatenate((aa, np.full(h, -1), np.full(h, w))),
        np.concatenate((bb, np.zeros(h, dtype=np.int64), np.full(h, w + 1))),
    )
    nxt = _next_start(gr, ga, w + 1)
    keep = gb < nxt
    sr, s0, s1 = gr[keep], gb[keep], nxt[keep]
    kq, q = _expand(
        np.searchsorted(breaks, s0, side="right"), np.searchsorted(breaks, s1, side="left")
    )
    gap = np.concatenate((np.arange(sr.size), kq))
    cut_a = np.concatenate((s0, breaks[q]))
    order = np.lexsort((cut_a, gap))
    gap, cut_a = gap[order], cut_a[order]
    cut_r = sr[gap]
    cut_b = s1[gap]
    same = gap[1:] == gap[:-1]
    cut_b[:-1][same] = cut_a[1:][same]
    inside = shapely.contains_xy(shape.geom, mid[cut_a], lat[cut_r])
    return _ids(
        axes,
        b0,
        cols,
        np.concatenate((run_r, cut_r[inside])),
        np.concatenate((run_a, cut_a[inside])),
        np.concatenate((run_b, cut_b[inside])),
        unique=False,
    )


class _Candidates:
    """The (segment, strip) pairs of a block and the pieces each one's widened extent
    reached: pair i reached pieces [a[i], b[i]) of strip r[i], segment k[i]."""

    def __init__(
        self,
        a: IntArray,
        b: IntArray,
        r: IntArray,
        k: IntArray,
        x1: FloatArray,
        y1: FloatArray,
        x2: FloatArray,
        y2: FloatArray,
        px0: FloatArray,
        px1: FloatArray,
        south: FloatArray,
        north: FloatArray,
        w: int,
    ) -> None:
        self.a, self.b, self.r, self.k = a, b, r, k
        self.x1, self.y1, self.x2, self.y2 = x1, y1, x2, y2
        self.px0, self.px1, self.south, self.north, self.w = px0, px1, south, north, w

    def meeting(self, keys: IntArray) -> tuple[IntArray, IntArray]:
        """Of the dirty cells ``keys`` (row * w + piece): the sorted keys a segment
        surely passes through (open cell), and those only a contact below float
        resolution may touch (``_segment_meets_open_box``'s unsure)."""
        pk, pj = _expand(self.a, self.b)
        cell = _member(self.r[pk] * self.w + pj, np.sort(keys))
        pk, pj = pk[cell], pj[cell]
        pr, seg = self.r[pk], self.k[pk]
        meets, unsure = _segment_meets_open_box(
            self.x1[seg],
            self.y1[seg],
            self.x2[seg],
            self.y2[seg],
            self.px0[pj],
            self.south[pr],
            self.px1[pj],
            self.north[pr],
        )
        hit = np.unique(pr[meets] * self.w + pj[meets])
        return hit, np.setdiff1d(np.unique(pr[unsure] * self.w + pj[unsure]), hit)

    def boxes(self, keys: IntArray) -> npt.NDArray[np.object_]:
        cr, cj = np.divmod(keys, self.w)
        return shapely.box(self.px0[cj], self.south[cr], self.px1[cj], self.north[cr])


def _overlap_dirty(
    shape: Shape,
    dr: IntArray,
    jj: IntArray,
    vertex_inside: BoolArray,
    mid: FloatArray,
    lat: FloatArray,
    segs: _Candidates,
) -> BoolArray:
    """any_overlap of dirty cells: a vertex inside, else an interior midpoint, else a
    segment through the open cell (GEOS relate for contacts below float resolution, as
    for the legacy engine)."""
    value = vertex_inside.copy()
    todo = np.flatnonzero(~value)
    if todo.size:
        interior = shapely.contains_xy(shape.geom, mid[jj[todo]], lat[dr[todo]])
        value[todo[interior]] = True
        todo = todo[~interior]
    if todo.size:
        todo_keys = dr[todo] * segs.w + jj[todo]
        hit, close = segs.meeting(todo_keys)
        value[todo[_member(todo_keys, hit)]] = True
        if close.size:
            overlap = shapely.relate_pattern(shape.geom, segs.boxes(close), "T********")
            value[todo[_member(todo_keys, close[overlap])]] = True
    return value


def _within_dirty(
    shape: Shape,
    dr: IntArray,
    jj: IntArray,
    vertex_inside: BoolArray,
    mid: FloatArray,
    lat: FloatArray,
    segs: _Candidates,
) -> BoolArray:
    """within of dirty cells (docs/CONTRACT.md §10.2): the closed cell lies in G iff no
    boundary point lies in the open cell and its midpoint is interior. So a vertex
    inside, a midpoint not interior or a segment through the open cell refutes; a
    contact below float resolution is decided by GEOS ``covers`` on the prepared country
    (the engines' reference)."""
    value = ~vertex_inside
    todo = np.flatnonzero(value)
    if todo.size:
        value[todo] = shapely.contains_xy(shape.geom, mid[jj[todo]], lat[dr[todo]])
        todo = todo[value[todo]]
    if todo.size:
        todo_keys = dr[todo] * segs.w + jj[todo]
        hit, close = segs.meeting(todo_keys)
        value[todo[_member(todo_keys, hit)]] = False
        if close.size:
            covered = shapely.covers(shape.geom, segs.boxes(close))
            value[todo[_member(todo_keys, close[~covered])]] = False
    return value


def recount_ids(grid: Grid, country: CountryGeometry, predicate: str) -> U64Array:
    """All tile ids of ``country`` under ``predicate`` by the validator's own method
    (for tests and tools; the validator itself streams them)."""
    axes = Axes(grid)
    shape = Shape(country)
    blocks = (
        center_ids(axes, shape)
        if predicate == "center"
        else overlap_ids(axes, shape, within=predicate == "within")
    )
    parts = list(blocks)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
