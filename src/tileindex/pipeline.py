"""The build pipeline: read sealed inputs, mask every country chunk by chunk, stream the
rows into the staged datasets, publish atomically, write the evidence. It only wires."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import shapely

from tileindex import kernel, legacy
from tileindex.contract import (
    DatasetDictionary,
    check_parameter_hash,
    check_predicate,
    determinism_receipt,
)
from tileindex.contract import (
    parameter_hash as derive_parameter_hash,
)
from tileindex.errors import ConfigError, DuplicateTileError, TileIndexError
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import CellRuns, Grid, Window
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.report import (
    CountrySummary,
    PatCounters,
    ResourceMeter,
    RunReport,
    rfc3339_utc,
    write_json_atomic,
    write_jsonl_atomic,
)
from tileindex.rows import iter_batches
from tileindex.shards import DatasetWriter, discard_staging, publish_partitions, staging_dir
from tileindex.telemetry import JsonLinesTelemetry, NullTelemetry, Telemetry, error_event

log = logging.getLogger(__name__)

MaskFn = Callable[[Grid, Window, CountryGeometry, str], CellRuns]

ENGINES: dict[str, MaskFn] = {"fast": kernel.mask_chunk, "legacy": legacy.mask_chunk}

DEFAULT_CHUNK_SIZE = 1024


def get_engine(name: str) -> MaskFn:
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(
            f"unknown engine {name!r}; valid engines are {', '.join(sorted(ENGINES))}"
        ) from None


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


def build(
    iso: str | Path,
    countries: str | Path,
    raster: str | Path,
    out: str | Path,
    *,
    predicate: str = "center",
    engine: str = "fast",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    parameter_hash: str | None = None,
    dictionary: str | Path | None = None,
    telemetry: Telemetry | None = None,
) -> BuildResult:
    """Build and publish the tile index of every country in the ISO list (SPEC §1).

    Raises a :class:`~tileindex.errors.TileIndexError` subclass on any problem; nothing
    is published then, and an ``S1_ERROR`` event is written to the event log when the
    parameter hash is known.
    """
    meter = ResourceMeter()
    started = datetime.now(UTC)
    tele = telemetry or NullTelemetry()
    check_predicate(predicate)
    mask = get_engine(engine)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk size must be a positive number of cells, got {chunk_size!r}")
    if parameter_hash is not None:
        check_parameter_hash(parameter_hash)
    paths_dict = DatasetDictionary.load(dictionary)
    out = Path(out)

    phash = parameter_hash
    try:
        iso_list = read_iso_list(iso)
        layer = read_country_layer(countries, iso_list)
        grid_in = read_grid(raster)
        grid = grid_in.grid
        digests = {"iso": iso_list.digest, "countries": layer.digest, "raster": grid_in.digest}
        phash = phash or derive_parameter_hash(predicate, digests, grid.to_json())
        return _run(
            grid=grid,
            codes=iso_list.codes,
            rows_by_code=layer.rows,
            predicate=predicate,
            engine=engine,
            mask=mask,
            chunk_size=chunk_size,
            phash=phash,
            out=out,
            paths={key: paths_dict.path(key, out, phash) for key in paths_dict.templates},
            digests=digests,
            meter=meter,
            started=started,
            tele=tele,
            bytes_raster=grid_in.bytes_read,
            bytes_vectors=iso_list.bytes_read + layer.bytes_read,
        )
    except TileIndexError as exc:
        # the event log lives under the parameter hash: without one, stderr only (CLI)
        exc.parameter_hash = phash  # type: ignore[attr-defined]
        if phash is not None:
            event = error_event(exc.event_code, exc.message, phash, **exc.context)
            JsonLinesTelemetry(paths_dict.path("event_log", out, phash)).on_event(event)
            tele.on_event(event)
        raise


def _run(
    *,
    grid: Grid,
    codes: tuple[str, ...],
    rows_by_code: dict,
    predicate: str,
    engine: str,
    mask: MaskFn,
    chunk_size: int,
    phash: str,
    out: Path,
    paths: dict[str, Path],
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
    plans = {code: _windows(grid, g) for code, g in geometries.items()}
    total_units = sum(_count_units(ws, chunk_size) for ws in plans.values())
    tele.on_start(len(codes), total_units)

    summaries: list[CountrySummary] = []
    cells_scanned = 0
    stage = staging_dir(out, phash)
    try:
        with DatasetWriter(stage) as writer:
            for code in codes:
                geom, windows = geometries[code], plans[code]
                summary = _country(
                    grid, code, geom, windows, predicate, mask, chunk_size, writer, tele
                )
                cells_scanned += summary.cells_visited
                summaries.append(summary)
                tele.on_country_done(summary)
                meter.sample()
        rows_emitted = writer.rows_written
        # the evidence is complete before anything becomes visible
        receipt = determinism_receipt(stage / "tile_index", recorded_path=paths["tile_index"])
        usage = meter.sample()
        pat = PatCounters(
            wall_clock_seconds_total=usage.wall_seconds,
            cpu_seconds_total=usage.cpu_seconds + usage.cpu_seconds_children,
            countries_processed=len(codes),
            cells_scanned_total=cells_scanned,
            cells_included_total=rows_emitted,
            bytes_read_raster_total=bytes_raster,
            bytes_read_vectors_total=bytes_vectors,
            max_worker_rss_bytes=usage.rss_peak_bytes,
            open_files_peak=usage.open_files_peak or 0,
            workers_used=1,
            chunk_size=chunk_size,
            main_rss_peak_bytes=usage.rss_peak_bytes,
        )
        report = RunReport(
            parameter_hash=phash,
            predicate=predicate,
            ingress_versions=digests,
            grid_dims={"nrows": grid.nrows, "ncols": grid.ncols},
            countries_total=len(codes),
            rows_emitted=rows_emitted,
            determinism_receipt=receipt,
            pat=pat,
            engine=engine,
            chunk_size=chunk_size,
            started_at=rfc3339_utc(started),
            finished_at=rfc3339_utc(),
            outputs={k: str(v) for k, v in paths.items()},
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
    tele.on_finish(report)
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
    )


def _windows(grid: Grid, geom: CountryGeometry | None) -> list[Window]:
    if geom is None or geom.is_empty:
        return []
    return grid.windows_for_boxes(shapely.bounds(np.asarray(geom.parts, dtype=object)))


def _bands(windows: list[Window], size: int) -> Iterator[list[Window]]:
    """Row bands of ``size`` rows across all of a country's windows, each band split into
    ``size``-wide chunks; bands come north to south, chunks west to east."""
    if not windows:
        return
    r0, r1 = windows[0].row_start, windows[0].row_stop
    for r in range(r0, r1, size):
        band = []
        for w in windows:
            for c in range(w.col_start, w.col_stop, size):
                band.append(Window(r, min(r + size, r1), c, min(c + size, w.col_stop)))
        yield band


def _count_units(windows: list[Window], size: int) -> int:
    return sum(1 for _ in _bands(windows, size))


def _country(
    grid: Grid,
    code: str,
    geom: CountryGeometry | None,
    windows: list[Window],
    predicate: str,
    mask: MaskFn,
    chunk_size: int,
    writer: DatasetWriter,
    tele: Telemetry,
) -> CountrySummary:
    visited = included = hole = 0
    tid_min: int | None = None
    tid_max: int | None = None
    for band in _bands(windows, chunk_size):
        t0 = time.perf_counter()
        results = [mask(grid, w, geom, predicate) for w in band]  # type: ignore[arg-type]
        row = np.concatenate([r.row for r in results])
        col0 = np.concatenate([r.col0 for r in results])
        col1 = np.concatenate([r.col1 for r in results])
        order = np.lexsort((col0, row))
        row, col0, col1 = row[order], col0[order], col1[order]
        _check_disjoint(code, row, col0, col1)
        band_included = sum(r.cells_included for r in results)
        for index_batch, bounds_batch in iter_batches(grid, code, predicate, row, col0, col1):
            writer.write(index_batch, bounds_batch)
        if row.size:
            first = int(grid.tile_id(row[0], col0[0]))
            last = int(grid.tile_id(row[-1], col1[-1] - 1))
            tid_min = first if tid_min is None else tid_min
            tid_max = last
        band_visited = sum(r.cells_visited for r in results)
        visited += band_visited
        included += band_included
        hole += sum(r.cells_excluded_hole for r in results)
        tele.on_unit_done(code, band_visited, band_included, time.perf_counter() - t0)
    return CountrySummary(
        country_iso=code,
        cells_visited=visited,
        cells_included=included,
        cells_excluded_outside=visited - included - hole,
        cells_excluded_hole=hole,
        tile_id_min=tid_min,
        tile_id_max=tid_max,
        notes=() if geom is not None else ("no polygons for this code in the country layer",),
    )


def _check_disjoint(code: str, row: np.ndarray, col0: np.ndarray, col1: np.ndarray) -> None:
    """Runs of one band must not overlap (a cell once per country): SPEC E003."""
    same = row[1:] == row[:-1]
    bad = np.flatnonzero(same & (col0[1:] < col1[:-1]))
    if bad.size:
        i = int(bad[0]) + 1
        raise DuplicateTileError(
            f"country {code}: cell ({int(row[i])}, {int(col0[i])}) emitted twice",
            country_iso=code,
            raster_row=int(row[i]),
            raster_col=int(col0[i]),
        )
