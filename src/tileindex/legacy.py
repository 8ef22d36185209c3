"""The slow per-cell reference engine (the oracle): one shapely predicate per cell.

It is written to be obviously right, not fast, and tests compare the kernel with it
cell by cell. This is the only module where Python loops over cells are allowed.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Point, Polygon

from tileindex.geometry import CountryGeometry
from tileindex.grid import ChunkMask, Grid, Window
from tileindex.predicates import check_predicate

# DE-9IM "the interiors meet": a positive-area overlap. Contact along an edge or at
# a point only meets boundaries, so it does not match (docs/CONTRACT.md §5 any_overlap).
_INTERIORS_MEET = "T********"


def mask_chunk(grid: Grid, window: Window, country: CountryGeometry, predicate: str) -> ChunkMask:
    """Decide every cell of ``window`` with one shapely predicate per cell.

    ``center``: the published (wrapped) centroid is in, or on, the shell of some part P
    and in or on none of P's holes: the outer boundary is inclusive and a hole's
    boundary exclusive. An island in another part's hole is included through its own
    part, so per-part shells and holes are tested, never the holes of the union.

    ``any_overlap``: the interiors of the cell and the country meet. A cell straddling
    ±180 is split at the antimeridian and each piece is tested at its wrapped position
    (``Grid.column_segments``); the cell is included if any piece overlaps.

    ``within``: the country covers every closed piece of the cell (``covers(G, piece)``,
    interior or boundary of G; docs/CONTRACT.md §10.2); a cell with no piece (narrower
    than float resolution) is not within. GEOS answers ``covers`` on a prepared geometry
    by another algorithm than on a plain one, and the two can differ on contacts below
    float resolution; the prepared one (the kernel's) is the reference, so it is used
    here too and the answer never depends on whether the geometry was prepared before.

    A cell not included whose centroid is in, or on, the shell of some part counts as
    excluded by a hole (the ``cells_excluded_hole`` statistic).
    """
    check_predicate(predicate)
    included = np.zeros((window.height, window.width), dtype=bool)
    in_hole = np.zeros_like(included)
    if country.is_empty or window.size == 0:
        return ChunkMask.from_mask(window, included, in_hole)

    parts = []
    for part in country.parts:
        shell = Polygon(part.exterior)
        holes = [Polygon(ring) for ring in part.interiors]
        shapely.prepare([shell, *holes])
        parts.append((shell, holes))

    covering = country.exact.geom  # prepared (see above)
    rows = np.arange(window.row_start, window.row_stop)
    cols = np.arange(window.col_start, window.col_stop)
    lons = grid.centroid_lon(cols).tolist()
    lats = grid.centroid_lat(rows).tolist()
    south, north = (b.tolist() for b in grid.lat_bounds(rows))

    pieces: dict[int, list[tuple[float, float]]] = {int(col): [] for col in cols}
    if predicate != "center":
        for seg in grid.column_segments(window.col_start, window.col_stop):
            for col, x0, x1 in zip(
                seg.cols.tolist(), seg.x0.tolist(), seg.x1.tolist(), strict=True
            ):
                pieces[col].append((x0, x1))

    for i in range(window.height):
        for j, col in enumerate(cols.tolist()):
            point = Point(lons[j], lats[i])
            in_shells = [shell.intersects(point) for shell, _ in parts]
            if predicate == "center":
                hit = any(
                    inside and not any(hole.intersects(point) for hole in holes)
                    for inside, (_, holes) in zip(in_shells, parts, strict=True)
                )
            elif predicate == "any_overlap":
                hit = any(
                    shapely.relate_pattern(
                        country.geom, shapely.box(x0, south[i], x1, north[i]), _INTERIORS_MEET
                    )
                    for x0, x1 in pieces[col]
                )
            else:
                hit = bool(pieces[col]) and all(
                    shapely.covers(covering, shapely.box(x0, south[i], x1, north[i]))
                    for x0, x1 in pieces[col]
                )
            included[i, j] = hit
            in_hole[i, j] = not hit and any(in_shells)
    return ChunkMask.from_mask(window, included, in_hole)
