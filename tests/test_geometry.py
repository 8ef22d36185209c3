"""Country geometry (docs/CONTRACT.md §4): validity, antimeridian cut, union, oriented edges."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import shapely

from tileindex.errors import GeometryInvalidError
from tileindex.geometry import check_valid, country_geometry, normalise_longitudes


def _polygon_wkb(ring: list[tuple[float, float]]) -> shapely.Polygon:
    """A polygon built from raw WKB, so NaN coordinates get through without warnings."""
    body = struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)
    with np.errstate(invalid="ignore"):  # shapely flags the NaN as a float error
        return shapely.from_wkb(body)


def test_polygon_beyond_180_is_cut_and_shifted() -> None:
    fiji = shapely.Polygon([(177, -18), (182, -18), (182, -16), (177, -16)])
    out = normalise_longitudes(fiji)
    assert out.geom_type == "MultiPolygon"
    minx, _, maxx, _ = out.bounds
    assert minx == -180.0 and maxx == 180.0
    # nothing lost: the area is the same, split 3 + 2 degrees wide
    assert out.area == pytest.approx(fiji.area)
    parts = sorted(shapely.get_parts(out), key=lambda p: p.bounds[0])
    assert parts[0].bounds == (-180.0, -18.0, -178.0, -16.0)
    assert parts[1].bounds == (177.0, -18.0, 180.0, -16.0)


def test_polygon_west_of_minus_180_is_shifted_east() -> None:
    g = shapely.box(-185, 10, -175, 20)
    out = normalise_longitudes(g)
    assert out.bounds == (-180.0, 10.0, 180.0, 20.0)
    assert out.area == pytest.approx(g.area)


def test_polygon_inside_the_range_is_untouched() -> None:
    g = shapely.box(-180, -10, 180, 10)
    assert normalise_longitudes(g) is g


def test_rows_of_one_code_are_unioned() -> None:
    country = country_geometry("AA", [shapely.box(0, 0, 2, 2), shapely.box(2, 0, 4, 2)])
    assert country.geom.area == pytest.approx(8.0)
    assert len(country.parts) == 1  # the shared edge dissolves


def test_seamless_dateline_country_has_parts_on_both_sides() -> None:
    country = country_geometry("FJ", [shapely.box(178, -18, 181, -17)])
    sides = sorted(p.bounds[0] for p in country.parts)
    assert sides == [-180.0, 178.0]


@pytest.mark.parametrize(
    ("geom", "needle"),
    [
        (shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)]), "Self-intersection"),
        (None, "null"),
        (shapely.LineString([(0, 0), (1, 1)]), "LineString"),
        (shapely.Polygon(), "empty"),
        (_polygon_wkb([(0, 0), (1, float("nan")), (1, 0), (0, 0)]), "NaN"),
        (shapely.box(0, 80, 1, 95), "outside lon/lat range"),
    ],
)
def test_unusable_geometry_fails_with_e001_naming_the_country(geom, needle) -> None:
    with pytest.raises(GeometryInvalidError, match=needle) as info:
        check_valid(geom, "XY")
    assert info.value.code == "E001_GEO_INVALID"
    assert info.value.context["country_iso"] == "XY"
    assert "XY" in str(info.value)


def test_edges_are_oriented_shells_ccw_and_holes_cw() -> None:
    # given with the shell clockwise and the hole counter-clockwise
    shell = [(0, 0), (0, 10), (10, 10), (10, 0)]
    hole = [(2, 2), (4, 2), (4, 4), (2, 4)]
    country = country_geometry("AA", [shapely.Polygon(shell, [hole])])
    e = country.edges
    signed = (e.x1 * e.y2 - e.x2 * e.y1) / 2  # shoelace terms per ring
    assert signed[e.is_shell].sum() == pytest.approx(100.0)
    assert signed[~e.is_shell].sum() == pytest.approx(-4.0)


def test_repeated_vertices_are_not_segments() -> None:
    g = shapely.Polygon([(0, 0), (1, 0), (1, 0), (1, 1), (0, 1)])
    country = country_geometry("AA", [g])
    assert len(country.edges) == 4
