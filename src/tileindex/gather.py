"""Cells to raster strips, and the values at cells: the compiled loops of ``tileindex
values`` (docs/CONTRACT.md §10.4). Arrays in, arrays out; no files.

A row group of ``tile_index`` holds the cells of several keys, each key's in tile-id
order, so its cells visit the raster's strips (blocks of ``step`` whole rows) in a few
ascending passes. :func:`plan` cuts the cells, in one pass, into segments: runs of
consecutive cells in one strip (a key's cells in a strip are one segment when they are
sorted, and any order of cells is still planned right, with more segments). It marks
the column chunks every strip needs and orders the segments by strip, so each strip is
read once. :func:`take` copies one strip's values to its cells, finding each cell's row
and column from its tile id again: that costs less than keeping them. Importing this
module imports numba (``tileindex.values`` does so only when it runs); the loops are
compiled on first use, or loaded from numba's cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["Plan", "plan", "take"]


@numba.njit(cache=True, nogil=True, inline="always")
def _div(t: Any, d: Any, inverse: float) -> Any:  # pragma: no cover (runs compiled)
    """``t // d`` for 0 <= t < 2^53: a float product (off by one at most, as t and the
    rounded 1/d are exact to 2^-52), corrected exactly; an integer division costs several
    times more."""
    q = np.int64(t * inverse)
    if q * d > t:
        q -= 1
    elif (q + 1) * d <= t:
        q += 1
    return q


@numba.njit(cache=True, nogil=True)
def _segments(
    ids: np.ndarray,
    ncols: int,
    step: int,
    chunk: int,
    first: int,
    need: np.ndarray,
    seg_start: np.ndarray,
    seg_strip: np.ndarray,
) -> int:  # pragma: no cover (runs compiled)
    """Cut ``ids`` into runs of one strip (``seg_start[k]``, strip ``seg_strip[k]``, the
    last run ending at ``seg_start[n]``), mark the chunks they need; return ``n``.

    A cell's row and chunk are worked out only when it leaves the tile ids of the last
    cell's chunk (``lo <= t < hi``): sorted cells mostly stay in it."""
    by_col, by_step, by_chunk = 1.0 / ncols, 1.0 / step, 1.0 / chunk
    n = 0
    s = -1
    row = -ncols - 1  # the tile id of the current row's first cell (none yet)
    lo, hi = 1, 0  # the tile ids of the current row's current chunk (none yet)
    for i in range(ids.size):
        t = np.int64(ids[i])
        if lo <= t < hi:
            continue
        if not row <= t < row + ncols:
            r = _div(t, ncols, by_col)
            row = r * ncols
            strip = _div(r, step, by_step) - first
            if strip != s:
                s = strip
                seg_start[n] = i
                seg_strip[n] = s
                n += 1
        k = _div(t - row, chunk, by_chunk)
        need[s, k] = True
        lo = row + k * chunk
        hi = min(lo + chunk, row + ncols)
    seg_start[n] = ids.size
    return n


@numba.njit(cache=True, nogil=True)
def _take(
    ids: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    ncols: int,
    r0: int,
    strip: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover (runs compiled)
    by_col = 1.0 / ncols
    values = strip.reshape(-1)  # C-ordered rows of ncols cells
    for k in range(lo.size):
        row = -ncols - 1  # the tile id of the current row's first cell (none yet)
        base = 0  # where that row starts in ``values``
        for i in range(lo[k], hi[k]):
            t = np.int64(ids[i])
            if not row <= t < row + ncols:
                r = _div(t, ncols, by_col)
                row = r * ncols
                base = (r - r0) * ncols
            out[i] = values[base + t - row]


@dataclass(frozen=True)
class Plan:
    """The cells ``ids`` of a row group by strip: the strips ``first + strips[k]`` (in
    ascending order) hold the cells ``lo[j]:hi[j]`` for ``j`` in
    ``bounds[k]:bounds[k + 1]``, and strip ``first + s`` needs the column chunks
    ``need[s]``."""

    ids: npt.NDArray[np.uint64]
    ncols: int
    first: int
    strips: npt.NDArray[np.int64]
    bounds: npt.NDArray[np.int64]
    lo: npt.NDArray[np.int64]
    hi: npt.NDArray[np.int64]
    need: npt.NDArray[np.bool_]


def plan(ids: npt.NDArray[np.uint64], nrows: int, ncols: int, step: int, chunk: int) -> Plan:
    """The strips and column chunks that the cells ``ids`` (tile ids of a grid of
    ``nrows`` x ``ncols`` cells) fall in, for strips of ``step`` rows and column chunks of
    ``chunk`` columns."""
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    none = np.zeros(0, np.int64)
    if ids.size == 0:
        return Plan(ids, ncols, 0, none, np.zeros(1, np.int64), none, none, np.zeros((0, 1), bool))
    first = int(ids.min()) // ncols // step
    count = int(ids.max()) // ncols // step - first + 1
    need = np.zeros((count, -(-ncols // chunk)), dtype=np.bool_)
    # as many segments as cells at worst; only the pages the segments use are touched
    seg_start = np.empty(ids.size + 1, dtype=np.int64)
    seg_strip = np.empty(ids.size, dtype=np.int64)
    n = _segments(ids, ncols, step, chunk, first, need, seg_start, seg_strip)
    by_strip = np.argsort(seg_strip[:n], kind="stable")  # each strip's segments in order
    strip_of = seg_strip[by_strip]
    edges = np.flatnonzero(np.diff(strip_of)) + 1
    strips = strip_of[np.concatenate(([0], edges))]
    bounds = np.concatenate(([0], edges, [n])).astype(np.int64)
    lo, hi = seg_start[:n][by_strip], seg_start[1 : n + 1][by_strip]
    return Plan(ids, ncols, first, strips, bounds, lo, hi, need)


def take(cells: Plan, k: int, r0: int, strip: np.ndarray, out: npt.NDArray[Any]) -> None:
    """``out[i] = strip[row_i - r0, col_i]`` for the cells of the plan's ``k``-th strip
    (``cells.first + cells.strips[k]``, whose first row is ``r0``)."""
    j0, j1 = int(cells.bounds[k]), int(cells.bounds[k + 1])
    values = np.ascontiguousarray(strip)  # a no-op for the strips values reads
    _take(cells.ids, cells.lo[j0:j1], cells.hi[j0:j1], cells.ncols, r0, values, out)
