"""The legacy engine as a second witness: windows sampled on country boundaries and
re-decided cell by cell, and (``--full``) every cell of every country."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex import legacy
from tileindex.grid import Grid, Window
from tileindex.validate.axes import Axes, IntArray, U64Array
from tileindex.validate.findings import E008, EXAMPLES, Checks, describe_cell
from tileindex.validate.recount import overlap_window
from tileindex.validate.shape import Shape

_FULL_CHUNK = 256


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


def pick_windows(
    grid: Grid, rows: Mapping[str, list[BaseGeometry]], samples: int, seed: int, size: int
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
        wins = boundary_windows(grid, parts, 1, size, rng)
        if not wins:
            continue
        w = wins[0]
        sw = SampledWindow(w.row_start, w.row_stop, w.col_start, w.col_stop, code)
        if all((o.row_start, o.col_start) != (sw.row_start, sw.col_start) for o in out):
            out.append(sw)
    return out


class WindowRows:
    """The partition's tile ids inside each sampled window, per country, gathered while
    the rows stream past."""

    def __init__(self, grid: Grid, windows: Sequence[SampledWindow]) -> None:
        self.ncols = grid.ncols
        self.windows = tuple(windows)
        self.found: list[list[tuple[str, U64Array]]] = [[] for _ in self.windows]

    def collect(
        self, codes: Sequence[str], ids: IntArray, tid: U64Array, row: IntArray, col: IntArray
    ) -> None:
        """Rows of one batch: ``codes[ids[i]]`` is row i's country."""
        ncols = self.ncols
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
                self.found[k].append((codes[j], tid[m & (ids == j)]))


def check_windows(
    c: Checks,
    axes: Axes,
    shapes: Mapping[str, Shape],
    predicate: str,
    rows: WindowRows,
) -> list[SampledWindow]:
    """Each window's cells by the legacy engine against the partition's, for every country
    with rows in it or a part's bounding box over it; the windows with what was compared."""
    grid = axes.grid
    c.ran("sampled windows (legacy)", E008)
    boxes = _PartBoxes.of(shapes)
    done = []
    for sw, found in zip(rows.windows, rows.found, strict=True):
        win = Window(sw.row_start, sw.row_stop, sw.col_start, sw.col_stop)
        got: dict[str, set[int]] = {}
        for code, ids in found:
            got.setdefault(code, set()).update(ids.tolist())
        candidates = set(got) | _meeting(axes, boxes, win)
        for code in sorted(candidates):
            shape = shapes.get(code)
            expect: set[int] = set()
            if shape is not None:
                for sub in _clip(axes, shape, win):
                    mask = legacy.mask_chunk(grid, sub, shape.country, predicate).to_mask()
                    rr, cc = np.nonzero(mask)
                    expect.update(((rr + sub.row_start) * grid.ncols + cc + sub.col_start).tolist())
            have = got.get(code, set())
            for tid in sorted(expect - have)[:EXAMPLES]:
                c.fail(
                    "sampled windows (legacy)",
                    E008,
                    f"country {code}: {describe_cell(grid.ncols, tid)} is included by the legacy "
                    "engine but missing from the partition",
                    code,
                    tid,
                )
            for tid in sorted(have - expect)[:EXAMPLES]:
                c.fail(
                    "sampled windows (legacy)",
                    E008,
                    f"country {code}: {describe_cell(grid.ncols, tid)} is in the partition but "
                    "the legacy engine excludes it",
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


@dataclass(frozen=True)
class _PartBoxes:
    """Every shape's part bounding boxes in one array, with the code of each, so that
    finding the shapes that meet a window is one vectorised test, not one per shape
    (10,000 regions, docs/CONTRACT.md §10.1)."""

    codes: tuple[str, ...]
    owner: IntArray  # box i belongs to codes[owner[i]]
    bounds: npt.NDArray[np.float64]  # (n, 4): xmin, ymin, xmax, ymax

    @classmethod
    def of(cls, shapes: Mapping[str, Shape]) -> _PartBoxes:
        live = [(code, s) for code, s in shapes.items() if not s.empty]
        codes = tuple(code for code, _ in live)
        parts = [s.bounds.reshape(-1, 4) for _, s in live]
        owner = np.repeat(np.arange(len(live)), [b.shape[0] for b in parts])
        bounds = np.concatenate(parts) if parts else np.empty((0, 4))
        return cls(codes, owner.astype(np.int64), bounds)


def _clip(axes: Axes, shape: Shape, win: Window) -> list[Window]:
    """The parts of ``win`` where ``shape`` can have cells: rows whose strip and columns
    whose pieces meet some part's bounding box, closed. A cell left out has neither its
    centroid nor any area in the shape, so it is excluded under every predicate; the
    legacy engine decides only the rest, and a dense layer (a thousand small regions in
    one window) costs the regions' cells, not the window's once per region."""
    if shape.empty:
        return []
    r0, r1, pk = overlap_window(axes, shape)
    r0, r1 = max(r0, win.row_start), min(r1, win.row_stop)
    if r0 >= r1:
        return []
    cols = np.unique(axes.piece_col[pk])
    cols = cols[(cols >= win.col_start) & (cols < win.col_stop)]
    return [Window(r0, r1, a, b) for a, b in _consecutive_spans(cols)]


def _meeting(axes: Axes, boxes: _PartBoxes, win: Window) -> set[str]:
    """The codes of the shapes of which some part's bounding box meets the window's cells
    (at wrapped positions)."""
    south = float(axes.south[win.row_stop - 1])
    north = float(axes.north[win.row_start])
    cols = np.arange(win.col_start, win.col_stop)
    sel = np.isin(axes.piece_col, cols)
    x0, x1 = axes.piece_x0[sel], axes.piece_x1[sel]
    b = boxes.bounds
    yhit = np.flatnonzero((b[:, 1] <= north) & (b[:, 3] >= south))
    if yhit.size == 0 or x0.size == 0:
        return set()
    b = b[yhit]
    hit = ((b[:, 0][:, None] <= x1[None, :]) & (b[:, 2][:, None] >= x0[None, :])).any(axis=1)
    return {boxes.codes[int(k)] for k in np.unique(boxes.owner[yhit[hit]])}


def legacy_ids(axes: Axes, shape: Shape, predicate: str) -> Iterator[U64Array]:
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
        r0, r1, pk = overlap_window(axes, shape)
        cols = np.unique(axes.piece_col[pk])
    if cols.size == 0 or r0 >= r1:
        return
    runs = _consecutive_spans(cols)
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


def _consecutive_spans(values: IntArray) -> list[tuple[int, int]]:
    """[start, stop) runs of consecutive integers of a sorted array."""
    if values.size == 0:
        return []
    cut = np.flatnonzero(np.diff(values) != 1) + 1
    starts = np.concatenate(([0], cut))
    stops = np.concatenate((cut, [values.size]))
    return [(int(values[s]), int(values[t - 1]) + 1) for s, t in zip(starts, stops, strict=True)]
