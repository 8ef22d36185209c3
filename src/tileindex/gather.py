"""Cells to raster strips, and the values at cells: the compiled loops of ``tileindex
values`` (docs/CONTRACT.md §10.4). Arrays in, arrays out; no files.

A row group of ``tile_index`` holds the cells of several keys, each key's in tile-id
order, so its cells visit the raster's strips (blocks of ``step`` whole rows) in several
ascending passes. :func:`plan` turns tile ids into rows and columns, groups the cells by
strip (a stable counting sort, so each strip's cells keep their order) and marks the
column chunks every strip needs, in one pass; :func:`take` copies one strip's values to
its cells. Importing this module imports numba (``tileindex.values`` does so only when
it runs); the loops are compiled on first use, or loaded from numba's cache.
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
def _plan(
    ids: np.ndarray,
    ncols: int,
    step: int,
    chunk: int,
    first: int,
    rows: np.ndarray,
    cols: np.ndarray,
    need: np.ndarray,
    starts: np.ndarray,
    order: np.ndarray,
) -> None:  # pragma: no cover (runs compiled)
    strip = np.empty(ids.size, dtype=np.int64)
    counts = np.zeros(starts.size, dtype=np.int64)
    by_col, by_step, by_chunk = 1.0 / ncols, 1.0 / step, 1.0 / chunk
    for i in range(ids.size):
        t = np.int64(ids[i])
        r = _div(t, ncols, by_col)
        c = t - r * ncols
        rows[i] = r
        cols[i] = c
        s = _div(r, step, by_step) - first
        strip[i] = s
        need[s, _div(c, chunk, by_chunk)] = True
        counts[s + 1] += 1
    for s in range(1, starts.size):
        starts[s] = starts[s - 1] + counts[s]
    at = starts[:-1].copy()
    for i in range(ids.size):
        s = strip[i]
        order[at[s]] = i
        at[s] += 1


@numba.njit(cache=True, nogil=True)
def _take(
    order: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    r0: int,
    strip: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover (runs compiled)
    for k in range(order.size):
        i = order[k]
        out[i] = strip[rows[i] - r0, cols[i]]


@dataclass(frozen=True)
class Plan:
    """The cells of a row group by strip: strip ``first + s`` holds the cells
    ``order[starts[s]:starts[s + 1]]`` and needs the column chunks ``need[s]``."""

    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    first: int
    order: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    need: npt.NDArray[np.bool_]


def plan(ids: npt.NDArray[np.uint64], nrows: int, ncols: int, step: int, chunk: int) -> Plan:
    """Rows, columns and the grouping by strip of the cells ``ids`` (tile ids of a grid
    of ``nrows`` x ``ncols`` cells; strips of ``step`` rows; column chunks of ``chunk``
    columns)."""
    ids = np.ascontiguousarray(ids)
    n = ids.size
    rows = np.empty(n, dtype=np.int64)
    cols = np.empty(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    if n == 0:
        return Plan(rows, cols, 0, order, np.zeros(1, np.int64), np.zeros((0, 1), np.bool_))
    first = int(ids.min()) // ncols // step
    count = int(ids.max()) // ncols // step - first + 1
    need = np.zeros((count, -(-ncols // chunk)), dtype=np.bool_)
    starts = np.zeros(count + 1, dtype=np.int64)
    _plan(ids, ncols, step, chunk, first, rows, cols, need, starts, order)
    return Plan(rows, cols, first, order, starts, need)


def take(cells: Plan, s: int, r0: int, strip: np.ndarray, out: npt.NDArray[Any]) -> None:
    """``out[i] = strip[row_i - r0, col_i]`` for the cells of the plan's strip ``s``."""
    order = cells.order[cells.starts[s] : cells.starts[s + 1]]
    _take(order, cells.rows, cells.cols, r0, strip, out)
