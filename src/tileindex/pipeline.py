"""The build pipeline. It only wires: read the sealed inputs, plan units, mask them on
an executor, order and check their runs, encode the part files on the executor,
publish atomically, write the evidence.

Two phases keep the bytes independent of workers and chunking: masking yields compact
runs per unit (country x row block), which concatenate in unit order into the global
(country_iso, tile_id) order without any sort; the part files are then fixed row
ranges of that order, each encoded on its own by any worker.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from tileindex.cache import MaskCache
from tileindex.contract import (
    DEFAULT_KEY_COLUMN,
    READ_SIDE_KEYS,
    DatasetDictionary,
    check_key_column,
    check_parameter_hash,
    determinism_receipt,
    is_region_mode,
)
from tileindex.contract import (
    parameter_hash as derive_parameter_hash,
)
from tileindex.errors import ConfigError, DiskFullError, OutputError, TileIndexError
from tileindex.executors import ExecutorSpec, Job, TaskRunner
from tileindex.fsio import fsync_dir, make_dirs, sha256_file
from tileindex.geometry import CountryGeometry, country_geometry, geometry_digest
from tileindex.geostore import write_region_geometry
from tileindex.grid import Grid, MaskCounts
from tileindex.layout import (
    COVERAGE_DATASET,
    DATASETS,
    ROWS_PER_ROW_GROUP,
    part_name,
    row_groups_per_file,
)
from tileindex.memory_inputs import LayerLike, read_inputs
from tileindex.metrics import RunMetrics
from tileindex.plan import WorkUnit, execution_order, plan_countries, plan_parts
from tileindex.predicates import check_predicate
from tileindex.report import (
    CountrySummary,
    ResourceMeter,
    RunReport,
    country_summary,
    ingress_versions,
    pat_counters,
    rfc3339_utc,
    rounded_total,
    write_json_atomic,
    write_jsonl_atomic,
)
from tileindex.rows import check_unit_order
from tileindex.shards import (
    cleanup_stale_staging,
    discard_staging,
    publish_partitions,
    staging_dir,
)
from tileindex.tasks import (
    COVERAGE_ENGINES,
    ENGINES,
    PartResult,
    Segment,
    UnitResult,
    encode_spilled,
    get_engine,
    mask_unit,
    write_geometry,
)
from tileindex.telemetry import (
    ExecutorEvent,
    JsonLinesTelemetry,
    MergeEvent,
    MultiTelemetry,
    NullTelemetry,
    PlanEvent,
    ProgressCallback,
    ShardFlushEvent,
    Telemetry,
    UnitEvent,
    error_event,
    progress_sink,
)

log = logging.getLogger(__name__)

# the units' runs, under the staging folder until the part files are written
_SPILL_DIR = "runs"

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
    executor: ExecutorSpec
    scheduler: str | None
    cache_dir: str | None
    rows_per_row_group: int
    row_groups_per_file: int | None  # None: sized by the row count
    key_column: str = DEFAULT_KEY_COLUMN
    coverage: bool = False  # docs/CONTRACT.md §10.3

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets this build publishes."""
        return DATASETS + ((COVERAGE_DATASET,) if self.coverage else ())


def build(
    iso: str | Path | Iterable[str] | None,
    countries: str | Path | LayerLike,
    raster: str | Path | Grid | Any,
    out: str | Path,
    *,
    key_column: str = DEFAULT_KEY_COLUMN,
    predicate: str = "center",
    engine: str = "fast",
    chunk_size: int | str = DEFAULT_CHUNK_SIZE,
    workers: int | None = 1,
    executor: ExecutorSpec = None,
    scheduler: str | None = None,
    cache_dir: str | Path | None = None,
    parameter_hash: str | None = None,
    dictionary: str | Path | None = None,
    telemetry: Telemetry | None = None,
    rows_per_row_group: int = ROWS_PER_ROW_GROUP,
    row_groups_per_file: int | None = None,
    coverage: bool = False,
    progress: bool | ProgressCallback = False,
) -> BuildResult:
    """Build and publish the tile index of every country in the ISO list.

    Every grid cell that belongs to a country under ``predicate`` becomes a row of
    ``tile_index`` and ``tile_bounds``, published atomically under ``out`` with a run
    report, per-country summaries and a determinism receipt (docs/CONTRACT.md §1, §6-§8).
    Publishing the same result again is a no-op (``outcome == "identical"``).

    The defaults differ from ``tileindex build``'s on purpose: a library call runs in
    the calling process (``workers=1``) and writes nothing outside ``out``
    (``cache_dir=None``), so it is safe to call from any script, notebook or service.
    A process pool uses the ``spawn`` start method, which re-imports the caller's
    ``__main__``, so a script that asks for ``workers > 1`` needs an
    ``if __name__ == "__main__":`` guard; and a mask cache is a folder in the user's
    home. The CLI is a whole program, so it takes all cores and the cache by default.
    Pass ``workers=None`` and ``cache_dir=tileindex.cache.default_cache_dir()`` to get
    the CLI's behaviour. None of these options changes the published bytes.

    Parameters
    ----------
    iso, countries, raster
        The three sealed inputs (docs/CONTRACT.md §2): the ISO 3166 list (parquet or
        CSV, column ``country_iso``), the country polygons (GeoParquet, EPSG:4326) and
        the raster that defines the grid. In region mode (``key_column``) ``countries``
        is the region layer and ``iso`` the key list, which may be ``None``: every key
        of the layer is then visited. Each may also be given in memory
        (docs/CONTRACT.md §10.4): ``iso`` as a sequence of keys; ``countries`` as a
        GeoDataFrame (its ``key_column`` and active geometry, CRS EPSG:4326), a mapping
        ``{key: geometry}`` or a sequence of ``(key, geometry)`` pairs (lon/lat);
        ``raster`` as an open rasterio dataset or a :class:`~tileindex.grid.Grid`.
        An in-memory input's digest is that of a canonical serialisation, so the
        parameter hash differs from the file build's; the partitions' bytes are the same.
    key_column
        The layer's key column and the name of the output's first column
        (docs/CONTRACT.md §10.1). ``"country_iso"`` (default) is the country contract;
        any other name is region mode: keys are any non-empty UTF-8 strings of at most
        128 bytes without control characters, ordered by their UTF-8 bytes.
    out
        The output root; datasets, reports and the event log are written below it at
        the dataset dictionary's paths.
    predicate
        ``"center"``, ``"any_overlap"`` or ``"within"`` (docs/CONTRACT.md §5, §10.2);
        anything else raises
        :class:`~tileindex.errors.InclusionRuleError` (E008_INCLUSION_RULE).
    engine
        ``"fast"`` (the exact vectorised kernel) or ``"legacy"`` (the per-cell
        reference); both publish the same bytes.
    chunk_size
        Cells per side of a square work chunk, or ``"auto"``: full-width chunks sized
        by each country's boundary segments. Bounds memory, not the output.
    workers
        Worker processes; ``1`` (default) runs in this process, ``None`` uses every core.
    executor
        ``"serial"``, ``"process"`` or ``"dask"``; ``None`` picks ``serial`` for one
        worker and ``process`` otherwise. ``dask`` needs ``pip install 'tileindex[dask]'``.
    scheduler
        With ``executor="dask"``: the address of an existing scheduler; ``None`` starts
        a LocalCluster of ``workers`` processes.
    cache_dir
        Folder of the mask cache (see :mod:`tileindex.cache`); ``None`` (default)
        neither reads nor writes one.
    parameter_hash
        64 lowercase hex to publish under instead of the identity derived from the
        inputs, predicate and grid (docs/CONTRACT.md §7).
    dictionary
        A dataset dictionary YAML replacing the built-in one.
    telemetry
        Observer of progress and events (:class:`~tileindex.telemetry.Telemetry`);
        ``None`` observes nothing.
    rows_per_row_group, row_groups_per_file
        The part file layout (docs/CONTRACT.md §6.5); ``row_groups_per_file=None``
        sizes files by the row count (:func:`tileindex.layout.row_groups_per_file`).
        They change the bytes: keep the defaults unless you know why.
    coverage
        Also publish ``tile_coverage``: the exact coverage fraction of every row of
        ``tile_index`` (docs/CONTRACT.md §10.3), its receipt in the run report and each
        country's ``coverage_area_fraction_sum``. It enters the parameter hash; the
        ``tile_index`` and ``tile_bounds`` bytes are those of the build without it.
        Needs the ``fast`` engine and a dictionary with a ``tile_coverage`` template.
    progress
        ``False`` (default) shows nothing; ``True`` shows the CLI's progress display on
        stderr (live on a terminal, a line every 10 s otherwise); a callable is called
        as ``progress(fraction, message)`` with fractions in [0, 1] that never decrease
        and end with 1.0 once the result is published (not on failure).

    Returns
    -------
    BuildResult
        Identity, outcome (``"published"`` or ``"identical"``), counts, the run report
        and the paths of everything written.

    Raises
    ------
    TileIndexError
        A subclass naming the problem (its ``code`` is the contract's error code, if
        it has one); nothing is published then, and an ``S1_ERROR`` event is written
        to the event log when the parameter hash is known.

    Examples
    --------
    >>> import tileindex
    >>> result = tileindex.build(  # doctest: +SKIP
    ...     "iso.parquet", "countries.parquet", "grid.tif", "out/", workers=2
    ... )
    >>> result.outcome, result.rows_emitted  # doctest: +SKIP
    ('published', 425)
    >>> result.report.determinism_receipt["sha256_hex"]  # doctest: +SKIP
    """
    with progress_sink(progress) as shown:
        sinks = [t for t in (telemetry, shown) if t is not None]
        return _build(
            iso,
            countries,
            raster,
            out,
            key_column=key_column,
            predicate=predicate,
            engine=engine,
            chunk_size=chunk_size,
            workers=workers,
            executor=executor,
            scheduler=scheduler,
            cache_dir=cache_dir,
            parameter_hash=parameter_hash,
            dictionary=dictionary,
            tele=MultiTelemetry(*sinks) if sinks else NullTelemetry(),
            rows_per_row_group=rows_per_row_group,
            row_groups_per_file=row_groups_per_file,
            coverage=coverage,
        )


def _build(
    iso: str | Path | Iterable[str] | None,
    countries: Any,
    raster: Any,
    out: str | Path,
    *,
    key_column: str,
    predicate: str,
    engine: str,
    chunk_size: int | str,
    workers: int | None,
    executor: ExecutorSpec,
    scheduler: str | None,
    cache_dir: str | Path | None,
    parameter_hash: str | None,
    dictionary: str | Path | None,
    tele: Telemetry,
    rows_per_row_group: int,
    row_groups_per_file: int | None,
    coverage: bool,
) -> BuildResult:
    meter = ResourceMeter()
    started = datetime.now(UTC)
    check_key_column(key_column)
    region_mode = is_region_mode(key_column)
    if iso is None and not region_mode:
        raise ConfigError(
            "no ISO list given; pass the ISO list (--iso), or a key column other than "
            "country_iso (--key-column NAME) for a region layer"
        )
    check_predicate(predicate)
    get_engine(engine)
    fixed_chunk = _chunk_option(chunk_size)
    if parameter_hash is not None:
        check_parameter_hash(parameter_hash)
    paths_dict = DatasetDictionary.load(dictionary)
    if coverage:
        _check_coverage_options(engine, paths_dict)
    out = Path(out)
    if rows_per_row_group < 1 or (row_groups_per_file is not None and row_groups_per_file < 1):
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
        key_column,
        coverage,
    )

    phash = parameter_hash
    try:
        # paths or in-memory inputs (docs/CONTRACT.md §2, §10.4)
        iso_list, layer, grid_in = read_inputs(iso, countries, raster, key_column)
        grid = grid_in.grid
        digests = ingress_versions(
            iso=iso_list.digest, countries=layer.digest, raster=grid_in.digest
        )
        phash = phash or derive_parameter_hash(
            predicate, digests, grid.to_json(), key_column=key_column, coverage=coverage
        )
        keys = [
            k
            for k in paths_dict.templates
            if (coverage or k != COVERAGE_DATASET) and k not in READ_SIDE_KEYS
        ]
        paths = {key: paths_dict.path(key, out, phash) for key in keys}
        # what the evidence records: paths relative to the output root, never the root
        relative = {key: paths_dict.relative(key, phash) for key in keys}
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


GEOMETRY_KEY = "region_geometry"  # the dictionary key of the kept geometry (§10.4)
_GEOMETRY_FILE = "region_geometry.parquet"


def _stage_geometry(
    stage: Path,
    relative: Mapping[str, str],
    key_column: str,
    geometries: Mapping[str, CountryGeometry | None],
) -> dict[str, str] | None:
    """Write the geometry the build used into the staging folder (moved into place with
    the evidence); its path and digest for the run report. None when the dictionary has
    no place for it."""
    if GEOMETRY_KEY not in relative:
        return None
    sha = write_region_geometry(stage / _GEOMETRY_FILE, key_column, geometries)
    return {"path": relative[GEOMETRY_KEY], "sha256_hex": sha}


def _check_coverage_options(engine: str, paths: DatasetDictionary) -> None:
    """docs/CONTRACT.md §10.3: coverage needs an engine that provides it and a path."""
    if engine not in COVERAGE_ENGINES:
        raise ConfigError(
            f"--coverage needs the {' or '.join(COVERAGE_ENGINES)} engine, not {engine!r} "
            "(the legacy engine has no coverage path); drop --engine or --coverage"
        )
    paths.require(COVERAGE_DATASET, "--coverage")


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
    units = plan_countries(grid, geometries, options.chunk_size)
    chunk_report = options.chunk_size or max((u.chunk.rows for u in units), default=0)
    tele.on_start(len(codes), len(units))

    cleanup_stale_staging(out, older_than_s=STALE_STAGING_SECONDS)
    stage = staging_dir(out, phash)
    try:
        with TaskRunner(options.executor, options.workers, scheduler=options.scheduler) as runner:
            if runner.dashboard_link:
                tele.on_event(
                    ExecutorEvent("dask", runner.workers, runner.dashboard_link).to_json()
                )
            spill = stage / _SPILL_DIR
            spill.mkdir()
            results, by_code = _mask_all(runner, grid, units, geometries, options, spill, tele)
            summaries = []
            for code in codes:  # countries without units are done only now
                if code not in by_code:
                    by_code[code] = _summary(
                        code,
                        [],
                        geometries[code] is not None,
                        options.key_column,
                        options.coverage,
                    )
                    tele.on_country_done(by_code[code])
                summaries.append(by_code[code])
            check_unit_order(codes, units, results)
            for name in options.datasets:
                (stage / name).mkdir(parents=True)
            parts = _encode_all(runner, grid, options, codes, units, results, stage, tele)
            shutil.rmtree(spill)
        rows_emitted = sum(r.cells for r in results)
        meter.sample()
        # the evidence is complete before anything becomes visible
        receipt = determinism_receipt(stage / "tile_index", relative["tile_index"])
        coverage_receipt = (
            determinism_receipt(stage / COVERAGE_DATASET, relative[COVERAGE_DATASET])
            if options.coverage
            else None
        )
        usage = meter.sample()
        pat = pat_counters(
            usage,
            [r.stats for r in results] + [p.stats for p in parts],
            [p.bytes for p in parts],
            spill_bytes=[(r.stats.worker, r.spill_bytes) for r in results],
            workers_used=runner.workers,
            chunk_size=chunk_report,
            summaries=summaries,
            rows_emitted=rows_emitted,
            bytes_read_raster=bytes_raster,
            bytes_read_vectors=bytes_vectors,
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
            key_column=options.key_column,
            coverage_receipt=coverage_receipt,
            region_geometry=_stage_geometry(stage, relative, options.key_column, geometries),
        )
        # tile_bounds (and tile_coverage) first: tile_index, whose receipt is the run's
        # identity, lands last; all are checked for E010 before any is renamed
        order = [n for n in ("tile_bounds", COVERAGE_DATASET) if n in options.datasets]
        outcomes = publish_partitions(
            [(stage / name, paths[name]) for name in [*order, "tile_index"]]
        )
        outcome = "identical" if all(o == "identical" for o in outcomes) else "published"
        write_evidence = outcome == "published" or not paths["run_report"].exists()
        if write_evidence and GEOMETRY_KEY in paths:
            make_dirs(paths[GEOMETRY_KEY].parent)
            os.replace(stage / _GEOMETRY_FILE, paths[GEOMETRY_KEY])
            fsync_dir(paths[GEOMETRY_KEY].parent)
    finally:
        discard_staging(stage)

    if write_evidence:
        write_jsonl_atomic(paths["country_summaries"], summaries)
        write_json_atomic(paths["run_report"], report)
    else:
        log.info("partition %s already published with identical bytes", paths["tile_index"])
    if options.cache_dir is not None:
        MaskCache(Path(options.cache_dir)).evict()
    tele.on_finish(report)
    metrics = RunMetrics.of_run(
        phash,
        options.predicate,
        rows_emitted,
        usage.wall_seconds,
        unit_stats=[r.stats for r in results],
        part_stats=[p.stats for p in parts],
        cache_hits=sum(1 for r in results if r.cached),
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


def _chunk_option(value: int | str) -> int | None:
    """A fixed chunk side, or None for adaptive chunks (``"auto"``)."""
    if value == "auto":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"chunk size must be a positive number of cells or 'auto', got {value!r}")
    return value


def _mask_all(
    runner: TaskRunner,
    grid: Grid,
    units: list[WorkUnit],
    geometries: Mapping[str, CountryGeometry | None],
    options: _Options,
    spill: Path,
    tele: Telemetry,
) -> tuple[list[UnitResult], dict[str, CountrySummary]]:
    """Run every unit, heaviest first; results come back in unit id order, with the
    summary of every country that has units (made as its last unit finishes)."""
    digests = {code: geometry_digest(g) for code, g in geometries.items() if g is not None}
    tele.on_event(PlanEvent.of(units).to_json())
    left = Counter(u.country_iso for u in units)
    done: dict[str, list[UnitResult]] = {}
    summaries: dict[str, CountrySummary] = {}
    for code in sorted(set(left)):
        geom = geometries[code]
        assert geom is not None  # units exist only for countries with windows
        write_geometry(spill, digests[code], geom)
    jobs = []
    for unit in execution_order(units):
        args = (
            grid,
            unit,
            digests[unit.country_iso],
            options.predicate,
            options.engine,
            str(spill),
            options.cache_dir,
            options.coverage,
        )
        label = f"unit {unit.unit_id} ({unit.country_iso} rows {unit.row_start}-{unit.row_stop})"
        jobs.append(Job(unit.unit_id, mask_unit, args, label))

    def on_result(key: Hashable, res: UnitResult) -> None:
        unit = units[int(key)]  # type: ignore[call-overload]
        code = unit.country_iso
        tele.on_event(UnitEvent.of(unit, res.counts, res.stats.seconds, res.stats.worker).to_json())
        tele.on_unit_done(
            code, res.counts.cells_visited, res.counts.cells_included, res.stats.seconds
        )
        done.setdefault(code, []).append(res)
        left[code] -= 1
        if left[code] == 0:
            summaries[code] = _summary(
                code, done.pop(code), True, options.key_column, options.coverage
            )
            tele.on_country_done(summaries[code])

    results = runner.run(jobs, on_result)
    return [results[u.unit_id] for u in units], summaries


def _summary(
    code: str,
    results: Sequence[UnitResult],
    has_geometry: bool,
    key_column: str,
    coverage: bool,
) -> CountrySummary:
    ordered = sorted(results, key=lambda r: r.unit_id)
    counts = sum((r.counts for r in ordered), MaskCounts())
    coverage_sum = None
    if coverage:
        # docs/CONTRACT.md §10.3: interior cells count 1 each, boundary cells their
        # fraction; the units' exact totals added, rounded once, so no order or split
        # can change a bit
        boundary = sum(r.boundary_cells for r in ordered)
        total = sum(r.fraction_total for r in ordered)
        coverage_sum = rounded_total(total, ones=counts.cells_included - boundary)
    return country_summary(
        code,
        [r.tile_ids for r in ordered if r.tile_ids is not None],
        counts,
        has_geometry=has_geometry,
        has_units=bool(ordered),
        key_column=key_column,
        coverage_sum=coverage_sum,
    )


def _segments(
    units: Sequence[WorkUnit], results: Sequence[UnitResult], index: Mapping[str, int]
) -> Callable[[int, int], list[Segment]]:
    """Cells [start, stop) of the whole result (units in unit order = key order) as
    segments of the units' cell streams."""
    cells = np.array([r.cells for r in results], dtype=np.int64)
    ends = np.cumsum(cells)
    starts = ends - cells

    def cut(start: int, stop: int) -> list[Segment]:
        lo = int(np.searchsorted(ends, start, side="right"))
        hi = int(np.searchsorted(starts, stop, side="left"))
        out = []
        for i in range(lo, hi):
            a, b = max(start, int(starts[i])), min(stop, int(ends[i]))
            if b > a:
                u = units[i]
                base = int(starts[i])
                out.append(Segment(u.unit_id, index[u.country_iso], a - base, b - base))
        return out

    return cut


def _encode_all(
    runner: TaskRunner,
    grid: Grid,
    options: _Options,
    codes: Sequence[str],
    units: Sequence[WorkUnit],
    results: Sequence[UnitResult],
    stage: Path,
    tele: Telemetry,
) -> list[PartResult]:
    total = sum(r.cells for r in results)
    per_file = options.row_groups_per_file or row_groups_per_file(total, options.rows_per_row_group)
    tasks = plan_parts(total, options.rows_per_row_group * per_file)
    cut = _segments(units, results, {code: i for i, code in enumerate(codes)})
    t0 = time.perf_counter()
    jobs = [
        Job(
            task.part_index,
            encode_spilled,
            (
                grid,
                options.predicate,
                codes,
                str(stage / _SPILL_DIR),
                cut(task.row_start, task.row_stop),
                task,
                stage,
                options.rows_per_row_group,
                per_file,
                options.coverage,
                options.key_column,
            ),
            f"part {task.part_index} (rows {task.row_start}-{task.row_stop})",
        )
        for task in tasks
    ]

    def verify(key: Hashable, part: PartResult) -> str | None:
        """The staged files must still hold the bytes the worker wrote (SHA-256)."""
        for name in options.datasets:
            path = stage / name / part_name(part.part_index)
            if sha256_file(path) != part.sha256[name]:
                return f"{path} does not match the checksum it was written with"
        return None

    def on_result(key: Hashable, part: PartResult) -> None:
        event = ShardFlushEvent(
            part.part_index, part.rows, part.bytes, round(part.stats.seconds, 6), part.stats.worker
        )
        tele.on_event(event.to_json())

    parts = runner.run(jobs, on_result, verify)
    merged = MergeEvent(
        parts=len(parts),
        rows=sum(p.rows for p in parts.values()),
        bytes=sum(p.bytes for p in parts.values()),
        seconds=round(time.perf_counter() - t0, 6),
    )
    tele.on_event(merged.to_json())
    return [parts[t.part_index] for t in tasks]
