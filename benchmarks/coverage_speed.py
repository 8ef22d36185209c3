"""Hand-run speed check of tileindex.coverage (not a test; numbers go in the report).

A 10k-vertex wiggly polygon on a 1000 x 1000 window of the WorldPop 30" grid: boundary
cells per second of ``cell_fractions`` and ``cells_within``, against shapely's
vectorised ``area(intersection(box, G))`` on the same cells.

    PYTHONPATH=src python benchmarks/coverage_speed.py
"""

from __future__ import annotations

import time

import numpy as np
import shapely

from tileindex import kernel
from tileindex.coverage import cell_fractions, cells_within
from tileindex.geometry import country_geometry
from tileindex.grid import Grid, Window

GRID = Grid.from_transform(
    43199, 16755, (0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827)
)
WINDOW = Window(4000, 5000, 20000, 21000)


def wiggly(n: int = 10_000, seed: int = 0) -> shapely.Polygon:
    rng = np.random.default_rng(seed)
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = 1.0 + 0.25 * np.sin(7 * theta) + 0.08 * np.sin(53 * theta) + 0.01 * rng.standard_normal(n)
    cx = GRID.c + GRID.a * (WINDOW.col_start + 500)
    cy = GRID.f + GRID.e * (WINDOW.row_start + 500)
    radius = 380 * GRID.a
    poly = shapely.Polygon(np.c_[cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)])
    assert poly.is_valid
    return poly


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    country = country_geometry("ZZ", [wiggly()])
    overlap = kernel.mask_chunk(GRID, WINDOW, country, "any_overlap").to_mask()
    rr, cc = np.nonzero(overlap)
    rows, cols = rr + WINDOW.row_start, cc + WINDOW.col_start
    frac = cell_fractions(GRID, country, rows, cols)
    edge = frac < 1.0
    rows, cols = rows[edge], cols[edge]
    n = rows.size
    print(f"any_overlap cells {overlap.sum()}, boundary cells (fraction < 1) {n}")

    t_frac = best(lambda: cell_fractions(GRID, country, rows, cols))
    t_within = best(lambda: cells_within(GRID, country, rows, cols))
    x0, x1 = GRID.raw_x_edges(cols)
    s, nn = GRID.lat_bounds(rows)
    boxes = shapely.box(x0, s, x1, nn)
    shapely.prepare(country.geom)

    def geos() -> np.ndarray:
        return shapely.area(shapely.intersection(boxes, country.geom)) / shapely.area(boxes)

    t_geos = best(geos)
    diff = np.abs(geos() - cell_fractions(GRID, country, rows, cols)).max()
    print(f"cell_fractions: {t_frac:.3f} s, {n / t_frac:,.0f} cells/s")
    print(f"cells_within:   {t_within:.3f} s, {n / t_within:,.0f} cells/s")
    print(f"shapely intersection area: {t_geos:.3f} s, {n / t_geos:,.0f} cells/s")
    print(f"max |coverage - shapely| = {diff:.3e}")


if __name__ == "__main__":
    main()
