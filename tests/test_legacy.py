"""Named edge cases for the per-cell reference engine, each with its expected cells
worked out by hand in the test (SPEC §3-§5).

Most tests use G10, a 10 x 10 grid with a = 1, c = 0, e = -1, f = 10: cell (row r,
col k) spans x in [k, k+1], y in [9-r, 10-r], and its centroid is (k + 0.5, 9.5 - r).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from tileindex.errors import InclusionRuleError
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import ChunkMask, Grid, Window
from tileindex.legacy import mask_chunk

G10 = Grid(ncols=10, nrows=10, a=1.0, c=0.0, e=-1.0, f=10.0)

# A coarse analogue of the WorldPop grid: its west edge lies half a cell west of -180,
# so column k spans -180.5 + k .. -179.5 + k with its centroid at -180 + k; column 0
# spans -180.5 .. -179.5 and its western half wraps to 179.5 .. 180. Rows span
# y in [9-r, 10-r] as in G10.
WORLD = Grid(ncols=360, nrows=20, a=1.0, c=-180.5, e=-1.0, f=10.0)

BOTH = ("center", "any_overlap")


def _country(*geoms: shapely.Geometry, iso: str = "AA") -> CountryGeometry:
    return country_geometry(iso, list(geoms))


def _run(grid: Grid, country: CountryGeometry, predicate: str) -> ChunkMask:
    return mask_chunk(grid, Window(0, grid.nrows, 0, grid.ncols), country, predicate)


def _cells(runs: ChunkMask) -> set[tuple[int, int]]:
    return {
        (r, k)
        for r, k0, k1 in zip(runs.row.tolist(), runs.col0.tolist(), runs.col1.tolist(), strict=True)
        for k in range(k0, k1)
    }


def _block(rows: Iterable[int], cols: Iterable[int]) -> set[tuple[int, int]]:
    cols = list(cols)
    return {(r, k) for r in rows for k in cols}


# -- center: exterior boundary is inclusive ------------------------------------------------


def test_center_on_exterior_edge_is_included() -> None:
    # The box's edges run through centroids: x = 2.5 and 5.5 are centroid columns 2 and
    # 5, y = 4.5 and 7.5 are centroid rows 5 and 2. Closed shell => all 4 x 4 included.
    country = _country(box(2.5, 4.5, 5.5, 7.5))
    runs = _run(G10, country, "center")
    expected = _block(range(2, 6), range(2, 6))
    assert _cells(runs) == expected
    assert (3, 2) in expected  # centroid (2.5, 6.5), on the west edge
    assert runs.cells_excluded_hole == 0


def test_any_overlap_of_box_through_centroids() -> None:
    # Same box: x in [2.5, 5.5] overlaps cols 2..5 with positive width (col 5: 5..5.5);
    # y in [4.5, 7.5] overlaps rows 2..5 (row 5: y 4..5 -> 4.5..5). Same cells as center.
    country = _country(box(2.5, 4.5, 5.5, 7.5))
    assert _cells(_run(G10, country, "any_overlap")) == _block(range(2, 6), range(2, 6))


def test_center_on_exterior_vertex_is_included() -> None:
    # A small triangle whose vertex (4.5, 4.5) is the centroid of (row 5, col 4). The
    # triangle spans x, y in [4.5, 5.2], so no other centroid (the next are at 5.5)
    # lies in it.
    country = _country(Polygon([(4.5, 4.5), (5.2, 5.0), (5.0, 5.2)]))
    runs = _run(G10, country, "center")
    assert _cells(runs) == {(5, 4)}
    assert runs.cells_excluded_hole == 0


# -- center: hole boundary is exclusive -----------------------------------------------------

# The whole grid with a hole whose edges run through centroids: x = 2.5 .. 6.5 are
# centroid columns 2..6 and y = 2.5 .. 6.5 are centroid rows 7..3.
_HOLED = Polygon(
    [(0, 0), (10, 0), (10, 10), (0, 10)], [[(2.5, 2.5), (6.5, 2.5), (6.5, 6.5), (2.5, 6.5)]]
)
_HOLE_CELLS = _block(range(3, 8), range(2, 7))  # 25 cells with centroid in the closed hole


def test_center_on_hole_edge_is_excluded_and_counted_as_hole() -> None:
    runs = _run(G10, _country(_HOLED), "center")
    cells = _cells(runs)
    assert (5, 2) not in cells  # centroid (2.5, 4.5): on the hole's west edge
    assert (3, 4) not in cells  # centroid (4.5, 6.5): on the hole's north edge
    assert cells == _block(range(10), range(10)) - _HOLE_CELLS
    # every excluded cell has its centroid in the shell, so all 25 count as hole
    assert runs.cells_included == 75
    assert runs.cells_excluded_hole == 25


def test_center_on_hole_vertex_is_excluded() -> None:
    cells = _cells(_run(G10, _country(_HOLED), "center"))
    # the hole's corners (2.5, 2.5), (6.5, 2.5), (6.5, 6.5), (2.5, 6.5)
    for corner in [(7, 2), (7, 6), (3, 6), (3, 2)]:
        assert corner not in cells
    assert (2, 2) in cells  # centroid (2.5, 7.5): just outside the hole's corner


def test_any_overlap_with_hole_excludes_only_cells_inside_the_closed_hole() -> None:
    # The hole's interior is (2.5, 6.5)^2. A cell misses the country's interior only if
    # it lies in the closed hole: x in [k, k+1] within [2.5, 6.5] -> cols 3..5; y in
    # [9-r, 10-r] within [2.5, 6.5] -> rows 4..6. Their centroids are in the shell, so
    # all 9 count as hole; the cells straddling the hole's edges overlap the country.
    runs = _run(G10, _country(_HOLED), "any_overlap")
    assert _cells(runs) == _block(range(10), range(10)) - _block(range(4, 7), range(3, 6))
    assert runs.cells_excluded_hole == 9


def test_enclave_centre_goes_to_the_enclave_only() -> None:
    # The host's hole is exactly the enclave's outline. Centroids inside the enclave or
    # on its border go to the enclave (outer boundary inclusive) and not to the host
    # (hole boundary exclusive): the two results partition the grid.
    host = _run(G10, _country(_HOLED, iso="HH"), "center")
    enclave = _run(G10, _country(box(2.5, 2.5, 6.5, 6.5), iso="EE"), "center")
    assert (5, 4) in _cells(enclave) and (5, 4) not in _cells(host)  # (4.5, 4.5): inside
    assert (5, 2) in _cells(enclave) and (5, 2) not in _cells(host)  # (2.5, 4.5): border
    assert _cells(enclave) == _HOLE_CELLS
    assert _cells(host) | _cells(enclave) == _block(range(10), range(10))
    assert not _cells(host) & _cells(enclave)
    assert enclave.cells_excluded_hole == 0


def test_island_in_a_hole_is_included_through_its_own_part() -> None:
    # An island box(3.5, 3.5, 5.5, 5.5) in the hole: its own shell holds centroids
    # x, y in {3.5, 4.5, 5.5} -> cols 3..5, rows 4..6 (9 cells, edges inclusive). The
    # other 16 hole cells stay excluded and count as hole.
    island = box(3.5, 3.5, 5.5, 5.5)
    runs = _run(G10, _country(MultiPolygon([_HOLED, island])), "center")
    island_cells = _block(range(4, 7), range(3, 6))
    assert _cells(runs) == (_block(range(10), range(10)) - _HOLE_CELLS) | island_cells
    assert runs.cells_excluded_hole == 25 - 9


def test_shared_border_goes_to_both_countries() -> None:
    # A = x in [0, 4.5], B = x in [4.5, 10]: column 4's centroids (x = 4.5) lie on the
    # shared border, and column 4 (x 4..5) overlaps both with positive width.
    a = _country(box(0, 0, 4.5, 10), iso="AA")
    b = _country(box(4.5, 0, 10, 10), iso="BB")
    for predicate in BOTH:
        assert _cells(_run(G10, a, predicate)) == _block(range(10), range(0, 5))
        assert _cells(_run(G10, b, predicate)) == _block(range(10), range(4, 10))


# -- any_overlap: contact is not overlap, any positive width is ------------------------------


def test_any_overlap_edge_contact_is_excluded() -> None:
    # box(3, 3, 6, 6) is aligned to cell edges: it covers cols 3..5 and rows whose
    # y range [9-r, 10-r] lies in [3, 6] -> rows 4..6. Columns 2 and 6 and rows 3 and 7
    # only share an edge with it.
    cells = _cells(_run(G10, _country(box(3, 3, 6, 6)), "any_overlap"))
    assert cells == _block(range(4, 7), range(3, 6))
    assert (5, 2) not in cells and (5, 6) not in cells  # west / east neighbours
    assert (3, 4) not in cells and (7, 4) not in cells  # north / south neighbours


def test_any_overlap_corner_contact_is_excluded() -> None:
    # A triangle with vertex (5, 5) on a cell corner and every other point at x > 5 and
    # y > 5 after that vertex, so the cells west or south of (5, 5) — (row 4, col 4),
    # (row 5, col 4), (row 5, col 5) — touch it at that point only. It overlaps the
    # four cells of x, y in [5, 7]: e.g. (6.1, 6.1) is inside (x + y < 12.5).
    country = _country(Polygon([(5, 5), (7, 5.5), (5.5, 7)]))
    assert _cells(_run(G10, country, "any_overlap")) == _block(range(3, 5), range(5, 7))
    # Centroids (5.5, 5.5), (6.5, 5.5), (5.5, 6.5) are inside; (6.5, 6.5) has
    # x + y = 13 > 12.5, beyond the edge (7, 5.5)-(5.5, 7).
    assert _cells(_run(G10, country, "center")) == {(4, 5), (4, 6), (3, 5)}


def test_sliver_thinner_than_a_cell() -> None:
    # A 1e-9 wide sliver at x = 2.1, y in [3.2, 3.7], inside cell (row 6, col 2). It
    # misses that cell's centroid (2.5, 3.5) but has positive area in the cell.
    country = _country(box(2.1, 3.2, 2.1 + 1e-9, 3.7))
    assert _cells(_run(G10, country, "any_overlap")) == {(6, 2)}
    runs = _run(G10, country, "center")
    assert _cells(runs) == set()
    assert runs.cells_excluded_hole == 0


def test_polygon_equal_to_a_cell() -> None:
    # box(3, 4, 4, 5) is exactly cell (row 5, col 3); its neighbours touch it along an
    # edge or at a corner only, and its centroid (3.5, 4.5) is inside.
    country = _country(box(3, 4, 4, 5))
    for predicate in BOTH:
        assert _cells(_run(G10, country, predicate)) == {(5, 3)}


def test_last_column_and_shape_partly_off_the_grid() -> None:
    # x in [9.5, 12]: the last column's centroids (9.5) are on the west edge and the
    # column (x 9..10) overlaps it; the part beyond x = 10 is off the grid.
    country = _country(box(9.5, 0, 12, 10))
    for predicate in BOTH:
        assert _cells(_run(G10, country, predicate)) == _block(range(10), range(9, 10))


def test_shape_touching_the_grid_east_edge_from_outside() -> None:
    country = _country(box(10, 0, 12, 10))
    for predicate in BOTH:
        assert _cells(_run(G10, country, predicate)) == set()


# -- ±180 ----------------------------------------------------------------------------------


def test_country_crossing_the_antimeridian_gets_cells_on_both_sides() -> None:
    # Given as x in [177, 182], y in [0, 5]; normalised to [177, 180] + [-180, -178].
    # WORLD centroids are at x = -180 + k: 177, 178, 179 (cols 357..359) and -180, -179,
    # -178 (cols 0..2) lie in it. For any_overlap, col 2 (-178.5 .. -177.5) overlaps
    # [-180, -178] and col 357 (176.5 .. 177.5) overlaps [177, 180]; cols 3 and 356 do
    # not. Rows: centroid 9.5 - r in [0, 5] -> rows 5..9; y ranges overlapping (0, 5)
    # with positive height -> rows 5..9 as well.
    country = _country(box(177, 0, 182, 5))
    assert country.geom.geom_type == "MultiPolygon"
    expected = _block(range(5, 10), [0, 1, 2, 357, 358, 359])
    for predicate in BOTH:
        assert _cells(_run(WORLD, country, predicate)) == expected


def test_worldpop_like_column_zero_western_sliver_wraps_to_plus_180() -> None:
    # Column 0 spans -180.5 .. -179.5; its western piece wraps to 179.5 .. 180 and
    # overlaps a country at 179.6 .. 180, so any_overlap includes it (rows 5..9 as
    # above). Its centroid is published at -180.0, which is not in [179.6, 180], and
    # column 359 (178.5 .. 179.5) misses the country: center includes nothing.
    country = _country(box(179.6, 0, 180, 5))
    assert _cells(_run(WORLD, country, "any_overlap")) == _block(range(5, 10), range(0, 1))
    assert _cells(_run(WORLD, country, "center")) == set()


def test_worldpop_like_column_zero_eastern_piece() -> None:
    # A country at -180 .. -179.8 overlaps column 0's eastern piece (-180 .. -179.5);
    # the centroid -180.0 is on its west edge (inclusive), so both predicates agree.
    country = _country(box(-180, 0, -179.8, 5))
    for predicate in BOTH:
        assert _cells(_run(WORLD, country, predicate)) == _block(range(5, 10), range(0, 1))


def test_grid_beyond_plus_180_is_tested_at_wrapped_positions() -> None:
    # A 0..360-style grid: c = 169.5, so column 10 spans 179.5 .. 180.5 (centroid 180.0,
    # kept as is) and column 11 spans 180.5 .. 181.5, i.e. -179.5 .. -178.5 wrapped
    # (centroid 181 -> -179). A country at -180 .. -179.8 overlaps column 10's eastern
    # piece (-180 .. -179.5) only; no centroid is in it (180.0 is not -180.0).
    grid = Grid(ncols=20, nrows=10, a=1.0, c=169.5, e=-1.0, f=10.0)
    country = _country(box(-180, 0, -179.8, 5))
    assert _cells(_run(grid, country, "any_overlap")) == _block(range(5, 10), range(10, 11))
    assert _cells(_run(grid, country, "center")) == set()
    # a country at -179.2 .. -178.6 holds column 11's wrapped centroid -179
    country = _country(box(-179.2, 0, -178.6, 5))
    for predicate in BOTH:
        assert _cells(_run(grid, country, predicate)) == _block(range(5, 10), range(11, 12))


# -- plumbing ------------------------------------------------------------------------------


def test_empty_country_includes_nothing() -> None:
    country = CountryGeometry.from_geometry("XX", Polygon())
    for predicate in BOTH:
        runs = _run(G10, country, predicate)
        assert runs.cells_included == 0
        assert runs.cells_excluded_hole == 0
        assert runs.cells_visited == 100


def test_unknown_predicate_is_rejected() -> None:
    with pytest.raises(InclusionRuleError, match="any_overlap"):
        _run(G10, _country(box(0, 0, 1, 1)), "centre")


def test_ring_orientation_does_not_matter() -> None:
    forward = _country(shapely.orient_polygons(_HOLED, exterior_cw=False))
    backward = _country(shapely.orient_polygons(_HOLED, exterior_cw=True))
    for predicate in BOTH:
        a, b = _run(G10, forward, predicate), _run(G10, backward, predicate)
        assert _cells(a) == _cells(b)
        assert a.cells_excluded_hole == b.cells_excluded_hole


def test_sub_window_uses_grid_coordinates() -> None:
    # Cells of a window are reported in grid rows/cols and agree with the full run.
    country = _country(_HOLED)
    full = _cells(_run(G10, country, "center"))
    window = Window(2, 6, 1, 8)
    runs = mask_chunk(G10, window, country, "center")
    assert _cells(runs) == {(r, k) for r, k in full if 2 <= r < 6 and 1 <= k < 8}
    assert runs.cells_visited == 28
