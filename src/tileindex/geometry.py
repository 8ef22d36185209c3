"""Country geometry: validity, antimeridian normalisation, union per code, and the
edge arrays and indexes the engines test cells against."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex.errors import GeometryInvalidError
from tileindex.grid import LON_SHIFTS

_POLYGONAL = ("Polygon", "MultiPolygon")


def check_valid(geom: BaseGeometry | None, iso: str, what: str = "geometry") -> BaseGeometry:
    """Raise E001 unless ``geom`` is a valid, non-empty, finite (Multi)Polygon."""
    if geom is None:
        raise GeometryInvalidError(f"country {iso}: {what} is null", country_iso=iso)
    if geom.geom_type not in _POLYGONAL:
        raise GeometryInvalidError(
            f"country {iso}: {what} is a {geom.geom_type}, expected Polygon or MultiPolygon",
            country_iso=iso,
        )
    if geom.is_empty:
        raise GeometryInvalidError(f"country {iso}: {what} is empty", country_iso=iso)
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        raise GeometryInvalidError(
            f"country {iso}: {what} has NaN or infinite coordinates; fix the input layer",
            country_iso=iso,
        )
    if (np.abs(coords[:, 1]) > 90.0).any() or (np.abs(coords[:, 0]) > 540.0).any():
        raise GeometryInvalidError(
            f"country {iso}: {what} has coordinates outside lon/lat range "
            "(|lat| > 90 or |lon| > 540); is the layer in EPSG:4326?",
            country_iso=iso,
        )
    if not shapely.is_valid(geom):
        reason = shapely.is_valid_reason(geom)
        raise GeometryInvalidError(
            f"country {iso}: {what} is invalid ({reason}); repair it in the input-preparation "
            "step (e.g. shapely.make_valid), builds never repair geometry",
            country_iso=iso,
        )
    return geom


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Keep the polygonal parts of a clip/union result (drops touching lines and points)."""
    if geom.geom_type in _POLYGONAL or geom.is_empty:
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in _POLYGONAL and not p.is_empty]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _clip(geom: BaseGeometry, lo: float, hi: float) -> BaseGeometry:
    """The polygonal part of ``geom`` with lo <= x <= hi.

    clip_by_rect puts the cut vertices exactly on x = lo / hi; on a piece that
    degenerates (a sliver thinner than float resolution) it may fail or return an
    invalid ring, and then the overlay, which drops what has no area, decides.
    """
    try:
        piece = _polygonal(shapely.clip_by_rect(geom, lo, -90.0, hi, 90.0))
        if shapely.is_valid(piece):
            return piece
    except shapely.errors.GEOSException:
        pass
    return _polygonal(shapely.intersection(geom, shapely.box(lo, -90.0, hi, 90.0)))


def normalise_longitudes(geom: BaseGeometry) -> BaseGeometry:
    """Cut a polygon given beyond ±180 at the antimeridian and shift the pieces into
    [-180, 180] (docs/CONTRACT.md §4). Geometry already inside the range is returned unchanged."""
    minx, _, maxx, _ = geom.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return geom
    pieces = []
    for lo, hi, shift in LON_SHIFTS:
        if maxx <= lo or minx >= hi:
            continue
        piece = _clip(geom, lo, hi)
        if piece.is_empty:
            continue
        pieces.append(shapely.transform(piece, lambda xy, s=shift: xy + np.array([s, 0.0])))
    if not pieces:
        return shapely.Polygon()
    return _polygonal(shapely.union_all(pieces)) if len(pieces) > 1 else pieces[0]


def country_geometry(iso: str, rows: Sequence[BaseGeometry]) -> CountryGeometry:
    """Union of a code's rows after validation and antimeridian normalisation."""
    for i, g in enumerate(rows):
        check_valid(g, iso, f"polygon row {i + 1} of {len(rows)}")
    normalised = [normalise_longitudes(g) for g in rows]
    geom = normalised[0] if len(normalised) == 1 else _polygonal(shapely.union_all(normalised))
    what = "union of its polygon rows" if len(rows) > 1 else "geometry"
    if any(n is not g for n, g in zip(normalised, rows, strict=True)):
        what += " after cutting at the antimeridian"
    check_valid(geom, iso, what)
    return CountryGeometry.from_geometry(iso, geom)


def geometry_digest(country: CountryGeometry) -> str:
    """SHA-256 of the country's normalised geometry (WKB), code included: what the mask
    cache keys a country's runs by."""
    wkb = shapely.to_wkb(country.geom, byte_order=1, output_dimension=2)
    return hashlib.sha256(country.iso.encode() + b"\0" + wkb).hexdigest()


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Edges:
    """Every ring segment of a geometry, shells oriented CCW and holes CW, so that a
    horizontal ray to the left crosses a shell downward (+1) and a hole upward (-1)."""

    x1: FloatArray
    y1: FloatArray
    x2: FloatArray
    y2: FloatArray
    is_shell: npt.NDArray[np.bool_]

    @property
    def ymin(self) -> FloatArray:
        return np.minimum(self.y1, self.y2)

    @property
    def ymax(self) -> FloatArray:
        return np.maximum(self.y1, self.y2)

    def __len__(self) -> int:
        return int(self.x1.size)

    def select(self, keep: npt.NDArray[np.bool_]) -> Edges:
        return Edges(
            self.x1[keep], self.y1[keep], self.x2[keep], self.y2[keep], self.is_shell[keep]
        )


def _edges(parts: Sequence[BaseGeometry]) -> Edges:
    xs1, ys1, xs2, ys2, shells = [], [], [], [], []
    for part in parts:
        oriented = shapely.orient_polygons(part, exterior_cw=False)
        rings = [(oriented.exterior, True)] + [(r, False) for r in oriented.interiors]
        for ring, is_shell in rings:
            xy = shapely.get_coordinates(ring)
            a, b = xy[:-1], xy[1:]
            nonzero = (a != b).any(axis=1)  # repeated vertices are not segments
            a, b = a[nonzero], b[nonzero]
            xs1.append(a[:, 0])
            ys1.append(a[:, 1])
            xs2.append(b[:, 0])
            ys2.append(b[:, 1])
            shells.append(np.full(len(a), is_shell))
    if not xs1:
        empty = np.empty(0, dtype=np.float64)
        return Edges(empty, empty, empty, empty, np.empty(0, dtype=bool))
    return Edges(
        np.concatenate(xs1),
        np.concatenate(ys1),
        np.concatenate(xs2),
        np.concatenate(ys2),
        np.concatenate(shells),
    )


@dataclass(frozen=True, eq=False)
class CountryGeometry:
    """A country's normalised geometry with everything the engines need, prepared once."""

    iso: str
    geom: BaseGeometry
    parts: tuple[BaseGeometry, ...]
    edges: Edges = field(repr=False)

    @classmethod
    def from_geometry(cls, iso: str, geom: BaseGeometry) -> CountryGeometry:
        parts = tuple(p for p in shapely.get_parts(geom) if not p.is_empty)
        return cls(iso=iso, geom=geom, parts=parts, edges=_edges(parts))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        b = self.geom.bounds
        return (b[0], b[1], b[2], b[3])

    @property
    def is_empty(self) -> bool:
        return len(self.parts) == 0

    def __getstate__(self) -> dict[str, object]:
        # GEOS indexes do not pickle; a worker rebuilds them on first use
        state = dict(self.__dict__)
        state.pop("exact", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    @cached_property
    def exact(self) -> ExactIndex:
        """Indexes for exact GEOS decisions (built lazily, once)."""
        return ExactIndex.build(self)


@dataclass(frozen=True, eq=False)
class ExactIndex:
    """GEOS structures for the exact decisions, built once per country.

    ``geom`` is the prepared country geometry; ``shell_tree`` indexes each part's
    exterior as a hole-free (prepared) polygon, in part order; ``holes[i]`` is part i's
    holes as one (possibly empty) multipolygon.
    """

    geom: BaseGeometry
    holes: npt.NDArray[np.object_]
    shell_tree: shapely.STRtree

    @classmethod
    def build(cls, country: CountryGeometry) -> ExactIndex:
        geom = shapely.Polygon() if country.is_empty else country.geom
        shapely.prepare(geom)
        shells = np.array([shapely.Polygon(p.exterior) for p in country.parts], dtype=object)
        holes = np.array(
            [
                shapely.MultiPolygon([shapely.Polygon(h) for h in p.interiors])
                for p in country.parts
            ],
            dtype=object,
        )
        shapely.prepare(shells)
        shapely.prepare(holes)
        return cls(geom, holes, shapely.STRtree(shells))
