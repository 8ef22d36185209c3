"""The grid's per-row and per-column quantities, recomputed from the docs/CONTRACT.md §3
formulas (not taken from the build's grid helpers), and the WGS84 cell areas."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pyproj import Geod

from tileindex.grid import Grid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U64Array = npt.NDArray[np.uint64]

_GEOD = Geod(ellps="WGS84")


def _wrap_center(x: FloatArray) -> FloatArray:
    x = np.where(x > 180.0, x - 360.0, x)
    return np.where(x < -180.0, x + 360.0, x)


def _wrap_west(x: FloatArray) -> FloatArray:
    x = np.where(x >= 180.0, x - 360.0, x)
    return np.where(x < -180.0, x + 360.0, x)


def _wrap_east(x: FloatArray) -> FloatArray:
    x = np.where(x > 180.0, x - 360.0, x)
    return np.where(x <= -180.0, x + 360.0, x)


class Axes:
    """Per-row and per-column quantities of the grid, computed once."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        rows = np.arange(grid.nrows, dtype=np.float64)
        cols = np.arange(grid.ncols, dtype=np.float64)
        self.lat = grid.f + grid.e * (rows + 0.5)
        self.north = grid.f + grid.e * rows
        self.south = grid.f + grid.e * (rows + 1.0)
        lon = _wrap_center(grid.c + grid.a * (cols + 0.5))
        # per-column published values (docs/CONTRACT.md §3/§6), gathered by column in the
        # row checks
        self.lon = lon
        self.west = _wrap_west(grid.c + grid.a * cols)
        self.east = _wrap_east(grid.c + grid.a * (cols + 1.0))
        order = np.argsort(lon, kind="stable")
        self.lon_sorted = lon[order]
        self.lon_cols = order.astype(np.int64)
        # cells split at ±180 into pieces, each at its wrapped position, sorted by x0
        x0, x1 = grid.c + grid.a * cols, grid.c + grid.a * (cols + 1.0)
        px0, px1, pcol = [], [], []
        for lo, hi, shift in (
            (-540.0, -180.0, 360.0),
            (-180.0, 180.0, 0.0),
            (180.0, 540.0, -360.0),
        ):
            p0, p1 = np.maximum(x0, lo), np.minimum(x1, hi)
            keep = p0 < p1
            px0.append(p0[keep] + shift)
            px1.append(p1[keep] + shift)
            pcol.append(np.flatnonzero(keep))
        a0, a1, ac = np.concatenate(px0), np.concatenate(px1), np.concatenate(pcol)
        mid = 0.5 * (a0 + a1)
        keep = (a0 < mid) & (mid < a1)  # a piece narrower than float resolution has no area
        order = np.argsort(a0[keep], kind="stable")
        self.piece_x0 = a0[keep][order]
        self.piece_x1 = a1[keep][order]
        self.piece_mid = mid[keep][order]
        self.piece_col = ac[keep][order].astype(np.int64)
        self.pieces_sorted = bool(np.all(np.diff(self.piece_x1) >= 0))
        self._area: FloatArray = np.full(grid.nrows, np.nan)

    def area(self, rows: IntArray) -> FloatArray:
        """Geod area on each row's cell corners, computed once per row when first asked."""
        need = np.unique(rows[np.isnan(self._area[rows])])
        x0 = self.grid.c
        x1 = self.grid.c + self.grid.a
        for r in need.tolist():
            s, n = float(self.south[r]), float(self.north[r])
            a, _ = _GEOD.polygon_area_perimeter([x0, x1, x1, x0], [s, s, n, n])
            self._area[r] = abs(a)
        return self._area[rows]
