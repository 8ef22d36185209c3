"""The named edge cases of docs/CONTRACT.md §3-§5 and §10.2 in one table, each with the
cells it must give under every predicate, worked out by hand (the comment above each
case says how; "within:" gives the reasoning for §10.2, the whole closed cell in G).
``test_edge_cases.py`` runs every engine on them; ``test_validate.py`` runs the
validator's independent recount on them.

Most cases use ``G10``, a 10 x 10 grid with a = 1, c = 0, e = -1, f = 10: cell (row r,
col k) spans x in [k, k+1], y in [9-r, 10-r], and its centroid is (k + 0.5, 9.5 - r).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid

Cell = tuple[int, int]  # (row, col)
Cells = frozenset[Cell]

ORIENTATIONS = ("shells_ccw_holes_cw", "shells_cw_holes_ccw", "all_rings_ccw", "all_rings_cw")


def block(rows: Iterable[int], cols: Iterable[int]) -> Cells:
    cols = list(cols)
    return frozenset((r, k) for r in rows for k in cols)


NONE: Cells = frozenset()


@dataclass(frozen=True)
class EdgeCase:
    """One country (its polygon rows) on one grid and the cells each predicate includes.

    ``hole_*``: the cells_excluded_hole statistic (excluded cells whose centroid is in or
    on the shell of some part). ``exact_any_overlap``: set only where exact rational
    arithmetic reads §5 differently from GEOS on a contact below float resolution; the
    contract's "GEOS-exact semantics" makes GEOS's answer (``any_overlap``) the one the
    engines must give. ``within`` has no such case: GEOS ``covers`` on the prepared
    geometry, which the engines use, matches exact arithmetic on every case here.
    """

    grid: Grid
    rows: tuple[BaseGeometry, ...]
    center: Cells
    any_overlap: Cells
    within: Cells
    hole_center: int = 0
    hole_any_overlap: int = 0
    hole_within: int = 0
    exact_any_overlap: Cells | None = None

    def expected(self, predicate: str) -> Cells:
        return {"center": self.center, "any_overlap": self.any_overlap}.get(predicate, self.within)

    def holes(self, predicate: str) -> int:
        return {"center": self.hole_center, "any_overlap": self.hole_any_overlap}.get(
            predicate, self.hole_within
        )

    def exact(self, predicate: str) -> Cells:
        """What exact rational arithmetic gives (the brute force of test_edge_cases)."""
        if predicate == "any_overlap" and self.exact_any_overlap is not None:
            return self.exact_any_overlap
        return self.expected(predicate)

    def tile_ids(self, predicate: str) -> list[int]:
        return sorted(r * self.grid.ncols + k for r, k in self.expected(predicate))

    @property
    def orientations(self) -> tuple[str, ...]:
        """The ring orientations that differ for this case (two when it has no hole)."""
        holes = any(shapely.get_num_interior_rings(shapely.get_parts(g)).any() for g in self.rows)
        return ORIENTATIONS if holes else ORIENTATIONS[:2]

    def country(self, orientation: str | None = None, iso: str = "ZZ") -> CountryGeometry:
        """The engines' input; ``orientation`` None keeps the rings as written here."""
        rows = self.rows if orientation is None else [orient(g, orientation) for g in self.rows]
        return country_geometry(iso, list(rows))


def _direct(ring: BaseGeometry, ccw: bool) -> shapely.LinearRing:
    return ring if ring.is_ccw == ccw else shapely.reverse(ring)


def orient(geom: BaseGeometry, orientation: str) -> BaseGeometry:
    """``geom`` with every shell and every hole turned the way ``orientation`` names:
    the OGC way (shells counter-clockwise, holes clockwise), the opposite (ESRI), or all
    rings one way, which no writer should produce but GEOS accepts and a winding count
    that trusted ring direction would get wrong."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, not {orientation!r}")
    shell_ccw = orientation in ("shells_ccw_holes_cw", "all_rings_ccw")
    hole_ccw = orientation in ("shells_cw_holes_ccw", "all_rings_ccw")
    parts = [
        Polygon(_direct(p.exterior, shell_ccw), [_direct(h, hole_ccw) for h in p.interiors])
        for p in shapely.get_parts(geom)
    ]
    return parts[0] if geom.geom_type == "Polygon" else MultiPolygon(parts)


# -- grids ----------------------------------------------------------------------------------

G10 = Grid(ncols=10, nrows=10, a=1.0, c=0.0, e=-1.0, f=10.0)
# A coarse WorldPop: the west edge lies half a cell west of -180, so column k spans
# -180.5 + k .. -179.5 + k with its centroid at -180 + k; column 0's western half wraps
# to 179.5 .. 180, and the last column, 359, spans 178.5 .. 179.5. Rows as in G10.
WORLD = Grid(ncols=360, nrows=20, a=1.0, c=-180.5, e=-1.0, f=10.0)
# A 0..360-style grid: column 10 spans 179.5 .. 180.5 (centroid 180.0, kept as is since
# it is in [-180, 180]); column 11 spans 180.5 .. 181.5 = -179.5 .. -178.5 wrapped, its
# centroid 181 published as -179. Rows as in G10.
EAST = Grid(ncols=20, nrows=10, a=1.0, c=169.5, e=-1.0, f=10.0)
# The reference WorldPop transform (docs/CONTRACT.md §1), cut down to its first 4 columns and its
# first row (y 83.62458 .. 83.63292): column 0 spans -180.0012493 .. -179.992916, so its
# western sliver, 0.0012493 wide, wraps to 179.9987507 .. 180.
WORLDPOP = Grid.from_transform(
    4, 1, (0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827)
)
# Rows span y in [0.3 - (r+1), 0.3 - r]: row 0 is -0.7 .. 0.3, row 1 is -1.7 .. -0.7.
G4 = Grid.from_transform(4, 4, (1.0, 0.0, 0.0, 0.0, -1.0, 0.3))
# The cells [0, 1] x [1, 2] (row 0) and [0, 1] x [0, 1] (row 1) and their east neighbours.
G2 = Grid(ncols=2, nrows=2, a=1.0, c=0.0, e=-1.0, f=2.0)
UNIT = Grid(ncols=1, nrows=1, a=1.0, c=0.0, e=-1.0, f=1.0)  # the one cell [0, 1] x [0, 1]

ALL10 = block(range(10), range(10))

# The whole of G10 with a hole whose edges run through centroids: x = 2.5 .. 6.5 are
# centroid columns 2..6 and y = 2.5 .. 6.5 are centroid rows 7..3.
HOLED = Polygon(
    [(0, 0), (10, 0), (10, 10), (0, 10)], [[(2.5, 2.5), (6.5, 2.5), (6.5, 6.5), (2.5, 6.5)]]
)
HOLE_CENTROIDS = block(range(3, 8), range(2, 7))  # 25 centroids in the closed hole
# cells wholly inside the closed hole: x in [k, k+1] within [2.5, 6.5] -> cols 3..5,
# y in [9-r, 10-r] within [2.5, 6.5] -> rows 4..6
HOLE_CELLS = block(range(4, 7), range(3, 6))
# the island of "island_touching_hole_edge": vertex (2.5, 4.5) on the hole's west edge
ISLAND_TRIANGLE = Polygon([(2.5, 4.5), (4.5, 3.5), (4.5, 5.5)])


def _diamond() -> Cells:
    # |x-5| + |y-5| <= 4. Over cell (r, k) the least |x-5| is dx = 4-k (k <= 4) or k-5
    # (k >= 5), the least |y-5| is dy = 4-r (r <= 4) or r-5 (r >= 5); the open cell meets
    # the open diamond iff dx + dy < 4. The centroid's |x-5| + |y-5| is dx + dy + 1, so
    # the centroid is in the closed diamond iff dx + dy <= 3: the same 40 cells.
    d = [4, 3, 2, 1, 0, 0, 1, 2, 3, 4]
    return frozenset((r, k) for r in range(10) for k in range(10) if d[r] + d[k] <= 3)


def _diamond_within() -> Cells:
    # The closed cell lies in the (convex) diamond iff its farthest corner does: that
    # corner has |x-5| + |y-5| = dx + dy + 2 (dx, dy as in _diamond), so dx + dy <= 2.
    d = [4, 3, 2, 1, 0, 0, 1, 2, 3, 4]
    return frozenset((r, k) for r in range(10) for k in range(10) if d[r] + d[k] <= 2)


# A sub-ulp triangle: the edge (0.3, 1.7)-(1.7, 0.3) is x + y = 2 - 5.6e-17 in float64
# (see "corner_overlap_below_an_ulp"), and with (2, 2) it bounds a triangle that
# overlaps the unit cell [0, 1]^2 in ~1.5e-33 square degrees at its corner (1, 1).
SUB_ULP_TRIANGLE = shapely.from_wkt("POLYGON ((0.3 1.7, 1.7 0.3, 2 2, 0.3 1.7))")

CASES: dict[str, EdgeCase] = {
    # The box's edges run through centroids: x = 2.5 and 5.5 are centroid columns 2 and
    # 5, y = 4.5 and 7.5 are centroid rows 5 and 2; the shell is closed, so all 4 x 4
    # are in. any_overlap: x in [2.5, 5.5] overlaps cols 2..5 with positive width (col 5:
    # 5 .. 5.5), y in [4.5, 7.5] rows 2..5 (row 5: 4.5 .. 5): the same cells.
    "centre_on_edge": EdgeCase(
        G10,
        (box(2.5, 4.5, 5.5, 7.5),),
        block(range(2, 6), range(2, 6)),
        block(range(2, 6), range(2, 6)),
        # within: [k, k+1] in [2.5, 5.5] -> cols 3, 4; [9-r, 10-r] in [4.5, 7.5] -> rows
        # 3, 4. The 12 other centre cells straddle an edge: hole statistic.
        within=block(range(3, 5), range(3, 5)),
        hole_within=12,
    ),
    # A small triangle whose vertex (4.5, 4.5) is the centroid of (row 5, col 4); it spans
    # x, y in [4.5, 5.2], so no other centroid (the next are at 5.5) lies in it. Its
    # interior reaches into the four cells around (5, 5): (4.8, 4.8), (4.95, 5.1) and
    # (5.1, 4.95), (5.05, 5.05) are inside (between the directions (0.7, 0.5) and (0.5,
    # 0.7) from the vertex and below x + y = 10.2).
    "centre_on_vertex": EdgeCase(
        G10,
        (Polygon([(4.5, 4.5), (5.2, 5.0), (5.0, 5.2)]),),
        frozenset({(5, 4)}),
        block(range(4, 6), range(4, 6)),
        within=NONE,  # 0.7 wide: no whole cell fits; (5, 4) loses its centroid's cell
        hole_within=1,
    ),
    # center: a centroid on the hole's edge, e.g. (2.5, 4.5) = (row 5, col 2), or on its
    # vertex, e.g. (2.5, 2.5) = (row 7, col 2), is excluded (the hole is closed); all 25
    # excluded centroids are in the shell, so all count as hole. any_overlap excludes
    # only the 9 cells inside the closed hole; the cells straddling its edges overlap.
    "centre_on_hole_edge_and_vertex": EdgeCase(
        G10,
        (HOLED,),
        ALL10 - HOLE_CENTROIDS,
        ALL10 - HOLE_CELLS,
        # within: a cell is in unless it meets the open hole (2.5, 6.5)^2 -- cols 2..6 x
        # rows 3..7, the 25 cells of the hole's centroids; cells that only touch the
        # hole's edge (col 1, x 1 .. 2) are in, the hole's boundary being part of G
        within=ALL10 - HOLE_CENTROIDS,
        hole_center=25,
        hole_any_overlap=9,
        hole_within=25,
    ),
    # The host's hole is exactly the enclave's outline (the host is the case above). The
    # enclave's closed shell holds the 25 centroids of the closed hole, so the two
    # partition the grid under center. any_overlap: (2.5, 6.5)^2 overlaps cols 2..6 and
    # rows 3..7 (col 6: 6 .. 6.5), the same 25 cells.
    # within: the cells wholly inside [2.5, 6.5]^2, HOLE_CELLS; the 16 rim cells hold a
    # centroid of the enclave's shell and count as hole.
    "enclave": EdgeCase(
        G10,
        (box(2.5, 2.5, 6.5, 6.5),),
        HOLE_CENTROIDS,
        HOLE_CENTROIDS,
        within=HOLE_CELLS,
        hole_within=16,
    ),
    # An island box(3.5, 3.5, 5.5, 5.5) in the hole, as a second part: its own shell
    # holds centroids x, y in {3.5, 4.5, 5.5} -> cols 3..5, rows 4..6 (edges inclusive);
    # the other 16 hole centroids stay out and count as hole. any_overlap: the island
    # overlaps exactly the 9 cells inside the hole, so every cell is in.
    "island_in_hole": EdgeCase(
        G10,
        (MultiPolygon([HOLED, box(3.5, 3.5, 5.5, 5.5)]),),
        (ALL10 - HOLE_CENTROIDS) | block(range(4, 7), range(3, 6)),
        ALL10,
        # within: the 75 cells clear of the open hole, and the one cell wholly in the
        # island, [4, 5] x [4, 5] = (row 5, col 4); all 100 centroids are in a shell
        within=(ALL10 - HOLE_CENTROIDS) | {(5, 4)},
        hole_center=16,
        hole_within=24,
    ),
    # An island triangle (2.5, 4.5), (4.5, 3.5), (4.5, 5.5) whose vertex touches the
    # hole's west edge at the centroid of (row 5, col 2): in through the island's shell
    # although it is on the hole's edge. The triangle spans y in [4.5 - (x-2.5)/2, 4.5 +
    # (x-2.5)/2]: it holds centroids (2.5, 4.5), (3.5, 4.5) and (4.5, 3.5 | 4.5 | 5.5),
    # 5 of the 25 hole centroids. any_overlap: it overlaps the hole cells of cols 3 and
    # 4 (x in 3..4.5, y reaching 3.75 .. 5.25 at x = 4), not col 5: 3 cells stay out.
    "island_touching_hole_edge": EdgeCase(
        G10,
        (MultiPolygon([HOLED, ISLAND_TRIANGLE]),),
        (ALL10 - HOLE_CENTROIDS) | {(5, 2), (5, 3), (4, 4), (5, 4), (6, 4)},
        ALL10 - block(range(4, 7), [5]),
        # within: the triangle is at most 1 high at x = 4.5 only, so it holds no whole
        # cell: the 75 cells clear of the hole
        within=ALL10 - HOLE_CENTROIDS,
        hole_center=20,
        hole_any_overlap=3,
        hole_within=25,
    ),
    # Two countries meeting at x = 4.5: column 4's centroids (x = 4.5) lie on the shared
    # border and column 4 (x 4..5) overlaps both with positive width: both get it.
    # within: column 4 is split by the border, so neither country has it whole.
    "shared_border_west": EdgeCase(
        G10,
        (box(0, 0, 4.5, 10),),
        block(range(10), range(5)),
        block(range(10), range(5)),
        within=block(range(10), range(4)),
        hole_within=10,
    ),
    "shared_border_east": EdgeCase(
        G10,
        (box(4.5, 0, 10, 10),),
        block(range(10), range(4, 10)),
        block(range(10), range(4, 10)),
        within=block(range(10), range(5, 10)),
        hole_within=10,
    ),
    # Two polygon rows of one code meeting along x = 2.5, a line of centroids: after the
    # union the line is interior, so those centroids are in once, like any other. x in
    # [0, 5], y in [0, 3]: centroid cols 0..4 and rows 7..9; the cells overlapping with
    # positive area are the same (col 4: 4 .. 5; row 7: 2 .. 3).
    "two_rows_meeting_on_centroids": EdgeCase(
        G10,
        (box(0, 0, 2.5, 3), box(2.5, 0, 5, 3)),
        block(range(7, 10), range(5)),
        block(range(7, 10), range(5)),
        # within: the union [0, 5] x [0, 3] holds these 15 cells whole; the seam x = 2.5
        # runs through column 2 but is no boundary after the union
        within=block(range(7, 10), range(5)),
    ),
    # Aligned to cell edges: the box covers cols 3..5 (x 3..6) and rows 4..6 (y 3..6);
    # columns 2 and 6 and rows 3 and 7 share only an edge with it. Its centroids are
    # those of the same 9 cells.
    # within: the closed box is exactly the union of the 9 closed cells.
    "edges_on_cell_edges": EdgeCase(
        G10,
        (box(3, 3, 6, 6),),
        block(range(4, 7), range(3, 6)),
        block(range(4, 7), range(3, 6)),
        within=block(range(4, 7), range(3, 6)),
    ),
    # Vertex (5, 5) on a cell corner, every other point at x > 5 and y > 5, so the cells
    # west or south of (5, 5) touch it at that point only. It overlaps the four cells of
    # x, y in [5, 7] ((6.1, 6.1) is inside: x + y < 12.5, the edge (7, 5.5)-(5.5, 7)).
    # Centroids (5.5, 5.5), (6.5, 5.5), (5.5, 6.5) are inside; (6.5, 6.5) has x + y = 13.
    "touching_only_at_a_corner": EdgeCase(
        G10,
        (Polygon([(5, 5), (7, 5.5), (5.5, 7)]),),
        frozenset({(4, 5), (4, 6), (3, 5)}),
        block(range(3, 5), range(5, 7)),
        # within: even [5, 6]^2 pokes out: its corner (6, 5) lies below the edge (5, 5) -
        # (7, 5.5), which has y = 5.25 at x = 6
        within=NONE,
        hole_within=3,
    ),
    # A 1e-9 wide sliver at x = 2.1, y in [3.2, 3.7], inside cell (row 6, col 2): it
    # misses that cell's centroid (2.5, 3.5) but has positive area in the cell.
    "sliver_thinner_than_a_cell": EdgeCase(
        G10, (box(2.1, 3.2, 2.1 + 1e-9, 3.7),), NONE, frozenset({(6, 2)}), within=NONE
    ),
    # Exactly cell (row 5, col 3): its neighbours touch it along an edge or at a corner
    # only, and its centroid (3.5, 4.5) is inside. within: the closed cell is G itself.
    "equal_to_a_cell": EdgeCase(
        G10,
        (box(3, 4, 4, 5),),
        frozenset({(5, 3)}),
        frozenset({(5, 3)}),
        within=frozenset({(5, 3)}),
    ),
    # x in [9.5, 12]: the last column's centroids (9.5) are on its west edge and the
    # column (x 9..10) overlaps it; the part beyond x = 10 is off the grid.
    # within: column 9 (x 9 .. 10) is only half in it.
    "last_column": EdgeCase(
        G10,
        (box(9.5, 0, 12, 10),),
        block(range(10), [9]),
        block(range(10), [9]),
        within=NONE,
        hole_within=10,
    ),
    # x in [10, 12] touches the grid's east edge from outside: nothing.
    "outside_touching_east_edge": EdgeCase(G10, (box(10, 0, 12, 10),), NONE, NONE, within=NONE),
    # Edges through cell corners and centroids alike (worked out in _diamond).
    "diamond_through_corners": EdgeCase(
        G10,
        (Polygon([(5, 1), (9, 5), (5, 9), (1, 5)]),),
        _diamond(),
        _diamond(),
        within=_diamond_within(),
        hole_within=16,
    ),
    # Given as x in [177, 182]: cut at +180 into [177, 180] + [-180, -178]. WORLD
    # centroids -180 + k in it: 177, 178, 179 (cols 357..359) and -180, -179, -178 (cols
    # 0..2). any_overlap: col 2 (-178.5 .. -177.5) overlaps [-180, -178] and col 357
    # (176.5 .. 177.5) overlaps [177, 180]; cols 3 and 356 do not. Rows: centroid 9.5 - r
    # in [0, 5] -> rows 5..9, and the same rows overlap (0, 5) with positive height.
    "crossing_the_antimeridian": EdgeCase(
        WORLD,
        (box(177, 0, 182, 5),),
        block(range(5, 10), [0, 1, 2, 357, 358, 359]),
        block(range(5, 10), [0, 1, 2, 357, 358, 359]),
        # within: col 0's pieces 179.5 .. 180 and -180 .. -179.5 both lie in G (the cut
        # at ±180 is G's boundary, closed); cols 1 (-179.5 .. -178.5), 358, 359 whole;
        # cols 2 and 357 only half
        within=block(range(5, 10), [0, 1, 358, 359]),
        hole_within=10,
    ),
    # Given as x in [-181, -179]: cut at -180 into [179, 180] + [-180, -179]. Centroids
    # -180 and -179 (cols 0, 1; -179 on the east edge) and 179 (col 359, on the west
    # edge). any_overlap: col 0 overlaps through both pieces, col 1 (-179.5 .. -178.5)
    # by -179.5 .. -179, col 359 (178.5 .. 179.5) by 179 .. 179.5; cols 2 and 358 touch.
    "given_west_of_minus_180": EdgeCase(
        WORLD,
        (box(-181, 0, -179, 5),),
        block(range(5, 10), [0, 1, 359]),
        block(range(5, 10), [0, 1, 359]),
        # within: col 0's pieces 179.5 .. 180 and -180 .. -179.5 lie in [179, 180] and
        # [-180, -179]; cols 1 and 359 are half out
        within=block(range(5, 10), [0]),
        hole_within=10,
    ),
    # WorldPop-style west overhang: column 0's western piece wraps to 179.5 .. 180 and
    # overlaps a country at 179.6 .. 180. Its centroid is published at -180.0, which is
    # not in [179.6, 180], and column 359 (178.5 .. 179.5) misses the country.
    "column_zero_west_sliver_wraps": EdgeCase(
        WORLD, (box(179.6, 0, 180, 5),), NONE, block(range(5, 10), [0]), within=NONE
    ),
    # A country at -180 .. -179.8 overlaps column 0's eastern piece (-180 .. -179.5) and
    # holds its centroid -180.0 on its west edge.
    # within: that piece is only partly covered, the western piece not at all.
    "column_zero_east_piece": EdgeCase(
        WORLD,
        (box(-180, 0, -179.8, 5),),
        block(range(5, 10), [0]),
        block(range(5, 10), [0]),
        within=NONE,
        hole_within=5,
    ),
    # Column 0's eastern piece, -180 .. -179.5, exactly: it is covered, but the western
    # piece (179.5 .. 180) is not, so the cell is not within (§10.2: both pieces). Its
    # centroid -180.0 lies on the west edge (center); col 1 touches at -179.5 only.
    "split_cell_with_one_piece_covered": EdgeCase(
        WORLD,
        (box(-180, 0, -179.5, 5),),
        block(range(5, 10), [0]),
        block(range(5, 10), [0]),
        within=NONE,
        hole_within=5,
    ),
    # Both of column 0's pieces exactly, as two polygon rows: the cell is within.
    "split_cell_with_both_pieces_covered": EdgeCase(
        WORLD,
        (box(-180, 0, -179.5, 5), box(179.5, 0, 180, 5)),
        block(range(5, 10), [0]),
        block(range(5, 10), [0]),
        within=block(range(5, 10), [0]),
    ),
    # The last column, 359 (178.5 .. 179.5), holds the country x in [179, 179.5] and its
    # centroid 179 on the west edge; column 0's wrapped western piece (179.5 .. 180)
    # touches it at 179.5 only, and column 0's centroid is -180.
    # within: column 359 is half out.
    "world_last_column": EdgeCase(
        WORLD,
        (box(179, 0, 179.5, 5),),
        block(range(5, 10), [359]),
        block(range(5, 10), [359]),
        within=NONE,
        hole_within=5,
    ),
    # The reference transform: column 0's western sliver wraps to 179.9987507 .. 180 and
    # overlaps a country at 179.999 .. 180 (its y range 83.6 .. 83.64 covers the row);
    # column 0's centroid, -179.9970826, is not in it.
    "worldpop_column_zero_sliver": EdgeCase(
        WORLDPOP, (box(179.999, 83.6, 180, 83.64),), NONE, frozenset({(0, 0)}), within=NONE
    ),
    # EAST: a country at -180 .. -179.8 overlaps only column 10's eastern piece, wrapped
    # to -180 .. -179.5; no centroid is in it (column 10's is 180.0, not -180.0).
    "east_grid_wrapped_piece": EdgeCase(
        EAST, (box(-180, 0, -179.8, 5),), NONE, block(range(5, 10), [10]), within=NONE
    ),
    # EAST: a country at -179.2 .. -178.6 holds column 11's wrapped centroid -179 and
    # overlaps its wrapped span -179.5 .. -178.5 only.
    # within: -179.5 .. -178.5 is wider than the country.
    "east_grid_wrapped_centroid": EdgeCase(
        EAST,
        (box(-179.2, 0, -178.6, 5),),
        block(range(5, 10), [11]),
        block(range(5, 10), [11]),
        within=NONE,
        hole_within=5,
    ),
    # EAST: column 10's centroid is published as +180.0, on the east edge of a country
    # at 179.8 .. 180; its western piece 179.5 .. 180 overlaps it, column 9 (178.5 ..
    # 179.5) does not.
    # within: the western piece is only partly covered, the eastern one not at all.
    "centroid_at_plus_180": EdgeCase(
        EAST,
        (box(179.8, 0, 180, 5),),
        block(range(5, 10), [10]),
        block(range(5, 10), [10]),
        within=NONE,
        hole_within=5,
    ),
    # Sub-ulp contacts. The edge (-180, 83.59249913518272)-(-179.96374930015,
    # 83.6287498350327) passes 1.6e-15 degrees inside the south-east corner of cell (row
    # 0, col 3), so the triangle overlaps that cell by a sliver GEOS and exact arithmetic
    # both see; the edge reaches row 0 (y >= 83.62458) only east of column 2, and every
    # centroid (y 83.6288) lies above the triangle (y <= 83.62875).
    "corner_clipped_by_1e-15": EdgeCase(
        WORLDPOP,
        (
            Polygon(
                [
                    (-180, 83.59249913518272),
                    (-179.96374930015, 83.6287498350327),
                    (-179.98041596675, 83.5787498352327),
                ]
            ),
        ),
        NONE,
        frozenset({(0, 3)}),
        within=NONE,  # a triangle below the row, poking into one corner
    ),
    # The triangle (4, -1.7), (1, -0.2), (1, 0.3) on G4. Its lower edge is y = -0.2 -
    # (x-1)/2 (reaching -0.7 at x = 2, the north-east corner of cell (1, 1)), its upper
    # edge y = 0.3 - 2(x-1)/3. Cells it overlaps: (0, 1) and (0, 2) (row 0 above -0.7),
    # (1, 2) and (1, 3) (the lower edge is below -0.7 east of x = 2). In float64 the
    # lower edge dips 3.7e-17 into cell (1, 1) at that corner: exact arithmetic includes
    # it, GEOS sees a touch (the contract follows GEOS). Only centroid (1.5, -0.2) of
    # (0, 1) is inside (between -0.45 and -0.03).
    "corner_dipped_into_by_4e-17": EdgeCase(
        G4,
        (Polygon([(4, -1.7), (1, -0.2), (1, 0.3)]),),
        frozenset({(0, 1)}),
        frozenset({(0, 1), (0, 2), (1, 2), (1, 3)}),
        # within: the triangle's height at x is 0.5 - (x-1)/6 < 1, less than a cell's
        within=NONE,
        hole_within=1,
        exact_any_overlap=frozenset({(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)}),
    ),
    # A sliver along x + y = 2 from (0, 2) to (2, 0), its third vertex (0.3, 1.7) with
    # 0.3 + 1.7 = 2 - 5.6e-17 in float64, so it lies on the (0, 0) side of the line. It
    # overlaps cells (0, 0) and (1, 1), which the line crosses, and passes ~1e-17 below
    # and left of the corner (1, 1): a tiny triangle of it lies in cell (1, 0) (GEOS
    # relate and exact arithmetic agree); it never reaches cell (0, 1). The centroids
    # (0.5, 1.5) and (1.5, 0.5) lie exactly on its edge x + y = 2: included.
    "sliver_cuts_a_corner_below_an_ulp": EdgeCase(
        G2,
        (shapely.from_wkt("POLYGON ((0 2, 0.3 1.7, 2 0, 0 2))"),),
        frozenset({(0, 0), (1, 1)}),
        frozenset({(0, 0), (1, 0), (1, 1)}),
        within=NONE,  # a sliver: no whole cell
        hole_within=2,
    ),
    # The edge (0.3, 1.7)-(1.7, 0.3) is x + y = 2 - 5.6e-17 in float64 (its direction is
    # (d, -d) exactly), so it passes below the corner (1, 1) of the unit cell and the
    # triangle (on the (2, 2) side) overlaps the cell in ~1.5e-33 square degrees. Exact
    # arithmetic includes the cell; GEOS relate reports a touch, and the contract follows
    # GEOS. The centroid (0.5, 0.5) is far outside.
    "corner_overlap_below_an_ulp": EdgeCase(
        UNIT,
        (shapely.from_wkt("POLYGON ((0.3 1.7, 1.7 0.3, 2 2, 0.3 1.7))"),),
        NONE,
        NONE,
        within=NONE,
        exact_any_overlap=frozenset({(0, 0)}),
    ),
    # -- within (docs/CONTRACT.md §10.2) -------------------------------------------------
    # A hole (4, 4), (4.5, 3), (5, 3.5) inside cell (row 6, col 4) = [4, 5] x [3, 4]. It
    # touches cell (row 5, col 3) = [3, 4] x [4, 5] and (5, 4) at the corner (4, 4) only,
    # (6, 5) at (5, 3.5) and (7, 4) at (4.5, 3): the hole's boundary belongs to G, so
    # those are within; (6, 4) has the hole in its interior and is not. center: at x =
    # 4.5 the hole spans y 3 .. 3.75, so it holds the centroid (4.5, 3.5) of (6, 4), a
    # hole exclusion. any_overlap: every cell (no cell lies inside the hole).
    "hole_touching_a_cell_corner": EdgeCase(
        G10,
        (Polygon(box(0, 0, 10, 10).exterior, [[(4, 4), (4.5, 3), (5, 3.5)]]),),
        ALL10 - {(6, 4)},
        ALL10,
        within=ALL10 - {(6, 4)},
        hole_center=1,
        hole_within=1,
    ),
    # A hole of 1e-9 x 1e-9 inside cell (row 5, col 3), away from its centroid: the
    # cell's fraction rounds to 1 but the cell is not within; center and any_overlap
    # keep every cell.
    "pinhole": EdgeCase(
        G10,
        (Polygon(box(0, 0, 10, 10).exterior, [box(3.2, 4.2, 3.2 + 1e-9, 4.2 + 1e-9).exterior]),),
        ALL10,
        ALL10,
        within=ALL10 - {(5, 3)},
        hole_within=1,
    ),
    # The unit cell with SUB_ULP_TRIANGLE cut out of a larger box as a hole: in exact
    # arithmetic the hole overlaps the cell (not within); GEOS covers on the prepared
    # geometry agrees, while GEOS on the plain geometry says covered -- so the engines
    # use the prepared one (tileindex.legacy). The centroid is far from the hole.
    "sub_ulp_hole_at_a_corner": EdgeCase(
        UNIT,
        (Polygon(box(-1, -1, 3, 3).exterior, [SUB_ULP_TRIANGLE.exterior]),),
        frozenset({(0, 0)}),
        frozenset({(0, 0)}),
        within=NONE,
        hole_within=1,
    ),
    # The triangle on the other side of that edge, with (-2, -2): the corner (1, 1) of
    # the unit cell lies 4e-17 outside it (x + y = 2 > 2 - 5.6e-17), so the cell is not
    # within. GEOS covers on the prepared geometry sees it, on the plain one it does not.
    "corner_outside_by_4e-17": EdgeCase(
        UNIT,
        (shapely.from_wkt("POLYGON ((0.3 1.7, 1.7 0.3, -2 -2, 0.3 1.7))"),),
        frozenset({(0, 0)}),
        frozenset({(0, 0)}),
        within=NONE,
        hole_within=1,
    ),
}
