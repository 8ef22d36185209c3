"""Coverage fractions and ``within`` against references written here from the contract
(docs/CONTRACT.md §3, §4, §10.2, §10.3), without grid.py's helpers:

* ``_exact_fraction``: exact rational area of cell ∩ G -- each ring clipped to each
  piece of the cell by Sutherland-Hodgman on ``Fraction``s, shoelace in ``Fraction``s
  (shells add, holes subtract, |area| per ring so orientation cannot matter);
* ``_brute_within``: GEOS ``covers(G, piece box)`` for every piece of the cell;
* ``any_overlap`` from the kernel (itself tested against the legacy engine).

Required: |fraction - exact| <= 1e-9, ``fraction > 0`` iff any_overlap, ``fraction ==
1.0`` iff within (``cells_within`` and the kernel's ``within`` alike), ``cells_within``
== brute force, and a cell's value independent of
the other cells asked about. The largest error seen is printed at the end of the module
(run with ``-s`` to see it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from tileindex import coverage, kernel
from tileindex.coverage import cell_fractions, cells_within
from tileindex.errors import GeometryInvalidError
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid, Window

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
_TOL = 1e-9
_WORST = {"error": 0.0, "cells": 0}

# [lo, hi] longitude ranges and the shift that wraps each into [-180, 180] (§4)
_WRAP = ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0))

Point = tuple[Fraction, Fraction]


@pytest.fixture(scope="module", autouse=True)
def _report_worst_error() -> Iterator[None]:
    yield
    print(
        f"\n[coverage] largest |fraction - exact| = {_WORST['error']:.3e} "
        f"over {_WORST['cells']} cells compared"
    )


# -- the references ---------------------------------------------------------------------------


def _cell_pieces(grid: Grid, row: int, col: int) -> list[tuple[Fraction, Fraction]]:
    """(west, east) of each piece of the cell, exactly: §3 bounds in float64 as given,
    the split at ±180 and the shift by 360 done in rationals."""
    x0 = Fraction(grid.c + grid.a * col)
    x1 = Fraction(grid.c + grid.a * (col + 1.0))
    out = []
    for lo, hi, shift in _WRAP:
        p0, p1 = max(x0, Fraction(lo)), min(x1, Fraction(hi))
        if p0 < p1:
            out.append((p0 + Fraction(shift), p1 + Fraction(shift)))
    return out


def _clip(ring: list[Point], axis: int, bound: Fraction, keep_above: bool) -> list[Point]:
    """One Sutherland-Hodgman pass: the part of ``ring`` with coordinate ``axis`` >= or
    <= ``bound``."""

    def inside(p: Point) -> bool:
        return p[axis] >= bound if keep_above else p[axis] <= bound

    out: list[Point] = []
    for i, cur in enumerate(ring):
        prev = ring[i - 1]
        if inside(cur) != inside(prev):
            t = (bound - prev[axis]) / (cur[axis] - prev[axis])
            out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
        if inside(cur):
            out.append(cur)
    return out


def _ring_area_in_box(
    ring: list[Point], x0: Fraction, y0: Fraction, x1: Fraction, y1: Fraction
) -> Fraction:
    for axis, bound, above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        ring = _clip(ring, axis, bound, above)
        if not ring:
            return Fraction(0)
    twice = sum(
        (ring[i - 1][0] * ring[i][1] - ring[i][0] * ring[i - 1][1] for i in range(len(ring))),
        Fraction(0),
    )
    return abs(twice) / 2


def _rings(geom: shapely.Geometry) -> list[tuple[list[Point], bool, tuple[float, ...]]]:
    """(vertices without the closing one, is_shell, bounds) of every ring."""
    out = []
    for part in shapely.get_parts(geom):
        rings = [(part.exterior, True)] + [(r, False) for r in part.interiors]
        for ring, is_shell in rings:
            xy = shapely.get_coordinates(ring)[:-1]
            pts = [(Fraction(float(x)), Fraction(float(y))) for x, y in xy]
            out.append((pts, is_shell, tuple(float(v) for v in ring.bounds)))
    return out


def _exact_fraction(grid: Grid, rings: Sequence, row: int, col: int) -> Fraction:
    s = Fraction(grid.f + grid.e * (row + 1.0))
    n = Fraction(grid.f + grid.e * row)
    x0 = Fraction(grid.c + grid.a * col)
    x1 = Fraction(grid.c + grid.a * (col + 1.0))
    area = Fraction(0)
    for p0, p1 in _cell_pieces(grid, row, col):
        for pts, is_shell, (bx0, by0, bx1, by1) in rings:
            if bx1 <= p0 or bx0 >= p1 or by1 <= s or by0 >= n:
                continue
            a = _ring_area_in_box(pts, p0, s, p1, n)
            area += a if is_shell else -a
    return area / ((x1 - x0) * (n - s))


def _brute_within(grid: Grid, geom: shapely.Geometry, row: int, col: int) -> bool:
    """Every piece of the closed cell covered by G (GEOS); pieces as float64 boxes at
    their wrapped positions, a piece without an interior float dropped (it has no area)."""
    x0, x1 = grid.c + grid.a * col, grid.c + grid.a * (col + 1.0)
    s, n = grid.f + grid.e * (row + 1.0), grid.f + grid.e * row
    pieces = []
    for lo, hi, shift in _WRAP:
        p0, p1 = max(x0, lo) + shift, min(x1, hi) + shift
        if np.nextafter(p0, math.inf) < p1:
            pieces.append((p0, p1))
    return bool(pieces) and all(shapely.covers(geom, box(p0, s, p1, n)) for p0, p1 in pieces)


def _any_overlap(grid: Grid, country: CountryGeometry) -> npt.NDArray[np.bool_]:
    full = Window(0, grid.nrows, 0, grid.ncols)
    return kernel.mask_chunk(grid, full, country, "any_overlap").to_mask()


def _kernel_within(grid: Grid, country: CountryGeometry) -> npt.NDArray[np.bool_]:
    full = Window(0, grid.nrows, 0, grid.ncols)
    return kernel.mask_chunk(grid, full, country, "within").to_mask()


def _all_cells(grid: Grid) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    rows, cols = np.divmod(np.arange(grid.nrows * grid.ncols, dtype=np.int64), grid.ncols)
    return rows, cols


def _check(grid: Grid, country: CountryGeometry) -> npt.NDArray[np.float64]:
    """Every cell of the grid against the references; returns the fractions (nrows, ncols)."""
    rows, cols = _all_cells(grid)
    frac = cell_fractions(grid, country, rows, cols)
    within = cells_within(grid, country, rows, cols)
    overlap = _any_overlap(grid, country).ravel()
    wkt = shapely.to_wkt(country.geom, rounding_precision=-1)
    where = f"grid={grid!r}\nwkt={wkt}"

    assert ((frac >= 0.0) & (frac <= 1.0)).all(), where
    bad = np.flatnonzero((frac > 0.0) != overlap)
    assert bad.size == 0, f"fraction > 0 != any_overlap at cells {bad.tolist()}\n{where}"
    bad = np.flatnonzero((frac == 1.0) != within)
    assert bad.size == 0, f"fraction == 1 != within at cells {bad.tolist()}\n{where}"
    # the kernel's within (docs/CONTRACT.md §10.2) is the same set: the published
    # fractions of a within build read exactly 1.0 on every row
    bad = np.flatnonzero((frac == 1.0) != _kernel_within(grid, country).ravel())
    assert bad.size == 0, f"fraction == 1 != kernel within at cells {bad.tolist()}\n{where}"

    rings = _rings(country.geom)
    for i in range(rows.size):
        r, c = int(rows[i]), int(cols[i])
        expect_within = _brute_within(grid, country.geom, r, c)
        assert within[i] == expect_within, f"within of cell ({r}, {c})\n{where}"
        exact = _exact_fraction(grid, rings, r, c)
        err = abs(float(Fraction(float(frac[i])) - exact))
        _WORST["error"] = max(_WORST["error"], err)
        _WORST["cells"] += 1
        assert err <= _TOL, f"cell ({r}, {c}): {frac[i]!r} vs exact {float(exact)!r}\n{where}"
    return frac.reshape(grid.nrows, grid.ncols)


def _check_independent_of_query(grid: Grid, country: CountryGeometry, seed: int) -> None:
    """A cell's value does not depend on the other cells asked about, or their order."""
    rows, cols = _all_cells(grid)
    whole = cell_fractions(grid, country, rows, cols)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(rows.size)[: max(1, rows.size // 3)]
    pick = np.concatenate([pick, pick[:2]])  # repeats are allowed
    part = cell_fractions(grid, country, rows[pick], cols[pick])
    assert part.tobytes() == whole[pick].tobytes()
    assert (cells_within(grid, country, rows[pick], cols[pick]) == (whole[pick] == 1.0)).all()


# -- strategies (the ideas of test_exactness.py: vertices on cell corners, edges, centres) --

_STEPS = (1.0, 0.5, 0.25, 1.0 / 3.0, 0.7, 0.0083333333)
_NORTH = (10.0, 0.3, 1.0 / 3.0, 45.123, -20.0, 83.6329165016827)


@st.composite
def grids(draw: st.DrawFn, max_side: int = 10) -> Grid:
    ncols = draw(st.integers(3, max_side))
    nrows = draw(st.integers(3, max_side))
    a = draw(st.sampled_from(_STEPS))
    e = -draw(st.sampled_from(_STEPS))
    where = draw(st.sampled_from(["anywhere", "west_overhang", "east_overhang", "worldpop"]))
    if where == "worldpop":
        a, c, e, f = 0.0083333333, -180.0012493, -0.0083333333, 83.6329165016827
    else:
        f = draw(st.sampled_from(_NORTH))
        if where == "anywhere":
            c = draw(st.integers(-30, 30)) + draw(st.sampled_from([0.0, 0.3, -0.0012493]))
        elif where == "west_overhang":
            c = -180.0 - a * draw(st.sampled_from([0.0012493, 0.5, 1.0 / 3.0, 2.1]))
        else:
            k = draw(st.integers(1, ncols - 1))
            c = 180.0 - a * k + a * draw(st.sampled_from([0.0, 0.5, -0.0012493]))
    return Grid.from_transform(ncols, nrows, (a, 0.0, c, 0.0, e, f))


def _units(lo: float, hi: float) -> st.SearchStrategy[float]:
    """A position in cell units: a cell edge (k), a cell centre (k + 0.5) or anywhere."""
    k = st.integers(math.floor(lo), math.ceil(hi))
    return st.one_of(k.map(float), k.map(lambda i: i + 0.5), st.floats(lo, hi))


def _xy(grid: Grid, u: float, v: float) -> tuple[float, float]:
    return grid.c + grid.a * u, grid.f + grid.e * v


@st.composite
def _rect(draw: st.DrawFn, grid: Grid) -> shapely.Geometry:
    """A box, maybe with a box hole, maybe with an island in the hole."""
    depth = draw(st.integers(0, 2))
    n = 2 + 2 * depth
    us = draw(st.lists(_units(-2, grid.ncols + 2), min_size=n, max_size=n, unique=True))
    vs = draw(st.lists(_units(-2, grid.nrows + 2), min_size=n, max_size=n, unique=True))
    xs = sorted({_xy(grid, u, 0)[0] for u in us})
    ys = sorted({_xy(grid, 0, v)[1] for v in vs})
    depth = min(depth, (len(xs) - 2) // 2, (len(ys) - 2) // 2)
    assume(len(xs) >= 2 and len(ys) >= 2)
    outer = box(xs[0], ys[0], xs[-1], ys[-1])
    if depth == 0:
        return outer
    shell = Polygon(outer.exterior, [box(xs[1], ys[1], xs[-2], ys[-2]).exterior])
    if depth == 1:
        return shell
    return MultiPolygon([shell, box(xs[2], ys[2], xs[-3], ys[-3])])


@st.composite
def _star(draw: st.DrawFn, grid: Grid) -> shapely.Geometry:
    cu = draw(_units(-1, grid.ncols + 1))
    cv = draw(_units(-1, grid.nrows + 1))
    n = draw(st.integers(4, 8))
    jitter = draw(st.lists(st.floats(0.0, 0.9), min_size=n, max_size=n))
    radii = draw(st.lists(st.floats(0.4, 5.0), min_size=n, max_size=n))
    snap = draw(st.booleans())
    pts = []
    for i in range(n):
        theta = 2.0 * math.pi * (i + jitter[i]) / n
        u, v = cu + radii[i] * math.cos(theta), cv + radii[i] * math.sin(theta)
        if snap:
            u, v = round(2.0 * u) / 2.0, round(2.0 * v) / 2.0
        pts.append(_xy(grid, u, v))
    poly = Polygon(pts)
    assume(shapely.is_valid(poly) and poly.area > 0)
    return poly


@st.composite
def _sliver(draw: st.DrawFn, grid: Grid) -> shapely.Geometry:
    """A parallelogram much thinner than a cell (down to 1e-12 of one)."""
    x0, y0 = _xy(grid, draw(_units(-1, grid.ncols + 1)), draw(_units(-1, grid.nrows + 1)))
    x1, y1 = _xy(grid, draw(_units(-1, grid.ncols + 1)), draw(_units(-1, grid.nrows + 1)))
    width = draw(st.sampled_from([1e-12, 1e-10, 1e-9, 1e-6, 0.2]))
    if abs(x1 - x0) >= abs(y1 - y0):
        w = width * -grid.e
        pts = [(x0, y0), (x1, y1), (x1, y1 + w), (x0, y0 + w)]
    else:
        w = width * grid.a
        pts = [(x0, y0), (x1, y1), (x1 + w, y1), (x0 + w, y0)]
    poly = Polygon(pts)
    assume(shapely.is_valid(poly) and poly.area > 0)
    return poly


def _shapes(grid: Grid) -> st.SearchStrategy[shapely.Geometry]:
    return st.one_of(_rect(grid), _star(grid), _sliver(grid))


@st.composite
def countries(draw: st.DrawFn, grid: Grid) -> CountryGeometry:
    """1-3 shapes as rows or unioned, maybe with a shape cut out, either orientation,
    maybe given 360 degrees away (cut at ±180 by the normaliser)."""
    shapes = draw(st.lists(_shapes(grid), min_size=1, max_size=3))
    how = draw(st.sampled_from(["rows", "union", "cut"]))
    if how == "rows":
        rows = shapes
    else:
        geom = shapely.union_all(shapes)
        if how == "cut":
            geom = shapely.difference(geom, draw(_shapes(grid)))
        parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and p.area > 0]
        assume(parts)
        rows = [shapely.multipolygons(parts) if len(parts) > 1 else parts[0]]
    if draw(st.booleans()):
        rows = [shapely.reverse(g) for g in rows]
    shift = draw(st.sampled_from([0.0, 0.0, 360.0, -360.0]))
    if shift:
        rows = [shapely.transform(g, lambda xy: xy + np.array([shift, 0.0])) for g in rows]
    assume(all(g.bounds[0] >= -540.0 and g.bounds[2] <= 540.0 for g in rows))
    assume(all(g.bounds[1] >= -90.0 and g.bounds[3] <= 90.0 for g in rows))
    assume(all(shapely.is_valid(g) for g in rows))
    try:
        return country_geometry("ZZ", rows)
    except GeometryInvalidError:
        reject()


@st.composite
def cases(draw: st.DrawFn) -> tuple[Grid, CountryGeometry]:
    grid = draw(grids())
    return grid, draw(countries(grid))


# -- property tests -----------------------------------------------------------------------


@_SETTINGS
@given(cases())
def test_fractions_and_within_match_the_exact_references(
    case: tuple[Grid, CountryGeometry],
) -> None:
    _check(*case)


@settings(_SETTINGS, max_examples=60)
@given(cases(), st.integers(0, 2**32 - 1))
def test_a_cell_value_does_not_depend_on_the_other_cells_asked(
    case: tuple[Grid, CountryGeometry], seed: int
) -> None:
    _check_independent_of_query(*case, seed)


@st.composite
def tilings(draw: st.DrawFn) -> tuple[Grid, list[shapely.Geometry], Window]:
    """Adjacent triangles sharing exact edges that tile a rectangle of whole cells: a
    lattice of (m+1) x (k+1) points, interior points jittered (or snapped to cell
    features), each lattice quad split along a drawn diagonal."""
    grid = draw(grids())
    r0 = draw(st.integers(0, grid.nrows - 2))
    r1 = draw(st.integers(r0 + 1, grid.nrows))
    c0 = draw(st.integers(0, grid.ncols - 2))
    c1 = draw(st.integers(c0 + 1, grid.ncols))
    m, k = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    us = np.linspace(c0, c1, m + 1)
    vs = np.linspace(r0, r1, k + 1)
    du, dv = (c1 - c0) / m, (r1 - r0) / k
    pts = {}
    for i in range(m + 1):
        for j in range(k + 1):
            u, v = float(us[i]), float(vs[j])
            if 0 < i < m:
                u += du * draw(st.sampled_from([0.0, 0.2, -0.2, 0.1234567]))
            if 0 < j < k:
                v += dv * draw(st.sampled_from([0.0, 0.2, -0.2, 0.1234567]))
            # the outline is exactly the window's cell edges (§3 form)
            pts[i, j] = _xy(grid, u, v)
    regions = []
    for i in range(m):
        for j in range(k):
            a, b, c, d = pts[i, j], pts[i + 1, j], pts[i + 1, j + 1], pts[i, j + 1]
            diagonal_ac = draw(st.booleans())
            tris = [(a, b, c), (a, c, d)] if diagonal_ac else [(a, b, d), (b, c, d)]
            for t in tris:
                poly = Polygon(t)
                assume(shapely.is_valid(poly) and poly.area > 0)
                regions.append(poly)
    return grid, regions, Window(r0, r1, c0, c1)


@settings(_SETTINGS, max_examples=60)
@given(tilings())
def test_fractions_of_a_tiling_sum_to_one(
    case: tuple[Grid, list[shapely.Geometry], Window],
) -> None:
    grid, regions, window = case
    rows, cols = _all_cells(grid)
    total = np.zeros(rows.size)
    for poly in regions:
        total += cell_fractions(grid, country_geometry("ZZ", [poly]), rows, cols)
    inside = (
        (rows >= window.row_start)
        & (rows < window.row_stop)
        & (cols >= window.col_start)
        & (cols < window.col_stop)
    )
    assert np.abs(total[inside] - 1.0).max() <= _TOL
    assert (total[~inside] == 0.0).all()  # the tiling only touches the cells around it


# -- named cases -------------------------------------------------------------------------------

# cell (row r, col k) of G10 spans x in [k, k+1], y in [9-r, 10-r]
_G10 = Grid(ncols=10, nrows=10, a=1.0, c=0.0, e=-1.0, f=10.0)
_WORLD = Grid(ncols=360, nrows=20, a=1.0, c=-180.5, e=-1.0, f=10.0)


def _fractions(grid: Grid, geom: shapely.Geometry) -> npt.NDArray[np.float64]:
    """Fractions of every cell for both orientations (which must agree), checked against
    the references, as an (nrows, ncols) array."""
    a = _check(grid, country_geometry("ZZ", [geom]))
    b = _check(grid, country_geometry("ZZ", [shapely.reverse(geom)]))
    assert a.tobytes() == b.tobytes()
    return a


def test_a_cell_exactly_covered_reads_one_and_its_touching_neighbours_zero() -> None:
    f = _fractions(_G10, box(3, 4, 4, 5))  # the cell (row 5, col 3)
    assert f[5, 3] == 1.0
    neighbours = f[4:7, 2:5].copy()
    neighbours[1, 1] = 0.0
    assert (neighbours == 0.0).all()  # edge and corner contact is no overlap
    assert f.sum() == 1.0


def test_a_cell_touched_only_at_a_corner_reads_zero() -> None:
    f = _fractions(_G10, Polygon([(5, 5), (7, 5.5), (5.5, 7)]))
    assert f[5, 4] == 0.0  # [4, 5] x [4, 5] meets the triangle at (5, 5) only
    assert 0.0 < f[4, 5] < 1.0


def test_a_hole_of_exactly_one_cell_reads_zero_and_its_rim_reads_one() -> None:
    holed = Polygon(box(0, 0, 10, 10).exterior, [box(3, 4, 4, 5).exterior])
    f = _fractions(_G10, holed)
    assert f[5, 3] == 0.0
    rim = f[4:7, 2:5].copy()
    rim[1, 1] = 1.0
    assert (rim == 1.0).all()  # the hole's boundary belongs to G: the rim cells are within
    assert f.sum() == 99.0


def test_a_half_covered_cell_reads_one_half() -> None:
    f = _fractions(_G10, box(2.5, 4, 6, 5))
    assert f[5, 2] == 0.5 and f[5, 5] == 1.0


def test_a_sliver_thinner_than_a_cell_reads_positive() -> None:
    f = _fractions(_G10, box(2.1, 3.2, 2.1 + 1e-9, 3.7))  # in cell (row 6, col 2)
    assert 0.0 < f[6, 2] < 1e-9
    g = _fractions(_G10, box(2.1, 3.2, 2.1 + 1e-13, 3.7))
    assert 0.0 < g[6, 2] < 1e-12


def test_a_pinhole_keeps_a_cell_below_one() -> None:
    # the hole's area (1e-18 of the cell) rounds away, but the cell is not within
    holed = Polygon(box(0, 0, 10, 10).exterior, [box(3.5, 4.5, 3.5 + 1e-9, 4.5 + 1e-9).exterior])
    f = _fractions(_G10, holed)
    assert f[5, 3] == np.nextafter(1.0, 0.0)


def test_a_hole_touching_a_cell_corner_leaves_the_cell_within() -> None:
    holed = Polygon(box(0, 0, 10, 10).exterior, [Polygon([(4, 4), (4.5, 3), (5, 3.5)]).exterior])
    f = _fractions(_G10, holed)
    assert f[5, 3] == 1.0  # [3, 4] x [4, 5] meets the hole at its corner (4, 4) only
    assert 0.0 < f[6, 4] < 1.0


def test_an_island_in_a_hole_counts() -> None:
    holed = Polygon(box(0, 0, 10, 10).exterior, [box(2, 2, 8, 8).exterior])
    f = _fractions(_G10, MultiPolygon([holed, box(4.5, 4.5, 5.5, 5.5)]))
    assert f[5, 4] == 0.25 and f[3, 3] == 0.0 and f[0, 0] == 1.0


def test_a_cell_split_at_the_antimeridian_counts_both_pieces() -> None:
    # column 0 spans -180.5 .. -179.5: its west half wraps to 179.5 .. 180
    f = _fractions(_WORLD, box(177, 0, 182, 5))  # cut at 180 by the normaliser
    assert f[7, 0] == 1.0  # both pieces covered (the cut edge is G's boundary)
    assert f[7, 2] == 0.5  # -178.5 .. -177.5, covered up to -178
    west_only = _fractions(_WORLD, box(179.6, 0, 180, 5))
    assert abs(west_only[7, 0] - 0.4) < 1e-12 and west_only[7, 0] < 1.0


def test_sub_ulp_corner_overlap_that_geos_counts_reads_positive() -> None:
    # the edge (0.3, 1.7)-(2, 0) passes ~1e-17 below and left of the corner (1, 1) of
    # cell (row 1, col 0): a sub-ulp overlap GEOS reports, so the cell is any_overlap
    grid = Grid(ncols=2, nrows=2, a=1.0, c=0.0, e=-1.0, f=2.0)
    country = country_geometry("ZZ", [shapely.from_wkt("POLYGON ((0 2, 0.3 1.7, 2 0, 0 2))")])
    f = _check(grid, country)
    assert 0.0 < f[1, 0] < 1e-15


def test_sub_ulp_corner_overlap_that_geos_does_not_count_reads_zero() -> None:
    # exact arithmetic finds an overlap of ~1.5e-33; GEOS, the reference of any_overlap
    # (test_exactness.py), reports a touch, so the fraction is 0 (within 1e-9 of exact)
    grid = Grid(ncols=1, nrows=1, a=1.0, c=0.0, e=-1.0, f=1.0)
    country = country_geometry(
        "ZZ", [shapely.from_wkt("POLYGON ((0.3 1.7, 1.7 0.3, 2 2, 0.3 1.7))")]
    )
    assert _check(grid, country)[0, 0] == 0.0


_WORLDPOP = Grid.from_transform(
    43199, 16755, (0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827)
)


@pytest.mark.parametrize(
    "wkt",
    [
        # edges hundreds of cells long, far from the origin (the rounding grows with both)
        "POLYGON ((-179.1234567 70.1, -176.3 71.987654321, -177.9 68.55, -179.1234567 70.1))",
        "POLYGON ((10.01 -40.3, 13.377 -39.2, 12.1 -42.9, 10.01 -40.3))",
        # across ±180 near column 0, whose west sliver wraps to +180
        "POLYGON ((178.7 50.3, 181.2 51.1, 180.4 49.2, 178.7 50.3))",
    ],
)
def test_long_edges_on_the_30_arc_second_grid(wkt: str) -> None:
    grid = _WORLDPOP
    country = country_geometry("ZZ", [shapely.from_wkt(wkt)])
    _, miny, _, maxy = country.bounds
    rows = np.arange(int((grid.f - maxy) / -grid.e) - 1, int((grid.f - miny) / -grid.e) + 2)
    cols = np.unique(
        np.concatenate(
            [
                np.arange(int((lo - grid.c) / grid.a) - 1, int((hi - grid.c) / grid.a) + 2)
                for lo, _, hi, _ in (p.bounds for p in country.parts)
            ]
            + [np.array([0, grid.ncols - 1])]
        ).clip(0, grid.ncols - 1)
    )
    rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    frac = cell_fractions(grid, country, rr, cc)
    edge = np.flatnonzero((frac > 0.0) & (frac < 1.0))
    assert edge.size > 500
    sample = edge[:: max(1, edge.size // 150)]
    rings = _rings(country.geom)
    for i in sample.tolist():
        exact = _exact_fraction(grid, rings, int(rr[i]), int(cc[i]))
        err = abs(float(Fraction(float(frac[i])) - exact))
        _WORST["error"] = max(_WORST["error"], err)
        _WORST["cells"] += 1
        assert err <= _TOL, f"cell ({rr[i]}, {cc[i]}): {frac[i]!r} vs {float(exact)!r}"
    within = cells_within(grid, country, rr[sample], cc[sample])
    assert not within.any()
    inner = np.flatnonzero(frac == 1.0)[:50]
    assert inner.size and cells_within(grid, country, rr[inner], cc[inner]).all()
    assert all(_brute_within(grid, country.geom, int(rr[i]), int(cc[i])) for i in inner)


def test_the_float_fallback_of_the_prefix_sums_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    # past ~1000 pieces across one meridian of one strip the exact integer prefix sums
    # give way to float sums; force that path everywhere and compare with exact values
    monkeypatch.setattr(coverage, "_FIXED_LIMIT", 0.0)
    hole = Polygon([(2.5, 2.5), (7.7, 3), (4, 8.1)]).exterior
    holed = Polygon(box(0, 0, 10, 10).exterior, [hole])
    f = _fractions(_G10, holed)
    assert f[0, 0] == 1.0 and f[5, 4] == 0.0 and 0.0 < f[5, 6] < 1.0


def test_cells_may_repeat_and_come_in_any_order() -> None:
    country = country_geometry("ZZ", [box(2.5, 4, 6, 5)])
    f = cell_fractions(_G10, country, [5, 5, 0, 5], [5, 2, 0, 2])
    assert f.tolist() == [1.0, 0.5, 0.0, 0.5]
    assert cells_within(_G10, country, [5, 5], [2, 5]).tolist() == [False, True]


def test_no_cells_and_an_empty_country_read_nothing() -> None:
    country = country_geometry("ZZ", [box(2.5, 4, 6, 5)])
    assert cell_fractions(_G10, country, [], []).shape == (0,)
    empty = CountryGeometry.from_geometry("ZZ", Polygon())
    assert cell_fractions(_G10, empty, [1, 2], [3, 4]).tolist() == [0.0, 0.0]
    assert cells_within(_G10, empty, [1], [3]).tolist() == [False]


@pytest.mark.parametrize(("rows", "cols"), [([10], [0]), ([0], [-1]), ([0, 1], [0])])
def test_cells_off_the_grid_or_mismatched_arrays_are_rejected(
    rows: list[int], cols: list[int]
) -> None:
    country = country_geometry("ZZ", [box(2.5, 4, 6, 5)])
    with pytest.raises(ValueError, match=r"outside the grid|differ in length"):
        cell_fractions(_G10, country, rows, cols)
