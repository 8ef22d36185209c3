"""The independent validator of a published tile index: returns findings, never prints.

It shares only the contract (schemas, dataset dictionary, receipt), the sealed-input
readers, the grid's dimensions and transform, the country geometry of SPEC §4 and the
legacy oracle with the build. Every value is recomputed here from the SPEC formulas;
inclusion is re-decided by a method of its own (below), never by the build's kernel.

Streaming: both datasets are read in lockstep, batch by batch; the independent
recount works in row blocks. Memory is O(batch + block), never O(dataset) or O(country).

Codes. Every finding carries the SPEC §8 code of what it is about; where the SPEC has
no code of its own the nearest one is used:

=================================  ==================================================
E002_RASTER_MISMATCH               tile_id / raster_row / raster_col (values, types,
                                   nulls), grid_dims or grid_transform in the report,
                                   tile_id_min/max of a summary
E003_DUP_TILE                      duplicate key, key order, tile_index and
                                   tile_bounds not holding the same keys in order
E004_BOUNDS                        centroid and bounds columns (values, types, nulls)
E005_ISO_FK                        country_iso not in the ISO list; summaries or
                                   countries_total not matching the ISO list
E006_AREA_NONPOS                   pixel_area_m2 not > 0 or not the WGS84 cell area
E008_INCLUSION_RULE                inclusion_rule column, report predicate, included
                                   cells contradicting the predicate (recount, sampled
                                   windows, --full), counts in the evidence that do
                                   not match the rows
E009_PERF_BUDGET                   SPEC §9 budgets, missing or inconsistent ``pat``
E010_IMMUTABLE_PARTITION           what is published at the identity is not what the
                                   run recorded: receipt, parameter_hash, input
                                   digests, missing evidence, stray or nested files,
                                   unreadable part files
=================================  ==================================================

How inclusion is re-decided (the recount)
-----------------------------------------
Both predicates change value only across the boundary of the country (any ring of any
part), so along a row the decision is constant on every stretch the boundary does not
meet. For each row and each ring segment, the x-range where the segment can meet the
row (its crossing of the centre line for ``center``, its extent inside the row's strip
for ``any_overlap``) is computed and widened by a margin (``_margin``) more than a
thousand times the float64 rounding error of that interpolation. Cells touched by such
a range are *dirty* and decided one by one, exactly; each clean stretch is decided by
one exact test of one of its points. GEOS point-in-polygon (``intersects_xy``,
``contains_xy``) is exact: it decides with robust orientation signs.

* ``center``: a dirty range also dirties the neighbour centroid on each side, so the
  gap between the last dirty centroid and a clean one never holds a boundary point and
  a clean centroid takes the value of its dirty left neighbour (which is off the
  boundary, see ``_center_block``). Test per centroid: ``intersects_xy(G)`` (closed),
  then, for a centroid on the ring of a hole, the per-part rule (closed shell, open
  holes).
* ``any_overlap``: for a valid polygon the open cell meets the interior of G iff a
  boundary point lies in the open cell or the cell lies inside G. A dirty cell (or
  piece of a cell split at ±180) is included when a ring vertex lies strictly inside
  it, else when its midpoint is interior to G (``contains_xy``), else when one of the
  segments that made it dirty passes through the open cell
  (``_segment_meets_open_box``; a contact below float resolution is decided by GEOS
  ``relate`` on the country, the SPEC's "GEOS-exact" reference). A clean stretch lies
  wholly inside or wholly outside G; its midpoint decides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

from tileindex import legacy
from tileindex.contract import (
    BUDGETS,
    PAT_COUNTERS,
    SUMMARY_FIELDS,
    TILE_BOUNDS_SCHEMA,
    TILE_INDEX_SCHEMA,
    DatasetDictionary,
    check_parameter_hash,
    determinism_receipt,
)
from tileindex.contract import parameter_hash as derive_parameter_hash
from tileindex.errors import ConfigError, InputFileError
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid, Window
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.predicates import PREDICATES

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U64Array = npt.NDArray[np.uint64]
Progress = Callable[[str], None]

E002 = "E002_RASTER_MISMATCH"
E003 = "E003_DUP_TILE"
E004 = "E004_BOUNDS"
E005 = "E005_ISO_FK"
E006 = "E006_AREA_NONPOS"
E008 = "E008_INCLUSION_RULE"
E009 = "E009_PERF_BUDGET"
E010 = "E010_IMMUTABLE_PARTITION"

COORD_TOLERANCE_DEG = 1e-9
AREA_REL_TOLERANCE = 1e-8
# the code of each column: its type, nulls and values are findings of that code
COLUMN_CODES = {
    "country_iso": E005,
    "tile_id": E002,
    "raster_row": E002,
    "raster_col": E002,
    "centroid_lon": E004,
    "centroid_lat": E004,
    "pixel_area_m2": E006,
    "inclusion_rule": E008,
    "min_lon_deg": E004,
    "max_lon_deg": E004,
    "min_lat_deg": E004,
    "max_lat_deg": E004,
    "centroid_lon_deg": E004,
    "centroid_lat_deg": E004,
}

_PART_RE = re.compile(r"^part-\d{5}\.parquet$")
_EXAMPLES = 5  # findings kept per check; the rest are counted
_BATCH_ROWS = 1 << 18
_BLOCK_CELLS = 1 << 21  # cells of one recount block (bounds its memory)
_FULL_CHUNK = 256
_GEOD = Geod(ellps="WGS84")


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One contract violation, with its SPEC §8 code."""

    code: str
    message: str
    country_iso: str | None = None
    tile_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.country_iso is not None:
            out["country_iso"] = self.country_iso
        if self.tile_id is not None:
            out["tile_id"] = self.tile_id
        return out


@dataclass(frozen=True)
class SampledWindow:
    """A window checked cell by cell with the legacy engine."""

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int
    seeded_by: str  # the country whose boundary vertex the window is centred on
    countries: tuple[str, ...] = ()  # countries compared in it
    cells_compared: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "row_start": self.row_start,
            "row_stop": self.row_stop,
            "col_start": self.col_start,
            "col_stop": self.col_stop,
            "seeded_by": self.seeded_by,
            "countries": list(self.countries),
            "cells_compared": self.cells_compared,
        }


@dataclass(frozen=True)
class ValidationResult:
    """``ok`` iff there is no finding; ``stats`` holds counts, checks, windows, seconds."""

    ok: bool
    findings: tuple[Finding, ...]
    warnings: tuple[str, ...]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
            "warnings": list(self.warnings),
            "stats": self.stats,
        }

    def by_code(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = {}
        for f in self.findings:
            out.setdefault(f.code, []).append(f)
        return dict(sorted(out.items()))


class _Checks:
    """Named checks: each records its failures, keeps the first few as findings."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.failures: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        self.findings: list[Finding] = []
        self.warnings: list[str] = []

    def ran(self, name: str, code: str) -> None:
        self.codes.setdefault(name, code)
        self.failures.setdefault(name, 0)

    def fail(
        self,
        name: str,
        code: str,
        message: str,
        country_iso: str | None = None,
        tile_id: int | None = None,
        count: int = 1,
    ) -> None:
        self.ran(name, code)
        self.failures[name] += count
        if self.shown.get(name, 0) < _EXAMPLES:
            self.shown[name] = self.shown.get(name, 0) + 1
            self.findings.append(Finding(code, message, country_iso, tile_id))

    def warn(self, message: str) -> None:
        log.info("warning: %s", message)
        self.warnings.append(message)

    def close(self) -> None:
        for name, n in self.failures.items():
            shown = self.shown.get(name, 0)
            if n > shown:
                self.findings.append(
                    Finding(self.codes[name], f"{name}: {n - shown} more failure(s) not shown")
                )

    def stats(self) -> dict[str, Any]:
        return {
            "run": len(self.codes),
            "failed": sum(1 for n in self.failures.values() if n),
            "by_name": {
                name: {"code": self.codes[name], "failures": self.failures[name]}
                for name in sorted(self.codes)
            },
        }


# -- SPEC §3 formulas, written again -----------------------------------------------------


def _wrap_center(x: FloatArray) -> FloatArray:
    x = np.where(x > 180.0, x - 360.0, x)
    return np.where(x < -180.0, x + 360.0, x)


def _wrap_west(x: FloatArray) -> FloatArray:
    x = np.where(x >= 180.0, x - 360.0, x)
    return np.where(x < -180.0, x + 360.0, x)


def _wrap_east(x: FloatArray) -> FloatArray:
    x = np.where(x > 180.0, x - 360.0, x)
    return np.where(x <= -180.0, x + 360.0, x)


def _margin(x1: FloatArray, x2: FloatArray) -> FloatArray:
    """Widening of an interpolated x: ``x1 + t (x2 - x1)`` with ``t`` from two float
    operations is within ~6u(|x1| + |x2 - x1|) of the truth (u = 2^-53, ~1.1e-16);
    1e-12 times a larger sum keeps a margin of over a thousand."""
    return 1e-12 * (1.0 + np.abs(x1) + np.abs(x2) + np.abs(x2 - x1))


class _Axes:
    """Per-row and per-column quantities of the grid, computed once."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        rows = np.arange(grid.nrows, dtype=np.float64)
        cols = np.arange(grid.ncols, dtype=np.float64)
        self.lat = grid.f + grid.e * (rows + 0.5)
        self.north = grid.f + grid.e * rows
        self.south = grid.f + grid.e * (rows + 1.0)
        lon = _wrap_center(grid.c + grid.a * (cols + 0.5))
        # per-column published values (SPEC §3/§6), gathered by column in the row checks
        self.lon = lon
        self.west = _wrap_west(grid.c + grid.a * cols)
        self.east = _wrap_east(grid.c + grid.a * (cols + 1.0))
        order = np.argsort(lon, kind="stable")
        self.lon_sorted = lon[order]
        self.lon_cols = order.astype(np.int64)
        # cells split at ±180 into pieces, each at its wrapped position, sorted by x0
        x0, x1 = grid.c + grid.a * cols, grid.c + grid.a * (cols + 1.0)
        px0, px1, pcol = [], [], []
        for lo, hi, shift in (
            (-540.0, -180.0, 360.0),
            (-180.0, 180.0, 0.0),
            (180.0, 540.0, -360.0),
        ):
            p0, p1 = np.maximum(x0, lo), np.minimum(x1, hi)
            keep = p0 < p1
            px0.append(p0[keep] + shift)
            px1.append(p1[keep] + shift)
            pcol.append(np.flatnonzero(keep))
        a0, a1, ac = np.concatenate(px0), np.concatenate(px1), np.concatenate(pcol)
        mid = 0.5 * (a0 + a1)
        keep = (a0 < mid) & (mid < a1)  # a piece narrower than float resolution has no area
        order = np.argsort(a0[keep], kind="stable")
        self.piece_x0 = a0[keep][order]
        self.piece_x1 = a1[keep][order]
        self.piece_mid = mid[keep][order]
        self.piece_col = ac[keep][order].astype(np.int64)
        self.pieces_sorted = bool(np.all(np.diff(self.piece_x1) >= 0))
        self._area: FloatArray = np.full(grid.nrows, np.nan)

    def area(self, rows: IntArray) -> FloatArray:
        """Geod area on each row's cell corners, computed once per row when first asked."""
        need = np.unique(rows[np.isnan(self._area[rows])])
        x0 = self.grid.c
        x1 = self.grid.c + self.grid.a
        for r in need.tolist():
            s, n = float(self.south[r]), float(self.north[r])
            a, _ = _GEOD.polygon_area_perimeter([x0, x1, x1, x0], [s, s, n, n])
            self._area[r] = abs(a)
        return self._area[rows]


# -- the country as the recount sees it -----------------------------------------------------


class _Shape:
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


def _expand(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """Pairs (k, j) for every k and lo[k] <= j < hi[k]."""
    n = np.maximum(hi - lo, 0)
    k = np.repeat(np.arange(lo.size), n)
    j = np.arange(k.size) - np.repeat(np.cumsum(n) - n, n) + lo[k]
    return k, j


# -- the recount ------------------------------------------------------------------------


def _center_ids(axes: _Axes, shape: _Shape) -> Iterator[U64Array]:
    """Tile ids the ``center`` rule includes, ascending, in row blocks."""
    if shape.empty:
        return
    neg = -axes.lat  # ascending
    r0 = int(np.searchsorted(neg, -shape.yhi, side="left"))
    r1 = int(np.searchsorted(neg, -shape.ylo, side="right"))
    lon = axes.lon_sorted
    spans = [
        np.arange(np.searchsorted(lon, lo, "left"), np.searchsorted(lon, hi, "right"))
        for lo, hi in shape.intervals
    ]
    pos = np.unique(np.concatenate(spans)) if spans else np.empty(0, dtype=np.int64)
    w = pos.size
    if w == 0 or r0 >= r1:
        return
    xs, cols = lon[pos], axes.lon_cols[pos]
    starts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1] + 1)))
    step = max(1, _BLOCK_CELLS // w)
    for b0 in range(r0, r1, step):
        yield _center_block(axes, shape, b0, min(b0 + step, r1), xs, cols, starts)


def _center_block(
    axes: _Axes,
    shape: _Shape,
    b0: int,
    b1: int,
    xs: FloatArray,
    cols: IntArray,
    starts: IntArray,
) -> U64Array:
    """Rows [b0, b1). A centroid is dirty when a segment's crossing of its row (widened by
    ``_margin``) reaches it or the gap next to it; the range is extended by one centroid
    on each side. The first centroid of each stretch of contiguous columns is tested too.
    Every other centroid is clean, and its left neighbour is never within a crossing range
    (the extension would have dirtied the clean one): the neighbour is off the boundary
    and the gap between them holds no crossing, so both have the same value. Hence each
    clean stretch takes the value of the tested centroid before it."""
    h, w = b1 - b0, xs.size
    lat = axes.lat[b0:b1]
    sel = (shape.ymax >= lat[-1]) & (shape.ymin <= lat[0])
    x1, y1, x2, y2 = shape.x1[sel], shape.y1[sel], shape.x2[sel], shape.y2[sel]
    lo = np.searchsorted(-lat, -shape.ymax[sel], side="left")
    hi = np.searchsorted(-lat, -shape.ymin[sel], side="right")
    k, r = _expand(lo, hi)
    y = lat[r]
    x1k, y1k, x2k, y2k = x1[k], y1[k], x2[k], y2[k]
    flat = y1k == y2k
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x1k + (y - y1k) * (x2k - x1k) / (y2k - y1k)
    m = _margin(x1k, x2k)
    xlo = np.where(flat, np.minimum(x1k, x2k), xc) - m
    xhi = np.where(flat, np.maximum(x1k, x2k), xc) + m
    a = np.maximum(np.searchsorted(xs, xlo, side="left") - 1, 0)
    b = np.minimum(np.searchsorted(xs, xhi, side="right") + 1, w)
    sr = np.repeat(np.arange(h), starts.size)
    sa = np.tile(starts, h)
    rr, aa, bb = _merge_ranges(
        np.concatenate((r, sr)), np.concatenate((a, sa)), np.concatenate((b, sa + 1))
    )
    ends = _next_start(rr, aa, w)
    kk, jj = _expand(aa, bb)
    value = shape.center_exact(xs[jj], lat[rr[kk]])
    run_r, run_a, run_b = _true_runs(rr[kk], jj, value)
    last = value[np.cumsum(bb - aa) - 1]
    keep = last & (bb < ends)
    return _ids(
        axes,
        b0,
        cols,
        np.concatenate((run_r, rr[keep])),
        np.concatenate((run_a, bb[keep])),
        np.concatenate((run_b, ends[keep])),
    )


def _segment_meets_open_box(
    px: FloatArray,
    py: FloatArray,
    qx: FloatArray,
    qy: FloatArray,
    x0: FloatArray,
    y0: FloatArray,
    x1: FloatArray,
    y1: FloatArray,
) -> tuple[BoolArray, BoolArray]:
    """Whether segment PQ meets the open box (x0, x1) x (y0, y1), and where that is
    too close to call in float64.

    Liang-Barsky: the parameters t in [0, 1] with P + t (Q - P) inside the open box form
    an interval (lo, hi) (its ends at t = 0 or 1 cannot be attained unless inside), so
    the answer is lo < hi. Each bound ``(a - p) / d`` is computed with two roundings, so
    within 2.3u relative (u = 2^-53) of the truth; when lo and hi are closer than
    1e-15 relative (~9u) the pair is *unsure*: a contact below float resolution, which
    the caller hands to GEOS ``relate`` on the whole country (the SPEC's reference,
    "GEOS-exact semantics"; exact rational arithmetic can disagree with it there).
    """
    lo = np.zeros(px.size)
    hi = np.ones(px.size)
    ok = np.ones(px.size, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q, a, b in ((px, qx, x0, x1), (py, qy, y0, y1)):
            d = q - p
            still = d == 0
            ok &= ~still | ((a < p) & (p < b))
            ta, tb = (a - p) / d, (b - p) / d
            lo = np.where(still, lo, np.maximum(lo, np.minimum(ta, tb)))
            hi = np.where(still, hi, np.minimum(hi, np.maximum(ta, tb)))
    unsure = ok & (np.abs(hi - lo) <= 1e-15 * (np.abs(lo) + np.abs(hi)))
    return ok & (lo < hi) & ~unsure, unsure


def _member(keys: IntArray, sorted_set: IntArray) -> BoolArray:
    i = np.minimum(np.searchsorted(sorted_set, keys), max(sorted_set.size - 1, 0))
    return sorted_set[i] == keys if sorted_set.size else np.zeros(keys.size, dtype=bool)


def _merge_ranges(r: IntArray, a: IntArray, b: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Union of the ranges [a, b) of each row r, as sorted disjoint ranges."""
    ok = a < b
    r, a, b = r[ok], a[ok], b[ok]
    if r.size == 0:
        return r, a, b
    order = np.lexsort((a, r))
    r, a, b = r[order], a[order], b[order]
    # running end of the ranges so far in the row: a range that starts beyond it opens a
    # new merged range
    key = r * (int(b.max()) + 2)
    reach = np.maximum.accumulate(key + b)
    new = np.ones(r.size, dtype=bool)
    new[1:] = (key[1:] + a[1:]) > reach[:-1]
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:], [r.size])) - 1
    return r[first], a[first], reach[last] - key[last]


def _next_start(r: IntArray, a: IntArray, w: int) -> IntArray:
    """For sorted disjoint ranges: the start of the next range in the same row, else w."""
    nxt = np.full(r.size, w, dtype=np.int64)
    same = r[1:] == r[:-1]
    nxt[:-1][same] = a[1:][same]
    return nxt


def _true_runs(r: IntArray, j: IntArray, value: BoolArray) -> tuple[IntArray, IntArray, IntArray]:
    """Runs [a, b) of True cells, cells given in (row, position) order."""
    adjacent = np.zeros(r.size, dtype=bool)
    adjacent[1:] = (r[1:] == r[:-1]) & (j[1:] == j[:-1] + 1)
    cont = np.zeros(r.size, dtype=bool)
    cont[1:] = adjacent[1:] & value[:-1]
    begin = np.flatnonzero(value & ~cont)
    stop_next = np.zeros(r.size, dtype=bool)
    stop_next[:-1] = adjacent[1:] & value[1:]
    end = np.flatnonzero(value & ~stop_next)
    return r[begin], j[begin], j[end] + 1


def _ids(axes: _Axes, b0: int, cols: IntArray, r: IntArray, a: IntArray, b: IntArray) -> U64Array:
    """Tile ids of the cells of runs [a, b) (window positions) of rows b0 + r, ascending."""
    order = np.lexsort((a, r))
    k, j = _expand(a[order], b[order])
    rows = (r[order][k] + b0).astype(np.uint64)
    return _ascending(rows * np.uint64(axes.grid.ncols) + cols[j].astype(np.uint64))


def _ascending(ids: U64Array) -> U64Array:
    """Ascending and unique (only cells split at ±180 come out of order, or twice)."""
    if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        ids = np.sort(ids, kind="stable")  # timsort: linear on nearly sorted input
        ids = ids[np.concatenate(([True], ids[1:] != ids[:-1]))]
    return ids


def _overlap_window(axes: _Axes, shape: _Shape) -> tuple[int, int, IntArray]:
    """Rows whose strip and pieces whose x-range meet some part's bounding box."""
    r0 = int(np.searchsorted(-axes.south, -shape.yhi, side="left"))
    r1 = int(np.searchsorted(-axes.north, -shape.ylo, side="right"))
    n = axes.piece_x0.size
    keep = np.zeros(n, dtype=bool)
    for lo, hi in shape.intervals:
        if axes.pieces_sorted:
            a = int(np.searchsorted(axes.piece_x1, lo, "left"))
            b = int(np.searchsorted(axes.piece_x0, hi, "right"))
            keep[a:b] = True
        else:
            keep |= (axes.piece_x1 >= lo) & (axes.piece_x0 <= hi)
    return r0, r1, np.flatnonzero(keep)


def _overlap_ids(axes: _Axes, shape: _Shape) -> Iterator[U64Array]:
    """Tile ids the ``any_overlap`` rule includes, ascending, in row blocks."""
    if shape.empty:
        return
    r0, r1, pk = _overlap_window(axes, shape)
    w = pk.size
    if w == 0 or r0 >= r1:
        return
    px0, px1 = axes.piece_x0[pk], axes.piece_x1[pk]
    mid, cols = axes.piece_mid[pk], axes.piece_col[pk]
    # a stretch of clean cells is one closed rectangle only where the pieces abut
    breaks = np.flatnonzero(
        np.concatenate(([True], (pk[1:] != pk[:-1] + 1) | (px0[1:] != px1[:-1])))
    )
    # ring vertices strictly inside a cell: proof that the boundary meets its interior
    vr = np.searchsorted(-axes.north, -shape.vy, side="left") - 1
    vp = np.searchsorted(px0, shape.vx, side="left") - 1
    ok = (vr >= 0) & (vp >= 0)
    vr, vp = vr[ok], vp[ok]
    inside = (axes.south[vr] < shape.vy[ok]) & (shape.vx[ok] < px1[vp])
    proof = np.unique(vr[inside] * w + vp[inside])
    step = max(1, _BLOCK_CELLS // w)
    for b0 in range(r0, r1, step):
        b1 = min(b0 + step, r1)
        sel = proof[(proof >= b0 * w) & (proof < b1 * w)] - b0 * w
        yield _overlap_block(axes, shape, b0, b1, px0, px1, mid, cols, breaks, sel)


def _overlap_block(
    axes: _Axes,
    shape: _Shape,
    b0: int,
    b1: int,
    px0: FloatArray,
    px1: FloatArray,
    mid: FloatArray,
    cols: IntArray,
    breaks: IntArray,
    proof: IntArray,
) -> U64Array:
    """Rows [b0, b1). A cell is dirty when some segment's extent inside its row's strip
    (widened by ``_margin``) reaches its closed x-range; dirty cells are decided one by
    one. The clean cells between them form stretches (split where pieces do not abut)
    whose closed rectangle the boundary does not meet: one midpoint decides each."""
    h, w = b1 - b0, px0.size
    south, north, lat = axes.south[b0:b1], axes.north[b0:b1], axes.lat[b0:b1]
    sel = (shape.ymax >= south[-1]) & (shape.ymin <= north[0])
    x1, y1, x2, y2 = shape.x1[sel], shape.y1[sel], shape.x2[sel], shape.y2[sel]
    ymin, ymax = shape.ymin[sel], shape.ymax[sel]
    xmin, xmax = shape.xmin[sel], shape.xmax[sel]
    lo = np.searchsorted(-south, -ymax, side="left")  # strips with south <= ymax
    hi = np.searchsorted(-north, -ymin, side="right")  # strips with north >= ymin
    k, r = _expand(lo, hi)
    ya = np.maximum(ymin[k], south[r])
    yb = np.minimum(ymax[k], north[r])
    x1k, y1k, x2k, y2k = x1[k], y1[k], x2[k], y2[k]
    flat = y1k == y2k
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (x2k - x1k) / (y2k - y1k)
        xa = x1k + (ya - y1k) * slope
        xb = x1k + (yb - y1k) * slope
    m = _margin(x1k, x2k)
    xlo = np.maximum(np.where(flat, xmin[k], np.minimum(xa, xb)), xmin[k]) - m
    xhi = np.minimum(np.where(flat, xmax[k], np.maximum(xa, xb)), xmax[k]) + m
    a = np.searchsorted(px1, xlo, side="left")  # pieces with x1 >= xlo
    b = np.searchsorted(px0, xhi, side="right")  # pieces with x0 <= xhi
    rr, aa, bb = _merge_ranges(r, a, b)

    # dirty cells: a vertex inside, else an interior midpoint, else a segment through it
    kk, jj = _expand(aa, bb)
    dr = rr[kk]
    value = _member(dr * w + jj, proof)
    todo = np.flatnonzero(~value)
    if todo.size:
        interior = shapely.contains_xy(shape.geom, mid[jj[todo]], lat[dr[todo]])
        value[todo[interior]] = True
        todo = todo[~interior]
    if todo.size:
        # candidates: the (segment, strip) pairs whose widened extent reached the cell
        pk, pj = _expand(a, b)
        cell = _member(r[pk] * w + pj, np.sort(dr[todo] * w + jj[todo]))
        pk, pj = pk[cell], pj[cell]
        pr = r[pk]
        seg = k[pk]
        meets, unsure = _segment_meets_open_box(
            x1[seg], y1[seg], x2[seg], y2[seg], px0[pj], south[pr], px1[pj], north[pr]
        )
        hit = np.unique(pr[meets] * w + pj[meets])
        todo_keys = dr[todo] * w + jj[todo]
        value[todo[_member(todo_keys, hit)]] = True
        # sub-float-resolution contacts: GEOS relate on the country decides, as it does
        # for the legacy engine
        close = np.setdiff1d(np.unique(pr[unsure] * w + pj[unsure]), hit)
        if close.size:
            cr, cj = np.divmod(close, w)
            boxes = shapely.box(px0[cj], south[cr], px1[cj], north[cr])
            overlap = shapely.relate_pattern(shape.geom, boxes, "T********")
            value[todo[_member(todo_keys, close[overlap])]] = True
    run_r, run_a, run_b = _true_runs(dr, jj, value)

    # clean stretches: the gaps between dirty ranges (and the row ends), split at breaks
    rows = np.arange(h)
    gr, ga, gb = _merge_ranges(
        np.concatenate((rr, rows, rows)),
        np.concatenate((aa, np.full(h, -1), np.full(h, w))),
        np.concatenate((bb, np.zeros(h, dtype=np.int64), np.full(h, w + 1))),
    )
    nxt = _next_start(gr, ga, w + 1)
    keep = gb < nxt
    sr, s0, s1 = gr[keep], gb[keep], nxt[keep]
    kq, q = _expand(
        np.searchsorted(breaks, s0, side="right"), np.searchsorted(breaks, s1, side="left")
    )
    gap = np.concatenate((np.arange(sr.size), kq))
    cut_a = np.concatenate((s0, breaks[q]))
    order = np.lexsort((cut_a, gap))
    gap, cut_a = gap[order], cut_a[order]
    cut_r = sr[gap]
    cut_b = s1[gap]
    same = gap[1:] == gap[:-1]
    cut_b[:-1][same] = cut_a[1:][same]
    inside = shapely.contains_xy(shape.geom, mid[cut_a], lat[cut_r])
    return _ids(
        axes,
        b0,
        cols,
        np.concatenate((run_r, cut_r[inside])),
        np.concatenate((run_a, cut_a[inside])),
        np.concatenate((run_b, cut_b[inside])),
    )


def recount_ids(grid: Grid, country: CountryGeometry, predicate: str) -> U64Array:
    """All tile ids of ``country`` under ``predicate`` by the validator's own method
    (for tests and tools; the validator itself streams them)."""
    axes = _Axes(grid)
    shape = _Shape(country)
    blocks = _center_ids(axes, shape) if predicate == "center" else _overlap_ids(axes, shape)
    parts = list(blocks)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)


def _legacy_ids(axes: _Axes, shape: _Shape, predicate: str) -> Iterator[U64Array]:
    """Tile ids by the legacy engine over every cell the recount would visit."""
    if shape.empty:
        return
    grid = axes.grid
    if predicate == "center":
        neg = -axes.lat
        r0 = int(np.searchsorted(neg, -shape.yhi, side="left"))
        r1 = int(np.searchsorted(neg, -shape.ylo, side="right"))
        lon = axes.lon_sorted
        cols_l = [
            axes.lon_cols[np.searchsorted(lon, lo, "left") : np.searchsorted(lon, hi, "right")]
            for lo, hi in shape.intervals
        ]
        cols = np.unique(np.concatenate(cols_l)) if cols_l else np.empty(0, dtype=np.int64)
    else:
        r0, r1, pk = _overlap_window(axes, shape)
        cols = np.unique(axes.piece_col[pk])
    if cols.size == 0 or r0 >= r1:
        return
    runs = _runs(cols)
    for b0 in range(r0, r1, _FULL_CHUNK):
        b1 = min(b0 + _FULL_CHUNK, r1)
        found = []
        for c0, c1 in runs:
            for s in range(c0, c1, _FULL_CHUNK):
                win = Window(b0, b1, s, min(s + _FULL_CHUNK, c1))
                mask = legacy.mask_chunk(grid, win, shape.country, predicate).to_mask()
                rr, cc = np.nonzero(mask)
                found.append(
                    (rr + b0).astype(np.uint64) * np.uint64(grid.ncols) + (cc + s).astype(np.uint64)
                )
        if found:
            yield np.sort(np.concatenate(found))


def _runs(values: IntArray) -> list[tuple[int, int]]:
    """[start, stop) runs of consecutive integers of a sorted array."""
    if values.size == 0:
        return []
    cut = np.flatnonzero(np.diff(values) != 1) + 1
    starts = np.concatenate(([0], cut))
    stops = np.concatenate((cut, [values.size]))
    return [(int(values[s]), int(values[t - 1]) + 1) for s, t in zip(starts, stops, strict=True)]


def _digest(blocks: Iterator[U64Array]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for ids in blocks:
        n += int(ids.size)
        h.update(np.ascontiguousarray(ids, dtype="<u8").data)
    return n, h.hexdigest()


def _first_differences(
    expected: Iterator[U64Array], actual: Iterator[U64Array], limit: int
) -> tuple[list[int], list[int]]:
    """Up to ``limit`` ids only in ``expected`` (missing) and only in ``actual`` (extra)
    of two ascending streams of blocks, holding one block of each at a time."""
    missing: list[int] = []
    extra: list[int] = []
    streams = [expected, actual]
    bufs = [np.empty(0, np.uint64), np.empty(0, np.uint64)]
    done = [False, False]
    while len(missing) < limit or len(extra) < limit:
        for i in (0, 1):
            while not done[i] and bufs[i].size == 0:
                block = next(streams[i], None)
                done[i] = block is None
                if block is not None:
                    bufs[i] = block
        if bufs[0].size == 0 and bufs[1].size == 0:
            break
        # ids up to the smaller last id of the unfinished streams are complete in both
        lasts = [int(bufs[i][-1]) for i in (0, 1) if not done[i]]
        n = [bufs[i].size for i in (0, 1)]
        if lasts:
            n = [int(np.searchsorted(bufs[i], np.uint64(min(lasts)), "right")) for i in (0, 1)]
        a, b = bufs[0][: n[0]], bufs[1][: n[1]]
        missing.extend(np.setdiff1d(a, b, assume_unique=True)[: limit - len(missing)].tolist())
        extra.extend(np.setdiff1d(b, a, assume_unique=True)[: limit - len(extra)].tolist())
        bufs = [bufs[0][n[0] :], bufs[1][n[1] :]]
    return missing, extra


# -- sampled windows -----------------------------------------------------------------------


def boundary_windows(
    grid: Grid,
    polygons: Sequence[BaseGeometry],
    count: int,
    size: int,
    rng: np.random.Generator,
) -> list[Window]:
    """``count`` windows of ``size`` x ``size`` cells (clamped to the grid), each centred on
    a random ring vertex of ``polygons`` (so it holds a stretch of their boundary); every
    fourth is centred on a random point of a random polygon's bounding box instead, so
    interiors and surroundings get exercised too. Deterministic for a given ``rng``."""
    polygons = [p for p in polygons if not p.is_empty]
    if not polygons or count <= 0:
        return []
    xy = np.concatenate([shapely.get_coordinates(p) for p in polygons])
    bounds = shapely.bounds(np.asarray(polygons, dtype=object)).reshape(-1, 4)
    out: list[Window] = []
    attempts = 0
    while len(out) < count and attempts < 50 * count:
        attempts += 1
        if len(out) % 4 == 3:
            b = bounds[rng.integers(len(bounds))]
            x, y = rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3])
        else:
            x, y = xy[rng.integers(len(xy))]
        cell = _cell_of(grid, float(x), float(y))
        if cell is None:
            continue
        win = _window_around(grid, *cell, size)
        if win not in out:
            out.append(win)
    return out


def _cell_of(grid: Grid, x: float, y: float) -> tuple[int, int] | None:
    row = math.floor((y - grid.f) / grid.e)
    if not 0 <= row < grid.nrows:
        return None
    for shift in (0.0, 360.0, -360.0):
        col = math.floor((x + shift - grid.c) / grid.a)
        if 0 <= col < grid.ncols:
            return row, col
    return None


def _window_around(grid: Grid, row: int, col: int, size: int) -> Window:
    h, w = min(size, grid.nrows), min(size, grid.ncols)
    r0 = min(max(row - h // 2, 0), grid.nrows - h)
    c0 = min(max(col - w // 2, 0), grid.ncols - w)
    return Window(r0, r0 + h, c0, c0 + w)


# -- reading the partition ------------------------------------------------------------------


class _Cursor:
    """Row slices of a stream of record batches, of any requested length."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._it = batches
        self._cur: pa.RecordBatch | None = None
        self._off = 0

    def available(self) -> int:
        while self._cur is None or self._off >= self._cur.num_rows:
            self._cur = next(self._it, None)
            self._off = 0
            if self._cur is None:
                return 0
        return self._cur.num_rows - self._off

    def take(self, n: int) -> pa.RecordBatch:
        assert self._cur is not None
        out = self._cur.slice(self._off, n)
        self._off += n
        return out


@dataclass
class _CountryRows:
    count: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    tile_min: int | None = None
    tile_max: int | None = None

    def add(self, ids: U64Array) -> None:
        self.count += int(ids.size)
        self.sha.update(np.ascontiguousarray(ids, dtype="<u8").data)
        lo, hi = int(ids.min()), int(ids.max())
        self.tile_min = lo if self.tile_min is None else min(self.tile_min, lo)
        self.tile_max = hi if self.tile_max is None else max(self.tile_max, hi)


# -- the validator --------------------------------------------------------------------------

_EMPTY_SHAPE = _Shape(CountryGeometry.from_geometry("", shapely.Polygon()))
_METHODS = {
    "center": "row runs + shapely intersects_xy per centroid near the boundary (per-part "
    "shells closed, holes open)",
    "any_overlap": "row runs + vertex-in-cell proof, shapely contains_xy, exact "
    "segment/open-cell test (float filter, rational fallback) near the boundary",
    "full": "legacy engine, every cell of every country's window",
}


def validate_partition(
    out: str | Path,
    *,
    iso: str | Path,
    countries: str | Path,
    raster: str | Path,
    parameter_hash: str | None = None,
    dictionary: str | Path | None = None,
    samples: int = 8,
    seed: int = 0,
    window: int = 32,
    full: bool = False,
    progress: Progress | None = None,
) -> ValidationResult:
    """Validate the tile index published under ``out`` against the three sealed inputs.

    ``parameter_hash`` picks the partition (default: the only one under ``out``).
    ``samples`` windows of ``window`` x ``window`` cells, chosen with ``seed`` on country
    boundaries, are re-decided cell by cell by the legacy engine; ``full`` re-decides
    every cell of every country with it (slow). Raises a TileIndexError only when there
    is nothing to validate or an input cannot be read; everything else is a Finding.
    """
    if samples < 0 or window < 1:
        raise ConfigError(f"samples ({samples}) must be >= 0 and window ({window}) >= 1")
    v = _Validator(Path(out), DatasetDictionary.load(dictionary), progress or (lambda _m: None))
    return v.run(
        Path(iso), Path(countries), Path(raster), parameter_hash, samples, seed, window, full
    )


def find_parameter_hashes(out: str | Path, dictionary: str | Path | None = None) -> list[str]:
    """The parameter hashes of the tile_index partitions published under ``out``."""
    return _hashes(DatasetDictionary.load(dictionary), Path(out))


def _hashes(paths: DatasetDictionary, out: Path) -> list[str]:
    template = paths.path("tile_index", out, "{parameter_hash}")
    parent, pattern = template.parent, template.name
    prefix, _, suffix = pattern.partition("{parameter_hash}")
    if not parent.is_dir():
        return []
    found = []
    for entry in sorted(parent.iterdir()):
        name = entry.name
        if entry.is_dir() and name.startswith(prefix) and name.endswith(suffix):
            found.append(name[len(prefix) : len(name) - len(suffix)])
    return found


class _Validator:
    def __init__(self, out: Path, paths: DatasetDictionary, progress: Progress) -> None:
        self.out = out
        self.paths = paths
        self.say = progress
        self.c = _Checks()
        self.stats: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, _CountryRows] = {}
        self.row_count = 0
        self.pat: Mapping[str, Any] = {}

    def _timed(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = round(now - t0, 3)
        return now

    def run(
        self,
        iso_path: Path,
        countries_path: Path,
        raster_path: Path,
        phash: str | None,
        samples: int,
        seed: int,
        window: int,
        full: bool,
    ) -> ValidationResult:
        t_start = t = time.perf_counter()
        phash = self._locate(phash)
        self.say(f"reading inputs for partition {phash}")
        iso = read_iso_list(iso_path)
        layer = read_country_layer(countries_path, iso)
        grid_in = read_grid(raster_path)
        grid = grid_in.grid
        self.iso_codes = iso.codes
        self.grid = grid
        self.axes = _Axes(grid)
        digests = {"iso": iso.digest, "countries": layer.digest, "raster": grid_in.digest}
        sizes = {
            "raster": raster_path.stat().st_size,
            "vectors": iso_path.stat().st_size + countries_path.stat().st_size,
        }
        t = self._timed("inputs", t)

        index_dir = self.index_dir = self.paths.path("tile_index", self.out, phash)
        bounds_dir = self.paths.path("tile_bounds", self.out, phash)
        report = self._check_report(phash, digests, sizes, grid)
        predicate = self._predicate(report)
        index_files = self._check_layout(index_dir, "tile_index")
        bounds_files = self._check_layout(bounds_dir, "tile_bounds")
        readable = self._check_schemas(index_files, TILE_INDEX_SCHEMA, "tile_index")
        readable &= self._check_schemas(bounds_files, TILE_BOUNDS_SCHEMA, "tile_bounds")
        self._check_receipt(index_dir, self.paths.relative("tile_index", phash), report)
        t = self._timed("report_and_layout", t)

        sample_windows = self._pick_windows(layer.rows, samples, seed, window)
        self.window_rows: list[list[tuple[str, U64Array]]] = [[] for _ in sample_windows]
        rows_ok = readable and predicate is not None
        # geometry and the recount (GEOS, which releases the GIL) overlap the row stream
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recount") as pool:
            job = pool.submit(
                self._geometry_and_recount, layer.rows, predicate if rows_ok else None
            )
            if readable:
                self.say(f"streaming {index_dir} (and recounting in a thread)")
                self._stream(index_files, bounds_files, predicate, sample_windows)
            else:
                self.c.warn(
                    "row checks skipped: the partitions cannot be read as the contract says"
                )
            t = self._timed("stream", t)
            shapes, counted, recount_s = job.result()
        self.seconds["geometry_and_recount_thread"] = round(recount_s, 3)
        t = self._timed("recount_wait", t)
        self._check_summaries(phash, report)
        if report is not None and readable:
            self._check_counts(report)

        checked = list(sample_windows)
        if rows_ok:
            assert predicate is not None
            self._compare(shapes, predicate, "recount", counted)
            t = self._timed("recount_compare", t)
            self.say(f"checking {len(sample_windows)} sampled windows with the legacy engine")
            checked = self._check_windows(shapes, predicate, sample_windows)
            t = self._timed("samples", t)
            if full:
                self.say("--full: every cell of every country with the legacy engine")
                counted = {}
                for n, code in enumerate(self.iso_codes, 1):
                    shape = shapes.get(code, _EMPTY_SHAPE)
                    counted[code] = _digest(_legacy_ids(self.axes, shape, predicate))
                    self.say(f"  {n}/{len(self.iso_codes)} {code}: {counted[code][0]} cells")
                self._compare(shapes, predicate, "full", counted)
                t = self._timed("full", t)

        self.c.close()
        self.seconds["total"] = round(time.perf_counter() - t_start, 3)
        self.stats.update(
            {
                "out": str(self.out),
                "parameter_hash": phash,
                "predicate": predicate,
                "tile_index": str(index_dir),
                "tile_bounds": str(bounds_dir),
                "rows": self.row_count,
                "countries": len(self.iso_codes),
                "countries_with_rows": sum(1 for r in self.rows.values() if r.count),
                "files": {"tile_index": len(index_files), "tile_bounds": len(bounds_files)},
                "sampled_windows": [w.to_json() for w in checked],
                "seed": seed,
                "full": full,
                "checks": self.c.stats(),
                "seconds": self.seconds,
            }
        )
        return ValidationResult(
            ok=not self.c.findings,
            findings=tuple(self.c.findings),
            warnings=tuple(self.c.warnings),
            stats=self.stats,
        )

    # -- where ------------------------------------------------------------------------

    def _locate(self, phash: str | None) -> str:
        if phash is not None:
            check_parameter_hash(phash)
            if not self.paths.path("tile_index", self.out, phash).is_dir():
                raise InputFileError(
                    f"no tile_index partition for parameter_hash {phash} under {self.out}; "
                    "check --out and --parameter-hash"
                )
            return phash
        found = _hashes(self.paths, self.out)
        if len(found) == 1:
            return found[0]
        if not found:
            raise InputFileError(
                f"no published tile_index partition under {self.out}; pass the --out of a "
                "build (and --parameter-hash if it holds several)"
            )
        raise ConfigError(
            f"{self.out} holds {len(found)} partitions ({', '.join(h[:12] for h in found)}, "
            "...); pass --parameter-hash to pick one"
        )

    # -- the run report -------------------------------------------------------------------

    def _check_report(
        self, phash: str, digests: Mapping[str, str], sizes: Mapping[str, int], grid: Grid
    ) -> dict[str, Any] | None:
        c = self.c
        path = self.paths.path("run_report", self.out, phash)
        c.ran("report readable", E010)
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            c.fail("report readable", E010, f"run report {path} missing or unreadable: {exc}")
            return None
        if not isinstance(report, dict):
            c.fail("report readable", E010, f"run report {path} is not a JSON object")
            return None
        self.report_path = path
        required = {
            "parameter_hash": E010,
            "predicate": E008,
            "ingress_versions": E010,
            "grid_dims": E002,
            "countries_total": E005,
            "rows_emitted": E008,
            "determinism_receipt": E010,
            "pat": E009,
        }
        for key, code in required.items():
            c.ran(f"report field {key}", code)
            if key not in report:
                c.fail(f"report field {key}", code, f"run report lacks '{key}' (SPEC §8)")
        pat_doc = report.get("pat")
        pat: Mapping[str, Any] = pat_doc if isinstance(pat_doc, dict) else {}
        for key in PAT_COUNTERS:
            c.ran("pat counters", E009)
            value = pat.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                c.fail(
                    "pat counters", E009, f"pat.{key} is missing or not a number >= 0: {value!r}"
                )

        c.ran("parameter_hash", E010)
        if report.get("parameter_hash") != phash:
            c.fail(
                "parameter_hash",
                E010,
                f"report parameter_hash {report.get('parameter_hash')!r} is not the partition's "
                f"{phash}",
            )
        c.ran("input digests", E010)
        ingress = report.get("ingress_versions")
        ingress = ingress if isinstance(ingress, dict) else {}
        for key, digest in digests.items():
            if ingress.get(key) != digest:
                c.fail(
                    "input digests",
                    E010,
                    f"the given {key} input differs from the one the run used: sha256 {digest} "
                    f"here, {ingress.get(key)!r} in the report; validate against the run's inputs",
                )
        pred = report.get("predicate")
        if isinstance(pred, str) and pred in PREDICATES:
            derived = derive_parameter_hash(pred, digests, grid.to_json())
            self.stats["parameter_hash_derived_from_inputs"] = derived == phash
            if derived != phash:
                c.warn(
                    "parameter_hash is not the one derived from these inputs, predicate and "
                    "grid (an explicit --parameter-hash, or other inputs)"
                )
        c.ran("grid", E002)
        dims = report.get("grid_dims")
        if dims != {"nrows": grid.nrows, "ncols": grid.ncols}:
            c.fail(
                "grid",
                E002,
                f"report grid_dims {dims!r} is not the raster's "
                f"{{'nrows': {grid.nrows}, 'ncols': {grid.ncols}}}",
            )
        transform = report.get("grid_transform")
        if transform is not None and transform != list(grid.transform):
            c.fail("grid", E002, f"report grid_transform {transform} is not {list(grid.transform)}")
        c.ran("countries_total", E005)
        if report.get("countries_total") != len(self.iso_codes):
            c.fail(
                "countries_total",
                E005,
                f"report countries_total {report.get('countries_total')!r} but the ISO list "
                f"has {len(self.iso_codes)} codes",
            )
        self._check_budgets(pat, sizes)
        return report

    def _check_budgets(self, pat: Mapping[str, Any], sizes: Mapping[str, int]) -> None:
        c = self.c

        def num(key: str) -> float | None:
            v = pat.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        def budget(name: str, value: float | None, limit: float, what: str) -> None:
            c.ran(f"budget {name}", E009)
            if value is not None and value > limit:
                c.fail(f"budget {name}", E009, f"{what}: {value:,.0f} > budget {limit:,.0f}")

        worker = num("max_worker_rss_bytes")
        budget("worker rss", worker, BUDGETS["max_worker_rss_bytes"], "peak RSS of a worker")
        workers = num("workers_used")
        main = num("main_rss_peak_bytes")
        if worker is not None and workers is not None:
            if workers <= 1:
                run_rss = worker
            else:
                if main is None:
                    c.warn("pat.main_rss_peak_bytes missing: whole-run RSS counts workers only")
                run_rss = (main or 0.0) + workers * worker
            budget("run rss", run_rss, BUDGETS["run_rss_bytes"], "peak RSS of the whole run")
        budget("open files", num("open_files_peak"), BUDGETS["open_files_peak"], "open files")
        budget(
            "worker temp disk",
            num("temp_disk_worker_peak_bytes"),
            BUDGETS["temp_disk_worker_bytes"],
            "temp disk of a worker",
        )
        budget(
            "raster bytes",
            num("bytes_read_raster_total"),
            BUDGETS["raster_read_ratio"] * sizes["raster"],
            f"raster bytes read (raster is {sizes['raster']:,} bytes)",
        )
        budget(
            "vector bytes",
            num("bytes_read_vectors_total"),
            BUDGETS["vector_read_ratio"] * sizes["vectors"],
            f"vector bytes read (ISO list + countries are {sizes['vectors']:,} bytes)",
        )
        c.ran("pat consistency", E009)
        total = len(self.iso_codes)
        if num("countries_processed") not in (None, float(total)):
            c.fail(
                "pat consistency",
                E009,
                f"pat.countries_processed {pat.get('countries_processed')} but the ISO list has "
                f"{total} codes",
            )
        for key in ("workers_used", "chunk_size"):
            value = num(key)
            if value is not None and value < 1:
                c.fail("pat consistency", E009, f"pat.{key} is {value}, expected >= 1")
        self.pat = pat

    def _predicate(self, report: Mapping[str, Any] | None) -> str | None:
        self.c.ran("predicate", E008)
        pred = None if report is None else report.get("predicate")
        if isinstance(pred, str) and pred in PREDICATES:
            return pred
        if report is not None:
            self.c.fail(
                "predicate",
                E008,
                f"report predicate {pred!r} is not one of {', '.join(PREDICATES)}",
            )
        self.c.warn("no valid predicate in the report: row and recount checks are skipped")
        return None

    # -- files ----------------------------------------------------------------------------

    def _check_layout(self, folder: Path, name: str) -> list[Path]:
        """Part files in ASCII order; anything else in the partition is a finding."""
        c = self.c
        c.ran(f"{name} layout", E010)
        if not folder.is_dir():
            c.fail(f"{name} layout", E010, f"{name} partition {folder} is missing")
            return []
        files = []
        for entry in sorted(os.listdir(folder), key=lambda s: s.encode()):
            path = folder / entry
            if path.is_dir():
                c.fail(f"{name} layout", E010, f"{name}: nested folder {entry}/ (files are flat)")
            elif not _PART_RE.match(entry) or path.is_symlink() or not path.is_file():
                c.fail(f"{name} layout", E010, f"{name}: stray entry {entry!r} in the partition")
            else:
                files.append(path)
        if not files:
            c.fail(f"{name} layout", E010, f"{name}: no part files in {folder}")
        numbers = [int(p.name[5:10]) for p in files]
        if numbers != list(range(len(numbers))):
            c.fail(
                f"{name} layout",
                E010,
                f"{name}: part files are not numbered 0..{len(numbers) - 1}: "
                f"{[p.name for p in files][:5]}",
            )
        return files

    def _check_schemas(self, files: list[Path], schema: pa.Schema, name: str) -> bool:
        """Exact schema per file; returns whether every file can be read as the contract."""
        c = self.c
        usable = True
        c.ran(f"{name} schema", E010)
        for path in files:
            try:
                got = pq.read_schema(path).remove_metadata()
            except (pa.ArrowException, OSError) as exc:
                c.fail(f"{name} schema", E010, f"{name}/{path.name}: not readable parquet ({exc})")
                usable = False
                continue
            if got.equals(schema):
                continue
            names = got.names
            if names != schema.names:
                first = next(
                    (i for i, n in enumerate(schema.names) if i >= len(names) or names[i] != n),
                    len(schema.names) - 1,
                )
                code = COLUMN_CODES[schema.names[first]]
                c.fail(
                    f"{name} schema",
                    code,
                    f"{name}/{path.name}: columns {names} are not, in order, {schema.names}",
                )
            for fld in schema:
                if fld.name not in names:
                    usable = False
                    continue
                other = got.field(fld.name)
                code = COLUMN_CODES[fld.name]
                if not other.type.equals(fld.type):
                    c.fail(
                        f"{name} schema",
                        code,
                        f"{name}/{path.name}: column {fld.name} is {other.type}, not {fld.type}",
                    )
                    if not _castable(other.type, fld.type):
                        usable = False
                if other.nullable != fld.nullable:
                    c.fail(
                        f"{name} schema",
                        code,
                        f"{name}/{path.name}: column {fld.name} is declared nullable; the "
                        "contract says not null",
                    )
        return usable

    def _check_receipt(
        self, index_dir: Path, relative: str, report: Mapping[str, Any] | None
    ) -> None:
        c = self.c
        c.ran("determinism receipt", E010)
        if not index_dir.is_dir():
            return
        receipt = determinism_receipt(index_dir, relative)
        self.stats["determinism_receipt"] = receipt
        recorded = report.get("determinism_receipt") if report is not None else None
        if not isinstance(recorded, dict):
            return
        if recorded.get("sha256_hex") != receipt["sha256_hex"]:
            c.fail(
                "determinism receipt",
                E010,
                f"tile_index bytes hash to {receipt['sha256_hex']}, the report recorded "
                f"{recorded.get('sha256_hex')!r}: the partition is not what the run published",
            )
        if recorded.get("partition_path") != relative:
            c.fail(
                "determinism receipt",
                E010,
                f"receipt partition_path {recorded.get('partition_path')!r} is not the "
                f"partition's path relative to the output root, {relative!r}",
            )

    # -- rows -----------------------------------------------------------------------------

    def _batches(self, files: list[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Batches with the contract's columns in order; strings stay dictionary-encoded
        (decoding them dominates the read otherwise)."""
        strings = [f.name for f in schema if pa.types.is_string(f.type)]
        for path in files:
            with pq.ParquetFile(path, read_dictionary=strings) as pf:
                for batch in pf.iter_batches(
                    batch_size=_BATCH_ROWS, columns=schema.names, use_threads=True
                ):
                    arrays = []
                    for f in schema:
                        arr = batch.column(f.name)
                        if f.name in strings:
                            if not pa.types.is_dictionary(arr.type):
                                arr = pc.dictionary_encode(arr.cast(pa.string()))
                        elif not arr.type.equals(f.type):
                            arr = arr.cast(f.type)
                        arrays.append(arr)
                    yield pa.RecordBatch.from_arrays(arrays, names=schema.names)

    def _code_ids(self, arr: pa.Array) -> IntArray:
        """Per-row ids of the codes of a dictionary array (null -> the code "")."""
        values = arr.dictionary.cast(pa.string()).to_pylist()
        lut = np.array([self._code_id(v or "") for v in values] or [0], dtype=np.int64)
        indices = arr.indices
        if indices.null_count:
            values.append("")
            lut = np.append(lut, self._code_id(""))
            indices = pc.fill_null(indices, len(values) - 1)
        return lut[indices.to_numpy(zero_copy_only=False)]

    def _code_id(self, code: str) -> int:
        got = self.code_ids.get(code)
        if got is None:
            got = self.code_ids[code] = len(self.code_list)
            self.code_list.append(code)
        return got

    def _stream(
        self,
        index_files: list[Path],
        bounds_files: list[Path],
        predicate: str | None,
        windows: list[SampledWindow],
    ) -> None:
        c = self.c
        for name, code in (
            ("key order", E003),
            ("key unique", E003),
            ("iso foreign key", E005),
            ("same keys in both datasets", E003),
            ("tile_id", E002),
            ("centroid", E004),
            ("bounds", E004),
            ("pixel area", E006),
            ("inclusion_rule", E008),
        ):
            c.ran(name, code)
        self.code_ids: dict[str, int] = {}
        self.code_list: list[str] = []
        self.iso_set = set(self.iso_codes)
        self.last: tuple[str, int] | None = None
        self.foreign: dict[str, int] = {}
        self.windows = windows
        ia = _Cursor(self._batches(index_files, TILE_INDEX_SCHEMA))
        ba = _Cursor(self._batches(bounds_files, TILE_BOUNDS_SCHEMA))
        extra_bounds = extra_index = 0
        while True:
            na, nb = ia.available(), ba.available()
            if na == 0 and nb == 0:
                break
            if na and nb:
                n = min(na, nb)
                keys = self._index_batch(ia.take(n), predicate)
                self._bounds_batch(keys, ba.take(n))
            elif na:
                extra_index += na
                self._index_batch(ia.take(na), predicate)
            else:
                extra_bounds += nb
                ba.take(nb)
        if extra_index or extra_bounds:
            c.fail(
                "same keys in both datasets",
                E003,
                f"tile_index has {extra_index} row(s) more and tile_bounds {extra_bounds} row(s) "
                "more than the other: the datasets must hold the same keys",
            )
        for code, n in sorted(self.foreign.items()):
            c.fail(
                "iso foreign key",
                E005,
                f"{n} row(s) with country_iso {code!r}, which is not in the ISO list",
                code,
            )

    def _nulls(self, batch: pa.RecordBatch, dataset: str) -> None:
        for i, name in enumerate(batch.schema.names):
            nulls = batch.column(i).null_count
            if nulls:
                self.c.fail(
                    f"{dataset}.{name} not null",
                    COLUMN_CODES[name],
                    f"{dataset}.{name}: {nulls} null value(s); the contract says not null",
                    count=nulls,
                )

    def _index_batch(self, batch: pa.RecordBatch, predicate: str | None) -> _Keys:
        c = self.c
        n = batch.num_rows
        self.row_count += n
        self._nulls(batch, "tile_index")
        ids = self._code_ids(batch.column(0))
        tid = _np(batch.column(1), 0).astype(np.uint64, copy=False)
        row = _np(batch.column(2), 0).astype(np.int64)
        col = _np(batch.column(3), 0).astype(np.int64)
        lon, lat, area = (_np(batch.column(i), np.nan) for i in (4, 5, 6))

        # keys: runs of one code, codes ascending, tile ids ascending within a run
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        same = ids[1:] == ids[:-1]
        for name, bad, what in (
            ("key unique", same & (tid[1:] == tid[:-1]), "duplicate key"),
            ("key order", same & (tid[1:] < tid[:-1]), "key out of order"),
        ):
            if bad.any():
                k = np.flatnonzero(bad)
                i = int(k[0]) + 1
                code = self.code_list[ids[i]]
                c.fail(
                    name,
                    E003,
                    f"{what}: (country_iso={code}, tile_id={int(tid[i])}) after tile_id "
                    f"{int(tid[i - 1])}",
                    code,
                    int(tid[i]),
                    count=int(k.size),
                )
        for s, t in zip(
            np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [n])).tolist(), strict=True
        ):
            code = self.code_list[ids[s]]
            key = (code, int(tid[s]))
            if self.last is not None and key <= self.last:
                name = "key unique" if key == self.last else "key order"
                c.fail(name, E003, f"key {key} comes after {self.last}", code, key[1])
            self.last = (code, int(tid[t - 1]))
            if code not in self.iso_set:
                self.foreign[code] = self.foreign.get(code, 0) + (t - s)
            self.rows.setdefault(code, _CountryRows()).add(tid[s:t])

        # identity and coordinates (SPEC §3, §6)
        grid, axes = self.grid, self.axes
        on_grid = (row >= 0) & (row < grid.nrows) & (col >= 0) & (col < grid.ncols)
        rs, cs = np.where(on_grid, row, 0), np.where(on_grid, col, 0)
        expect = rs.astype(np.uint64) * np.uint64(grid.ncols) + cs.astype(np.uint64)
        self._rows_fail("tile_id", E002, ~on_grid, batch, "raster_row/raster_col off the grid")
        self._rows_fail(
            "tile_id", E002, on_grid & (tid != expect), batch, "tile_id != row * ncols + col"
        )
        lon_exp, lat_exp = axes.lon[cs], axes.lat[rs]
        off = ~(np.abs(lon - lon_exp) <= COORD_TOLERANCE_DEG)
        off |= ~(np.abs(lat - lat_exp) <= COORD_TOLERANCE_DEG)
        self._rows_fail("centroid", E004, on_grid & off, batch, "centroid is not the SPEC §3 one")
        legal = (lon >= -180.0) & (lon <= 180.0) & (lat >= -90.0) & (lat <= 90.0)
        self._rows_fail("centroid", E004, ~legal, batch, "centroid outside [-180, 180] x [-90, 90]")
        positive = area > 0
        self._rows_fail("pixel area", E006, ~positive, batch, "pixel_area_m2 is not > 0")
        if grid.a < 90.0:
            ref = axes.area(rs)
            wrong = on_grid & positive & ~(np.abs(area - ref) <= AREA_REL_TOLERANCE * ref)
            self._rows_fail("pixel area", E006, wrong, batch, "pixel_area_m2 is not the WGS84 area")
        rule = batch.column(7)
        values = rule.dictionary.cast(pa.string()).to_pylist()
        counts = np.bincount(_np(rule.indices, len(values)), minlength=len(values) + 1)
        for value, count in zip([*values, None], counts.tolist(), strict=True):
            if count and predicate is not None and value != predicate:
                c.fail(
                    "inclusion_rule",
                    E008,
                    f"{count} row(s) with inclusion_rule {value!r}; the run's predicate is "
                    f"{predicate!r}",
                    count=count,
                )
        self._collect_windows(ids, tid, row, col)
        return _Keys(ids, tid, rs, cs, on_grid, lon_exp, lat_exp)

    def _rows_fail(
        self, name: str, code: str, bad: BoolArray, batch: pa.RecordBatch, what: str
    ) -> None:
        if not bad.any():
            return
        k = np.flatnonzero(bad)
        i = int(k[0])
        values = {f: batch.column(f)[i].as_py() for f in batch.schema.names[1:]}
        iso = batch.column(0)[i].as_py()
        self.c.fail(name, code, f"{what}: {values}", iso, values.get("tile_id"), count=int(k.size))

    def _bounds_batch(self, keys: _Keys, bounds: pa.RecordBatch) -> None:
        self._nulls(bounds, "tile_bounds")
        ids = self._code_ids(bounds.column(0))
        tid = _np(bounds.column(1), 0).astype(np.uint64, copy=False)
        differ = (ids != keys.ids) | (tid != keys.tid)
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            self.c.fail(
                "same keys in both datasets",
                E003,
                f"row {self.row_count - bounds.num_rows + i}: tile_index has key "
                f"({self.code_list[keys.ids[i]]}, {int(keys.tid[i])}), tile_bounds "
                f"({self.code_list[ids[i]]}, {int(tid[i])})",
                self.code_list[keys.ids[i]],
                int(keys.tid[i]),
                count=int(np.count_nonzero(differ)),
            )
        axes, rs, cs = self.axes, keys.rs, keys.cs
        got = [_np(bounds.column(i), np.nan) for i in range(2, 8)]
        want = (axes.west[cs], axes.east[cs], axes.south[rs], axes.north[rs], keys.lon, keys.lat)
        off = np.zeros(bounds.num_rows, dtype=bool)
        for g, w in zip(got, want, strict=True):
            off |= ~(np.abs(g - w) <= COORD_TOLERANCE_DEG)
        self._rows_fail("bounds", E004, keys.on_grid & off, bounds, "bounds are not SPEC §3/§6's")
        min_lon, max_lon, min_lat, max_lat, clon, clat = got
        legal = (min_lon >= -180.0) & (min_lon < 180.0) & (max_lon > -180.0) & (max_lon <= 180.0)
        legal &= (min_lat >= -90.0) & (max_lat <= 90.0) & (min_lat < max_lat)
        legal &= (clon >= -180.0) & (clon <= 180.0) & (clat >= -90.0) & (clat <= 90.0)
        self._rows_fail("bounds", E004, ~legal, bounds, "bounds outside the ranges of SPEC §6")

    def _collect_windows(self, ids: IntArray, tid: U64Array, row: IntArray, col: IntArray) -> None:
        ncols = self.grid.ncols
        for k, w in enumerate(self.windows):
            lo = w.row_start * ncols + w.col_start
            hi = (w.row_stop - 1) * ncols + w.col_stop
            m = (tid >= np.uint64(lo)) & (tid < np.uint64(hi))
            if not m.any():
                continue
            m &= (
                (row >= w.row_start)
                & (row < w.row_stop)
                & (col >= w.col_start)
                & (col < w.col_stop)
            )
            for j in np.unique(ids[m]).tolist():
                self.window_rows[k].append((self.code_list[j], tid[m & (ids == j)]))

    # -- evidence against the rows ----------------------------------------------------------

    def _check_summaries(self, phash: str, report: Mapping[str, Any] | None) -> None:
        c = self.c
        path = self.paths.path("country_summaries", self.out, phash)
        for name, code in (
            ("summaries readable", E010),
            ("summary per ISO code", E005),
            ("summary counts", E008),
            ("summary tile ids", E002),
        ):
            c.ran(name, code)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            c.fail(
                "summaries readable", E010, f"country summaries {path} missing or unreadable: {exc}"
            )
            return
        seen: dict[str, dict[str, Any]] = {}
        visited_total = 0
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                c.fail("summaries readable", E010, f"{path.name} line {n} is not JSON")
                continue
            missing = [k for k in SUMMARY_FIELDS if not isinstance(doc, dict) or k not in doc]
            if missing:
                c.fail("summaries readable", E010, f"{path.name} line {n} lacks {missing}")
                continue
            code = doc["country_iso"]
            if code in seen:
                c.fail("summary per ISO code", E005, f"two summaries for {code}", code)
            seen[code] = doc
            counts = [doc[k] for k in SUMMARY_FIELDS[1:5]]
            if not all(isinstance(x, int) and x >= 0 for x in counts):
                c.fail(
                    "summary counts",
                    E008,
                    f"summary of {code}: counts {counts} not ints >= 0",
                    code,
                )
                continue
            visited, included, outside, hole = counts
            visited_total += visited
            if visited != included + outside + hole:
                c.fail(
                    "summary counts",
                    E008,
                    f"summary of {code}: cells_visited {visited} != included {included} + "
                    f"outside {outside} + hole {hole}",
                    code,
                )
            rows = self.rows.get(code, _CountryRows())
            if included != rows.count:
                c.fail(
                    "summary counts",
                    E008,
                    f"summary of {code}: cells_included {included} but the partition has "
                    f"{rows.count} row(s)",
                    code,
                )
            if (doc["tile_id_min"], doc["tile_id_max"]) != (rows.tile_min, rows.tile_max):
                c.fail(
                    "summary tile ids",
                    E002,
                    f"summary of {code}: tile_id_min/max {doc['tile_id_min']}/{doc['tile_id_max']} "
                    f"but the rows span {rows.tile_min}/{rows.tile_max}",
                    code,
                )
        foreign = sorted(set(seen) - set(self.iso_codes))
        absent = sorted(set(self.iso_codes) - set(seen))
        if foreign:
            c.fail(
                "summary per ISO code",
                E005,
                f"summaries for codes not in the ISO list: {foreign[:10]}",
            )
        if absent:
            c.fail("summary per ISO code", E005, f"no summary for ISO code(s) {absent[:10]}")
        scanned = self.pat.get("cells_scanned_total")
        c.ran("pat consistency", E009)
        if isinstance(scanned, int) and scanned != visited_total:
            c.fail(
                "pat consistency",
                E009,
                f"pat.cells_scanned_total {scanned} != sum of the summaries' cells_visited "
                f"{visited_total}",
            )

    def _check_counts(self, report: Mapping[str, Any]) -> None:
        c = self.c
        c.ran("row counts", E008)
        for key, value in (
            ("rows_emitted", report.get("rows_emitted")),
            ("pat.cells_included_total", self.pat.get("cells_included_total")),
        ):
            if value is not None and value != self.row_count:
                c.fail(
                    "row counts",
                    E008,
                    f"report {key} {value} but the partition has {self.row_count} rows",
                )

    # -- inclusion ---------------------------------------------------------------------------

    def _geometry_and_recount(
        self, rows: Mapping[str, list[BaseGeometry]], predicate: str | None
    ) -> tuple[dict[str, _Shape], dict[str, tuple[int, str]], float]:
        """Runs in a worker thread: touches nothing of the validator but the grid axes."""
        t0 = time.perf_counter()
        shapes = {code: _Shape(country_geometry(code, geoms)) for code, geoms in rows.items()}
        counted: dict[str, tuple[int, str]] = {}
        if predicate is not None:
            for code in self.iso_codes:
                shape = shapes.get(code, _EMPTY_SHAPE)
                counted[code] = _digest(self._expected(shape, predicate, "recount"))
        return shapes, counted, time.perf_counter() - t0

    def _expected(self, shape: _Shape, predicate: str, how: str) -> Iterator[U64Array]:
        if how == "full":
            return _legacy_ids(self.axes, shape, predicate)
        if predicate == "center":
            return _center_ids(self.axes, shape)
        return _overlap_ids(self.axes, shape)

    def _compare(
        self,
        shapes: Mapping[str, _Shape],
        predicate: str,
        how: str,
        counted: Mapping[str, tuple[int, str]],
    ) -> None:
        """Every country's (count, sha256 of tile ids) against the partition's rows; on a
        difference, the first differing cells."""
        c = self.c
        name = "recount" if how == "recount" else "full legacy recount"
        c.ran(name, E008)
        mismatched = []
        for code in self.iso_codes:
            count, digest = counted[code]
            rows = self.rows.get(code, _CountryRows())
            if (count, digest) == (rows.count, rows.sha.hexdigest()):
                continue
            mismatched.append(code)
            c.fail(
                name,
                E008,
                f"country {code}: the {how} finds {count} cells under {predicate}, the partition "
                f"has {rows.count} (sha256 of tile ids {digest[:12]} vs "
                f"{rows.sha.hexdigest()[:12]})",
                code,
            )
            shape = shapes.get(code, _EMPTY_SHAPE)
            missing, extra = _first_differences(
                self._expected(shape, predicate, how), self._partition_ids(code), _EXAMPLES
            )
            for tid in missing:
                c.fail(
                    f"{name} cells",
                    E008,
                    f"country {code}: {self._cell(tid)} should be included ({how})",
                    code,
                    tid,
                )
            for tid in extra:
                c.fail(
                    f"{name} cells",
                    E008,
                    f"country {code}: {self._cell(tid)} should be excluded ({how})",
                    code,
                    tid,
                )
        self.stats["recount" if how == "recount" else "legacy_full"] = {
            "method": _METHODS["full" if how == "full" else predicate],
            "countries": len(self.iso_codes),
            "mismatched": mismatched,
        }

    def _cell(self, tid: int) -> str:
        return f"tile_id {tid} (row {tid // self.grid.ncols}, col {tid % self.grid.ncols})"

    def _partition_ids(self, code: str) -> Iterator[U64Array]:
        import pyarrow.dataset as ds

        folder = self.index_dir
        files = sorted(
            (p for p in folder.iterdir() if _PART_RE.match(p.name)), key=lambda p: p.name.encode()
        )
        dataset = ds.dataset([str(p) for p in files], format="parquet")
        scanner = dataset.scanner(
            columns=["tile_id"], filter=ds.field("country_iso") == code, batch_size=_BATCH_ROWS
        )
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield np.sort(batch.column(0).to_numpy(zero_copy_only=False).astype(np.uint64))

    # -- sampled windows with the legacy engine --------------------------------------------------

    def _pick_windows(
        self, rows: Mapping[str, list[BaseGeometry]], samples: int, seed: int, size: int
    ) -> list[SampledWindow]:
        """``samples`` distinct windows, each on the boundary of a country drawn at random
        (from the input polygons, so that this needs no geometry build)."""
        rng = np.random.default_rng(seed)
        codes = sorted(rows)
        out: list[SampledWindow] = []
        tries = 0
        while len(out) < samples and codes and tries < 20 * samples:
            tries += 1
            code = codes[int(rng.integers(len(codes)))]
            parts = [p for g in rows[code] for p in shapely.get_parts(g) if not p.is_empty]
            wins = boundary_windows(self.grid, parts, 1, size, rng)
            if not wins:
                continue
            w = wins[0]
            sw = SampledWindow(w.row_start, w.row_stop, w.col_start, w.col_stop, code)
            if all((o.row_start, o.col_start) != (sw.row_start, sw.col_start) for o in out):
                out.append(sw)
        return out

    def _check_windows(
        self, shapes: Mapping[str, _Shape], predicate: str, windows: list[SampledWindow]
    ) -> list[SampledWindow]:
        c = self.c
        c.ran("sampled windows (legacy)", E008)
        done = []
        for k, sw in enumerate(windows):
            win = Window(sw.row_start, sw.row_stop, sw.col_start, sw.col_stop)
            got: dict[str, set[int]] = {}
            for code, ids in self.window_rows[k]:
                got.setdefault(code, set()).update(ids.tolist())
            candidates = set(got) | {
                code for code, s in shapes.items() if not s.empty and self._meets(s, win)
            }
            for code in sorted(candidates):
                shape = shapes.get(code)
                expect: set[int] = set()
                if shape is not None:
                    mask = legacy.mask_chunk(self.grid, win, shape.country, predicate).to_mask()
                    rr, cc = np.nonzero(mask)
                    expect = set(
                        ((rr + win.row_start) * self.grid.ncols + cc + win.col_start).tolist()
                    )
                have = got.get(code, set())
                for tid in sorted(expect - have)[:_EXAMPLES]:
                    c.fail(
                        "sampled windows (legacy)",
                        E008,
                        f"country {code}: {self._cell(tid)} is included by the legacy engine but "
                        "missing from the partition",
                        code,
                        tid,
                    )
                for tid in sorted(have - expect)[:_EXAMPLES]:
                    c.fail(
                        "sampled windows (legacy)",
                        E008,
                        f"country {code}: {self._cell(tid)} is in the partition but the legacy "
                        "engine excludes it",
                        code,
                        tid,
                    )
            done.append(
                SampledWindow(
                    sw.row_start,
                    sw.row_stop,
                    sw.col_start,
                    sw.col_stop,
                    sw.seeded_by,
                    tuple(sorted(candidates)),
                    win.size * len(candidates),
                )
            )
        return done

    def _meets(self, shape: _Shape, win: Window) -> bool:
        """Whether some part's bounding box meets the window's cells (at wrapped positions)."""
        south = float(self.axes.south[win.row_stop - 1])
        north = float(self.axes.north[win.row_start])
        cols = np.arange(win.col_start, win.col_stop)
        sel = np.isin(self.axes.piece_col, cols)
        x0, x1 = self.axes.piece_x0[sel], self.axes.piece_x1[sel]
        b = shape.bounds
        yhit = (b[:, 1] <= north) & (b[:, 3] >= south)
        if not yhit.any():
            return False
        b = b[yhit]
        return bool(((b[:, 0][:, None] <= x1[None, :]) & (b[:, 2][:, None] >= x0[None, :])).any())


@dataclass(frozen=True, eq=False)
class _Keys:
    """What the tile_bounds checks reuse from the tile_index batch of the same rows."""

    ids: IntArray
    tid: U64Array
    rs: IntArray
    cs: IntArray
    on_grid: BoolArray
    lon: FloatArray
    lat: FloatArray


def _np(arr: pa.Array, fill: Any) -> npt.NDArray[Any]:
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False)


def _castable(src: pa.DataType, dst: pa.DataType) -> bool:
    try:
        pa.array([], type=src).cast(dst)
    except (pa.ArrowException, NotImplementedError):
        return False
    return True


__all__ = [
    "BUDGETS",
    "Finding",
    "SampledWindow",
    "ValidationResult",
    "boundary_windows",
    "find_parameter_hashes",
    "recount_ids",
    "validate_partition",
]
