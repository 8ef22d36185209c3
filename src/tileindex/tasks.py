"""The two kinds of work a worker does: mask a unit into runs, encode a part file.

Top-level functions with picklable arguments, so any executor can run them; they
measure their own time, CPU and the worker's peak RSS for the run's PAT counters.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tileindex import faults, kernel, legacy
from tileindex.cache import MaskCache, unit_key
from tileindex.contract import DEFAULT_KEY_COLUMN
from tileindex.coverage import BoundaryFractions, run_fractions
from tileindex.errors import ConfigError
from tileindex.fsio import sha256_file
from tileindex.geometry import CountryGeometry
from tileindex.grid import ChunkMask, Grid, MaskCounts, Runs, Window
from tileindex.layout import COVERAGE_DATASET, DATASETS, part_name
from tileindex.plan import PartTask, WorkUnit
from tileindex.report import WorkerStats, open_files_now, peak_rss_bytes, scaled_total
from tileindex.rows import check_runs, coverage_batch, iter_groups
from tileindex.shards import DatasetWriter

MaskFn = Callable[[Grid, Window, CountryGeometry, str], ChunkMask]

ENGINES: dict[str, MaskFn] = {"fast": kernel.mask_chunk, "legacy": legacy.mask_chunk}
# engines whose builds can publish tile_coverage (docs/CONTRACT.md §10.3): the fractions
# come from tileindex.coverage, whose exactness argument is tied to the fast kernel's
# runs; the legacy engine is the per-cell reference and has no fraction path of its own
COVERAGE_ENGINES = ("fast",)


def get_engine(name: str) -> MaskFn:
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(
            f"unknown engine {name!r}; valid engines are {', '.join(sorted(ENGINES))}"
        ) from None


def _stats(t0: float, cpu0: float) -> WorkerStats:
    return WorkerStats(
        worker=f"pid{os.getpid()}",
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - cpu0,
        rss_peak_bytes=peak_rss_bytes(),
        open_files=open_files_now() or 0,
    )


@dataclass(frozen=True)
class UnitResult:
    """What the parent keeps of a unit: its counts and where its runs are.

    The runs (one country's, sorted by tile id) and, with coverage, the fractions of its
    boundary cells (numbered by position in the runs' cell stream) are in the unit's
    spill files (:func:`spill_paths`), read back only by the encode tasks that need them,
    so the parent's memory does not grow with the rows (docs/CONTRACT.md §9).
    ``tile_ids`` is the (lowest, highest) tile id of its cells, None without cells;
    ``fraction_total`` the exact scaled sum of its boundary fractions
    (:func:`tileindex.report.scaled_total`) and ``boundary_cells`` their number;
    ``cached`` says the runs came from the mask cache."""

    unit_id: int
    cells: int
    tile_ids: tuple[int, int] | None
    counts: MaskCounts
    stats: WorkerStats
    spill_bytes: int
    cached: bool = False
    fraction_total: int = 0
    boundary_cells: int = 0


def spill_paths(spill_dir: str | Path, unit_id: int) -> tuple[Path, Path]:
    """The unit's spill files: its runs (an n x 3 int64 array: row, col0, col1) and its
    boundary fractions (positions int64, values float64: a 2 x m float64 array would
    round positions, so two arrays in one file)."""
    folder = Path(spill_dir)
    return folder / f"unit-{unit_id:06d}.runs.npy", folder / f"unit-{unit_id:06d}.frac.npz"


def _spill(spill_dir: str, unit_id: int, runs: Runs, fractions: BoundaryFractions | None) -> int:
    """Write the unit's runs (and fractions) atomically; a retried unit rewrites the
    same bytes. Returns the bytes written."""
    run_path, frac_path = spill_paths(spill_dir, unit_id)
    written = 0
    tmp = run_path.with_name(run_path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.stack([runs.row, runs.col0, runs.col1], axis=1))
    os.replace(tmp, run_path)
    written += run_path.stat().st_size
    if fractions is not None:
        tmp = frac_path.with_name(frac_path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, pos=fractions.pos, value=fractions.value)
        os.replace(tmp, frac_path)
        written += frac_path.stat().st_size
    return written


# the last few countries' prepared geometries, so a worker reads a country's file and
# builds its GEOS indexes once per country rather than once per unit
_GEOMETRY_CACHE: dict[str, CountryGeometry] = {}


def geometry_path(spill_dir: str | Path, token: str) -> Path:
    """Where a build keeps the country geometry with digest ``token`` for its workers."""
    return Path(spill_dir) / f"geometry-{token}.pickle"


def write_geometry(spill_dir: str | Path, token: str, country: CountryGeometry) -> None:
    """Write a country's geometry once for every unit of it: a unit's task then carries
    its digest, not the geometry (80 MiB over the 260 units of the 30″ world, which a
    dask scheduler would relay twice)."""
    geometry_path(spill_dir, token).write_bytes(pickle.dumps(country, protocol=5))


def _country(spill_dir: str, token: str) -> CountryGeometry:
    if token not in _GEOMETRY_CACHE:
        if len(_GEOMETRY_CACHE) >= 4:
            _GEOMETRY_CACHE.pop(next(iter(_GEOMETRY_CACHE)))
        country = pickle.loads(geometry_path(spill_dir, token).read_bytes())
        assert isinstance(country, CountryGeometry)
        _GEOMETRY_CACHE[token] = country
    return _GEOMETRY_CACHE[token]


def mask_unit(
    grid: Grid,
    unit: WorkUnit,
    token: str,
    predicate: str,
    engine: str,
    spill_dir: str,
    cache_dir: str | None = None,
    coverage: bool = False,
    attempt: int = 1,
) -> UnitResult:
    """Mask every chunk (``unit.chunk``) of the unit, merge the runs, check them (on the
    grid, in tile id order, disjoint: E003) and write them to the unit's spill files
    under ``spill_dir``.

    ``token`` is the digest of the country geometry, read from its file under
    ``spill_dir`` (:func:`write_geometry`); with ``cache_dir`` the runs
    are looked up in, and stored to, the mask cache under a key built from it. With
    ``coverage`` the fractions of the runs' boundary cells are computed too (from cached
    runs as well: the cache holds runs only).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    faults.before("unit", unit.unit_id, attempt)
    cache = MaskCache(Path(cache_dir)) if cache_dir else None
    key = unit_key(token, grid, predicate, unit.windows) if cache else ""
    hit = cache.get(key) if cache else None
    geom = _country(spill_dir, token)
    if hit is not None:
        runs, counts = hit
    else:
        mask = get_engine(engine)
        chunks = [
            mask(grid, chunk, geom, predicate)
            for w in unit.windows
            for chunk in grid.chunks(w, unit.chunk.rows, unit.chunk.cols)
        ]
        # the windows are disjoint and the chunks tile them, so the chunks' runs only
        # need putting in tile id order
        runs = Runs.concat(chunks).sorted()
        counts = sum((x.counts for x in chunks), MaskCounts())
        if cache is not None:
            cache.put(key, runs, counts)
    runs = runs.take(runs.col1 > runs.col0)  # an empty run holds no cell
    check_runs(grid, runs.with_country(0), (unit.country_iso,))
    fractions = unit_fractions(grid, geom, runs, unit.chunk.rows) if coverage else None
    spilled = _spill(spill_dir, unit.unit_id, runs, fractions)
    tile_ids = None
    if len(runs):
        first = int(grid.tile_id(runs.row[0], runs.col0[0]))
        tile_ids = (first, int(grid.tile_id(runs.row[-1], runs.col1[-1] - 1)))
    return UnitResult(
        unit.unit_id,
        runs.cells,
        tile_ids,
        counts,
        _stats(t0, cpu0),
        spilled,
        cached=hit is not None,
        fraction_total=scaled_total(fractions.value) if fractions is not None else 0,
        boundary_cells=len(fractions) if fractions is not None else 0,
    )


def unit_fractions(
    grid: Grid, country: CountryGeometry, runs: Runs, block_rows: int
) -> BoundaryFractions:
    """The boundary cells' fractions of a unit's runs (docs/CONTRACT.md §10.3), computed
    ``block_rows`` rows at a time so memory stays O(chunk): the (segment x row) pairs of
    one block, as in the kernel."""
    if len(runs) == 0:
        return BoundaryFractions.empty()
    first = int(runs.row[0])
    cells = np.concatenate([[0], np.cumsum(runs.col1 - runs.col0)])
    parts = []
    for r in range(first, int(runs.row[-1]) + 1, max(1, block_rows)):
        lo, hi = np.searchsorted(runs.row, [r, r + block_rows], side="left")
        if hi > lo:
            parts.append((int(cells[lo]), run_fractions(grid, country, runs.take(slice(lo, hi)))))
    return BoundaryFractions.concat(parts)


@dataclass(frozen=True)
class PartResult:
    """A written part of both datasets; ``sha256`` maps dataset name to the file's digest
    as written, so the parent can detect a file corrupted before it is published."""

    part_index: int
    rows: int
    bytes: int
    sha256: dict[str, str]
    stats: WorkerStats


@dataclass(frozen=True)
class Segment:
    """Cells [start, stop) of one unit's cell stream, whose key is ``codes[country]``:
    a piece of a part (a part is a run of segments in unit order)."""

    unit_id: int
    country: int
    start: int
    stop: int


def load_part(
    spill_dir: str, segments: Sequence[Segment], coverage: bool
) -> tuple[Runs, BoundaryFractions | None]:
    """The runs (and boundary fractions, numbered from the part's first cell) of a part,
    read back from its units' spill files."""
    runs, fractions, offset = [], [], 0
    for seg in segments:
        run_path, frac_path = spill_paths(spill_dir, seg.unit_id)
        table = np.load(run_path)
        unit_runs = Runs(
            table[:, 0], table[:, 1], table[:, 2], np.full(len(table), seg.country, np.int32)
        )
        runs.append(unit_runs.slice_cells(seg.start, seg.stop))
        if coverage:
            with np.load(frac_path) as doc:
                unit_fractions = BoundaryFractions(doc["pos"], doc["value"])
            fractions.append((offset, unit_fractions.slice(seg.start, seg.stop)))
        offset += seg.stop - seg.start
    return Runs.concat(runs), BoundaryFractions.concat(fractions) if coverage else None


def encode_spilled(
    grid: Grid,
    predicate: str,
    codes: Sequence[str],
    spill_dir: str,
    segments: Sequence[Segment],
    task: PartTask,
    staging: Path,
    rows_per_row_group: int,
    row_groups_per_file: int,
    coverage: bool = False,
    key_column: str = DEFAULT_KEY_COLUMN,
    attempt: int = 1,
) -> PartResult:
    """:func:`encode_part` of a part given as segments of its units' spill files."""
    runs, fractions = load_part(spill_dir, segments, coverage)
    return encode_part(
        grid,
        predicate,
        codes,
        runs,
        task,
        staging,
        rows_per_row_group,
        row_groups_per_file,
        fractions,
        key_column,
        attempt,
    )


def encode_part(
    grid: Grid,
    predicate: str,
    codes: Sequence[str],
    runs: Runs,
    task: PartTask,
    staging: Path,
    rows_per_row_group: int,
    row_groups_per_file: int,
    fractions: BoundaryFractions | None = None,
    key_column: str = DEFAULT_KEY_COLUMN,
    attempt: int = 1,
) -> PartResult:
    """Expand the runs of one part's rows (``runs.country`` indexes ``codes``) and write
    that part of both datasets, whose first column is named ``key_column``, and of
    ``tile_coverage`` when ``fractions`` (the part's boundary cells, numbered from its
    first row) are given.

    A part file's bytes depend only on its rows and the writer settings, so writing
    each part on its own gives the bytes one streaming writer would write.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    faults.before("part", task.part_index, attempt)
    scratch = staging / "tasks" / f"{task.part_index:05d}"
    if scratch.exists():  # left by an earlier attempt of this task
        shutil.rmtree(scratch)
    with DatasetWriter(
        scratch,
        rows_per_row_group,
        row_groups_per_file,
        key_column,
        coverage=fractions is not None,
    ) as writer:
        # one pair per row group (the part starts on a row-group boundary), written
        # before the next is made: the pairs can share one set of buffers
        pairs = iter_groups(
            grid, codes, predicate, runs, rows_per_row_group, key_column=key_column, reuse=True
        )
        done = 0  # rows of this part written so far
        for index, bound in pairs:
            cov = None
            if fractions is not None and writer.coverage_schema is not None:
                here = fractions.slice(done, done + index.num_rows)
                cov = coverage_batch(index, here, writer.coverage_schema)
            writer.write(index, bound, cov)
            # the buffers are reused: a full group must be in the file before the next
            assert index.num_rows < rows_per_row_group or writer.pending_rows == 0
            done += index.num_rows
    size = 0
    digests = {}
    names = DATASETS + ((COVERAGE_DATASET,) if fractions is not None else ())
    for name in names:
        (written,) = writer.files[name]
        final = staging / name / part_name(task.part_index)
        size += written.stat().st_size
        digests[name] = sha256_file(written)
        os.replace(written, final)
    shutil.rmtree(scratch)
    faults.corrupt_after_write(
        task.part_index, attempt, staging / "tile_index" / part_name(task.part_index)
    )
    return PartResult(task.part_index, writer.rows_written, size, digests, _stats(t0, cpu0))
