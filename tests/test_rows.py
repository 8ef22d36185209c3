"""rows: runs -> exact tile_index / tile_bounds batches, and the runs a build may publish."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tileindex.contract import TILE_BOUNDS_SCHEMA, TILE_INDEX_SCHEMA
from tileindex.errors import (
    AreaNonPositiveError,
    BoundsError,
    DuplicateTileError,
    InclusionRuleError,
    RasterMismatchError,
)
from tileindex.grid import Grid, Runs
from tileindex.rows import check_runs, check_unit_order, iter_batches, iter_groups

# the reference WorldPop 1 km grid: its west edge lies 0.00125 degrees west of -180
WORLDPOP = Grid.from_transform(
    43199, 16755, (0.0083333333, 0, -180.0012493, 0, -0.0083333333, 83.6329165016827)
)
SMALL = Grid.from_transform(12, 6, (30.0, 0, -180.0, 0, -30.0, 90.0))


def _tables(grid, runs, max_rows=1 << 20, iso="FJ", predicate="center"):
    pairs = list(iter_batches(grid, iso, predicate, _as_runs(runs), max_rows=max_rows))
    index = pa.Table.from_batches([p[0] for p in pairs], schema=TILE_INDEX_SCHEMA)
    bounds = pa.Table.from_batches([p[1] for p in pairs], schema=TILE_BOUNDS_SCHEMA)
    return pairs, index, bounds


def _as_runs(runs, country=0):
    return Runs.of(*(np.asarray(v, dtype=np.int64) for v in zip(*runs, strict=True)), country)


def _cells(runs):
    return [(r, c) for r, a, b in runs for c in range(a, b)]


RUNS = [(0, 0, 3), (0, 5, 6), (1, 11, 12), (2, 0, 12), (5, 4, 9)]


def test_schema_is_exact_and_non_null():
    pairs, _, _ = _tables(SMALL, RUNS)
    for index, bounds in pairs:
        assert index.schema.equals(TILE_INDEX_SCHEMA, check_metadata=True)
        assert bounds.schema.equals(TILE_BOUNDS_SCHEMA, check_metadata=True)
        assert index.schema.names == TILE_INDEX_SCHEMA.names
        assert all(not f.nullable for f in index.schema)
        assert all(not f.nullable for f in bounds.schema)
        assert all(col.null_count == 0 for col in index.columns + bounds.columns)


def test_values_come_from_the_grid():
    _, index, bounds = _tables(SMALL, RUNS, iso="NZ", predicate="any_overlap")
    cells = _cells(RUNS)
    rows = np.array([r for r, _ in cells])
    cols = np.array([c for _, c in cells])
    d = index.to_pydict()
    assert d["country_iso"] == ["NZ"] * len(cells)
    assert d["inclusion_rule"] == ["any_overlap"] * len(cells)
    assert d["raster_row"] == rows.tolist()
    assert d["raster_col"] == cols.tolist()
    assert d["tile_id"] == (rows * SMALL.ncols + cols).tolist()
    assert d["centroid_lon"] == SMALL.centroid_lon(cols).tolist()
    assert d["centroid_lat"] == SMALL.centroid_lat(rows).tolist()
    assert d["pixel_area_m2"] == SMALL.row_area_m2(rows).tolist()
    b = bounds.to_pydict()
    west, east = SMALL.lon_bounds(cols)
    south, north = SMALL.lat_bounds(rows)
    assert b["country_iso"] == d["country_iso"]
    assert b["tile_id"] == d["tile_id"]
    assert b["min_lon_deg"] == west.tolist()
    assert b["max_lon_deg"] == east.tolist()
    assert b["min_lat_deg"] == south.tolist()
    assert b["max_lat_deg"] == north.tolist()
    assert b["centroid_lon_deg"] == d["centroid_lon"]
    assert b["centroid_lat_deg"] == d["centroid_lat"]
    assert all(s < n for s, n in zip(b["min_lat_deg"], b["max_lat_deg"], strict=True))


@pytest.mark.parametrize("max_rows", [1, 2, 3, 5, 7, 12, 13, 25, 1000])
def test_batch_size_never_changes_the_rows(max_rows):
    _, whole_index, whole_bounds = _tables(SMALL, RUNS)
    pairs, index, bounds = _tables(SMALL, RUNS, max_rows=max_rows)
    total = len(_cells(RUNS))
    assert len(pairs) == math.ceil(total / max_rows)
    assert all(i.num_rows <= max_rows and i.num_rows == b.num_rows for i, b in pairs)
    assert index.equals(whole_index)
    assert bounds.equals(whole_bounds)


def test_tile_ids_strictly_increase():
    _, index, _ = _tables(SMALL, RUNS, max_rows=4)
    tid = np.asarray(index.column("tile_id"))
    assert tid.dtype == np.uint64
    assert (np.diff(tid.astype(np.int64)) > 0).all()


def test_straddling_cell_has_wrapped_bounds_and_centroid():
    last = WORLDPOP.ncols - 1
    _, index, bounds = _tables(WORLDPOP, [(100, 0, 2), (100, last - 1, last + 1)])
    b = bounds.to_pydict()
    # column 0 spans -180.00125 .. -179.99291: its west edge wraps to just below +180
    assert b["min_lon_deg"][0] == pytest.approx(179.9987507, abs=1e-7)
    assert b["max_lon_deg"][0] == pytest.approx(-179.9929160, abs=1e-7)
    assert b["min_lon_deg"][0] > b["max_lon_deg"][0]
    assert b["min_lon_deg"][1] < b["max_lon_deg"][1]
    for key in ("centroid_lon_deg", "min_lon_deg", "max_lon_deg"):
        assert all(-180.0 <= v <= 180.0 for v in b[key])
    assert all(-180.0 <= v <= 180.0 for v in index.column("centroid_lon").to_pylist())
    assert index.column("tile_id").to_pylist()[-1] == 100 * WORLDPOP.ncols + last


def test_grid_in_0_360_is_published_in_minus180_180():
    grid = Grid.from_transform(12, 6, (30.0, 0, 0.0, 0, -30.0, 90.0))
    _, index, bounds = _tables(grid, [(0, 0, 12)])
    lon = index.column("centroid_lon").to_pylist()
    assert lon == [15, 45, 75, 105, 135, 165, -165, -135, -105, -75, -45, -15]
    b = bounds.to_pydict()
    assert b["min_lon_deg"][6] == -180.0  # west edges in [-180, 180)
    assert b["max_lon_deg"][5] == 180.0  # east edges in (-180, 180]


def test_no_cells_yields_nothing():
    assert list(iter_batches(SMALL, "FJ", "center", Runs.empty())) == []
    assert list(iter_batches(SMALL, "FJ", "center", Runs.of([1, 2], [3, 4], [3, 4]))) == []


def test_empty_runs_are_ignored():
    _, with_empty, _ = _tables(SMALL, [(0, 0, 2), (0, 2, 2), (1, 5, 5), (1, 5, 7)])
    _, without, _ = _tables(SMALL, [(0, 0, 2), (1, 5, 7)])
    assert with_empty.equals(without)


@pytest.mark.parametrize(
    "runs",
    [
        [(0, 0, 3), (0, 2, 5)],  # overlap
        [(1, 0, 3), (0, 5, 6)],  # out of order
        [(0, 0, 3), (0, 0, 3)],  # repeated
    ],
)
def test_overlapping_or_unsorted_runs_are_refused(runs):
    with pytest.raises(DuplicateTileError) as info:
        check_runs(SMALL, _as_runs(runs), ["FJ"])
    assert info.value.code == "E003_DUP_TILE"
    assert info.value.context["country_iso"] == "FJ"


def test_a_later_country_may_restart_at_a_low_tile_id_but_not_go_back() -> None:
    later = Runs.concat([_as_runs([(3, 0, 5)], 0), _as_runs([(0, 0, 2)], 1)])
    check_runs(SMALL, later, ["AA", "BB"])  # (AA, 36..40) then (BB, 0..1): in key order
    back = Runs.concat([_as_runs([(0, 0, 2)], 1), _as_runs([(3, 0, 5)], 0)])
    with pytest.raises(DuplicateTileError, match="country AA"):
        check_runs(SMALL, back, ["AA", "BB"])


def test_runs_that_touch_end_to_start_are_disjoint() -> None:
    # (0, 0..2) and (0, 3..4) share no cell; neither do the end of row 0 and row 1's start
    check_runs(SMALL, _as_runs([(0, 0, 3), (0, 3, 5), (0, 11, 12), (1, 0, 1)]), ["FJ"])


@pytest.mark.parametrize("runs", [[(6, 0, 1)], [(-1, 0, 1)], [(0, 11, 13)], [(0, -1, 2)]])
def test_runs_off_the_grid_are_refused(runs):
    with pytest.raises(RasterMismatchError):
        check_runs(SMALL, _as_runs(runs), ["FJ"])


def test_bad_arguments():
    with pytest.raises(InclusionRuleError):
        _tables(SMALL, RUNS, predicate="centre")
    with pytest.raises(ValueError, match="max_rows"):
        _tables(SMALL, RUNS, max_rows=0)
    with pytest.raises(ValueError, match="ends before it starts"):
        check_runs(SMALL, _as_runs([(0, 4, 2)]), ["FJ"])
    with pytest.raises(ValueError, match="differ in length"):
        Runs.of([0, 1], [0], [1])


@st.composite
def _row_major_runs(draw):
    nrows, ncols = draw(st.integers(1, 6)), draw(st.integers(1, 9))
    mask = draw(st.lists(st.booleans(), min_size=nrows * ncols, max_size=nrows * ncols))
    runs = []
    for r in range(nrows):
        c = 0
        while c < ncols:
            if mask[r * ncols + c]:
                start = c
                # split a long run at random points: adjacent runs are legal too
                while c < ncols and mask[r * ncols + c]:
                    c += 1
                    if c < ncols and mask[r * ncols + c] and draw(st.booleans()):
                        break
                runs.append((r, start, c))
            else:
                c += 1
    return nrows, ncols, runs


@settings(max_examples=60, deadline=None)
@given(case=_row_major_runs(), max_rows=st.integers(1, 20))
def test_matches_per_cell_expansion(case, max_rows):
    nrows, ncols, runs = case
    grid = Grid.from_transform(ncols, nrows, (360.0 / ncols, 0, -180.0, 0, -180.0 / nrows, 90.0))
    if not runs:
        return
    _, index, _ = _tables(grid, runs, max_rows=max_rows)
    expected = _cells(runs)
    got = list(
        zip(
            index.column("raster_row").to_pylist(),
            index.column("raster_col").to_pylist(),
            strict=True,
        )
    )
    assert got == expected


def _one_cell(grid: Grid) -> None:
    run = np.array([0])
    list(iter_batches(grid, "AA", "center", Runs.of(run, run, run + 1)))


def test_a_row_beyond_the_pole_is_e004() -> None:
    # Grid() bypasses from_transform's extent check, as a corrupted grid object would
    with pytest.raises(BoundsError, match="outside") as info:
        _one_cell(Grid(ncols=4, nrows=4, a=1.0, c=0.0, e=-1.0, f=92.0))
    assert info.value.code == "E004_BOUNDS"


def test_a_cell_without_area_is_e006() -> None:
    # cells 1e-300 degrees wide: Geod's area underflows to 0
    with pytest.raises(AreaNonPositiveError) as info:
        _one_cell(Grid(ncols=4, nrows=4, a=1e-300, c=0.0, e=-1.0, f=10.0))
    assert info.value.code == "E006_AREA_NONPOS"


# -- several keys in one stream, reused buffers, unit order ---------------------------


@st.composite
def _keyed_runs(draw):
    """Runs of 1-4 keys on a small grid, each key's runs in tile-id order and disjoint."""
    nrows, ncols = draw(st.integers(1, 6)), draw(st.integers(1, 9))
    keys = []
    for _ in range(draw(st.integers(1, 4))):
        cells = draw(st.lists(st.integers(0, nrows * ncols - 1), unique=True, max_size=30))
        cells.sort()
        runs = []
        for cell in cells:
            r, c = divmod(cell, ncols)
            if runs and runs[-1][0] == r and runs[-1][2] == c and draw(st.booleans()):
                runs[-1] = (r, runs[-1][1], c + 1)  # extend, or leave two touching runs
            else:
                runs.append((r, c, c + 1))
        keys.append(runs)
    return nrows, ncols, keys


def _stream(keys):
    parts = [_as_runs(runs, k) for k, runs in enumerate(keys) if runs]
    return Runs.concat(parts) if parts else Runs.empty()


def _rows(pairs):
    index = pa.Table.from_batches([p[0] for p in pairs], schema=TILE_INDEX_SCHEMA)
    bounds = pa.Table.from_batches([p[1] for p in pairs], schema=TILE_BOUNDS_SCHEMA)
    return index.to_pylist(), bounds.to_pylist()


@settings(max_examples=60, deadline=None)
@given(case=_keyed_runs(), max_rows=st.integers(1, 12))
def test_groups_of_several_keys_are_the_per_key_batches_in_key_order(case, max_rows):
    nrows, ncols, keys = case
    grid = Grid.from_transform(ncols, nrows, (360.0 / ncols, 0, -180.0, 0, -180.0 / nrows, 90.0))
    codes = [f"K{k}" for k in range(len(keys))]
    got = list(iter_groups(grid, codes, "center", _stream(keys), max_rows))
    # the reference: each key on its own, one batch per key, concatenated in key order
    want = [
        pair
        for code, runs in zip(codes, keys, strict=True)
        if runs
        for pair in iter_batches(grid, code, "center", _as_runs(runs), max_rows=10**6)
    ]
    assert _rows(got) == _rows(want)
    total = sum(b - a for runs in keys for _, a, b in runs)
    assert [p[0].num_rows for p in got] == [
        min(max_rows, total - s) for s in range(0, total, max_rows)
    ]


@settings(max_examples=30, deadline=None)
@given(case=_keyed_runs(), max_rows=st.integers(1, 12))
def test_reused_buffers_hold_each_pair_until_the_next(case, max_rows):
    nrows, ncols, keys = case
    grid = Grid.from_transform(ncols, nrows, (360.0 / ncols, 0, -180.0, 0, -180.0 / nrows, 90.0))
    codes = [f"K{k}" for k in range(len(keys))]
    runs = _stream(keys)
    fresh = [_rows([p]) for p in iter_groups(grid, codes, "center", runs, max_rows)]
    # consumed one at a time, as the encoder does, the reused pairs read the same
    reused = [_rows([p]) for p in iter_groups(grid, codes, "center", runs, max_rows, reuse=True)]
    assert reused == fresh


class _Unit:
    def __init__(self, unit_id, key, tile_ids):
        self.unit_id, self.country_iso, self.row_start, self.row_stop = unit_id, key, 0, 1
        self.tile_ids = tile_ids


def _check_units(*units):
    check_unit_order(["AA", "BB"], units, units)


def test_units_in_key_then_tile_order_pass_and_empty_units_do_not_count():
    _check_units(
        _Unit(0, "AA", (5, 9)),
        _Unit(1, "AA", None),
        _Unit(2, "AA", (10, 10)),
        _Unit(3, "BB", (0, 3)),  # a later key may start low
    )


@pytest.mark.parametrize(
    "units",
    [
        (_Unit(0, "AA", (5, 9)), _Unit(1, "AA", (9, 12))),  # shares tile 9
        (_Unit(0, "AA", (5, 9)), _Unit(1, "AA", None), _Unit(2, "AA", (2, 3))),  # goes back
        (_Unit(0, "BB", (5, 9)), _Unit(1, "AA", (20, 30))),  # keys out of order
    ],
)
def test_units_that_overlap_or_go_back_are_e003(units):
    with pytest.raises(DuplicateTileError) as info:
        _check_units(*units)
    assert info.value.code == "E003_DUP_TILE"


def test_the_100m_grid_has_tile_ids_beyond_2_32_and_they_are_exact():
    # WorldPop's 3″ grid: 431990 x 167550 cells, tile ids up to ~7.24e10 (CONTRACT §3)
    grid = Grid.from_transform(
        431990, 167550, (1 / 1200, 0, -180.000416666, 0, -1 / 1200, 83.999583333)
    )
    last_row, ncols = grid.nrows - 1, grid.ncols
    runs = Runs.of([0, last_row], [0, ncols - 3], [2, ncols])
    ((index, _bounds),) = iter_batches(grid, "RU", "center", runs)
    want = [0, 1] + [last_row * ncols + c for c in range(ncols - 3, ncols)]
    assert index.column("tile_id").to_pylist() == want
    assert want[-1] == 431990 * 167550 - 1 > 2**36
    assert index.column("raster_row").to_pylist() == [0, 0] + [last_row] * 3
    assert index.column("raster_col").to_pylist() == [0, 1, ncols - 3, ncols - 2, ncols - 1]
