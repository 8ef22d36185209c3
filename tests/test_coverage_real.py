"""Coverage fractions on real borders (docs/CONTRACT.md §10.3): a few Natural Earth
countries on the 150″ world of ``tests/test_golden.py`` (prepared offline by
``tileindex.prepare``; provenance in tests/data/README.md), through the build's path
(kernel runs -> boundary shortcut), against an exact rational reference written here:
each ring clipped to each piece of the cell by Sutherland-Hodgman, comparisons on the
float64 coordinates as given (exact in Python) and every computed point a ``Fraction``,
area by the shoelace formula in ``Fraction``s.

Countries: CH (landlocked, many neighbours), LS (an enclave: a hole of ZA), ZA (that
hole), FJ (across ±180), NO (a fjord coast)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest
import shapely

from tileindex import kernel
from tileindex.coverage import run_fractions
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid, Runs
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.plan import country_windows
from tileindex.prepare import prepare_inputs

RESOLUTION = 150.0
CODES = ("CH", "LS", "ZA", "FJ", "NO")
SAMPLES = 12  # boundary cells per country compared with the exact value
_WORST = {"error": 0.0, "cells": 0}

Pt = tuple[Fraction | float, Fraction | float]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Grid, dict[str, CountryGeometry]]:
    prepared = prepare_inputs(tmp_path_factory.mktemp("real") / "inputs", RESOLUTION)
    layer = read_country_layer(prepared.countries_path, read_iso_list(prepared.iso_path))
    grid = read_grid(prepared.grid_path).grid
    return grid, {code: country_geometry(code, layer.rows[code]) for code in CODES}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(
        f"\n[coverage, real borders] largest |fraction - exact| = {_WORST['error']:.3e} "
        f"over {_WORST['cells']} cells"
    )


def _clip(ring: list[Pt], axis: int, bound: Fraction, above: bool) -> list[Pt]:
    def inside(p: Pt) -> bool:
        return p[axis] >= bound if above else p[axis] <= bound

    out: list[Pt] = []
    for i, cur in enumerate(ring):
        prev = ring[i - 1]
        if inside(cur) != inside(prev):
            p0, p1 = (Fraction(prev[0]), Fraction(prev[1])), (Fraction(cur[0]), Fraction(cur[1]))
            t = (bound - p0[axis]) / (p1[axis] - p0[axis])
            out.append((p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])))
        if inside(cur):
            out.append(cur)
    return out


def _area(ring: list[Pt], x0: Fraction, y0: Fraction, x1: Fraction, y1: Fraction) -> Fraction:
    for axis, bound, above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        ring = _clip(ring, axis, bound, above)
        if not ring:
            return Fraction(0)
    pts = [(Fraction(x), Fraction(y)) for x, y in ring]
    twice = sum(
        (pts[i - 1][0] * pts[i][1] - pts[i][0] * pts[i - 1][1] for i in range(len(pts))),
        Fraction(0),
    )
    return abs(twice) / 2


def _exact(grid: Grid, geom: shapely.Geometry, row: int, col: int) -> Fraction:
    """area(cell ∩ G) / area(cell) in rationals, both pieces of a cell split at ±180."""
    x0, x1 = Fraction(grid.c + grid.a * col), Fraction(grid.c + grid.a * (col + 1.0))
    s, n = Fraction(grid.f + grid.e * (row + 1.0)), Fraction(grid.f + grid.e * row)
    total = Fraction(0)
    for lo, hi, shift in ((-540, -180, 360), (-180, 180, 0), (180, 540, -360)):
        p0, p1 = max(x0, Fraction(lo)) + shift, min(x1, Fraction(hi)) + shift
        if p0 >= p1:
            continue
        for part in shapely.get_parts(geom):
            for ring, sign in [(part.exterior, 1)] + [(r, -1) for r in part.interiors]:
                b = ring.bounds
                if b[2] < p0 or b[0] > p1 or b[3] < s or b[1] > n:
                    continue
                pts = [(float(x), float(y)) for x, y in shapely.get_coordinates(ring)[:-1]]
                total += sign * _area(pts, p0, s, p1, n)
    return total / ((x1 - x0) * (n - s))


def _build_path(grid: Grid, g: CountryGeometry) -> tuple[Runs, np.ndarray, np.ndarray]:
    """The build's path: kernel runs of every window, then the boundary shortcut."""
    chunks = [kernel.mask_chunk(grid, w, g, "any_overlap") for w in country_windows(grid, g)]
    runs = Runs.concat(chunks).sorted()
    counts = runs.col1 - runs.col0
    rows = np.repeat(runs.row, counts)
    cols = np.arange(int(counts.sum())) + np.repeat(runs.col0 - np.cumsum(counts) + counts, counts)
    frac = run_fractions(grid, g, runs).dense(rows.size)
    return runs, rows * grid.ncols + cols, frac


@pytest.mark.parametrize("code", CODES)
def test_boundary_fractions_match_the_exact_rational_value(world, code: str) -> None:
    grid, geoms = world
    g = geoms[code]
    _runs, tid, frac = _build_path(grid, g)
    assert (frac > 0).all() and (frac <= 1).all()
    below = np.flatnonzero(frac < 1.0)
    assert below.size >= SAMPLES
    pick = np.random.default_rng(sum(map(ord, code))).choice(below, SAMPLES, replace=False)
    # and the cells at 1.0 beside a boundary cell: the shortcut's riskiest claims
    ones = np.flatnonzero(frac == 1.0)
    near = ones[np.isin(tid[ones] - 1, tid[below]) | np.isin(tid[ones] + 1, tid[below])][:4]
    for i in np.r_[pick, near].tolist():
        row, col = divmod(int(tid[i]), grid.ncols)
        exact = _exact(grid, g.geom, row, col)
        err = abs(float(Fraction(frac[i]) - exact))
        _WORST["error"] = max(_WORST["error"], err)
        _WORST["cells"] += 1
        assert err <= 1e-9, (code, row, col, float(exact), frac[i])
        assert (frac[i] == 1.0) == (exact == 1), (code, row, col)


def test_lesotho_and_its_host_share_the_border_cells(world) -> None:
    """Partition of unity across an enclave border on real data: LS is a hole of ZA, so
    on every cell of LS's boundary the two fractions sum to 1 (the cell lies in ZA ∪ LS)."""
    grid, geoms = world
    _, tid_ls, f_ls = _build_path(grid, geoms["LS"])
    _, tid_za, f_za = _build_path(grid, geoms["ZA"])
    za = dict(zip(tid_za.tolist(), f_za.tolist(), strict=True))
    border = [(t, f) for t, f in zip(tid_ls.tolist(), f_ls.tolist(), strict=True) if f < 1.0]
    assert len(border) > 10
    for t, f in border:
        assert abs(f + za[t] - 1.0) <= 1e-9, t


def test_the_fiji_cells_across_the_antimeridian_count_both_sides(world) -> None:
    grid, geoms = world
    _, tid, _ = _build_path(grid, geoms["FJ"])
    lon = grid.c + grid.a * ((tid % grid.ncols) + 0.5)
    assert (lon > 0).any() and (lon < 0).any()
