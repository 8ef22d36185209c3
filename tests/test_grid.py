"""Grid math (docs/CONTRACT.md §3): identity, centroids, wrapped bounds, areas, windows, chunks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Geod

from tileindex.errors import RasterMismatchError
from tileindex.grid import ChunkMask, Grid, MaskCounts, Runs, Window, ellipsoidal_band_area

WORLDPOP = (0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827)


@pytest.fixture(scope="module")
def worldpop() -> Grid:
    return Grid.from_transform(43199, 16755, WORLDPOP)


def test_tile_id_is_row_major(worldpop: Grid) -> None:
    assert worldpop.tile_id(0, 0) == 0
    assert worldpop.tile_id(1, 0) == 43199
    assert worldpop.tile_id(16754, 43198) == 16755 * 43199 - 1
    assert worldpop.tile_id(np.array([2]), np.array([5])).dtype == np.uint64


def test_centroid_uses_the_contract_float_form(worldpop: Grid) -> None:
    cols = np.array([0, 1, 21600, 43198])
    rows = np.array([0, 8000, 16754])
    expected_lon = [-180.0012493 + 0.0083333333 * (c + 0.5) for c in cols.tolist()]
    expected_lat = [83.6329165016827 + -0.0083333333 * (r + 0.5) for r in rows.tolist()]
    assert worldpop.centroid_lon(cols).tolist() == expected_lon
    assert worldpop.centroid_lat(rows).tolist() == expected_lat


def test_column_zero_straddles_the_antimeridian(worldpop: Grid) -> None:
    west, east = worldpop.lon_bounds([0, 1, 43198])
    # column 0 spans -180.00125 .. -179.99292: its west edge wraps to just below +180
    assert west[0] == -180.0012493 + 360.0 and east[0] == -180.0012493 + 0.0083333333
    assert west[0] > east[0]
    assert west[1] < east[1] and west[2] < east[2]
    assert -180 <= worldpop.centroid_lon([0])[0] <= 180


def test_wrapping_a_grid_given_in_0_to_360() -> None:
    grid = Grid.from_transform(4, 2, (90.0, 0.0, 0.0, 0.0, -90.0, 90.0))
    assert grid.centroid_lon([0, 1, 2, 3]).tolist() == [45.0, 135.0, -135.0, -45.0]
    west, east = grid.lon_bounds([0, 1, 2, 3])
    # west edges in [-180, 180), east edges in (-180, 180]
    assert west.tolist() == [0.0, 90.0, -180.0, -90.0]
    assert east.tolist() == [90.0, 180.0, -90.0, 0.0]


@pytest.mark.parametrize(
    ("transform", "dims", "needle"),
    [
        ((1.0, 0.1, -180.0, 0.0, -1.0, 90.0), (360, 180), "rotated"),
        ((1.0, 0.0, -180.0, 0.1, -1.0, 90.0), (360, 180), "rotated"),
        ((1.0, 0.0, -180.0, 0.0, 1.0, -90.0), (360, 180), "south-up"),
        ((-1.0, 0.0, 180.0, 0.0, -1.0, 90.0), (360, 180), "east-to-west"),
        ((1.0, 0.0, -180.0, 0.0, -1.0, 90.0), (0, 180), "no cells"),
        ((1.0, 0.0, -180.0, 0.0, -1.0, 90.0), (400, 180), "360 degrees"),
        ((1.0, 0.0, -180.0, 0.0, -1.0, 91.0), (360, 180), "beyond [-90, 90]"),
        ((1.0, 0.0, float("nan"), 0.0, -1.0, 90.0), (360, 180), "non-finite"),
    ],
)
def test_unusable_grids_are_rejected_with_e002(transform, dims, needle) -> None:
    with pytest.raises(RasterMismatchError, match=re.escape(needle)) as info:
        Grid.from_transform(dims[0], dims[1], transform)
    assert info.value.code == "E002_RASTER_MISMATCH"


def test_row_area_matches_geod_on_the_corners(worldpop: Grid) -> None:
    geod = Geod(ellps="WGS84")
    for row in (0, 1234, 8377, 16754):
        south, north = worldpop.lat_bounds([row])
        x0, x1 = worldpop.raw_x_edges([777])
        area, _ = geod.polygon_area_perimeter(
            [x0[0], x1[0], x1[0], x0[0]], [south[0], south[0], north[0], north[0]]
        )
        assert worldpop.row_area_m2([row])[0] == pytest.approx(abs(area), rel=1e-8)


def test_row_area_agrees_with_the_closed_form_between_parallels(worldpop: Grid) -> None:
    rows = np.arange(0, 16755, 97)
    south, north = worldpop.lat_bounds(rows)
    exact = ellipsoidal_band_area(south, north, worldpop.a)
    np.testing.assert_allclose(worldpop.row_area_m2(rows), exact, rtol=1e-8)


def test_whole_globe_cells_use_the_closed_form() -> None:
    grid = Grid.from_transform(1, 2, (360.0, 0.0, -180.0, 0.0, -90.0, 90.0))
    # two hemispheres: together the WGS84 surface, 510,065,621.7 km2
    assert grid.row_area_m2([0, 1]).sum() == pytest.approx(5.100656217e14, rel=1e-9)


def test_windows_cover_a_box_with_a_one_cell_rim() -> None:
    grid = Grid.from_transform(360, 180, (1.0, 0.0, -180.0, 0.0, -1.0, 90.0))
    # the box widened by one cell is -11..11; cells whose closed extent meets it are
    # columns 168 (-12..-11) .. 191 (11..12) and rows 78 (12..11) .. 101 (-11..-12)
    assert grid.windows_for_boxes([[-10, -10, 10, 10]]) == [Window(78, 102, 168, 192)]
    assert grid.windows_for_boxes([[0, 95, 1, 96]]) == []


def test_windows_of_a_dateline_country_stay_near_the_dateline(worldpop: Grid) -> None:
    windows = worldpop.windows_for_boxes([[177, -18, 180, -16], [-180, -17, -178, -15]])
    assert len(windows) == 2
    assert windows[0].col_start == 0 and windows[0].col_stop < 300
    assert windows[1].col_stop == 43199 and windows[1].col_start > 42700
    # the sliver of column 0 west of -180 (179.99875..180) makes a box at 179.999 hit it
    assert worldpop.windows_for_boxes([[179.999, 0, 180, 1]])[0].col_start == 0


def test_column_segments_split_the_straddling_cell(worldpop: Grid) -> None:
    segs = worldpop.column_segments(0, 2)
    pieces = {
        (int(c), float(a), float(b))
        for s in segs
        for c, a, b in zip(s.cols, s.x0, s.x1, strict=True)
    }
    assert (0, -180.0012493 + 360.0, 180.0) in pieces
    assert (0, -180.0, -180.0012493 + 0.0083333333) in pieces
    centroid_pieces = [
        bool(h) for s in segs for c, h in zip(s.cols, s.has_centroid, strict=True) if c == 0
    ]
    assert sorted(centroid_pieces) == [False, True]
    for s in segs:
        assert (np.diff(s.x0) >= 0).all() and (s.x0 < s.test_x).all() and (s.test_x < s.x1).all()


@given(st.integers(1, 50), st.integers(1, 50), st.integers(1, 17))
def test_chunks_tile_the_window_in_row_major_order(h: int, w: int, size: int) -> None:
    grid = Grid.from_transform(100, 100, (1.0, 0.0, -50.0, 0.0, -1.0, 50.0))
    window = Window(3, 3 + h, 7, 7 + w)
    chunks = list(grid.chunks(window, size))
    covered = np.zeros((h, w), dtype=int)
    for c in chunks:
        assert c.height <= size and c.width <= size
        covered[c.row_start - 3 : c.row_stop - 3, c.col_start - 7 : c.col_stop - 7] += 1
    assert (covered == 1).all()
    assert [(c.row_start, c.col_start) for c in chunks] == sorted(
        (c.row_start, c.col_start) for c in chunks
    )
    assert len(chunks) == math.ceil(h / size) * math.ceil(w / size)


@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=6))
def test_runs_round_trip_a_mask(rows: list[list[bool]]) -> None:
    mask = np.array(rows, dtype=bool)
    window = Window(10, 10 + mask.shape[0], 20, 25)
    runs = ChunkMask.from_mask(window, mask, np.zeros_like(mask))
    assert (runs.to_mask() == mask).all()
    assert runs.cells_included == mask.sum()
    assert (runs.col1 > runs.col0).all()
    keys = list(zip(runs.row.tolist(), runs.col0.tolist(), strict=True))
    assert keys == sorted(keys)


def test_far_apart_parts_get_their_own_windows_and_near_ones_share() -> None:
    grid = Grid.from_transform(3600, 1800, (0.1, 0.0, -180.0, 0.0, -0.1, 90.0))
    boxes = [
        [0.0, 0.0, 1.0, 1.0],  # a mainland
        [1.5, 0.2, 1.8, 0.4],  # an islet 5 cells off: merged with it
        [60.0, -30.0, 60.5, -29.5],  # an island far away: its own window
    ]
    windows = grid.windows_for_boxes(boxes, merge_gap=8)
    assert len(windows) == 2
    near, far = sorted(windows, key=lambda w: w.col_start)
    assert near.col_start <= 1799 and near.col_stop >= 1819  # covers 0..1.8 deg east
    assert far.height < 10 and far.width < 10  # 0.5 deg plus the rim, not the ocean between
    # windows never overlap, so no cell is visited twice
    cells = np.zeros((grid.nrows, grid.ncols), dtype=int)
    for w in windows:
        cells[w.row_start : w.row_stop, w.col_start : w.col_stop] += 1
    assert cells.max() == 1


def _cells_of(runs: Runs) -> list[tuple[int, int, int]]:
    """(country, row, col) of every cell, run by run: the stream the runs stand for."""
    return [
        (int(k), int(r), c)
        for k, r, a, b in zip(runs.country, runs.row, runs.col0, runs.col1, strict=True)
        for c in range(int(a), int(b))
    ]


RUN_TABLE = Runs.concat(
    [Runs.of([0, 0, 2], [0, 5, 1], [3, 7, 4], country=0), Runs.of([1], [2], [6], country=1)]
)


@pytest.mark.parametrize(("start", "stop"), [(0, 12), (0, 1), (2, 4), (3, 5), (4, 11), (7, 7)])
def test_a_slice_of_runs_holds_exactly_those_cells(start: int, stop: int) -> None:
    # 3 + 2 + 3 + 4 = 12 cells; a slice may cut a run at either end or hold nothing
    part = RUN_TABLE.slice_cells(start, stop)
    assert _cells_of(part) == _cells_of(RUN_TABLE)[start:stop]
    assert part.cells == stop - start


def test_runs_sort_by_country_then_row_then_column() -> None:
    shuffled = RUN_TABLE.take(np.array([3, 2, 0, 1]))
    assert _cells_of(shuffled.sorted()) == _cells_of(RUN_TABLE)
    assert len(Runs.empty()) == 0 and Runs.empty().cells == 0


def test_mask_counts_add_up() -> None:
    total = MaskCounts(10, 4, 1) + MaskCounts(5, 5, 0)
    assert total == MaskCounts(15, 9, 1)
    assert total.cells_excluded_outside == 15 - 9 - 1


_BOX = st.tuples(st.floats(-200, 200), st.floats(-80, 80), st.floats(0, 40), st.floats(0, 30)).map(
    lambda t: (t[0], t[1], t[0] + t[2], min(t[1] + t[3], 89.0))
)


@given(st.lists(st.tuples(st.integers(0, 5), _BOX), max_size=25))
def test_a_groups_windows_do_not_depend_on_the_other_groups(boxes) -> None:
    # the planner's one-pass form must give every group exactly the windows it gets when
    # planned alone (what the box tests above pin); a group with no box, or whose boxes
    # miss the grid, gets none
    grid = Grid.from_transform(720, 340, (0.5, 0.0, -180.25, 0.0, -0.5, 85.0))
    group = np.array([g for g, _ in boxes], dtype=np.int64)
    b = np.array([box for _, box in boxes], dtype=np.float64).reshape(-1, 4)
    together = grid.windows_for_box_groups(b, group, 6)
    for g in range(6):
        assert together[g] == grid.windows_for_boxes(b[group == g])
