"""The independent recount: the cells a predicate includes for a country, by a method of its
own (never the build's kernel), streamed in row blocks so memory is O(block).

How inclusion is re-decided (the recount)
-----------------------------------------
Both predicates change value only across the boundary of the country (any ring of any
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
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
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


def _ids(axes: Axes, b0: int, cols: IntArray, r: IntArray, a: IntArray, b: IntArray) -> U64Array:
    """Tile ids of the cells of runs [a, b) (window positions) of rows b0 + r, ascending."""
    order = np.lexsort((a, r))
    k, j = _expand(a[order], b[order])
    rows = (r[order][k] + b0).astype(np.uint64)
    return _ascending(rows * np.uint64(axes.grid.ncols) + cols[j].astype(np.uint64))


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


def overlap_ids(axes: Axes, shape: Shape) -> Iterator[U64Array]:
    """Tile ids the ``any_overlap`` rule includes, ascending, in row blocks."""
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
        yield _overlap_block(axes, shape, b0, b1, px0, px1, mid, cols, breaks, sel)


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
) -> U64Array:
    """Rows [b0, b1). A cell is dirty when some segment's extent inside its row's strip
    (widened by ``_margin``) reaches its closed x-range; dirty cells are decided one by
    one. The clean cells between them form stretches (split where pieces do not abut)
    whose closed rectangle the boundary does not meet: one midpoint decides each."""
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

    # dirty cells: a vertex inside, else an interior midpoint, else a segment through it
    kk, jj = _expand(aa, bb)
    dr = rr[kk]
    value = _member(dr * w + jj, proof)
    todo = np.flatnonzero(~value)
    if todo.size:
        interior = shapely.contains_xy(shape.geom, mid[jj[todo]], lat[dr[todo]])
        value[todo[interior]] = True
        todo = todo[~interior]
    if todo.size:
        # candidates: the (segment, strip) pairs whose widened extent reached the cell
        pk, pj = _expand(a, b)
        cell = _member(r[pk] * w + pj, np.sort(dr[todo] * w + jj[todo]))
        pk, pj = pk[cell], pj[cell]
        pr = r[pk]
        seg = k[pk]
        meets, unsure = _segment_meets_open_box(
            x1[seg], y1[seg], x2[seg], y2[seg], px0[pj], south[pr], px1[pj], north[pr]
        )
        hit = np.unique(pr[meets] * w + pj[meets])
        todo_keys = dr[todo] * w + jj[todo]
        value[todo[_member(todo_keys, hit)]] = True
        # sub-float-resolution contacts: GEOS relate on the country decides, as it does
        # for the legacy engine
        close = np.setdiff1d(np.unique(pr[unsure] * w + pj[unsure]), hit)
        if close.size:
            cr, cj = np.divmod(close, w)
            boxes = shapely.box(px0[cj], south[cr], px1[cj], north[cr])
            overlap = shapely.relate_pattern(shape.geom, boxes, "T********")
            value[todo[_member(todo_keys, close[overlap])]] = True
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
    )


def recount_ids(grid: Grid, country: CountryGeometry, predicate: str) -> U64Array:
    """All tile ids of ``country`` under ``predicate`` by the validator's own method
    (for tests and tools; the validator itself streams them)."""
    axes = Axes(grid)
    shape = Shape(country)
    blocks = center_ids(axes, shape) if predicate == "center" else overlap_ids(axes, shape)
    parts = list(blocks)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
