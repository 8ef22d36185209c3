"""The per-cell reference engine's plumbing: empty countries, bad predicates, windows.

Its answers on the named edge cases (docs/CONTRACT.md §3-§5) are checked with the other
engines' in tests/test_edge_cases.py, against the table in tests/edge_cases.py.
"""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import Polygon, box

from edge_cases import CASES, G10, HOLE_CENTROIDS, block
from tileindex.errors import InclusionRuleError
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import ChunkMask, Grid, Window
from tileindex.legacy import mask_chunk

PREDICATES = ("center", "any_overlap", "within")


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


# -- plumbing ------------------------------------------------------------------------------


def test_empty_country_includes_nothing() -> None:
    country = CountryGeometry.from_geometry("XX", Polygon())
    for predicate in PREDICATES:
        runs = _run(G10, country, predicate)
        assert runs.cells_included == 0
        assert runs.cells_excluded_hole == 0
        assert runs.cells_visited == 100


def test_unknown_predicate_is_rejected() -> None:
    with pytest.raises(InclusionRuleError, match=r"unknown predicate 'centre'.*any_overlap"):
        _run(G10, _country(box(0, 0, 1, 1)), "centre")


def test_sub_window_reports_grid_rows_and_columns() -> None:
    # A window of rows 2..5 and cols 1..7 gives the table's cells inside it, numbered as
    # in the grid, and counts the hole centroids inside it (rows 3..5 x cols 2..6).
    case = CASES["centre_on_hole_edge_and_vertex"]
    inside = block(range(2, 6), range(1, 8))
    runs = mask_chunk(G10, Window(2, 6, 1, 8), case.country(), "center")
    assert _cells(runs) == case.center & inside
    assert runs.cells_excluded_hole == len(HOLE_CENTROIDS & inside) == 15
    assert runs.cells_visited == 28
