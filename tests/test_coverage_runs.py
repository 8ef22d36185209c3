"""The build's coverage shortcut (docs/CONTRACT.md §10.3): only the cells of the runs
that a boundary segment may touch get an area (``coverage.run_fractions``); every other
included cell reads 1.0 without arithmetic. Checked against brute force on the same
adversarial, grid-aligned hypothesis polygons as ``tests/test_coverage.py``:

* the dense column the build publishes (1.0, patched with the boundary values) equals
  ``cell_fractions`` asked about every included cell, bit for bit;
* every cell the shortcut leaves at 1.0 is ``within`` by GEOS ``covers`` of its pieces
  (so the conservative candidate set never misses a boundary cell);
* the result does not depend on how the runs are cut into row blocks (chunking)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from test_coverage import _SETTINGS, cases
from tileindex import kernel
from tileindex.coverage import boundary_candidates, cell_fractions, run_fractions
from tileindex.geometry import CountryGeometry
from tileindex.grid import Grid, Runs, Window
from tileindex.tasks import unit_fractions

_WRAP = ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0))


def _cells(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    counts = runs.col1 - runs.col0
    rows = np.repeat(runs.row, counts)
    cols = np.arange(int(counts.sum())) + np.repeat(runs.col0 - np.cumsum(counts) + counts, counts)
    return rows, cols


def _covers(grid: Grid, country: CountryGeometry, row: int, col: int) -> bool:
    """GEOS covers of every piece of the cell at its wrapped position (§3)."""
    x0, x1 = grid.c + grid.a * col, grid.c + grid.a * (col + 1.0)
    s, n = grid.f + grid.e * (row + 1.0), grid.f + grid.e * row
    pieces = []
    for lo, hi, shift in _WRAP:
        p0, p1 = max(x0, lo), min(x1, hi)
        if p0 < p1:
            pieces.append(shapely.box(p0 + shift, s, p1 + shift, n))
    return bool(pieces) and all(country.geom.covers(p) for p in pieces)


def _check(grid: Grid, country: CountryGeometry, predicate: str) -> None:
    whole = Window(0, grid.nrows, 0, grid.ncols)
    runs = Runs.concat([kernel.mask_chunk(grid, whole, country, predicate)]).sorted()
    rows, cols = _cells(runs)
    sparse = run_fractions(grid, country, runs)
    dense = sparse.dense(rows.size)
    expected = cell_fractions(grid, country, rows, cols)
    assert np.array_equal(dense, expected), f"{predicate}: shortcut differs from cell_fractions"
    untouched = np.setdiff1d(np.arange(rows.size), sparse.pos)
    for i in untouched.tolist():
        assert _covers(grid, country, int(rows[i]), int(cols[i])), (rows[i], cols[i])
    for block in (1, 2, 3):
        assert np.array_equal(unit_fractions(grid, country, runs, block).dense(rows.size), dense)


@_SETTINGS
@given(cases(), st.sampled_from(["center", "any_overlap"]))
def test_the_shortcut_equals_cell_fractions_and_leaves_only_within_cells_at_one(
    case: tuple[Grid, CountryGeometry], predicate: str
) -> None:
    _check(*case, predicate)


@settings(_SETTINGS, max_examples=40)
@given(cases())
def test_candidates_cover_every_cell_whose_fraction_is_below_one(
    case: tuple[Grid, CountryGeometry],
) -> None:
    grid, country = case
    rows, cols = np.divmod(np.arange(grid.nrows * grid.ncols), grid.ncols)
    f = cell_fractions(grid, country, rows, cols)
    cand = boundary_candidates(grid, country, np.arange(grid.nrows))
    partial = np.flatnonzero((f > 0.0) & (f < 1.0))
    assert np.isin(partial, cand).all()


def test_a_cell_split_at_the_antimeridian_is_always_computed() -> None:
    # column 0 spans -180.5 .. -179.5: its west half wraps to 179.5 .. 180, outside G
    grid = Grid.from_transform(4, 2, (1.0, 0.0, -180.5, 0.0, -1.0, 1.0))
    country = CountryGeometry.from_geometry("ZZ", shapely.box(-180.0, -1.0, -176.0, 1.0))
    runs = Runs.of([0, 1], [0, 0], [4, 4])
    sparse = run_fractions(grid, country, runs)
    dense = sparse.dense(8)
    assert dense[0] == dense[4] == 0.5
    assert dense[1] == 1.0


@pytest.mark.parametrize("predicate", ["center", "any_overlap"])
def test_no_runs_need_no_fractions(predicate: str) -> None:
    grid = Grid.from_transform(4, 2, (1.0, 0.0, 0.0, 0.0, -1.0, 1.0))
    country = CountryGeometry.from_geometry("ZZ", shapely.box(0.5, -1.0, 2.0, 1.0))
    assert len(run_fractions(grid, country, Runs.empty())) == 0
