"""Work plans: country x row-block units for masking and row-range tasks for encoding,
both in a deterministic order with ids derived from that order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex.contract import sort_keys
from tileindex.geometry import CountryGeometry
from tileindex.grid import Grid, Window

# Cells per masking unit: big enough to amortise per-unit overhead, small enough that
# the largest country splits into several units and the run's tail stays short.
DEFAULT_UNIT_CELLS = 16 * 1024 * 1024

# Adaptive chunks: the kernel's memory and time grow with the (segment, row) crossing
# pairs of a chunk, not with its area, and splitting a row into column chunks repeats
# the work of every segment west of each split. So an adaptive chunk spans the whole
# window width and as many rows as keep the expected pairs under the budget.
PAIR_BUDGET = 2_000_000
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 16, 1024


@dataclass(frozen=True)
class ChunkShape:
    rows: int
    cols: int


def adaptive_chunk(
    windows: Sequence[Window],
    edge_ymin: npt.NDArray[np.float64],
    edge_ymax: npt.NDArray[np.float64],
    row_height: float,
) -> ChunkShape:
    """Rows for about ``PAIR_BUDGET`` crossing pairs per chunk, the full window width.

    A country with few, short segments (an island) gets tall chunks and a dense coast
    short ones, so memory stays bounded by the budget, not by the window.
    """
    height = max(w.row_stop for w in windows) - min(w.row_start for w in windows)
    width = max(w.width for w in windows)
    pairs = float(((edge_ymax - edge_ymin) / abs(row_height) + 1.0).sum())
    per_row = max(pairs / max(height, 1), 1.0)
    rows = int(min(max(PAIR_BUDGET / per_row, MIN_CHUNK_ROWS), MAX_CHUNK_ROWS))
    return ChunkShape(rows=rows, cols=width)


@dataclass(frozen=True)
class WorkUnit:
    """Rows [row_start, row_stop) of one country's windows; ``unit_id`` is its position in
    the (country_iso, row_start) order, which is also the order of its rows in the output.
    ``windows`` are the country's (disjoint) windows clipped to those rows; ``chunk`` is
    the shape of the chunks the kernel is called on."""

    unit_id: int
    country_iso: str
    windows: tuple[Window, ...]
    chunk: ChunkShape
    row_start: int
    row_stop: int

    @property
    def cells(self) -> int:
        return sum(w.size for w in self.windows)


def plan_units(
    windows_by_code: Mapping[str, Sequence[Window]],
    chunks: int | Mapping[str, ChunkShape],
    unit_cells: int = DEFAULT_UNIT_CELLS,
) -> list[WorkUnit]:
    """Split every country's windows into row blocks (a multiple of the chunk height, at
    least one chunk) of about ``unit_cells`` cells. Countries in the order of their keys'
    UTF-8 bytes (docs/CONTRACT.md §6.4, §10.1; ASCII order for ISO codes), which is the
    output's. ``chunks`` is a fixed chunk side or a chunk shape per country."""
    units: list[WorkUnit] = []
    for code in sort_keys(windows_by_code):
        windows = list(windows_by_code[code])
        if not windows:
            continue
        chunk = ChunkShape(chunks, chunks) if isinstance(chunks, int) else chunks[code]
        r0 = min(w.row_start for w in windows)
        r1 = max(w.row_stop for w in windows)
        width = sum(w.width for w in windows)
        bands = max(1, unit_cells // max(1, chunk.rows * width))
        step = bands * chunk.rows
        for r in range(r0, r1, step):
            stop = min(r + step, r1)
            block = tuple(
                Window(max(r, w.row_start), min(stop, w.row_stop), w.col_start, w.col_stop)
                for w in windows
                if w.row_start < stop and w.row_stop > r
            )
            if block:  # row blocks between a country's windows hold nothing
                units.append(WorkUnit(len(units), code, block, chunk, r, stop))
    return units


def country_windows(grid: Grid, country: CountryGeometry | None) -> list[Window]:
    """The windows of cells a country's parts may meet (see ``Grid.windows_for_boxes``)."""
    if country is None or country.is_empty:
        return []
    return grid.windows_for_boxes(shapely.bounds(np.asarray(country.parts, dtype=object)))


def _windows_of_all(
    grid: Grid, countries: Mapping[str, CountryGeometry | None]
) -> dict[str, list[Window]]:
    """:func:`country_windows` of every country, in one vectorised pass over all parts."""
    codes = list(countries)
    parts: list[BaseGeometry] = []
    group: list[int] = []
    for i, code in enumerate(codes):
        g = countries[code]
        if g is not None and not g.is_empty:
            parts.extend(g.parts)
            group.extend([i] * len(g.parts))
    boxes = shapely.bounds(parts) if parts else np.empty((0, 4))
    found = grid.windows_for_box_groups(boxes, np.asarray(group, np.int64), len(codes))
    return dict(zip(codes, found, strict=True))


def plan_countries(
    grid: Grid, countries: Mapping[str, CountryGeometry | None], chunk_size: int | None
) -> list[WorkUnit]:
    """The units of a build: chunks of ``chunk_size`` cells a side, or adaptive chunks
    (``chunk_size`` None, see :func:`adaptive_chunk`)."""
    windows = _windows_of_all(grid, countries)
    if chunk_size is not None:
        return plan_units(windows, chunk_size)
    shapes = {
        code: adaptive_chunk(ws, g.edges.ymin, g.edges.ymax, grid.e)
        for code, ws in windows.items()
        if ws and (g := countries[code]) is not None
    }
    return plan_units({c: windows[c] for c in shapes}, shapes)


def execution_order(units: Sequence[WorkUnit]) -> list[WorkUnit]:
    """Heaviest units first so the run does not end waiting on one big unit; ties by id."""
    return sorted(units, key=lambda u: (-u.cells, u.unit_id))


@dataclass(frozen=True)
class PartTask:
    """Output rows [row_start, row_stop) of the global (country_iso, tile_id) stream,
    which become part file ``part_index`` of each dataset."""

    part_index: int
    row_start: int
    row_stop: int


def plan_parts(total_rows: int, rows_per_file: int) -> list[PartTask]:
    """One task per part file; a zero-row result still gets one (empty) part."""
    if total_rows == 0:
        return [PartTask(0, 0, 0)]
    return [
        PartTask(i, start, min(start + rows_per_file, total_rows))
        for i, start in enumerate(range(0, total_rows, rows_per_file))
    ]
