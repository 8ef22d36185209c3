"""The build pipeline. It only wires: read the sealed inputs, plan units, mask them on
an executor, order their runs, encode the part files on the executor, publish
atomically, write the evidence.

Two phases keep the bytes independent of workers and chunking: masking yields compact
runs per unit (country x row block), which concatenate in unit order into the global
(country_iso, tile_id) order without any sort; the part files are then fixed row
ranges of that order, each encoded on its own by any worker.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex.cache import MaskCache
from tileindex.contract import (
    DatasetDictionary,
    check_parameter_hash,
    determinism_receipt,
)
from tileindex.contract import (
    parameter_hash as derive_parameter_hash,
)
from tileindex.errors import ConfigError, DiskFullError, OutputError, TileIndexError
from tileindex.executors import Job, TaskRunner
from tileindex.fsio import sha256_file
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid, Window
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.layout import DATASETS, ROW_GROUPS_PER_FILE, ROWS_PER_ROW_GROUP, part_name
from tileindex.metrics import RunMetrics
from tileindex.plan import (
    RunTable,
    WorkUnit,
    adaptive_chunk,
    execution_order,
    plan_parts,
    plan_units,
)
from tileindex.predicates import check_predicate
from tileindex.report import (
    CountrySummary,
    PatCounters,
    ResourceMeter,
    RunReport,
    ingress_versions,
    rfc3339_utc,
    write_json_atomic,
    write_jsonl_atomic,
)
from tileindex.shards import (
    cleanup_stale_staging,
    discard_staging,
    publish_partitions,
    staging_dir,
)
from tileindex.tasks import (
    ENGINES,
    PartResult,
    UnitResult,
    WorkerStats,
    encode_part,
    get_engine,
    mask_unit,
)
from tileindex.telemetry import (
    JsonLinesTelemetry,
    MultiTelemetry,
    NullTelemetry,
    Telemetry,
    error_event,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = "auto"
# staging folders of dead processes older than this are removed at the next build
STALE_STAGING_SECONDS = 60.0

__all__ = ["DEFAULT_CHUNK_SIZE", "ENGINES", "BuildResult", "build"]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: identity, outcome, counts and where everything lives."""

    parameter_hash: str
    outcome: str  # "published" or "identical" (the partition already held these bytes)
    rows_emitted: int
    countries_total: int
    countries_with_rows: int
    seconds: float
    paths: dict[str, Path]
    report: RunReport
    summaries: tuple[CountrySummary, ...] = field(repr=False)
    metrics: RunMetrics | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Options:
    predicate: str
    engine: str
    chunk_size: int | None  # None: adaptive
    workers: int | None
    executor: str | None
    scheduler: str | None
    cache_dir: str | None
    rows_per_row_group: int
    row_groups_per_file: int


def build(
    iso: str | Path,
    countries: str | Path,
    raster: str | Path,
    out: str | Path,
    *,
    predicate: str = "center",
    engine: str = "fast",
    chunk_size: int | str = DEFAULT_CHUNK_SIZE,
    workers: int | None = 1,
    executor: str | None = None,
    scheduler: str | None = None,
    cache_dir: str | Path | None = None,
    parameter_hash: str | None = None,
    dictionary: str | Path | None = None,
    telemetry: Telemetry | None = None,
    rows_per_row_group: int = ROWS_PER_ROW_GROUP,
    row_groups_per_file: int = ROW_GROUPS_PER_FILE,
) -> BuildResult:
    """Build and publish the tile index of every country in the ISO list (SPEC §1).

    ``workers`` None uses every core; ``executor`` None picks ``serial`` for one worker
    and ``process`` otherwise; ``executor="dask"`` runs on the dask scheduler at
    ``scheduler``, or on a LocalCluster of ``workers`` processes when it is None. The
    ``cache_dir`` keeps the masked units on disk (see :mod:`tileindex.cache`). The
    published bytes depend on none of these, nor on ``chunk_size`` (cells per side of a
    square chunk, or ``"auto"``: full-width chunks sized by the country's segments).
    ``rows_per_row_group`` and ``row_groups_per_file`` set the part file layout; they
    change the bytes, so keep the defaults unless you know why.
    Raises a :class:`~tileindex.errors.TileIndexError` subclass on any
    problem; nothing is published then, and an ``S1_ERROR`` event is written to the
    event log when the parameter hash is known.
    """
    meter = ResourceMeter()
    started = datetime.now(UTC)
    tele = telemetry or NullTelemetry()
    check_predicate(predicate)
    get_engine(engine)
    fixed_chunk = _chunk_option(chunk_size)
    if parameter_hash is not None:
        check_parameter_hash(parameter_hash)
    paths_dict = DatasetDictionary.load(dictionary)
    out = Path(out)
    if rows_per_row_group < 1 or row_groups_per_file < 1:
        raise ConfigError("rows_per_row_group and row_groups_per_file must be positive")
    options = _Options(
        predicate,
        engine,
        fixed_chunk,
        workers,
        executor,
        scheduler,
        str(cache_dir) if cache_dir is not None else None,
        rows_per_row_group,
        row_groups_per_file,
    )

    phash = parameter_hash
    try:
        iso_list = read_iso_list(iso)
        layer = read_country_layer(countries, iso_list)
        grid_in = read_grid(raster)
        grid = grid_in.grid
        digests = ingress_versions(
            iso=iso_list.digest, countries=layer.digest, raster=grid_in.digest
        )
        phash = phash or derive_parameter_hash(predicate, digests, grid.to_json())
        paths = {key: paths_dict.path(key, out, phash) for key in paths_dict.templates}
        # what the evidence records: paths relative to the output root, never the root
        relative = {key: paths_dict.relative(key, phash) for key in paths_dict.templates}
        events = JsonLinesTelemetry(paths["event_log"], progress=False)
        return _run(
            grid=grid,
            codes=iso_list.codes,
            rows_by_code=layer.rows,
            options=options,
            phash=phash,
            out=out,
            paths=paths,
            relative=relative,
            digests=digests,
            meter=meter,
            started=started,
            tele=MultiTelemetry(tele, events),
            bytes_raster=grid_in.bytes_read,
            bytes_vectors=iso_list.bytes_read + layer.bytes_read,
        )
    except OSError as exc:
        if isinstance(exc, TileIndexError):
            raise _logged(exc, phash, paths_dict, out, tele) from None
        where = exc.filename or out
        if exc.errno == errno.ENOSPC:
            err: TileIndexError = DiskFullError(
                f"no space left on device writing {where}; free space or choose another --out"
            )
        else:
            err = OutputError(
                f"cannot write the output under {out} ({exc.strerror or exc} at {where}); "
                "choose a writable --out"
            )
        raise _logged(err, phash, paths_dict, out, tele) from exc
    except TileIndexError as exc:
        raise _logged(exc, phash, paths_dict, out, tele) from None


def _logged(
    exc: TileIndexError,
    phash: str | None,
    paths_dict: DatasetDictionary,
    out: Path,
    tele: Telemetry,
) -> TileIndexError:
    """Attach the parameter hash and record the S1_ERROR event; the event log lives
    under the parameter hash, so without one the event goes to stderr only (CLI)."""
    exc.parameter_hash = phash  # type: ignore[attr-defined]
    if phash is not None:
        event = error_event(exc.event_code, exc.message, phash, **exc.context)
        with contextlib.suppress(OSError):  # an unwritable root: stderr still has it
            JsonLinesTelemetry(paths_dict.path("event_log", out, phash)).on_event(event)
        tele.on_event(event)
    return exc


def _run(
    *,
    grid: Grid,
    codes: tuple[str, ...],
    rows_by_code: Mapping[str, Sequence[BaseGeometry]],
    options: _Options,
    phash: str,
    out: Path,
    paths: dict[str, Path],
    relative: dict[str, str],
    digests: dict[str, str],
    meter: ResourceMeter,
    started: datetime,
    tele: Telemetry,
    bytes_raster: int,
    bytes_vectors: int,
) -> BuildResult:
    # geometry first: an invalid country fails the run before any work is done
    geometries = {
        code: country_geometry(code, rows_by_code[code]) if code in rows_by_code else None
        for code in codes
    }
    windows = {code: _windows(grid, g) for code, g in geometries.items()}
    if options.chunk_size is not None:
        units = plan_units(windows, options.chunk_size)
    else:
        shapes = {
            code: adaptive_chunk(ws, g.edges.ymin, g.edges.ymax, grid.e)
            for code, ws in windows.items()
            if ws and (g := geometries[code]) is not None
        }
        units = plan_units({c: windows[c] for c in shapes}, shapes)
    chunk_report = options.chunk_size or max((u.chunk.rows for u in units), default=0)
    tele.on_start(len(codes), len(units))

    cleanup_stale_staging(out, older_than_s=STALE_STAGING_SECONDS)
    stage = staging_dir(out, phash)
    worker_stats: list[WorkerStats] = []
    try:
        with TaskRunner(options.executor, options.workers, scheduler=options.scheduler) as runner:
            n_workers = runner.workers
            if runner.dashboard_link:
                tele.on_event(
                    {
                        "event": "S1_EXECUTOR",
                        "at": rfc3339_utc(),
                        "executor": "dask",
                        "workers": n_workers,
                        "dashboard": runner.dashboard_link,
                    }
                )
            results = _mask_all(runner, grid, units, geometries, options, phash, tele, worker_stats)
            summaries = _summaries(codes, geometries, units, results, grid.ncols)
            for summary in summaries:
                if not any(u.country_iso == summary.country_iso for u in units):
                    tele.on_country_done(summary)
            runs = _run_table(codes, units, results)
            for name in DATASETS:
                (stage / name).mkdir(parents=True)
            parts = _encode_all(runner, grid, options, runs, stage, tele, worker_stats)
        rows_emitted = runs.total_rows
        meter.sample()
        # the evidence is complete before anything becomes visible
        receipt = determinism_receipt(stage / "tile_index", relative["tile_index"])
        usage = meter.sample()
        pat = PatCounters(
            wall_clock_seconds_total=usage.wall_seconds,
            cpu_seconds_total=usage.cpu_seconds
            + (sum(s.cpu_seconds for s in worker_stats) if n_workers > 1 else 0.0),
            countries_processed=len(codes),
            cells_scanned_total=sum(s.cells_visited for s in summaries),
            cells_included_total=rows_emitted,
            bytes_read_raster_total=bytes_raster,
            bytes_read_vectors_total=bytes_vectors,
            max_worker_rss_bytes=max([s.rss_peak_bytes for s in worker_stats], default=0),
            open_files_peak=max(
                [usage.open_files_peak or 0] + [s.open_files for s in worker_stats]
            ),
            workers_used=n_workers,
            chunk_size=chunk_report,
            main_rss_peak_bytes=usage.rss_peak_bytes,
            temp_disk_worker_peak_bytes=max((p.bytes for p in parts), default=0),
            staging_bytes_total=sum(p.bytes for p in parts),
        )
        report = RunReport(
            parameter_hash=phash,
            predicate=options.predicate,
            ingress_versions=digests,
            grid_dims={"nrows": grid.nrows, "ncols": grid.ncols},
            countries_total=len(codes),
            rows_emitted=rows_emitted,
            determinism_receipt=receipt,
            pat=pat,
            engine=options.engine,
            started_at=rfc3339_utc(started),
            finished_at=rfc3339_utc(),
            outputs=dict(relative),
            grid_transform=grid.transform,
        )
        # tile_bounds first: tile_index (whose receipt is the run's identity) lands last
        outcome_bounds, outcome_index = publish_partitions(
            [
                (stage / "tile_bounds", paths["tile_bounds"]),
                (stage / "tile_index", paths["tile_index"]),
            ]
        )
    finally:
        discard_staging(stage)

    outcome = "identical" if outcome_index == outcome_bounds == "identical" else "published"
    if outcome == "published" or not paths["run_report"].exists():
        write_jsonl_atomic(paths["country_summaries"], [s.to_json() for s in summaries])
        write_json_atomic(paths["run_report"], report.to_json())
    else:
        log.info("partition %s already published with identical bytes", paths["tile_index"])
    if options.cache_dir is not None:
        MaskCache(Path(options.cache_dir)).evict()
    tele.on_finish(report)
    rss: dict[str, int] = {}
    for st in worker_stats:
        rss[st.worker] = max(rss.get(st.worker, 0), st.rss_peak_bytes)
    metrics = RunMetrics(
        parameter_hash=phash,
        predicate=options.predicate,
        tiles_total=rows_emitted,
        seconds=usage.wall_seconds,
        units_total=len(units),
        unit_seconds=tuple(r.stats.seconds for r in results),
        cache_hits=sum(1 for r in results if r.cached),
        shard_flush_seconds=tuple(p.stats.seconds for p in parts),
        worker_rss_bytes=rss,
    )
    return BuildResult(
        parameter_hash=phash,
        outcome=outcome,
        rows_emitted=rows_emitted,
        countries_total=len(codes),
        countries_with_rows=sum(1 for s in summaries if s.cells_included),
        seconds=usage.wall_seconds,
        paths=paths,
        report=report,
        summaries=tuple(summaries),
        metrics=metrics,
    )


def geometry_digest(country: CountryGeometry) -> str:
    """SHA-256 of the country's normalised geometry (WKB), code included."""
    wkb = shapely.to_wkb(country.geom, byte_order=1, output_dimension=2)
    return hashlib.sha256(country.iso.encode() + b"\0" + wkb).hexdigest()


def _chunk_option(value: int | str) -> int | None:
    """A fixed chunk side, or None for adaptive chunks (``"auto"``)."""
    if value == "auto":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"chunk size must be a positive number of cells or 'auto', got {value!r}")
    return value


def _windows(grid: Grid, geom: CountryGeometry | None) -> list[Window]:
    if geom is None or geom.is_empty:
        return []
    return grid.windows_for_boxes(shapely.bounds(np.asarray(geom.parts, dtype=object)))


def _mask_all(
    runner: TaskRunner,
    grid: Grid,
    units: list[WorkUnit],
    geometries: Mapping[str, CountryGeometry | None],
    options: _Options,
    phash: str,
    tele: Telemetry,
    worker_stats: list[WorkerStats],
) -> list[UnitResult]:
    """Run every unit, heaviest first; results come back in unit id order."""
    digests = {code: geometry_digest(g) for code, g in geometries.items() if g is not None}
    tele.on_event(
        {
            "event": "S1_PLAN",
            "at": rfc3339_utc(),
            "units": [[u.unit_id, u.country_iso, u.row_start, u.row_stop, u.cells] for u in units],
        }
    )
    left = Counter(u.country_iso for u in units)
    done: dict[str, list[UnitResult]] = {}
    jobs = []
    for unit in execution_order(units):
        geom = geometries[unit.country_iso]
        assert geom is not None  # units exist only for countries with windows
        args = (
            grid,
            unit,
            geom,
            digests[unit.country_iso],
            options.predicate,
            options.engine,
            options.cache_dir,
        )
        label = f"unit {unit.unit_id} ({unit.country_iso} rows {unit.row_start}-{unit.row_stop})"
        jobs.append(Job(unit.unit_id, mask_unit, args, label))

    def on_result(key: Hashable, res: UnitResult) -> None:
        unit = units[int(key)]  # type: ignore[call-overload]
        worker_stats.append(res.stats)
        tele.on_event(_unit_event(unit, res))
        tele.on_unit_done(
            unit.country_iso, res.cells_visited, res.cells_included, res.stats.seconds
        )
        done.setdefault(unit.country_iso, []).append(res)
        left[unit.country_iso] -= 1
        if left[unit.country_iso] == 0:
            finished = done.pop(unit.country_iso)
            tele.on_country_done(_summary(unit.country_iso, finished, True, grid.ncols))

    results = runner.run(jobs, on_result)
    return [results[u.unit_id] for u in units]


def _unit_event(unit: WorkUnit, res: UnitResult) -> dict[str, Any]:
    return {
        "event": "S1_UNIT",
        "at": rfc3339_utc(),
        "unit_id": unit.unit_id,
        "country_iso": unit.country_iso,
        "row_start": unit.row_start,
        "row_stop": unit.row_stop,
        "col_spans": [[w.col_start, w.col_stop] for w in unit.windows],
        "cells_visited": res.cells_visited,
        "cells_included": res.cells_included,
        "seconds": round(res.stats.seconds, 6),
        "worker": res.stats.worker,
    }


def _summary(
    code: str, results: Sequence[UnitResult], has_geometry: bool, ncols: int
) -> CountrySummary:
    results = sorted(results, key=lambda r: r.unit_id)
    visited = sum(r.cells_visited for r in results)
    included = sum(r.cells_included for r in results)
    hole = sum(r.cells_excluded_hole for r in results)
    nonempty = [r for r in results if r.row.size]
    first, last = (nonempty[0], nonempty[-1]) if nonempty else (None, None)
    notes: tuple[str, ...] = ()
    if not has_geometry:
        notes = ("no polygons for this code in the country layer",)
    elif not results:
        notes = ("the country's geometry lies outside the grid",)
    return CountrySummary(
        country_iso=code,
        cells_visited=visited,
        cells_included=included,
        cells_excluded_outside=visited - included - hole,
        cells_excluded_hole=hole,
        tile_id_min=int(first.row[0]) * ncols + int(first.col0[0]) if first else None,
        tile_id_max=int(last.row[-1]) * ncols + int(last.col1[-1]) - 1 if last else None,
        notes=notes,
    )


def _summaries(
    codes: Sequence[str],
    geometries: Mapping[str, CountryGeometry | None],
    units: Sequence[WorkUnit],
    results: Sequence[UnitResult],
    ncols: int,
) -> list[CountrySummary]:
    by_code: dict[str, list[UnitResult]] = {code: [] for code in codes}
    for unit, res in zip(units, results, strict=True):
        by_code[unit.country_iso].append(res)
    return [_summary(code, by_code[code], geometries[code] is not None, ncols) for code in codes]


def _run_table(
    codes: Sequence[str], units: Sequence[WorkUnit], results: Sequence[UnitResult]
) -> RunTable:
    """Concatenate unit runs in unit order: that is already (country_iso, tile_id) order."""
    index = {code: i for i, code in enumerate(codes)}

    def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype)

    return RunTable(
        codes=tuple(codes),
        code=cat(
            [
                np.full(r.row.size, index[u.country_iso], np.int32)
                for u, r in zip(units, results, strict=True)
            ],
            np.int32,
        ),
        row=cat([r.row for r in results], np.int64),
        col0=cat([r.col0 for r in results], np.int64),
        col1=cat([r.col1 for r in results], np.int64),
    )


def _encode_all(
    runner: TaskRunner,
    grid: Grid,
    options: _Options,
    runs: RunTable,
    stage: Path,
    tele: Telemetry,
    worker_stats: list[WorkerStats],
) -> list[PartResult]:
    rows_per_file = options.rows_per_row_group * options.row_groups_per_file
    tasks = plan_parts(runs.total_rows, rows_per_file)
    t0 = time.perf_counter()
    jobs = [
        Job(
            task.part_index,
            encode_part,
            (
                grid,
                options.predicate,
                runs.slice_rows(task.row_start, task.row_stop),
                task,
                stage,
                options.rows_per_row_group,
                options.row_groups_per_file,
            ),
            f"part {task.part_index} (rows {task.row_start}-{task.row_stop})",
        )
        for task in tasks
    ]

    def verify(key: Hashable, part: PartResult) -> str | None:
        """The staged files must still hold the bytes the worker wrote (SHA-256)."""
        for name in DATASETS:
            path = stage / name / part_name(part.part_index)
            if sha256_file(path) != part.sha256[name]:
                return f"{path} does not match the checksum it was written with"
        return None

    def on_result(key: Hashable, part: PartResult) -> None:
        worker_stats.append(part.stats)
        tele.on_event(
            {
                "event": "S1_SHARD_FLUSH",
                "at": rfc3339_utc(),
                "part_index": part.part_index,
                "rows": part.rows,
                "bytes": part.bytes,
                "seconds": round(part.stats.seconds, 6),
                "worker": part.stats.worker,
            }
        )

    parts = runner.run(jobs, on_result, verify)
    tele.on_event(
        {
            "event": "S1_MERGE",
            "at": rfc3339_utc(),
            "parts": len(parts),
            "rows": sum(p.rows for p in parts.values()),
            "bytes": sum(p.bytes for p in parts.values()),
            "seconds": round(time.perf_counter() - t0, 6),
        }
    )
    return [parts[t.part_index] for t in tasks]
