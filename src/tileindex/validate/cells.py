"""Each row's values against the grid: tile id = row * ncols + col on the grid,
centroids and bounds as docs/CONTRACT.md §3/§6 compute them, cell areas as WGS84 gives
them, and the inclusion_rule column naming the run's predicate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tileindex.validate.axes import Axes, BoolArray, FloatArray, IntArray, U64Array
from tileindex.validate.files import to_numpy
from tileindex.validate.findings import E002, E004, E006, E008, Checks

COORD_TOLERANCE_DEG = 1e-9
AREA_REL_TOLERANCE = 1e-8


@dataclass(frozen=True, eq=False)
class IndexCells:
    """What the tile_bounds checks reuse from the tile_index batch of the same rows."""

    row: IntArray
    col: IntArray
    rs: IntArray  # row and col where on the grid, else 0
    cs: IntArray
    on_grid: BoolArray
    lon: FloatArray  # the centroid docs/CONTRACT.md §3 gives the cell
    lat: FloatArray


class CellChecks:
    """The per-row value checks of both datasets."""

    def __init__(self, c: Checks, axes: Axes) -> None:
        self.c = c
        self.axes = axes

    def index(self, batch: pa.RecordBatch, tid: U64Array, predicate: str | None) -> IndexCells:
        """Identity, centroid, area and inclusion_rule of a tile_index batch."""
        grid, axes = self.axes.grid, self.axes
        row = to_numpy(batch.column(2), 0).astype(np.int64)
        col = to_numpy(batch.column(3), 0).astype(np.int64)
        lon, lat, area = (to_numpy(batch.column(i), np.nan) for i in (4, 5, 6))
        on_grid = (row >= 0) & (row < grid.nrows) & (col >= 0) & (col < grid.ncols)
        rs, cs = np.where(on_grid, row, 0), np.where(on_grid, col, 0)
        expect = rs.astype(np.uint64) * np.uint64(grid.ncols) + cs.astype(np.uint64)
        self._fail("tile_id", E002, ~on_grid, batch, "raster_row/raster_col off the grid")
        self._fail(
            "tile_id", E002, on_grid & (tid != expect), batch, "tile_id != row * ncols + col"
        )
        lon_exp, lat_exp = axes.lon[cs], axes.lat[rs]
        off = ~(np.abs(lon - lon_exp) <= COORD_TOLERANCE_DEG)
        off |= ~(np.abs(lat - lat_exp) <= COORD_TOLERANCE_DEG)
        self._fail("centroid", E004, on_grid & off, batch, "centroid is not the CONTRACT §3 one")
        legal = (lon >= -180.0) & (lon <= 180.0) & (lat >= -90.0) & (lat <= 90.0)
        self._fail("centroid", E004, ~legal, batch, "centroid outside [-180, 180] x [-90, 90]")
        positive = area > 0
        self._fail("pixel area", E006, ~positive, batch, "pixel_area_m2 is not > 0")
        if grid.a < 90.0:
            ref = axes.area(rs)
            wrong = on_grid & positive & ~(np.abs(area - ref) <= AREA_REL_TOLERANCE * ref)
            self._fail("pixel area", E006, wrong, batch, "pixel_area_m2 is not the WGS84 area")
        rule = batch.column(7)
        values = rule.dictionary.cast(pa.string()).to_pylist()
        counts = np.bincount(to_numpy(rule.indices, len(values)), minlength=len(values) + 1)
        for value, count in zip([*values, None], counts.tolist(), strict=True):
            if count and predicate is not None and value != predicate:
                self.c.fail(
                    "inclusion_rule",
                    E008,
                    f"{count} row(s) with inclusion_rule {value!r}; the run's predicate is "
                    f"{predicate!r}",
                    count=count,
                )
        return IndexCells(row, col, rs, cs, on_grid, lon_exp, lat_exp)

    def bounds(self, cells: IndexCells, bounds: pa.RecordBatch) -> None:
        """The bounds and centroid columns of the tile_bounds batch of the same rows."""
        axes, rs, cs = self.axes, cells.rs, cells.cs
        got = [to_numpy(bounds.column(i), np.nan) for i in range(2, 8)]
        want = (axes.west[cs], axes.east[cs], axes.south[rs], axes.north[rs], cells.lon, cells.lat)
        off = np.zeros(bounds.num_rows, dtype=bool)
        for g, w in zip(got, want, strict=True):
            off |= ~(np.abs(g - w) <= COORD_TOLERANCE_DEG)
        self._fail("bounds", E004, cells.on_grid & off, bounds, "bounds are not CONTRACT §3/§6's")
        min_lon, max_lon, min_lat, max_lat, clon, clat = got
        legal = (min_lon >= -180.0) & (min_lon < 180.0) & (max_lon > -180.0) & (max_lon <= 180.0)
        legal &= (min_lat >= -90.0) & (max_lat <= 90.0) & (min_lat < max_lat)
        legal &= (clon >= -180.0) & (clon <= 180.0) & (clat >= -90.0) & (clat <= 90.0)
        self._fail("bounds", E004, ~legal, bounds, "bounds outside the ranges of CONTRACT §6")

    def _fail(self, name: str, code: str, bad: BoolArray, batch: pa.RecordBatch, what: str) -> None:
        """One failure per failing row, shown with the first failing row's values."""
        if not bad.any():
            return
        k = np.flatnonzero(bad)
        i = int(k[0])
        values = {f: batch.column(f)[i].as_py() for f in batch.schema.names[1:]}
        iso = batch.column(0)[i].as_py()
        self.c.fail(name, code, f"{what}: {values}", iso, values.get("tile_id"), count=int(k.size))
