"""Every engine on every named edge case (tests/edge_cases.py), in every ring orientation,
under every predicate, against cells worked out by hand.

The engines: the fast kernel (``tileindex.kernel``), the per-cell reference
(``tileindex.legacy``) and ``_brute_force`` below, written from docs/CONTRACT.md §3-§5
and §10.2 alone in exact rational arithmetic: it shares no code with the other two (not even
GEOS), computing centroids, cell bounds, the wrap at ±180, point-in-ring,
box-meets-interior and box-in-G itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from fractions import Fraction

import pytest

from edge_cases import CASES, Cells, EdgeCase, block
from tileindex import kernel, legacy
from tileindex.geometry import CountryGeometry
from tileindex.grid import ChunkMask, Grid, Window
from tileindex.predicates import PREDICATES

Point = tuple[Fraction, Fraction]
Ring = list[Point]
Result = tuple[Cells, int]  # included cells, cells_excluded_hole

# -- the brute force: docs/CONTRACT.md §3-§5 in exact arithmetic ----------------------------

# [lo, hi] longitude ranges and the shift that wraps each into [-180, 180] (§4): a cell
# straddling ±180 is cut there and each piece is tested at its wrapped position
_WRAP = ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0))


def _ring(coords: Sequence[tuple[float, float]]) -> Ring:
    return [(Fraction(x), Fraction(y)) for x, y in coords]


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    return (
        cross == 0
        and min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
        and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])
    )


def _covers(ring: Ring, p: Point) -> bool:
    """``p`` is inside the closed ring: on it, or an odd number of crossings to its east."""
    edges = list(itertools.pairwise(ring))
    if any(_on_segment(a, b, p) for a, b in edges):
        return True
    inside = False
    for a, b in edges:
        if (a[1] > p[1]) != (b[1] > p[1]):
            x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            inside ^= x > p[0]
    return inside


def _segment_meets_open_box(a: Point, b: Point, box: tuple[Fraction, ...]) -> bool:
    """Liang-Barsky: is {t in [0, 1] : a + t (b - a) in the open box} non-empty?"""
    x0, y0, x1, y1 = box
    lo, hi = Fraction(0), Fraction(1)
    for p, q, low, high in ((a[0], b[0], x0, x1), (a[1], b[1], y0, y1)):
        d = q - p
        if d == 0:
            if not low < p < high:
                return False
            continue
        ta, tb = (low - p) / d, (high - p) / d
        lo, hi = max(lo, min(ta, tb)), min(hi, max(ta, tb))
    return lo < hi


class _Shape:
    """A country's parts as exact rings."""

    def __init__(self, country: CountryGeometry) -> None:
        self.parts = [
            (_ring(p.exterior.coords), [_ring(h.coords) for h in p.interiors])
            for p in country.parts
        ]
        self.segments = [
            (a, b)
            for shell, holes in self.parts
            for ring in (shell, *holes)
            for a, b in itertools.pairwise(ring)
        ]
        self.bounds = [p.bounds for p in country.parts]

    def in_shell(self, p: Point) -> bool:
        return any(_covers(shell, p) for shell, _ in self.parts)

    def center(self, p: Point) -> bool:
        # §5: in or on the shell of some part P, in or on none of P's holes
        return any(
            _covers(shell, p) and not any(_covers(h, p) for h in holes)
            for shell, holes in self.parts
        )

    def meets_interior(self, box: tuple[Fraction, ...]) -> bool:
        # The open box meets the interior iff a boundary segment passes through the open
        # box (interior points are arbitrarily close to every boundary point), or else,
        # the open box then holding no boundary point, iff its midpoint is interior.
        if any(_segment_meets_open_box(a, b, box) for a, b in self.segments):
            return True
        x0, y0, x1, y1 = box
        return self.center(((x0 + x1) / 2, (y0 + y1) / 2))

    def covers(self, box: tuple[Fraction, ...]) -> bool:
        # §10.2: G is the closure of its interior, so the closed box lies in G iff no
        # boundary point lies in the open box (which is then wholly interior or wholly
        # exterior) and its midpoint, then off the boundary, is in G.
        if any(_segment_meets_open_box(a, b, box) for a, b in self.segments):
            return False
        x0, y0, x1, y1 = box
        return self.center(((x0 + x1) / 2, (y0 + y1) / 2))

    def near(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """The closed box meets some part's bounding box (a sound filter before the
        exact tests: a cell far from every part neither overlaps nor holds it)."""
        return any(
            x0 <= gx1 and gx0 <= x1 and y0 <= gy1 and gy0 <= y1
            for gx0, gy0, gx1, gy1 in self.bounds
        )


def _brute_force(grid: Grid, country: CountryGeometry, predicate: str) -> Result:
    shape = _Shape(country)
    a, c, e, f = grid.a, grid.c, grid.e, grid.f
    cells: set[tuple[int, int]] = set()
    hole = 0
    for row in range(grid.nrows):
        # §3, in float64 exactly in this form
        lat = f + e * (row + 0.5)
        south, north = f + e * (row + 1.0), f + e * row
        for col in range(grid.ncols):
            lon = c + a * (col + 0.5)
            lon = lon - 360.0 if lon > 180.0 else lon + 360.0 if lon < -180.0 else lon
            centroid = (Fraction(lon), Fraction(lat))
            in_shell = shape.near(lon, lat, lon, lat) and shape.in_shell(centroid)
            if predicate == "center":
                hit = in_shell and shape.center(centroid)
            else:
                x0, x1 = c + a * col, c + a * (col + 1.0)
                pieces = [
                    (max(x0, lo) + shift, min(x1, hi) + shift)
                    for lo, hi, shift in _WRAP
                    if max(x0, lo) < min(x1, hi)
                ]
                boxes = [tuple(Fraction(v) for v in (p0, south, p1, north)) for p0, p1 in pieces]
                near = [shape.near(p0, south, p1, north) for p0, p1 in pieces]
                if predicate == "any_overlap":
                    hit = any(
                        n and shape.meets_interior(b) for n, b in zip(near, boxes, strict=True)
                    )
                else:  # within: every piece, and a cell has at least one
                    hit = bool(boxes) and all(
                        n and shape.covers(b) for n, b in zip(near, boxes, strict=True)
                    )
            if hit:
                cells.add((row, col))
            elif in_shell:
                hole += 1
    return frozenset(cells), hole


# -- the engines ----------------------------------------------------------------------------


def _cells(runs: ChunkMask) -> Cells:
    return frozenset(
        (r, k)
        for r, k0, k1 in zip(runs.row.tolist(), runs.col0.tolist(), runs.col1.tolist(), strict=True)
        for k in range(k0, k1)
    )


def _engine(
    mask_chunk: Callable[[Grid, Window, CountryGeometry, str], ChunkMask],
) -> Callable[[Grid, CountryGeometry, str], Result]:
    def run(grid: Grid, country: CountryGeometry, predicate: str) -> Result:
        runs = mask_chunk(grid, Window(0, grid.nrows, 0, grid.ncols), country, predicate)
        cells = _cells(runs)
        assert runs.cells_included == len(cells), "cells_included is not the number of cells"
        return cells, runs.cells_excluded_hole

    return run


ENGINES: dict[str, Callable[[Grid, CountryGeometry, str], Result]] = {
    "kernel": _engine(kernel.mask_chunk),
    "legacy": _engine(legacy.mask_chunk),
    "brute_force": _brute_force,
}


def _expected(case: EdgeCase, engine: str, predicate: str) -> Cells:
    # exact arithmetic is the brute force's reading; GEOS's is the contract's (edge_cases)
    return case.exact(predicate) if engine == "brute_force" else case.expected(predicate)


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("predicate", PREDICATES)
@pytest.mark.parametrize(
    ("name", "orientation"), [(n, o) for n, case in CASES.items() for o in case.orientations]
)
@pytest.mark.parametrize("engine", list(ENGINES))
def test_engine_gives_the_expected_cells(
    engine: str, name: str, predicate: str, orientation: str
) -> None:
    case = CASES[name]
    cells, hole = ENGINES[engine](case.grid, case.country(orientation), predicate)
    want = _expected(case, engine, predicate)
    assert cells == want, f"missing {sorted(want - cells)}, extra {sorted(cells - want)} (row, col)"
    assert hole == case.holes(predicate), "cells_excluded_hole"


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.exact_any_overlap is not None])
def test_sub_ulp_cases_still_split_exact_arithmetic_from_geos(name: str) -> None:
    # if a GEOS upgrade or a changed case made the two readings agree, the case would no
    # longer show that the engines follow GEOS
    case = CASES[name]
    assert case.exact("any_overlap") != case.expected("any_overlap")


@pytest.mark.parametrize("engine", list(ENGINES))
def test_enclave_border_goes_to_the_enclave_only(engine: str) -> None:
    host_case = CASES["centre_on_hole_edge_and_vertex"]  # its hole is the enclave's outline
    enclave_case = CASES["enclave"]
    run = ENGINES[engine]
    host, _ = run(host_case.grid, host_case.country(iso="HH"), "center")
    enclave, _ = run(enclave_case.grid, enclave_case.country(iso="EE"), "center")
    assert (5, 2) in enclave and (5, 2) not in host  # centroid (2.5, 4.5), on the border
    assert host | enclave == block(range(10), range(10))
    assert not host & enclave


@pytest.mark.parametrize("predicate", ["center", "any_overlap"])
@pytest.mark.parametrize("engine", list(ENGINES))
def test_shared_border_goes_to_both_countries(engine: str, predicate: str) -> None:
    west, east = CASES["shared_border_west"], CASES["shared_border_east"]
    run = ENGINES[engine]
    a, _ = run(west.grid, west.country(iso="AA"), predicate)
    b, _ = run(east.grid, east.country(iso="BB"), predicate)
    assert a & b == block(range(10), [4])  # column 4: centroids on x = 4.5
    assert a | b == block(range(10), range(10))


@pytest.mark.parametrize("engine", list(ENGINES))
def test_within_a_shared_border_cell_goes_to_neither_country(engine: str) -> None:
    # docs/CONTRACT.md §10.2: column 4 (x 4 .. 5) is split by x = 4.5, so no country has
    # the whole closed cell; every other cell goes to exactly one
    west, east = CASES["shared_border_west"], CASES["shared_border_east"]
    run = ENGINES[engine]
    a, _ = run(west.grid, west.country(iso="AA"), "within")
    b, _ = run(east.grid, east.country(iso="BB"), "within")
    assert not a & b
    assert a | b == block(range(10), range(10)) - block(range(10), [4])


@pytest.mark.parametrize("name", list(CASES))
def test_within_is_inside_center_is_inside_any_overlap(name: str) -> None:
    # docs/CONTRACT.md §10.2, on the hand-derived cells themselves
    case = CASES[name]
    assert case.within <= case.center <= case.any_overlap
