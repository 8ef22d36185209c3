"""A country's geometry as the recount sees it: ring segments, vertices, part bounds and
prepared GEOS objects, built once per country from the docs/CONTRACT.md §4 geometry."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex.geometry import CountryGeometry
from tileindex.validate.axes import BoolArray, FloatArray


class Shape:
    """A country's geometry prepared for the recount: segments, vertices, GEOS objects."""

    def __init__(self, country: CountryGeometry) -> None:
        self.code = country.iso
        self.country = country
        self.empty = country.is_empty
        parts = np.asarray(country.parts, dtype=object)
        rings = shapely.get_rings(parts) if parts.size else np.empty(0, dtype=object)
        xy, ring = shapely.get_coordinates(rings, return_index=True)
        # consecutive vertices of one ring are a segment; repeated vertices are not
        seg = (ring[1:] == ring[:-1]) & (xy[1:] != xy[:-1]).any(axis=1)
        a, b = xy[:-1][seg], xy[1:][seg]
        self.x1, self.y1, self.x2, self.y2 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        self.xmin, self.xmax = np.minimum(self.x1, self.x2), np.maximum(self.x1, self.x2)
        self.ymin, self.ymax = np.minimum(self.y1, self.y2), np.maximum(self.y1, self.y2)
        self.vx, self.vy = xy[:, 0], xy[:, 1]
        holes = [h for part in country.parts for h in part.interiors]
        self.geom = country.geom
        if not self.empty:
            shapely.prepare(self.geom)
        self.hole_lines = shapely.multilinestrings(holes) if holes else None
        if self.hole_lines is not None:
            shapely.prepare(self.hole_lines)
        bounds = shapely.bounds(np.asarray(country.parts, dtype=object)).reshape(-1, 4)
        self.bounds = bounds
        self.intervals = _merge(bounds[:, 0], bounds[:, 2])
        self.ylo = float(bounds[:, 1].min()) if bounds.size else 0.0
        self.yhi = float(bounds[:, 3].max()) if bounds.size else -1.0
        self._parts: list[tuple[BaseGeometry, BaseGeometry]] | None = None

    def center_exact(self, x: FloatArray, y: FloatArray) -> BoolArray:
        """The ``center`` rule for each point: in or on the shell of some part and in or
        on none of that part's holes."""
        if self.empty or x.size == 0:
            return np.zeros(x.size, dtype=bool)
        covered = shapely.intersects_xy(self.geom, x, y)
        if self.hole_lines is not None and covered.any():
            k = np.flatnonzero(covered)
            on_hole = k[shapely.intersects_xy(self.hole_lines, x[k], y[k])]
            for i in on_hole.tolist():
                covered[i] = self._per_part(float(x[i]), float(y[i]))
        return covered

    def _per_part(self, x: float, y: float) -> bool:
        if self._parts is None:
            self._parts = []
            for part in self.country.parts:
                shell = shapely.Polygon(part.exterior)
                holes = shapely.MultiPolygon([shapely.Polygon(r) for r in part.interiors])
                shapely.prepare(shell)
                shapely.prepare(holes)
                self._parts.append((shell, holes))
        point = shapely.Point(x, y)
        return any(
            shell.intersects(point) and not holes.intersects(point) for shell, holes in self._parts
        )


def _merge(lo: FloatArray, hi: FloatArray) -> list[tuple[float, float]]:
    """Union of closed intervals, as sorted disjoint intervals."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(zip(lo.tolist(), hi.tolist(), strict=True)):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


EMPTY_SHAPE = Shape(CountryGeometry.from_geometry("", shapely.Polygon()))
